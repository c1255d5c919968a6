"""Evaluation plots as matplotlib Figures, for ``mlflow.log_figure`` or a PoC report.

Figures are built with ``matplotlib.figure.Figure`` directly, not ``pyplot``: they
render with Agg when saved, never open a window, never touch the process-wide
backend (a notebook importing this keeps its own), and are not registered in
pyplot's figure list, so a long-running scheduler does not accumulate them.
Dropping the last reference frees one. Callers that want an explicit end, or that
pass a pyplot figure of their own, use ``save_and_close(fig, path)`` (or
``plt.close(fig)`` after ``mlflow.log_figure``).

Inputs follow ``evaluation.metrics``: classification takes class indices and an
(n, k) probability matrix (binary: (n, 2); a 1-D P(1) is accepted for the binary
curves), regression two float vectors. Titles quote the metric computed by
``compute_metric``, so a plot and the logged metric always agree (the ROC/PR curves
merge tied scores into one point, as the metric does). Scatter plots draw at most
``max_points`` rows (a seeded sample, said in the title).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from automl_tasks.evaluation.compare import Comparison
from automl_tasks.evaluation.metrics import _cumulative_counts, compute_metric

MAX_POINTS = 20_000


def save_and_close(fig: Figure, path: str | Path, *, dpi: int = 100) -> Path:
    """Write `fig` (format from the suffix, e.g. .png) and release it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:  # only a pyplot-made figure can be registered there
        pyplot.close(fig)
    fig.clear()
    return path


# --- classification -------------------------------------------------------------------

