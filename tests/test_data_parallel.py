"""The data-parallel training path (issue 3 items 6-7) on real local Spark (local[2]): the auto
choice's rules, xgboost.spark and LightGBM's barrier trainer against the per-trial path on the
same folds, Spark-side scoring against the numpy metrics, and a whole tuning that never
collects the window."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from automl_tasks.data.prepare import prepare
from automl_tasks.errors import DataError, SpecError, TuningError
from automl_tasks.evaluation.metrics import compute_metric
from automl_tasks.fitting import Fit, Learner
from automl_tasks.models import adapters, lightgbm_distributed
from automl_tasks.spec import load_spec, parse_spec
from automl_tasks.tuning import data_parallel, training_path
from automl_tasks.tuning.data_parallel import SparkWindow
from automl_tasks.tuning.runner import FitContext, fit_fold, stage
from automl_tasks.tuning.validation import make_folds
from tests.support.specs import spec_dict, write_spec

MONTH = "2017-11"
MB, GB = 2**20, 2**30


# --- the auto choice -------------------------------------------------------------------------

def test_auto_takes_per_trial_while_the_window_fits_a_slot_many_times():
    # 4g driver, 2 local slots: a slot has 2 GiB; 4 copies in half of it: 256 MiB of window.
    limit = training_path.per_trial_limit(2 * GB, 4 * GB)
    assert limit == 256 * MB
    small = training_path.choose("auto", limit, 2 * GB, 4 * GB)
    big = training_path.choose("auto", limit + 1, 2 * GB, 4 * GB)
    assert (small.path, big.path) == ("per_trial", "data_parallel")
    assert "> per-trial limit 256 MB" in big.reason
    # The smaller of slot and driver memory bounds it: a small driver forces data_parallel too.
    assert training_path.choose("auto", 100 * MB, 8 * GB, 512 * MB).path == "data_parallel"


def test_an_explicit_path_wins_and_a_blocker_keeps_auto_per_trial():
    assert training_path.choose("data_parallel", 1, 8 * GB, 8 * GB).path == "data_parallel"
    assert training_path.choose("per_trial", 100 * GB, GB, GB).path == "per_trial"
    blocked = training_path.choose("auto", 100 * GB, GB, GB, blocker="algorithm 'spark_gbt' has no ...")
    assert blocked.path == "per_trial" and "not possible: algorithm 'spark_gbt'" in blocked.reason
    with pytest.raises(ValueError, match="training must be one of"):
        training_path.choose("fast", 1, GB, GB)
    params = training_path.choose("auto", 300 * MB, 2 * GB, 4 * GB).params()
    assert params == {"training_path": "data_parallel", "training_requested": "auto",
                      "training_window_mb": 300.0, "training_slot_mb": 2048.0, "training_driver_mb": 4096.0}


def test_window_bytes_and_spark_memory_strings():
    assert training_path.window_bytes(1000, 10) == 1000 * 12 * 8
    assert [training_path.parse_bytes(t) for t in ("4g", "512m", "1t", "2048", "64k")] == \
        [4 * GB, 512 * MB, 1024 * GB, 2048 * MB, 64 * 1024]
    with pytest.raises(ValueError, match="not a Spark memory size"):
        training_path.parse_bytes("lots")


def test_the_spec_setting_is_validated():
    assert parse_spec(yaml.safe_dump(spec_dict())).training == "auto"
    with pytest.raises(SpecError, match=r"training: Input should be 'auto', 'per_trial' or 'data_parallel'"):
        parse_spec(yaml.safe_dump(spec_dict(training="fast")))
    with pytest.raises(SpecError, match=r"training: data_parallel: algorithm 'spark_linear' has no "
                                        r"data-parallel path"):
        parse_spec(yaml.safe_dump(spec_dict(training="data_parallel", algorithms={"spark_linear": {}})))
    with pytest.raises(SpecError, match="validation.method 'given' is not supported"):
        parse_spec(yaml.safe_dump(spec_dict(training="data_parallel",
                                            validation={"method": "given", "path": "v.parquet"})))


# --- the trainers against the per-trial path, on the same folds ------------------------------

@pytest.fixture(scope="module")
def same_folds(demo_dir, spark):
    """The demo window's per-trial folds, and the same rows and fold ids as a Spark window."""
    spec = load_spec(write_spec(demo_dir, "binary", filename="dp_folds.yaml"))
    prepared = prepare(spark, spec, MONTH)
    folds = make_folds(prepared.train, None, spec.validation, spec.task, prepared.window.train,
                       seed=spec.seed, classes=prepared.classes)
    n = folds.X.shape[1]
    pdf = pd.DataFrame(folds.X, columns=[f"x{i}" for i in range(n)])
    pdf["y"], pdf["fold"] = folds.y.astype(float), folds.fold_ids.astype(np.int32)
    frame = spark.createDataFrame(pdf).persist()
    window = SparkWindow(frame, n, 2, workers=2, n_folds=folds.n_folds)
    yield spec, prepared, folds, window
    frame.unpersist()


