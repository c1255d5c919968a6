"""Per-segment models against the global model, honestly (PoC with a segment column).

Every segment trains its own model, all segments in parallel on Spark (`applyInPandas`,
one group per segment), on the tuning's folds restricted to the segment: each row is
predicted by a segment model that never saw it. The global model's out-of-fold
predictions of the same rows are the baseline, so both are scored on the same held-out
rows. Each segment gets the paired bootstrap delta (positive = the segment model is
better) with a Bonferroni-widened interval (95% over all segments together); a
per-segment model is recommended only where that interval lies above zero.

The segment models use the best algorithm of the leaderboard that fits inside Spark tasks
(not the driver-fitted Spark ML ones) with its tuned params, not a re-tuning.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from automl_tasks import fitting
from automl_tasks.evaluation.compare import paired_bootstrap

MIN_ROWS = 30           # as compare_by_segment: fewer rows give no usable interval
FAMILY_CONFIDENCE = 0.95
SCHEMA = "segment string, row long, prediction array<double>, error string, seconds double"


@dataclass(frozen=True)
class SegmentContext:
    """What every segment's fits share (travels with the Spark job)."""
    learner: fitting.Learner
    params: dict
    n_features: int
    n_classes: int | None


def segment_labels(values) -> np.ndarray:
    return np.array(["null" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                     for v in values], dtype=object)


def fit_segment(ctx: SegmentContext, pdf):
    """One segment's out-of-fold predictions (a Spark group in, rows out; errors as a row)."""
    import pandas as pd

    name = str(pdf["segment"].iloc[0])
    started = time.perf_counter()
    try:
        X = pdf[[f"x{i}" for i in range(ctx.n_features)]].to_numpy(dtype=np.float64)
        y = pdf["y"].to_numpy(dtype=np.float64 if ctx.n_classes is None else np.int64)
        folds = pdf["fold"].to_numpy()
        if len(y) < MIN_ROWS:
            raise ValueError(f"{len(y)} rows < {MIN_ROWS}")
        parts = fitting.predict_folds(ctx.learner, ctx.params, X, y, folds, n_classes=ctx.n_classes)
        rows = [pdf["row"].to_numpy()[folds == fold] for fold in parts]
        values = np.concatenate(list(parts.values()))
        values = values[:, None] if values.ndim == 1 else values
        return pd.DataFrame({"segment": name, "row": np.concatenate(rows),
                             "prediction": [list(v) for v in values], "error": None,
                             "seconds": time.perf_counter() - started})
    except Exception as exc:  # the segment is reported with its reason; the others go on
        return pd.DataFrame({"segment": [name], "row": [-1], "prediction": [[]],
                             "error": [f"{type(exc).__name__}: {exc}"[:500]],
                             "seconds": [time.perf_counter() - started]})


def segment_predictions(spark, folds, segments: np.ndarray, ctx: SegmentContext) -> tuple[dict, dict]:
    """({segment: (rows, prediction)}, {segment: error}) from one applyInPandas job."""
    import pandas as pd

    evaluated = np.flatnonzero(folds.fold_ids >= 0)
    frame = pd.DataFrame(folds.X, columns=[f"x{i}" for i in range(folds.X.shape[1])])
    frame.insert(0, "y", folds.y.astype(np.float64))
    frame.insert(0, "fold", folds.fold_ids.astype(np.int64))
    frame.insert(0, "row", np.arange(len(folds.y), dtype=np.int64))
    frame.insert(0, "segment", segments)
    wanted = set(segments[evaluated])
    frame = frame[frame["segment"].isin(wanted)]
    result = (spark.createDataFrame(frame).groupBy("segment")
              .applyInPandas(functools.partial(fit_segment, ctx), schema=SCHEMA).toPandas())
    out, errors = {}, {}
    for name, part in result.groupby("segment"):
        failed = part["error"].dropna()
        if len(failed):
            errors[name] = failed.iloc[0]
            continue
        values = np.vstack(part["prediction"].map(np.asarray).to_numpy())
        out[name] = (part["row"].to_numpy(), values[:, 0] if ctx.n_classes is None else values)
    return out, errors


def compare_segments(metric: str, task: str, global_oof, segments: np.ndarray, per_segment: dict,
                     errors: dict, seed: int = 0) -> dict:
    """Each segment model vs the global model on that segment's held-out rows, and the advice.

    global_oof: the global model's out-of-fold predictions (`candidates.OutOfFold`: `rows`, their
    `y` and `prediction`); per_segment: {segment: (rows, prediction)} from `segment_predictions`.
    """
    y, global_prediction, rows = global_oof.y, global_oof.prediction, global_oof.rows
    position = {int(r): i for i, r in enumerate(rows)}      # row -> index in the global OOF arrays
    names = sorted(set(segments[rows]))
    confidence = 1 - (1 - FAMILY_CONFIDENCE) / max(1, len(per_segment))
    results, comparisons = [], []
    for name in names:
        n = int(np.sum(segments[rows] == name))
        if name not in per_segment:
            results.append({"segment": name, "rows": n, "recommend": "global model",
                            "reason": f"no segment model: {errors.get(name, 'not trained')}"})
            continue
        seg_rows, seg_prediction = per_segment[name]
        index = np.array([position[int(r)] for r in seg_rows])
        c = paired_bootstrap(metric, task, y[index], seg_prediction, global_prediction[index],
                             seed=seed, segment=name, confidence=confidence)
        comparisons.append(c)
        wins = bool(c.ci_low > 0)
        results.append({"segment": name, "rows": n, **{k: v for k, v in c.to_dict().items() if k != "segment"},
                        "recommend": "segment model" if wins else "global model",
                        "reason": (f"segment model better: {metric} delta {c.delta:+.4f}, CI "
                                   f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}] at {confidence:.2%} (Bonferroni)"
                                   if wins else
                                   f"no significant gain: delta {c.delta:+.4f}, CI [{c.ci_low:+.4f}, "
                                   f"{c.ci_high:+.4f}] at {confidence:.2%} (Bonferroni)")})
    winners = [r["segment"] for r in results if r["recommend"] == "segment model"]
    advice = (f"per-segment models recommended for: {', '.join(winners)} (the global model elsewhere)"
              if winners else "keep the global model: no segment model wins significantly")
    return {"segments": results, "recommended": winners, "advice": advice, "confidence": confidence,
            "comparisons": comparisons}


def segment_context(algorithm: str, task: str, params: dict, prepared, seed: int) -> SegmentContext:
    learner = fitting.Learner(algorithm, task, tuple(prepared.encoding.categorical_idx),
                              int(os.environ.get("AUTOML_THREADS_PER_TASK", "1")), seed)
    return SegmentContext(learner, dict(params), len(prepared.encoding.feature_names),
                          None if prepared.classes is None else len(prepared.classes))
