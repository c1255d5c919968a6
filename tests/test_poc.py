"""PoC (automl_tasks.poc): warnings, task inference, honest segment and algorithm verdicts, bad
input that writes nothing, and one PoC end to end through the CLI inside its time budget,
whose best candidate's spec re-runs with `automl-tasks tune --spec` to the same score.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from automl_tasks import cli
from automl_tasks.errors import DataError, SpecError
from automl_tasks.evaluation.compare import paired_bootstrap
from automl_tasks.registry.records import LeaderboardEntry
from automl_tasks.poc import algorithm_check, candidates, explore, request, segments
from tests.support.poc_data import churn_frame, segment_frame, write_csv

ROOT = Path(__file__).resolve().parents[1]
SPARK_TYPES = {"int64": "int", "float64": "double", "object": "string", "datetime64[ns]": "date"}


def spark_dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {c: SPARK_TYPES[str(t)] for c, t in frame.dtypes.items()}


# --- pure parts -------------------------------------------------------------------------------

def test_findings_name_every_planted_problem_and_nothing_on_clean_columns():
    frame = churn_frame(400)
    profiles = explore.profile_columns(frame, spark_dtypes(frame), "churn")
    shares = explore.label_shares(frame, "churn", "binary")
    found = explore.findings(profiles, len(frame), "binary", shares,
                             {"refund_issued": 0.99, "tenure": 0.62, "plan": 0.55}, "areaUnderROC", 0.97)
    assert {(f.kind, f.column) for f in found} == {
        ("id_like", "customer_id"), ("constant", "constant_flag"), ("high_cardinality", "notes_code"),
        ("heavy_missing", "mostly_missing"), ("leakage", "refund_issued"), ("label_imbalance", None),
        ("datetime", "signup_date")}
    by_name = {p.name: p for p in profiles}
    assert by_name["churn"].role == "label" and by_name["plan"].kind == "categorical"
    assert by_name["mostly_missing"].missing_share == pytest.approx(frame["mostly_missing"].isna().mean())
    assert by_name["tenure"].stats["integral"] and by_name["tenure"].unique == frame["tenure"].nunique()
    page = explore.findings_html(profiles, found, len(frame), "task binary inferred")
    assert "refund_issued" in page and "label imbalance" in page and "task binary inferred" in page

    balanced = segment_frame(300)
    profiles = explore.profile_columns(balanced, spark_dtypes(balanced), "bought")
    assert explore.findings(profiles, len(balanced), "binary", explore.label_shares(balanced, "bought", "binary"),
                            {"price": 0.7}, "areaUnderROC", 0.97) == []


def test_task_inference_and_request_checks_name_the_problem():
    assert request.infer_task("numeric", [0, 1], 2, "y")[0] == "binary"
    assert request.infer_task("categorical", ["a", "b", "c"], 3, "y") == (
        "multiclass", "label 'y' is text with 3 classes")
    assert request.infer_task("numeric", [1, 2, 3, 4], 4, "y")[0] == "multiclass"
    assert request.infer_task("numeric", [0.5, 1.5, 2.0], 3, "y")[0] == "regression"
    assert request.infer_task("numeric", list(range(50)), 50, "y")[0] == "regression"
    with pytest.raises(DataError, match=r"label 'y' has a single value \('yes'\)"):
        request.infer_task("categorical", ["yes"], 1, "y")
    assert request.parse_validation("cv:5") == {"method": "cv", "folds": 5}
    assert request.parse_validation("split:0.8") == {"method": "split", "train_ratio": 0.8}
    with pytest.raises(SpecError, match="'x' is not a number"):
        request.parse_validation("cv:x")
    with pytest.raises(SpecError, match=r"time budget 30s is too small .* at least 120s"):
        request.check_budget(30, ["xgboost", "spark_linear", "lightgbm"])
    with pytest.raises(SpecError, match="spark_gbt"):
        request.choose_algorithms(["spark_gbt"], "multiclass")
    assert "spark_gbt" not in request.choose_algorithms(None, "multiclass")
    with pytest.raises(DataError, match="lacks column 'b'"):
        request.check_test_columns(["a", "b", "y"], ["a", "y"], "y", Path("t.csv"))
    with pytest.raises(DataError, match="has column 'c', which the training data does not have"):
        request.check_test_columns(["a", "y"], ["a", "c"], "y", Path("t.csv"))
    request.check_test_columns(["a", "y"], ["a"], "y", Path("t.csv"))   # the label may be absent


def test_segment_verdicts_follow_the_intervals():
    """Segment a: the segment model is right where the global one guesses; b: both the same."""
    rng = np.random.default_rng(0)
    n = 420
    y = rng.integers(0, 2, n)
    labels = np.array(["a"] * 200 + ["b"] * 200 + ["c"] * 20, dtype=object)
    informed = np.column_stack([1 - (0.8 * y + 0.1), 0.8 * y + 0.1])
    guess = np.column_stack([np.full(n, 0.5) + rng.normal(0, 0.01, n), np.full(n, 0.5)])
    guess[:, 1] = 1 - guess[:, 0]
    global_prediction = np.where((labels == "a")[:, None], guess, informed)
    rows = np.arange(n)
    per_segment = {"a": (rows[:200], informed[:200]), "b": (rows[200:400], informed[200:400])}
    global_oof = candidates.OutOfFold("xgboost", {}, rows, y, global_prediction, 0.0)
    result = segments.compare_segments("areaUnderROC", "binary", global_oof, labels, per_segment,
                                       {"c": "ValueError: 20 rows < 30"})
    by_name = {r["segment"]: r for r in result["segments"]}
    assert result["recommended"] == ["a"] and result["confidence"] == pytest.approx(0.975)
    assert by_name["a"]["ci_low"] > 0 and by_name["a"]["recommend"] == "segment model"
    assert by_name["b"]["delta"] == 0 and by_name["b"]["recommend"] == "global model"
    assert by_name["c"]["recommend"] == "global model" and "20 rows < 30" in by_name["c"]["reason"]
    assert result["advice"] == "per-segment models recommended for: a (the global model elsewhere)"


def test_algorithm_verdict_switches_only_on_a_significant_gain():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    good = np.column_stack([1 - (0.7 * y + 0.15), 0.7 * y + 0.15])
    noise = rng.random(300)
    poor = np.column_stack([1 - noise, noise])
    better = paired_bootstrap("areaUnderROC", "binary", y, good, poor)
    assert algorithm_check.verdict(better, "xgboost", "lightgbm")[0] == "switch"
    worse = paired_bootstrap("areaUnderROC", "binary", y, poor, good)
    assert algorithm_check.verdict(worse, "xgboost", "lightgbm")[0] == "keep"
    board = [LeaderboardEntry("xgboost", "ok", cv_value=0.9), LeaderboardEntry("lightgbm", "ok", cv_value=0.8),
             LeaderboardEntry("spark_linear", "ok", cv_value=0.85),
             LeaderboardEntry("spark_gbt", "failed", cv_value=None)]
    assert algorithm_check.best_alternative(board, "areaUnderROC", exclude="xgboost").algorithm == "spark_linear"
    # Lower is better for log loss: the smallest value among the others wins.
    assert algorithm_check.best_alternative(board, "logLoss", exclude="xgboost").algorithm == "lightgbm"


def test_the_reserve_after_tuning_is_resized_from_the_measured_fits():
    from automl_tasks.poc.steps import REPORT_SECONDS, RESERVE_SAFETY, evaluation_reserve

    assert evaluation_reserve([], 2, 3, fixed=40.0) == 40.0                  # nothing measured yet
    fast = LeaderboardEntry("xgboost", "ok", refit_seconds=1.0)               # out of fold: 3 x 1 + 1 = 4 s
    # xgboost's own and lightgbm's (still to tune, costed like the slowest so far).
    assert evaluation_reserve([fast], 2, 3, fixed=40.0) == pytest.approx(RESERVE_SAFETY * 8 + REPORT_SECONDS)
    medium = LeaderboardEntry("lightgbm", "ok", refit_seconds=3.0)            # 10 s
    failed = LeaderboardEntry("spark_gbt", "failed")                          # no model: nothing to evaluate
    assert evaluation_reserve([fast, failed, medium], 4, 3, fixed=40.0) == pytest.approx(
        RESERVE_SAFETY * (4 + 10 + 10) + REPORT_SECONDS)
    # Never more than the fixed share: the algorithms still to tune keep their time.
    slow = LeaderboardEntry("spark_gbt", "ok", refit_seconds=20.0)
    assert evaluation_reserve([fast, slow], 3, 3, fixed=40.0) == 40.0


def test_time_shares_roll_over_and_keep_room_to_finish(monkeypatch):
    from automl_tasks.poc import run as poc_run
    from automl_tasks.poc.run import Budget
    from automl_tasks.tuning.job import DRIVER_FIRST_GUESS_S, FIRST_FINISH_GUESS_S, _past_deadline, share_of

    boosters = ["xgboost", "lightgbm"]
    assert share_of(100, boosters, [], []) == pytest.approx((100 - 2 * FIRST_FINISH_GUESS_S) / 2)
    assert share_of(90, boosters, [5.0, 10.0], []) == pytest.approx((90 - 2 * 10.0) / 2)   # slowest finish
    # Boosters searched first keep back each Spark ML algorithm's first trial (a guess, then measured).
    assert share_of(100, ["lightgbm", "spark_gbt"], [4.0], []) == pytest.approx(
        (100 - 4.0 - DRIVER_FIRST_GUESS_S) / 2)
    assert share_of(100, ["lightgbm", "spark_gbt", "spark_linear"], [4.0], [50.0, 60.0]) == 0.1
    assert share_of(100, ["lightgbm", "spark_gbt", "spark_linear"], [4.0], [40.0, 60.0]) == pytest.approx(16 / 3)
    assert share_of(5, boosters, [10.0], []) == 0.1          # out of time: one wave each, no more
    # A Spark ML algorithm whose one trial (as long as the quickest so far) cannot end in time is skipped.
    assert _past_deadline("xgboost", None, []) is None
    assert _past_deadline("spark_gbt", time.monotonic() + 10, [30.0]).endswith("took 30s")
    assert _past_deadline("xgboost", time.monotonic() + 10, [30.0]) is None
    assert "deadline passed" in _past_deadline("xgboost", time.monotonic() - 5, [])
    monkeypatch.setattr(poc_run, "time", SimpleNamespace(monotonic=lambda: 1000.0))   # the budget's clock, frozen
    budget = Budget(950.0, 60)
    assert budget.elapsed() == 50 and budget.left() == 10
    assert budget.fits(5) and budget.fits(10) and not budget.fits(10.5) and not budget.fits(5, keep_s=6)


# --- against Spark and the MLflow server -----------------------------------------------------

@pytest.fixture
def poc_data(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "data"
    frame = churn_frame(400)
    write_csv(frame.iloc[:320], root / "churn_train.csv")
    write_csv(frame.iloc[320:], root / "churn_test.csv")
    monkeypatch.setenv("AUTOML_DATA_ROOTS", str(root))
    return root


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_bad_input_is_one_specific_error_and_writes_nothing(spark, tracking, poc_data, tmp_path, capsys,
                                                           monkeypatch):
    from automl_tasks.tuning import training_path

    frame = churn_frame(100)
    write_csv(frame.assign(churn=1), poc_data / "flat_train.csv")
    write_csv(frame.drop(columns=["plan"]), poc_data / "narrow_test.csv")
    outside = write_csv(frame, tmp_path / "elsewhere" / "x_train.csv")
    train = str(poc_data / "churn_train.csv")
    cases = [
        (["--data", str(outside), "--label", "churn"], r"outside the allowed data folders .*AUTOML_DATA_ROOTS"),
        (["--data", "../elsewhere/x_train.csv", "--label", "churn"], "outside the allowed data folders"),
        (["--data", train, "--label", "cancelled"], r"label column 'cancelled' is not in churn_train.csv"),
        (["--data", str(poc_data / "flat_train.csv"), "--label", "churn"],
         r"label 'churn' has a single value \(1\)"),
        (["--data", train, "--label", "churn", "--time-budget", "10"], r"time budget 10s is too small for any fit"),
        (["--data", train, "--label", "churn", "--test", str(poc_data / "narrow_test.csv")],
         r"test data .*narrow_test.csv lacks column 'plan'"),
        (["--data", train, "--label", "churn", "--metric", "rmse"], "metric 'rmse' is for regression"),
        (["--data", train, "--label", "churn", "--segment", "shop"], "segment column 'shop' is not in"),
    ]
    for args, message in cases:
        code, out, err = run_cli(["poc", *args, "--name", "bad_input", "--json"], capsys)
        assert code == 2, (args, err[-2000:])
        assert out == ""
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and re.search(message, lines[0]), (args, lines)
    # A window the driver cannot hold (a 1 KiB driver here): refused before it is collected.
    tiny = training_path.Resources(slot_bytes=1024, driver_bytes=1024, slots=2)
    monkeypatch.setattr(training_path, "resources", lambda spark, slots: tiny)
    code, out, err = run_cli(["poc", "--data", train, "--label", "churn", "--name", "bad_input"], capsys)
    assert code == 2 and re.search(r"error: the PoC collects its window to the driver .* too big for that "
                                   r"\(window 0 MB > per-trial limit 0 MB\); give the driver", err), err[-2000:]
    client = MlflowClient(tracking)
    assert client.get_experiment_by_name("bad_input/poc") is None
    assert not (Path(os.environ["AUTOML_HOME"]) / "poc").exists()


def test_poc_end_to_end_within_budget_and_its_spec_reruns(spark, tracking, poc_data, tmp_path, capsys):
    budget = 240
    code, out, err = run_cli(["poc", "--data", str(poc_data / "churn_train.csv"), "--label", "churn",
                              "--test", str(poc_data / "churn_test.csv"), "--algorithms", "xgboost,spark_linear",
                              "--time-budget", str(budget), "--max-trials", "2", "--json"], capsys)
    assert code == 0, err[-4000:]
    result = json.loads(out)
    # Inside its budget by the PoC's own clock (it starts with the CLI), as the job recorded it.
    spent, steps = result["budget"], result["timings"]
    assert spent["time_budget_s"] == budget and 0 < spent["elapsed_s"] <= budget, (spent, steps)
    assert result["task"] == "binary" and "inferred" in result["task_note"]
    board = result["leaderboard"]
    assert [r["algorithm"] for r in board] == sorted([r["algorithm"] for r in board],
                                                     key=lambda a: -next(r["value"] for r in board
                                                                         if r["algorithm"] == a))
    assert {r["algorithm"] for r in board} == {"xgboost", "spark_linear"}
    for row in board:
        assert row["status"] == "ok" and row["metric"] == "areaUnderROC" and row["fit_seconds"] > 0
    assert result["best"]["algorithm"] == board[0]["algorithm"]
    assert {w["kind"] for w in result["warnings"]} >= {"id_like", "constant", "leakage", "label_imbalance",
                                                       "datetime"}
    assert "date/time column 'signup_date' is left out of the features" in result["notes"]

    # Local outputs and the same in MLflow.
    outputs = result["outputs"]
    table = pd.read_csv(outputs["leaderboard"])
    assert list(table["algorithm"]) == [r["algorithm"] for r in board]
    page = Path(outputs["exploration"]).read_text()
    assert "refund_issued" in page and "likely leakage" in page
    assert "RowCount" in page and len(page) > 100_000          # Evidently's summary (its own page)
    test_rows = len(pd.read_csv(poc_data / "churn_test.csv"))
    for algorithm, files in outputs["candidates"].items():
        predictions = pd.read_csv(files["test_predictions"])
        assert len(predictions) == test_rows and {"predicted_label", "probability_1"} <= set(predictions)
        performance = json.loads(Path(files["performance"]).read_text())
        assert performance["test"]["areaUnderROC"] is not None
        assert json.loads(Path(files["fit_summary"]).read_text())["importance"]
        assert yaml.safe_load(Path(files["spec"]).read_text())["algorithms"][algorithm]["search"] == "grid"
        if performance["skipped"]:           # out of time: said so, and nothing pretends otherwise
            assert "time" in performance["skipped"] or "left" in performance["skipped"]
            assert "plots" not in files and performance["out_of_fold"] is None
            continue
        assert {Path(p).name for p in files["plots"]} == {"roc.png", "pr.png", "confusion_matrix.png"}
        assert performance["out_of_fold"]["areaUnderROC"] == pytest.approx(
            next(r["oof_value"] for r in board if r["algorithm"] == algorithm))
    assert "plots" in outputs["candidates"][result["best"]["algorithm"]]
    client = MlflowClient(tracking)
    run = client.get_run(result["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["automl.kind"] == "poc"
    assert float(run.data.params["time_budget_s"]) == budget
    assert spent["elapsed_s"] <= run.data.metrics["elapsed_s"] <= budget     # logged last, after the summary
    # The trials, by their own records: --max-trials 2 of each algorithm, each logged (so started)
    # inside the PoC's tuning and before the budget's end. The PoC run opened after the checks and
    # the exploration, so the budget ends (budget - their seconds) after the run's start.
    tuning = client.get_run(result["tuning_run_id"])
    assert tuning.data.tags["mlflow.parentRunId"] == run.info.run_id
    trials = client.search_runs([run.info.experiment_id], f"tags.`automl.kind` = 'trial' and "
                                f"tags.`mlflow.parentRunId` = '{tuning.info.run_id}'")
    assert sorted(t.data.tags["automl.algorithm"] for t in trials) == ["spark_linear"] * 2 + ["xgboost"] * 2
    assert {r["algorithm"]: r["trials"] for r in board} == {"xgboost": 2, "spark_linear": 2}
    budget_end_ms = run.info.start_time + (budget - steps["checks"] - steps["exploration"]) * 1000
    assert all(t.info.status == "FINISHED" and tuning.info.start_time <= t.info.start_time
               and t.info.end_time <= min(tuning.info.end_time, budget_end_ms) for t in trials)
    names = {a.path for a in client.list_artifacts(result["run_id"])}
    assert {"exploration", "leaderboard.csv", "leaderboard.json", "summary.json"} <= names
    best_run = result["best"]["candidate_run_id"]
    assert {a.path for a in client.list_artifacts(best_run, "plots")} >= {"plots/roc.png", "plots/pr.png"}
    assert "spec.yaml" in {a.path for a in client.list_artifacts(best_run)}

    # The candidate definition re-creates the candidate through the tuning CLI.
    spec_path = result["best"]["spec"]
    spec = yaml.safe_load(Path(spec_path).read_text())
    assert list(spec["algorithms"]) == [result["best"]["algorithm"]]
    code, out, err = run_cli(["tune", "--spec", spec_path, "--json"], capsys)
    assert code == 0, err[-3000:]
    rerun = json.loads(out)
    assert rerun["best"]["params"] == result["best"]["params"]
    assert rerun["best"]["value"] == pytest.approx(result["best"]["value"], abs=1e-9)


def test_sigterm_mid_tuning_fails_the_run_and_leaves_no_process(tracking, poc_data, tmp_path):
    """A killed PoC (scheduler timeout, Ctrl-C) ends its MLflow run FAILED, removes its partial
    output and leaves nothing running: no JVM, no Python worker burning CPU."""
    from tests.support.processes import group_alive, spawn, stop_group, tail

    log = tmp_path / "poc.log"
    cmd = [str(Path(sys.executable).with_name("automl-tasks")), "poc", "--data", str(poc_data / "churn_train.csv"),
           "--label", "churn", "--algorithms", "xgboost", "--time-budget", "900", "--name", "churn_killed"]
    proc = spawn(cmd, log, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    try:
        waited = time.monotonic()
        while "of search time" not in tail(log, 200_000):      # the search has started on Spark
            assert proc.poll() is None, tail(log)
            assert time.monotonic() - waited < 600, tail(log)
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=120) == 128 + signal.SIGTERM, tail(log)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)        # its threads' stacks, into the log
            time.sleep(3)
            pytest.fail(f"the PoC was still running 120 s after SIGTERM; its log ends:\n{tail(log, 20_000)}")
        gone = time.monotonic()
        while group_alive(proc.pid) and time.monotonic() - gone < 30:
            time.sleep(0.5)
        assert not group_alive(proc.pid), "a process of the PoC outlived it"
    finally:
        stop_group(proc)
    client = MlflowClient(tracking)
    [run] = client.search_runs([client.get_experiment_by_name("churn_killed/poc").experiment_id],
                               "tags.`automl.kind` = 'poc'")
    assert run.info.status == "FAILED" and run.data.tags["automl.error"].startswith("SystemExit")
    assert list((Path(os.environ["AUTOML_HOME"]) / "poc" / "churn_killed").iterdir()) == []


def test_a_sigterm_dropped_inside_a_finalizer_is_delivered_again(tmp_path):
    """The SIGTERM handler's SystemExit, raised while the main thread runs a finalizer (py4j's
    JavaObject cleanup), is printed and dropped by Python: the CLI delivers the signal again, so the
    process still exits 143. (CI saw a PoC search go on for minutes after such a drop.)"""
    script = tmp_path / "dropped.py"
    script.write_text(
        "import sys, time, weakref\n"
        "from automl_tasks.cli import _stop_on_sigterm\n"
        "_stop_on_sigterm()\n"
        "class Held: pass\n"
        "def finalizer(_): raise SystemExit(143)   # what the handler raises when it runs in one\n"
        "held = Held(); ref = weakref.ref(held, finalizer); del held\n"
        "for _ in range(1000): time.sleep(0.01)\n"
        "print('went on'); sys.exit(0)\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 143, done.stdout + done.stderr
    assert "went on" not in done.stdout