# How far a fold's AUC may move between the paths. xgboost: its workers' quantile sketches merge
# into the single-node cuts on data this small (measured: identical to 1e-6 on every fold).
# LightGBM: each worker finds the bins of its share of the features from its own rows only
# (~530 of the fold's ~1070 training rows), so split thresholds move; measured on ~530-row
# validation folds: +0.0066, -0.0059, +0.0031. A real fault (rows, labels or categorical
# codes mixed up) moves AUC by tenths.
AUC_TOLERANCE = {"xgboost": 1e-3, "lightgbm": 0.02}


@pytest.mark.parametrize("algorithm,params", [
    ("xgboost", {"max_depth": 3, "n_estimators": 20}),
    ("lightgbm", {"num_leaves": 7, "n_estimators": 20}),
])
def test_data_parallel_folds_score_like_per_trial_folds(same_folds, spark, algorithm, params):
    spec, prepared, folds, window = same_folds
    categorical = prepared.encoding.categorical_idx
    ctx = FitContext(stage(spark, folds), algorithm, spec.task, spec.metric, tuple(categorical), 1, spec.seed)
    for fold in range(folds.n_folds):
        local, _, n_fit, n_valid = fit_fold(ctx, params, fold)
        distributed, _, dp_fit, dp_valid = data_parallel.fit_fold(window, ctx.learner,
                                                                  Fit(params, spec.metric, fold))
        assert (dp_fit, dp_valid) == (n_fit, n_valid)
        assert distributed == pytest.approx(local, abs=AUC_TOLERANCE[algorithm]), (algorithm, fold)


@pytest.mark.parametrize("task,metric", [("binary", "areaUnderROC"), ("binary", "areaUnderPR"),
                                         ("multiclass", "logLoss"), ("multiclass", "f1"),
                                         ("multiclass", "accuracy"), ("regression", "rmse"),
                                         ("regression", "r2"), ("regression", "mape")])
def test_spark_side_metrics_equal_the_numpy_ones(spark, task, metric):
    rng = np.random.default_rng(3)
    n, k = 300, (2 if task == "binary" else 3)
    if task == "regression":
        y = rng.normal(5, 1, n)
        prediction = y + rng.normal(0, 0.5, n)
        frame = spark.createDataFrame(pd.DataFrame({"y": y, "prediction": prediction}))
    else:
        y = rng.integers(0, k, n)
        prediction = rng.dirichlet(np.ones(k), n)
        prediction[:5] = 1.0 / k      # ties: the lowest class wins, as in Spark's argmax
        frame = spark.createDataFrame(pd.DataFrame({"y": y.astype(float), "proba": list(prediction)}))
    assert data_parallel.spark_metric(metric, task, frame) == pytest.approx(
        compute_metric(metric, task, y, prediction), rel=1e-9, abs=1e-12)


def test_a_data_parallel_model_is_the_estimator_export_expects(same_folds, spark):
    spec, prepared, folds, window = same_folds
    categorical = prepared.encoding.categorical_idx
    for algorithm, params in (("xgboost", {"n_estimators": 5}), ("lightgbm", {"n_estimators": 5})):
        learner = Learner(algorithm, spec.task, tuple(categorical), 1, spec.seed)
        trained = data_parallel.train(window, learner, params, window.frame)
        estimator = data_parallel.to_estimator(trained, spec.task, params, window.n_classes)
        expected = data_parallel._booster_predict(algorithm, trained.booster, folds.X[:20], spec.task)
        assert np.allclose(adapters.predict(estimator, spec.task, folds.X[:20]), expected)
        assert adapters.objective(estimator, algorithm).startswith("binary")
        assert len(adapters.importance(estimator, algorithm, prepared.encoding.feature_names)) == window.n_features


def test_a_failing_barrier_task_fails_the_fit_fast_with_the_cause(spark):
    # One row for two workers: one task has no rows and fails; its peer must not wait for it
    # until LightGBM's time_out (minutes): barrier mode ends the whole stage.
    frame = spark.createDataFrame(pd.DataFrame({"x0": [1.0], "y": [1.0]}))
    started = time.monotonic()
    with pytest.raises(TuningError, match=r"lightgbm data-parallel training on 2 barrier tasks failed: "
                                          r".*got no rows"):
        lightgbm_distributed.train(frame, features=["x0"], label="y", task="binary", params={},
                                   num_workers=2)
    assert time.monotonic() - started < 60
    with pytest.raises(TuningError, match="'machines' is set by the trainer"):
        lightgbm_distributed.train(frame, features=["x0"], label="y", task="binary",
                                   params={"machines": "a:1"}, num_workers=2)


# --- a whole tuning on the data-parallel path ------------------------------------------------

