"""The PoC's steps 5-7 (see poc/run.py): each candidate made white-box, the champion's algorithm
checked against the best alternative, per-segment models against the global one. Each step
skips, and says so, what its measured cost estimate does not fit in the time budget."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from automl_tasks.models import algorithms
from automl_tasks.registry.records import LeaderboardEntry, TuningResult

if TYPE_CHECKING:
    from automl_tasks.poc.run import Budget

REPORT_SECONDS = 3.0            # the leaderboard and summary at the end


@dataclass
class PocContext:
    """What the PoC's steps after the checks share: its data, folds, budget and outputs."""
    spark: object
    plan: object                     # request.resolve(): the spec, data and test frames
    prepared: object                 # data.prepare(): the encoded window
    folds: object                    # validation.make_folds(): the tuning's folds
    budget: Budget
    slots: int
    out: Path                        # the local output folder
    tags: dict                       # the PoC run's tags
    progress: Callable[[str], None]


# --- 5. candidates ---------------------------------------------------------------------------

def evaluate_candidates(ctx: PocContext, tuned: TuningResult, *, only: set | None = None,
                        skip: set = frozenset()) -> dict:
    """The successful candidates (`only` these, none of `skip`), best first; out-of-fold work
    only where the budget allows."""
    from automl_tasks.evaluation.metrics import orientation

    spec = ctx.plan.spec
    ok = [e for e in tuned.leaderboard if e.status == "ok" and e.algorithm not in skip
          and (only is None or e.algorithm in only)]
    ranked = sorted(ok, key=lambda e: -orientation(spec.metric) * e.cv_value)
    evaluated = {}
    for entry in ranked:
        evaluated[entry.algorithm] = evaluate_candidate(ctx, entry, ctx.out / "candidates" / entry.algorithm)
    return evaluated


def oof_estimate(entry: LeaderboardEntry, n_folds: int) -> float:
    """Seconds the out-of-fold refits should take: n_folds fits like the whole-data refit."""
    return n_folds * float(entry.refit_seconds or 1.0) + 1.0


# The out-of-fold fits are estimated from one refit each: folds and load make them vary.
RESERVE_SAFETY = 1.5


def evaluation_reserve(board: list[LeaderboardEntry], algorithms: int, n_folds: int, fixed: float) -> float:
    """Seconds to keep after the tuning for steps 5-8, given the tuning's leaderboard so far: every
    candidate's out-of-fold estimate (each algorithm still to tune costed like the slowest so
    far) times RESERVE_SAFETY, plus the reports; never more than the `fixed` share. Only ever
    less: a deadline moved earlier mid-tuning would starve the algorithms still to tune, and
    steps 5-8 skip, and say so, what does not fit."""
    measured = [oof_estimate(e, n_folds) for e in board if e.status == "ok"]
    if not measured:
        return fixed
    pending = algorithms - len(board)
    return min(fixed, RESERVE_SAFETY * (sum(measured) + pending * max(measured)) + REPORT_SECONDS)


def evaluate_candidate(ctx: PocContext, entry: LeaderboardEntry, folder: Path) -> dict:
    import mlflow
    import yaml

    from automl_tasks.evaluation import plots
    from automl_tasks.models.scoring import NativeModel
    from automl_tasks.poc import candidates as cand

    plan, prepared, folds, budget, progress = ctx.plan, ctx.prepared, ctx.folds, ctx.budget, ctx.progress
    spec, algorithm = plan.spec, entry.algorithm
    folder.mkdir(parents=True)
    model = NativeModel(entry.model_dir)
    result: dict = {"oof": None, "files": {}}
    ctags = {**ctx.tags, "automl.kind": "evaluation", "automl.algorithm": algorithm}
    with mlflow.start_run(run_name=f"candidate-{algorithm}", nested=True, tags=ctags) as run:
        result["run_id"] = run.info.run_id
        spec_path = folder / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(cand.candidate_spec(spec, algorithm, entry.params), sort_keys=False))
        result["files"]["spec"] = str(spec_path)
        if budget.fits(oof_estimate(entry, folds.n_folds), keep_s=REPORT_SECONDS):
            oof = cand.out_of_fold(folds, algorithm, spec.task, entry.params,
                                   prepared.encoding.categorical_idx, spec.seed)
            result["oof"] = oof
            result["performance"] = cand.performance(spec.task, oof.y, oof.prediction)
            mlflow.log_metrics({f"oof_{k}": v for k, v in result["performance"].items() if v is not None})
            for name, fig in plots.evaluation_figures(spec.task, oof.y, oof.prediction, prepared.classes).items():
                plots.save_and_close(fig, folder / "plots" / name)
            result["files"]["plots"] = sorted(str(p) for p in (folder / "plots").glob("*.png"))
        else:
            result["skipped"] = (f"out-of-fold evaluation skipped: {budget.left():.0f}s left, it needs about "
                                 f"{oof_estimate(entry, folds.n_folds):.0f}s")
            progress(f"{algorithm}: {result['skipped']}")
        performance = {"metric": spec.metric, "cv_value": entry.cv_value,
                       "out_of_fold": result.get("performance"), "skipped": result.get("skipped")}
        if plan.test_df is not None:
            frame, y, prediction = cand.test_predictions(model, prepared.pipeline, plan.test_df, spec,
                                                         prepared.classes)
            frame.to_csv(folder / "test_predictions.csv", index=False)
            result["files"]["test_predictions"] = str(folder / "test_predictions.csv")
            if y is not None:
                performance["test"] = cand.performance(spec.task, y, prediction)
                result["test_value"] = performance["test"][spec.metric]
                mlflow.log_metrics({f"test_{k}": v for k, v in performance["test"].items() if v is not None})
        summary = cand.fit_summary(entry, result["oof"], model.importance(), spec.metric)
        for name, payload in (("performance.json", performance), ("fit_summary.json", summary)):
            (folder / name).write_text(json.dumps(payload, indent=2, default=str))
            result["files"][name.removesuffix(".json")] = str(folder / name)
        mlflow.log_params({k: json.dumps(v) if not isinstance(v, str) else v for k, v in entry.params.items()})
        mlflow.log_metric(f"cv_{spec.metric}", entry.cv_value)
        mlflow.log_artifacts(str(folder))
    result["oof_value"] = (result.get("performance") or {}).get(spec.metric)
    progress(f"{algorithm}: candidate written to {folder}")
    return result


