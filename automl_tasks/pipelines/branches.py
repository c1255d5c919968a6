"""Develop vs master: one model spec at two git refs, tuned side by side, compared on one month.

A spec read from a git ref carries that ref and its commit (`spec.origin`), and
`tune` tags its runs from it, so each ref's tuning run says which commit built it.
Both best models then score the *same* held-out rows of `month` and a paired
bootstrap says whether the first ref's model (the candidate: develop) beats the
second's (the baseline: master), overall and per segment.

Same rows. When both specs read the same data (equal `data` sections; features,
algorithms, training windows may differ), one cached holdout frame feeds both models, so
row i is the same row for both by construction. When the data sections differ
(develop joins a new table, say), each model needs its own columns, so each spec
reads its own frame. Spark does not promise the same row order for two different
plans (a join may shuffle), so both frames are then sorted by the shared `data.id`
when the specs name one, and the two holdouts must agree on row count, ids and
labels, else DataError: a paired comparison over mismatched rows means nothing.

Order and reuse. Both specs are checked against each other, then both data
windows prepared (every data check), before anything is written to MLflow. A
FINISHED tuning run for the same month, data fingerprint and commit is reused, and
so is a FINISHED comparison of the same two tuning runs, so re-running a month
neither retunes nor logs a second comparison.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Callable

import numpy as np

from automl_tasks.data.labels import class_key
from automl_tasks.data.prepare import Prepared, load_frame
from automl_tasks.errors import DataError, SpecError
from automl_tasks.evaluation.compare import Comparison
from automl_tasks.pipelines.holdout import align_classes, compare_models, holdout_rows
from automl_tasks.pipelines.month_runs import PURPOSE, MonthContext, find_or_tune, tuning_of_run
from automl_tasks.progress import report
from automl_tasks.registry import tracking
from automl_tasks.registry.champion import load_run_model
from automl_tasks.registry.records import TuningResult
from automl_tasks.spark import get_spark
from automl_tasks.spec import ModelSpec, check_month, load_spec_at_ref, parse_spec
from automl_tasks.tuning.job import prepare_for_tuning

# Fields that make two specs "the same model": one experiment, one metric and one holdout to
# compare on (dotted: nested fields).
SAME_FIELDS = ("name", "task", "metric", "window.holdout_months")
RESULT_ARTIFACT = "branches.json"


def compare_branches(repo, spec_path: str, month: str, *, refs=("develop", "master"), spark=None,
                     progress: Callable[[str], None] = report, dag_run_id: str | None = None) -> dict:
    """Tune `spec_path` as it is at each of `refs` and compare the two best models on `month`.

    `refs[0]` is the candidate, `refs[1]` the baseline; a positive delta means the
    candidate is better. Returns small JSON: month, refs (commit, run_id, algorithm,
    holdout_value per ref), the overall comparison, the per-segment ones, the
    comparison run id, the winner (a ref name, or "tie" when the CI spans 0) and whether
    an earlier identical comparison was reused.
    """
    check_month(month)
    refs = tuple(refs)
    if len(refs) != 2 or refs[0] == refs[1]:
        raise SpecError(f"refs must name two different git refs, got {list(refs)}")
    specs = [load_spec_at_ref(repo, ref, spec_path) for ref in refs]
    _check_comparable(specs, refs, spec_path)
    spark = spark or get_spark()
    prepared = [prepare_for_tuning(spark, spec, month) for spec in specs]   # every data check first

    client = tracking.client()
    experiment = tracking.experiment_id(client, specs[0], PURPOSE)
    tuned = [find_or_tune(MonthContext(spec, month, prepared=prep, spark=spark, progress=progress,
                                       dag_run_id=dag_run_id))[0]
             for spec, prep in zip(specs, prepared)]
    return _compare_tuned(Sides(specs, refs, prepared, tuned, month),
                          Where(spark, client, experiment, progress, dag_run_id))


def compare_deployments(spec: ModelSpec, month: str, *, branches=("develop", "master"), spark=None,
                        progress: Callable[[str], None] = report, dag_run_id: str | None = None) -> dict:
    """Compare the models two deployments tuned for `month` (their runs' `automl.branch` tags).

    Each deployment's latest FINISHED tuning run for the month in `<name>/monthly` is
    found by its branch tag; its logged spec says which data it needs. Both best models
    re-score the same held-out rows and are compared exactly as `compare_branches` does.
    """
    check_month(month)
    branches = tuple(branches)
    if len(branches) != 2 or branches[0] == branches[1]:
        raise SpecError(f"branches must name two different deployments, got {list(branches)}")
    client = tracking.client()
    found = client.get_experiment_by_name(f"{spec.name}/{PURPOSE}")   # looked up, never created here
    if found is None:
        raise DataError(f"no experiment {spec.name}/{PURPOSE}: no deployment has run {spec.name} yet")
    experiment = found.experiment_id
    runs = [_deployment_run(client, experiment, spec.name, branch, month) for branch in branches]
    specs = [_logged_spec(run) for run in runs]
    _check_comparable(specs, branches, f"{spec.name}/{PURPOSE} runs")
    spark = spark or get_spark()
    # Every data check first; a window bound for data-parallel training is never collected.
    prepared = [prepare_for_tuning(spark, s, month) for s in specs]
    tuned = [tuning_of_run(run) for run in runs]
    return _compare_tuned(Sides(specs, branches, prepared, tuned, month),
                          Where(spark, client, experiment, progress, dag_run_id))


def _deployment_run(client, experiment: str, name: str, branch: str, month: str):
    run = tracking.find_run(client, [experiment], {"automl.kind": "tuning", "automl.month": month,
                                                   "automl.branch": branch}, finished=True)
    if run is None:
        raise DataError(f"no FINISHED tuning run for month {month} tagged automl.branch={branch!r} in "
                        f"experiment {name}/{PURPOSE}; has that deployment run the month?")
    return run


def _logged_spec(run) -> ModelSpec:
    """The spec a tuning run logged, with the branch and commit it was tagged with."""
    import mlflow

    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/spec.yaml")
    tags = run.data.tags
    return parse_spec(text, f"run {run.info.run_id} spec.yaml",
                      {"branch": tags["automl.branch"], "git_commit": tags.get("automl.git_commit", "none")})


@dataclass(frozen=True)
class Sides:
    """The two sides compared, in order (candidate first), on one month."""
    specs: list[ModelSpec]
    refs: tuple[str, str]             # git refs, or deployments' branch tags
    prepared: list[Prepared]
    tuned: list[TuningResult]
    month: str


@dataclass(frozen=True)
class Where:
    """Where the comparison runs and is recorded."""
    spark: object
    client: object                    # MlflowClient
    experiment: str                   # `<name>/monthly`'s id
    progress: Callable[[str], None]
    dag_run_id: str | None


def _compare_tuned(sides: Sides, where: Where) -> dict:
    """Both tuned models on the same holdout rows: one comparison run (reused when identical)."""
    specs, refs, prepared, tuned, month = sides.specs, sides.refs, sides.prepared, sides.tuned, sides.month
    progress = where.progress
    tags = _comparison_tags(specs, refs, prepared[0], tuned, month, where.dag_run_id)
    earlier = _find_comparison(where.client, where.experiment, tags, refs)
    if earlier is not None:
        progress(f"{specs[0].name} {month}: reusing comparison run {earlier.info.run_id}")
        return _stored_result(earlier.info.run_id)

    y, segments, predictions = _score_same_rows(where.spark, specs, prepared, tuned, month)
    comparisons = compare_models(specs[0], y, predictions[0], predictions[1], segments)
    result = _log_comparison(where.experiment, tags, specs[0], refs, comparisons,
                             _result(month, refs, specs, tuned, comparisons))
    overall = comparisons[0]
    progress(f"{specs[0].name} {month}: {refs[0]} vs {refs[1]} {overall.metric} delta "
             f"{overall.delta:+.4f} (95% CI {overall.ci_low:+.4f}..{overall.ci_high:+.4f}): "
             f"winner {result['winner']}")
    return result


def _check_comparable(specs: list[ModelSpec], refs: tuple, spec_path: str) -> None:
    first = specs[0]
    for ref, spec in zip(refs[1:], specs[1:]):
        for field in SAME_FIELDS:
            ours, theirs = attrgetter(field)(first), attrgetter(field)(spec)
            if ours != theirs:
                raise SpecError(f"{spec_path}: {field} is {theirs!r} at {ref} but {ours!r} at {refs[0]}; "
                                f"only specs of the same model (same {', '.join(SAME_FIELDS)}) compare")


def _tag_key(ref: str) -> str:
    # Ref names like "release/2.1" are fine; anything MLflow would reject in a tag key is not.
    return re.sub(r"[^A-Za-z0-9_./-]", "_", ref)


def _comparison_tags(specs, refs, prepared: Prepared, tuned, month, dag_run_id) -> dict[str, str]:
    """The candidate spec's run tags, plus what identifies this comparison: refs, commits, runs."""
    tags = {**tracking.run_tags(specs[0], "comparison", month, prepared.fingerprint, dag_run_id),
            "automl.compare": f"{_tag_key(refs[0])}_vs_{_tag_key(refs[1])}"}
    for ref, spec, run in zip(refs, specs, tuned):
        tags[f"automl.{_tag_key(ref)}_commit"] = spec.origin["git_commit"]
        tags[f"automl.{_tag_key(ref)}_run_id"] = run.run_id
    return tags


def _find_comparison(client, experiment: str, tags: dict[str, str], refs: tuple):
    """A FINISHED comparison of the very same two tuning runs on the same month, if any.

    Whoever ran it (another DAG run, the CLI) does not matter: automl.dag_run_id is no key.
    """
    keys = ["automl.kind", "automl.month", "automl.compare",
            *[f"automl.{_tag_key(ref)}_{what}" for ref in refs for what in ("commit", "run_id")]]
    return tracking.find_run(client, [experiment], {k: tags[k] for k in keys}, finished=True)


def _stored_result(run_id: str) -> dict:
    import mlflow

    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=RESULT_ARTIFACT)
    return {**json.loads(Path(path).read_text()), "reused": True}