@pytest.fixture
def never_collect(monkeypatch):
    """The two ways the window reaches the driver on the per-trial path, made to fail."""
    from automl_tasks.data import prepare as prepare_module
    from automl_tasks.tuning import job

    def no_collect(*args, **kwargs):
        raise AssertionError("the data-parallel path collected the window to the driver")

    monkeypatch.setattr(prepare_module, "to_matrix", no_collect)
    monkeypatch.setattr(job, "stage", no_collect)


def data_parallel_spec(demo_dir, name: str, **algorithms):
    xgboost = {"search": "grid", "space": {"max_depth": [3]}, "fixed": {"n_estimators": 10}}
    return load_spec(write_spec(demo_dir, "binary", filename=f"{name}.yaml", name=name,
                                training="data_parallel", validation={"folds": 2},
                                algorithms={"xgboost": xgboost, **algorithms}))


def test_tune_data_parallel_logs_the_path_records_failures_and_never_collects(
        demo_dir, spark, tracking, never_collect):
    from automl_tasks.tuning import job

    spec = data_parallel_spec(demo_dir, "dp_test", lightgbm={
        "search": "grid", "fixed": {"n_estimators": 10}, "space": {"num_leaves": [1, 7]}})
    lines = []
    summary = job.tune(spec, MONTH, spark=spark, progress=lines.append)

    assert summary["training_path"] == "data_parallel"
    assert any("training path data_parallel (set in the spec)" in line for line in lines)
    assert summary["trials"] == {"total": 3, "failed": 1}
    failed_lines = [line for line in lines if "FAILED" in line]
    assert any("lightgbm trial 1/2 FAILED" in line and "lightgbm data-parallel" in line
               for line in failed_lines), failed_lines
    board = {e["algorithm"]: e for e in summary["leaderboard"]}
    assert all(board[a]["status"] == "ok" and board[a]["holdout_value"] is not None for a in board)
    assert 0.6 < board["xgboost"]["cv_value"] < 1 and 0.6 < board["lightgbm"]["cv_value"] < 1
    assert board["lightgbm"]["params"]["num_leaves"] == 7

    client = MlflowClient(tracking)
    parent = client.get_run(summary["run_id"])
    assert parent.data.params["training_path"] == "data_parallel"
    assert parent.data.params["training_requested"] == "data_parallel"
    assert parent.data.tags["automl.training_reason"] == "set in the spec"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{summary['run_id']}'")
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.params["num_leaves"] == "1"
    assert "num_leaves" in failed[0].data.tags["automl.error"]


def test_the_monthly_job_honours_the_specs_data_parallel_and_never_collects(
        demo_dir, spark, tracking, never_collect):
    from automl_tasks.pipelines.monthly import run_monthly

    spec = data_parallel_spec(demo_dir, "dp_monthly")
    result = run_monthly(spec, MONTH, promotion_mode="auto", spark=spark, progress=lambda line: None)

    assert result["decision"]["status"] == "approved" and 0.6 < result["candidates"]["xgboost"] < 1
    tuning = MlflowClient(tracking).get_run(result["runs"]["tuning"])
    assert tuning.data.params["training_path"] == "data_parallel"
    assert tuning.data.tags["automl.training_reason"] == "set in the spec"


def test_tune_refuses_a_collected_window_for_a_data_parallel_spec(demo_dir, spark, tracking):
    from automl_tasks.tuning import job

    spec = load_spec(write_spec(demo_dir, "binary", filename="dp_guard.yaml", name="dp_guard",
                                training="data_parallel"))
    collected = prepare(spark, spec, MONTH)
    with pytest.raises(SpecError, match=r"spec 'dp_guard' sets training: data_parallel, but its window was "
                                        r"handed to tune already collected as matrices"):
        job.tune(spec, MONTH, spark=spark, progress=lambda line: None, prepared=collected)
    assert MlflowClient(tracking).get_experiment_by_name("dp_guard/tuning") is None   # nothing written


def test_the_session_resources_and_the_decider(spark, demo_dir):
    # conftest's local[2] session with get_spark's 4g driver: the one executor is the driver.
    have = training_path.resources(spark, 2)
    assert (have.slot_bytes, have.driver_bytes, have.slots) == (2 * GB, 4 * GB, 2)
    spec = load_spec(write_spec(demo_dir, "binary", filename="dp_auto.yaml"))
    decide = training_path.decider(spark, spec, 2)
    assert decide(1600, 10).path == "per_trial"
    assert decide(10_000_000, 10).path == "data_parallel"     # 916 MB > 256 MB
    ablation = training_path.per_trial_only(spark, "the ablation study", 2)
    assert ablation(1600, 10).path == "per_trial"
    with pytest.raises(DataError, match=r"the ablation study collects its window to the driver .* too big "
                                        r"for that \(window 916 MB > per-trial limit 256 MB\)"):
        ablation(10_000_000, 10)
