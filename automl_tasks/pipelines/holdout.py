"""The month's holdout: its rows and labels, the champion's scores on it, and the paired
comparison of a candidate with a baseline model on the same rows (monthly job, develop vs master)."""

from __future__ import annotations

import numpy as np

from automl_tasks.data.labels import class_key
from automl_tasks.data.months import months_ending
from automl_tasks.data.prepare import LABEL_COL, Prepared, segment_column, with_label
from automl_tasks.data.sources import MONTH_COL
from automl_tasks.errors import DataError
from automl_tasks.evaluation.compare import Comparison, compare_by_segment, paired_bootstrap
from automl_tasks.models.scoring import check_can_score
from automl_tasks.registry import policy as gates
from automl_tasks.registry.champion import ScoredModel
from automl_tasks.spec import ModelSpec


def check_schema(champion: ScoredModel, prepared: Prepared, month: str) -> None:
    """The month's data must still carry every column the champion was trained on."""
    check_can_score(champion.meta, "the champion", prepared.spec.task, set(prepared.encoding.feature_names),
                    f"the features the spec and the data of {month} provide")


def holdout_rows(frame, spec: ModelSpec, month: str, classes: list | None):
    """The holdout's rows (window.holdout_months ending at `month`), cached so every model
    scores them in the same order, and their labels."""
    df, y, segments, _ = labelled_rows(frame, spec, list(months_ending(month, spec.window.holdout_months)), classes)
    return df, y, segments


def labelled_rows(frame, spec: ModelSpec, months: list[str], classes: list | None, *, fraction: float = 1.0):
    """The rows of `months` (a Bernoulli sample of `fraction` of them, seeded by the spec),
    cached so every model scores them in the same order; their labels, segments and months."""
    from pyspark.sql import functions as F

    rows = frame.where(F.col(MONTH_COL).isin(months))
    if fraction < 1.0:
        rows = rows.sample(fraction=fraction, seed=spec.seed)
    df = with_label(rows, spec).persist()
    pdf = df.select(F.col(LABEL_COL).alias("y"), segment_column(spec).alias("segment"), F.col(MONTH_COL)).toPandas()
    if classes is None:
        y = pdf["y"].to_numpy(dtype=np.float64)
    else:
        index = {class_key(c): i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in pdf["y"]], dtype=np.int64)
    segments = pdf["segment"].to_numpy(dtype=object) if spec.segment else None
    return df, y, segments, pdf[MONTH_COL].to_numpy(dtype=object)


def align_classes(prediction: np.ndarray, meta: dict, classes: list | None) -> np.ndarray:
    """Reorder a classifier's probability columns to `classes` (the candidate's order)."""
    if classes is None or meta["classes"] == classes:
        return prediction
    index = {class_key(c): i for i, c in enumerate(meta["classes"])}
    missing = [c for c in classes if class_key(c) not in index]
    if missing:
        raise DataError(f"the baseline model never saw class {missing[0]!r}; compare on a common label set")
    return prediction[:, [index[class_key(c)] for c in classes]]


MIN_SEGMENT_ROWS = 30


def champion_scores(spec: ModelSpec, y, prediction, segments) -> dict[str, float]:
    """The champion's metric on the month, overall and per segment (segments of 30+ rows)."""
    from automl_tasks.evaluation.metrics import compute_metric

    scores = {"overall": compute_metric(spec.metric, spec.task, y, prediction)}
    if segments is not None:
        for value in sorted(set(segments) - {None}):
            rows = segments == value
            if rows.sum() >= MIN_SEGMENT_ROWS:
                scores[str(value)] = compute_metric(spec.metric, spec.task, y[rows], prediction[rows])
    return scores


def compare_models(spec: ModelSpec, y, candidate, baseline, segments) -> list[Comparison]:
    """Paired bootstrap of candidate vs baseline: overall first, then per segment if the spec has one.

    Segments under `promotion.min_rows` get point estimates only; the others' intervals are
    Bonferroni-corrected across them (registry/policy.py), as the segment gate reads them.
    """
    if segments is None:
        return [paired_bootstrap(spec.metric, spec.task, y, candidate, baseline, seed=spec.seed)]
    _, sizes = np.unique(np.asarray(segments).astype(str), return_counts=True)
    min_rows = spec.promotion.min_rows
    return compare_by_segment(spec.metric, spec.task, y, candidate, baseline, segments, seed=spec.seed,
                              min_rows=min_rows,
                              segment_confidence=gates.segment_confidence(sizes.tolist(), min_rows))