def _score_same_rows(spark, specs, prepared, tuned, month):
    """Labels, segments and both models' predictions on the same holdout rows, in one order."""
    classes = prepared[0].classes
    shared = _same_data(specs)
    if shared:
        holdouts = [holdout_rows(load_frame(spark, specs[0]), specs[0], month, classes)]
    else:
        holdouts = [holdout_rows(_ordered(load_frame(spark, spec), specs), spec, month, prep.classes)
                    for spec, prep in zip(specs, prepared)]
    frames = [h[0] for h in holdouts]
    try:
        if not shared:
            _check_same_rows(specs, prepared, holdouts, month)
        predictions = []
        for frame, run in zip(frames * len(tuned) if shared else frames, tuned):
            best = run.best_entry
            model = load_run_model(run.run_id, best.algorithm, best.model_uri)
            predictions.append(align_classes(model.predict(frame), model.meta, classes))
    finally:
        for frame in frames:
            frame.unpersist()
    _, y, segments = holdouts[0]
    return y, segments, predictions


def _same_data(specs: list[ModelSpec]) -> bool:
    return all(spec.data == specs[0].data for spec in specs[1:])


def _ordered(frame, specs: list[ModelSpec]):
    """Sorted by the shared id column, so two different plans yield their rows in one order."""
    ids = {spec.data.id for spec in specs}
    return frame.orderBy(ids.pop()) if len(ids) == 1 and None not in ids else frame