# --- 6. algorithm check ----------------------------------------------------------------------

def algorithm_check(ctx: PocContext, tuned: TuningResult, champion: dict | None, alternative: LeaderboardEntry | None,
                    oofs: dict) -> dict | None:
    import mlflow

    from automl_tasks.poc import algorithm_check as ac
    from automl_tasks.poc.candidates import out_of_fold

    prepared, folds, budget, out, progress = ctx.prepared, ctx.folds, ctx.budget, ctx.out, ctx.progress
    spec = ctx.plan.spec
    if champion is None:
        return None
    if alternative is None or alternative.algorithm not in oofs:
        result = {"champion_version": champion["version"], "champion_algorithm": champion["algorithm"],
                  "verdict": "not checked",
                  "reason": ("no other algorithm in the leaderboard" if alternative is None else
                             f"{alternative.algorithm} has no out-of-fold predictions (time budget)")}
    else:
        same = next((e for e in tuned.leaderboard if e.algorithm == champion["algorithm"]), None)
        estimate = oof_estimate(same, folds.n_folds) if same else 5.0 * folds.n_folds
        if not budget.fits(estimate, keep_s=REPORT_SECONDS):
            result = {"champion_version": champion["version"], "champion_algorithm": champion["algorithm"],
                      "verdict": "not checked", "reason": f"time budget: {budget.left():.0f}s left"}
        else:
            champion_oof = out_of_fold(folds, champion["algorithm"], spec.task, champion["params"],
                                       prepared.encoding.categorical_idx, spec.seed)
            result = ac.compare_algorithms(champion, champion_oof, alternative, oofs[alternative.algorithm],
                                           spec.metric, spec.task, seed=spec.seed)
    progress(f"algorithm check: {result['reason']}")
    (out / "algorithm_check.json").write_text(json.dumps(result, indent=2, default=str))
    mlflow.log_artifact(str(out / "algorithm_check.json"))
    mlflow.set_tag("automl.algorithm_check", result["verdict"])
    return result


# --- 7. segments -----------------------------------------------------------------------------

def segment_study(ctx: PocContext, tuned: TuningResult, oofs: dict) -> dict | None:
    import mlflow
    import pandas as pd

    from automl_tasks.evaluation import plots
    from automl_tasks.evaluation.metrics import is_better
    from automl_tasks.poc import segments as seg

    spark, prepared, folds, budget, slots = ctx.spark, ctx.prepared, ctx.folds, ctx.budget, ctx.slots
    out, progress, spec = ctx.out, ctx.progress, ctx.plan.spec
    if not spec.segment:
        return None
    best = tuned.best["algorithm"]
    # Segment models fit inside Spark tasks (applyInPandas): not the driver-fitted algorithms.
    in_tasks = [a for a in algorithms.names() if not algorithms.get(a).fits_on_driver]
    boosters = [e for e in tuned.leaderboard if e.status == "ok" and e.algorithm in in_tasks]
    booster = None
    for entry in boosters:
        if booster is None or is_better(spec.metric, entry.cv_value, booster.cv_value):
            booster = entry
    labels = seg.segment_labels(prepared.train.segments)
    n_segments = len(set(labels))
    reason = None
    if booster is None:
        reason = f"no {' or '.join(in_tasks)} candidate to train per segment"
    elif best not in oofs:
        reason = f"the global model ({best}) has no out-of-fold predictions (time budget)"
    elif not budget.fits(oof_estimate(booster, folds.n_folds) * n_segments / slots + 5.0, keep_s=REPORT_SECONDS):
        reason = f"time budget: {budget.left():.0f}s left for {n_segments} segments"
    if reason is not None:
        progress(f"segments: not compared: {reason}")
        return {"column": spec.segment, "advice": f"not compared: {reason}", "segments": [], "recommended": []}
    ctx = seg.segment_context(booster.algorithm, spec.task, booster.params, prepared, spec.seed)
    progress(f"segments: {n_segments} {booster.algorithm} models on Spark, each against the global "
             f"{best} model on its held-out rows")
    per_segment, errors = seg.segment_predictions(spark, folds, labels, ctx)
    global_oof = oofs[best]
    result = seg.compare_segments(spec.metric, spec.task, global_oof, labels, per_segment, errors,
                                  seed=spec.seed)
    comparisons = result.pop("comparisons")
    folder = out / "segments"
    folder.mkdir()
    pd.DataFrame(result["segments"]).to_csv(folder / "segments.csv", index=False)
    if comparisons:
        plots.save_and_close(plots.comparison_forest(comparisons), folder / "segments_vs_global.png")
    result.update(column=spec.segment, segment_algorithm=booster.algorithm, global_algorithm=best)
    (folder / "segments.json").write_text(json.dumps(result, indent=2, default=str))
    mlflow.log_artifacts(str(folder), "segments")
    progress(f"segments: {result['advice']}")
    return result