def roc_curve(y, proba) -> Figure:
    """ROC curve of a binary model, AUC in the title, chance diagonal."""
    y, proba = _binary(y, proba)
    auc = compute_metric("areaUnderROC", "binary", y, proba)
    tp, fp, n_pos, n_neg = _cumulative_counts(y, proba[:, 1])
    tpr = np.concatenate(([0.0], tp / max(n_pos, 1), [1.0]))
    fpr = np.concatenate(([0.0], fp / max(n_neg, 1), [1.0]))
    fig, ax = _figure()
    ax.plot(fpr, tpr, label=f"model (AUC = {auc:.4f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    _unit_square(ax, "False positive rate", "True positive rate")
    ax.set_title(f"ROC curve (AUC = {auc:.4f})")
    ax.legend(loc="lower right")
    return fig


def pr_curve(y, proba) -> Figure:
    """Precision-recall curve of a binary model, area in the title, positive rate line."""
    y, proba = _binary(y, proba)
    area = compute_metric("areaUnderPR", "binary", y, proba)
    tp, fp, n_pos, _ = _cumulative_counts(y, proba[:, 1])
    recall = np.concatenate(([0.0], tp / max(n_pos, 1)))
    precision = tp / (tp + fp)
    precision = np.concatenate(([precision[0]], precision))  # Spark's starting point
    fig, ax = _figure()
    ax.plot(recall, precision, label=f"model (AUPR = {area:.4f})")
    ax.axhline(n_pos / y.size, linestyle="--", color="grey", label="positive rate")
    _unit_square(ax, "Recall", "Precision")
    ax.set_title(f"Precision-recall curve (AUPR = {area:.4f})")
    ax.legend(loc="lower left")
    return fig


def confusion_matrix(y, proba, classes: Sequence | None = None) -> Figure:
    """Counts per (actual, predicted) class, coloured and annotated by row share."""
    proba = np.asarray(proba, dtype=np.float64)
    task = "binary" if proba.ndim == 2 and proba.shape[1] == 2 else "multiclass"
    accuracy = compute_metric("accuracy", task, y, proba)  # validates labels against k
    y = np.asarray(y).astype(np.int64)
    k = proba.shape[1]
    names = _class_names(classes, k)
    counts = np.bincount(y * k + np.argmax(proba, axis=1), minlength=k * k).reshape(k, k)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    size = min(4.0 + 0.6 * k, 14.0)
    fig, ax = _figure((size, size))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of actual class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{counts[i, j]:,}\n{share[i, j]:.1%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("Actual class")
    ax.set_title(f"Confusion matrix (accuracy = {accuracy:.4f})")
    return fig


# --- regression -----------------------------------------------------------------------

def residuals(y, yhat, *, max_points: int = MAX_POINTS) -> Figure:
    """Residual (actual - predicted) against predicted, with a zero line."""
    y, yhat, rmse = _regression(y, yhat)
    shown, note = _sample(y.size, max_points)
    fig, ax = _figure()
    ax.scatter(yhat[shown], (y - yhat)[shown], s=6, alpha=0.4, linewidths=0)
    ax.axhline(0.0, color="grey", linestyle="--")
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Residual (actual - predicted)")
    ax.set_title(f"Residuals (RMSE = {rmse:.4g}){note}")
    return fig


def predicted_vs_actual(y, yhat, *, max_points: int = MAX_POINTS) -> Figure:
    """Predicted against actual, with the identity line a perfect model would sit on."""
    y, yhat, rmse = _regression(y, yhat)
    shown, note = _sample(y.size, max_points)
    fig, ax = _figure()
    ax.scatter(y[shown], yhat[shown], s=6, alpha=0.4, linewidths=0)
    low, high = float(min(y.min(), yhat.min())), float(max(y.max(), yhat.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", label="predicted = actual")
    ax.set_xlabel("Actual")
    ax.set_ylabel("Predicted")
    ax.set_title(f"Predicted vs actual (RMSE = {rmse:.4g}){note}")
    ax.legend(loc="upper left")
    return fig


# --- comparisons and monitoring -------------------------------------------------------

def comparison_forest(comparisons: Sequence[Comparison]) -> Figure:
    """Oriented delta with its interval per row (overall, then segments), zero line.

    Right of zero = candidate better. Rows without an interval (too few rows) are drawn
    as hollow points.
    """
    if not comparisons:
        raise ValueError("comparison_forest needs at least one Comparison")
    metrics = {c.metric for c in comparisons}
    if len(metrics) > 1:
        raise ValueError(f"comparisons mix metrics {sorted(metrics)}; plot one metric at a time")
    metric = metrics.pop()
    positions = np.arange(len(comparisons))[::-1]  # first comparison at the top
    fig, ax = _figure((7.0, 1.5 + 0.45 * len(comparisons)))
    for c, pos in zip(comparisons, positions):
        if np.isfinite(c.ci_low) and np.isfinite(c.ci_high):
            ax.errorbar(c.delta, pos, xerr=[[c.delta - c.ci_low], [c.ci_high - c.delta]],
                        fmt="o", color="C0", capsize=3)
        else:
            ax.plot(c.delta, pos, "o", markerfacecolor="none", color="grey")
    ax.axvline(0.0, color="grey", linestyle="--")
    ax.set_yticks(positions, [_forest_label(c) for c in comparisons])
    ax.set_xlabel(f"{metric} difference (positive = candidate better)")
    level = comparisons[0].confidence
    ax.set_title(f"Candidate vs baseline: {metric}, {level:.0%} bootstrap intervals")
    return fig


def metric_trend(months: Sequence[str], values: dict[str, Sequence[float]],
                 metric: str) -> Figure:
    """One line per series (e.g. overall and each segment) of `metric` by month.

    NaN values leave a gap (a month without a score for that series).
    """
    if not values:
        raise ValueError("metric_trend needs at least one series")
    for name, series in values.items():
        if len(series) != len(months):
            raise ValueError(f"series {name!r} has {len(series)} values for "
                             f"{len(months)} months")
    fig, ax = _figure((max(6.0, 0.5 * len(months) + 2.0), 4.5))
    x = np.arange(len(months))
    for name, series in values.items():
        ax.plot(x, np.asarray(series, dtype=np.float64), marker="o", label=name)
    ax.set_xticks(x, list(months), rotation=45 if len(months) > 6 else 0)
    ax.set_xlabel("Month")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by month")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return fig


def evaluation_figures(task: str, y, prediction, classes: Sequence | None = None
                       ) -> dict[str, Figure]:
    """The standard figures for `task`, keyed by artifact file name."""
    if task == "binary":
        return {"roc.png": roc_curve(y, prediction), "pr.png": pr_curve(y, prediction),
                "confusion_matrix.png": confusion_matrix(y, prediction, classes)}
    if task == "multiclass":
        return {"confusion_matrix.png": confusion_matrix(y, prediction, classes)}
    if task == "regression":
        return {"residuals.png": residuals(y, prediction),
                "predicted_vs_actual.png": predicted_vs_actual(y, prediction)}
    raise ValueError(f"unknown task {task!r}; expected binary, multiclass or regression")


# --- helpers --------------------------------------------------------------------------

def _figure(size: tuple[float, float] = (6.0, 5.0)):
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _unit_square(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _binary(y, proba) -> tuple[np.ndarray, np.ndarray]:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim == 1:  # P(1) alone
        proba = np.column_stack([1.0 - proba, proba])
    compute_metric("accuracy", "binary", y, proba)  # validates shape and labels
    return np.asarray(y).astype(np.int64), proba


def _regression(y, yhat) -> tuple[np.ndarray, np.ndarray, float]:
    rmse = compute_metric("rmse", "regression", y, yhat)  # validates shapes
    return np.asarray(y, dtype=np.float64), np.asarray(yhat, dtype=np.float64), rmse


def _class_names(classes: Sequence | None, k: int) -> list[str]:
    if classes is None:
        return [str(i) for i in range(k)]
    names = [str(c) for c in classes]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a prediction with {k} columns")
    return names


def _sample(n: int, max_points: int) -> tuple[np.ndarray, str]:
    """Rows to draw: all, or a seeded sample of `max_points` (and a title note)."""
    if n <= max_points:
        return np.arange(n), ""
    shown = np.sort(np.random.default_rng(0).choice(n, max_points, replace=False))
    return shown, f"\n{max_points:,} of {n:,} rows shown"


def _forest_label(c: Comparison) -> str:
    name = "overall" if c.segment is None else str(c.segment)
    return f"{name} (n={c.n_rows:,})" + ("" if c.resamples else ", no interval")