def _check_same_rows(specs, prepared, holdouts, month: str) -> None:
    """Different data sections: the holdouts must still be the same rows (count, ids, labels)."""
    (first_df, first_y, _), (other_df, other_y, _) = holdouts
    where = f"month {month}: the specs read different data ({specs[0].data.source} vs {specs[1].data.source})"
    if first_y.shape != other_y.shape:
        raise DataError(f"{where} and hold out {len(first_y)} vs {len(other_y)} rows; "
                        "a paired comparison needs the same rows")
    id_col = specs[0].data.id
    if id_col and id_col == specs[1].data.id:
        first_ids, other_ids = (df.select(id_col).toPandas()[id_col].to_numpy() for df in (first_df, other_df))
        if not np.array_equal(first_ids, other_ids):
            raise DataError(f"{where} and hold out different {id_col!r} values; "
                            "a paired comparison needs the same rows")
    first_labels, other_labels = (_label_values(y, prep.classes)
                                  for y, prep in zip((first_y, other_y), prepared))
    if not np.array_equal(first_labels, other_labels):
        row = int(np.flatnonzero(first_labels != other_labels)[0])
        hint = "" if id_col else "; name data.id in both specs so rows can be matched by id"
        raise DataError(f"{where} and their holdout labels disagree (first at row {row}: "
                        f"{first_labels[row]!r} vs {other_labels[row]!r}){hint}")


