"""The study's fits: repeated folds staged once, one `fitting.Fit` per (arm, repeat, fold), holdout
refits and leakage probes, all run by `fitting.run_keyed` as one wave; then the importance model."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from automl_tasks import fitting
from automl_tasks.ablation.plan import Plan
from automl_tasks.errors import SpecError
from automl_tasks.spec import ModelSpec, ValidationSpec

MAX_SHAP_ROWS = 5000


@dataclass(frozen=True)
class Design:
    """How the study compares: add or drop one feature, on `repeats` x `folds` paired folds."""
    direction: str                   # "add" | "drop"
    repeats: int
    folds: int

    @property
    def ratio(self) -> float:
        """n_test / n_train of one fold, for the variance correction."""
        return 1.0 / (self.folds - 1)


def stage_design(spark, prepared, spec: ModelSpec, design: Design) -> fitting.StagedArrays:
    """Stage X (window rows, then holdout rows) with one fold-id row per repeat; the holdout rows
    are NEVER_TRAIN, scored by the HOLDOUT fits."""
    from automl_tasks.tuning.validation import make_folds

    cv = ValidationSpec(method="cv", folds=design.folds)
    ids = [make_folds(prepared.train, None, cv, spec.task, prepared.window.train, seed=spec.seed + r,
                      classes=prepared.classes).fold_ids for r in range(design.repeats)]
    X, y = prepared.train.X, prepared.train.y
    if prepared.holdout is not None and len(prepared.holdout.y):
        X, y = np.vstack([X, prepared.holdout.X]), np.concatenate([y, prepared.holdout.y])
        ids = [np.concatenate([f, np.full(len(prepared.holdout.y), fitting.NEVER_TRAIN)]) for f in ids]
    return fitting.stage(spark, X, y, np.vstack(ids))


def arm_columns(names: list[str], plan: Plan, direction: str) -> dict[str, tuple[int, ...]]:
    """Column sets by arm name: 'base', '+f' (add) or '-f' (drop), and 'alone:f' probes."""
    index = {n: i for i, n in enumerate(names)}
    base = tuple(index[f] for f in plan.base)
    arms = {"base": base}
    for c in plan.candidates:
        if direction == "add":
            arms[f"+{c}"] = base + (index[c],)
        else:
            arms[f"-{c}"] = tuple(i for i in base if i != index[c])
        arms[f"alone:{c}"] = (index[c],)
    return arms


def wave_fits(arms: dict, spec: ModelSpec, params: dict, design: Design,
         has_holdout: bool) -> dict[tuple[str, int, int], fitting.Fit]:
    """{(arm, repeat, fold): Fit}; fold HOLDOUT: the whole window, scored on the holdout rows."""
    out = {}
    for arm, columns in arms.items():
        if arm.startswith("alone:"):   # leakage probe: one repeat is enough to see near-perfect
            for f in range(design.folds):
                out[(arm, 0, f)] = fitting.Fit(params, fitting.LEAK_METRIC[spec.task], f, 0, columns,
                                               observed_only=True)
            continue
        for r in range(design.repeats):
            for f in range(design.folds):
                out[(arm, r, f)] = fitting.Fit(params, spec.metric, f, r, columns)
        if has_holdout:
            out[(arm, 0, fitting.HOLDOUT)] = fitting.Fit(params, spec.metric, fitting.HOLDOUT, 0, columns)
    return out


def run_wave(spark, staged, learner: fitting.Learner, tasks: dict, slots: int) -> dict:
    """Every fit as a Spark task in one job; returns {task key: {value, seconds, error}}.

    A few tasks per partition (4 partitions per slot) keeps Spark's per-task overhead
    small while a slow partition still cannot hold the wave for long.
    """
    return fitting.run_keyed(spark, staged, learner, tasks, min(len(tasks), 4 * slots))


# --- importance: gain and native TreeSHAP --------------------------------------------------

def shap_values(model, algorithm: str, X: np.ndarray) -> np.ndarray:
    """Mean |SHAP| per feature from the library's own TreeSHAP (classes summed)."""
    from automl_tasks.models import algorithms

    tree_shap = algorithms.get(algorithm).shap
    if tree_shap is None:
        raise SpecError(f"algorithm {algorithm!r} has no native TreeSHAP, which the ablation study's "
                        "importance table needs")
    contrib = tree_shap(model, X)
    p = X.shape[1]
    contrib = contrib.reshape(X.shape[0], -1, p + 1)[:, :, :p]   # (rows, classes, features); bias dropped
    return np.abs(contrib).sum(axis=1).mean(axis=0)


def importance_table(prepared, algorithm: str, params: dict, seed: int, exclude=()) -> list[dict]:
    """Gain and mean |SHAP| of one model on the base and every candidate (leaky ones left out)."""
    from automl_tasks.models import adapters

    enc = prepared.encoding
    keep = [i for i, f in enumerate(enc.feature_names) if f not in set(exclude)]
    names = [enc.feature_names[i] for i in keep]
    X = prepared.train.X[:, keep]
    learner = fitting.Learner(algorithm, prepared.spec.task, tuple(enc.categorical_idx), os.cpu_count() or 1, seed)
    model = fitting.fit_model(learner, params, X, prepared.train.y, tuple(keep))
    explain = prepared.holdout.X[:, keep] if prepared.holdout is not None and len(prepared.holdout.y) else X
    if len(explain) > MAX_SHAP_ROWS:
        explain = explain[np.random.default_rng(seed).choice(len(explain), MAX_SHAP_ROWS, replace=False)]
    gain = adapters.importance(model, algorithm, names)
    shap = shap_values(model, algorithm, explain)
    rows = [{"feature": f, "gain": float(gain[f]), "shap": float(s)} for f, s in zip(names, shap)]
    rows.sort(key=lambda r: -r["shap"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    return rows