def _label_values(y: np.ndarray, classes: list | None) -> np.ndarray:
    # Class indices depend on each spec's training window; compare the class values.
    return y if classes is None else np.array([class_key(c) for c in classes], dtype=object)[y]


def _winner(overall: Comparison, refs: tuple) -> str:
    # NaN bounds (too few rows for an interval) compare False both ways: a tie.
    if overall.ci_low > 0:
        return refs[0]
    if overall.ci_high < 0:
        return refs[1]
    return "tie"


def _result(month, refs, specs, tuned, comparisons: list[Comparison]) -> dict:
    return {
        "month": month,
        "refs": {ref: {"commit": spec.origin["git_commit"], "run_id": run.run_id,
                       "algorithm": run.best_entry.algorithm, "holdout_value": run.best_entry.holdout_value}
                 for ref, spec, run in zip(refs, specs, tuned)},
        "comparison": comparisons[0].to_dict(),
        "segments": [c.to_dict() for c in comparisons[1:]],
        "run_id": None,
        "winner": _winner(comparisons[0], refs),
        "reused": False,
    }


def _log_comparison(experiment, tags, spec: ModelSpec, refs, comparisons: list[Comparison],
                    result: dict) -> dict:
    """One comparison run: tags, metrics, comparison.json, the forest plot; returns the result."""
    import mlflow

    from automl_tasks.evaluation import plots

    overall = comparisons[0]
    with mlflow.start_run(experiment_id=experiment, tags=tags,
                          run_name=f"compare-{tags['automl.compare']}-{result['month']}") as run:
        result = {**result, "run_id": run.info.run_id}
        mlflow.log_params({"metric": spec.metric, "candidate": refs[0], "baseline": refs[1]})
        mlflow.log_dict([c.to_dict() for c in comparisons], "comparison.json")
        mlflow.log_metrics({"delta": overall.delta, "ci_low": overall.ci_low, "ci_high": overall.ci_high,
                            f"{_tag_key(refs[0])}_{spec.metric}": overall.candidate,
                            f"{_tag_key(refs[1])}_{spec.metric}": overall.baseline})
        mlflow.log_figure(plots.comparison_forest(comparisons), "comparison_forest.png")
        mlflow.set_tag("automl.winner", result["winner"])
        mlflow.log_dict(result, RESULT_ARTIFACT)   # what a re-run returns without rescoring
    return result
