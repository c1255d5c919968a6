"""automl_tasks.evaluation.plots: each plot is a Figure with the expected labels,
saves to a non-empty PNG, and nothing is left open in pyplot."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

from automl_tasks.evaluation import plots
from automl_tasks.evaluation.compare import Comparison

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def no_open_figures():
    yield
    assert plt.get_fignums() == []


def binary(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.int64)
    p1 = np.round(1.0 / (1.0 + np.exp(-(2 * y - 1 + rng.normal(0, 1, n)))), 2)
    return y, np.column_stack([1.0 - p1, p1])


def multiclass(n=300, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    proba = rng.dirichlet(np.ones(k), n)
    proba[np.arange(n), y] += 0.5
    return y, proba / proba.sum(axis=1, keepdims=True)


def regression(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(10, 3, n)
    return y, y + rng.normal(0, 1, n)


def only_axes(fig: Figure):
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 1
    return axes[0]


def assert_saves_png(fig: Figure, path):
    written = plots.save_and_close(fig, path)
    data = written.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def comparison(segment, delta, low, high, n=500, resamples=2000):
    return Comparison(metric="areaUnderROC", n_rows=n, candidate=0.8 + delta, baseline=0.8,
                      delta=delta, raw_delta=delta, ci_low=low, ci_high=high,
                      p_value=0.01 if resamples else math.nan, resamples=resamples,
                      segment=segment)


# --- one test per plot ------------------------------------------------------------------

def test_roc_curve(tmp_path):
    y, proba = binary()
    fig = plots.roc_curve(y, proba)
    ax = only_axes(fig)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("False positive rate", "True positive rate")
    assert ax.get_title().startswith("ROC curve (AUC = 0.")
    # The drawn curve ends at (1, 1); a 1-D P(1) gives the same figure.
    x, t = ax.lines[0].get_data()
    assert (x[-1], t[-1]) == (1.0, 1.0)
    assert only_axes(plots.roc_curve(y, proba[:, 1])).get_title() == ax.get_title()
    assert_saves_png(fig, tmp_path / "roc.png")


def test_pr_curve(tmp_path):
    y, proba = binary()
    fig = plots.pr_curve(y, proba)
    ax = only_axes(fig)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Recall", "Precision")
    assert ax.get_title().startswith("Precision-recall curve (AUPR = 0.")
    assert_saves_png(fig, tmp_path / "pr.png")


@pytest.mark.parametrize("data,classes", [(binary, ["no", "yes"]), (multiclass, None)])
def test_confusion_matrix(tmp_path, data, classes):
    y, proba = data()
    fig = plots.confusion_matrix(y, proba, classes)
    ax = only_axes(fig)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Predicted class", "Actual class")
    assert ax.get_title().startswith("Confusion matrix (accuracy = 0.")
    k = proba.shape[1]
    assert [t.get_text() for t in ax.get_xticklabels()] == (classes or [str(i) for i in range(k)])
    # Every cell annotated with its count; counts add up to the rows.
    counts = [int(t.get_text().split("\n")[0].replace(",", "")) for t in ax.texts]
    assert len(counts) == k * k and sum(counts) == y.size
    assert_saves_png(fig, tmp_path / "cm.png")


def test_confusion_matrix_rejects_wrong_number_of_class_names():
    y, proba = multiclass()
    with pytest.raises(ValueError, match="2 class names for a prediction with 3 columns"):
        plots.confusion_matrix(y, proba, ["a", "b"])


def test_residuals(tmp_path):
    y, yhat = regression()
    fig = plots.residuals(y, yhat)
    ax = only_axes(fig)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Predicted", "Residual (actual - predicted)")
    assert ax.get_title().startswith("Residuals (RMSE = ")
    assert_saves_png(fig, tmp_path / "residuals.png")


def test_predicted_vs_actual_samples_large_inputs(tmp_path):
    y, yhat = regression(n=500)
    fig = plots.predicted_vs_actual(y, yhat, max_points=100)
    ax = only_axes(fig)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Actual", "Predicted")
    assert "100 of 500 rows shown" in ax.get_title()
    assert len(ax.collections[0].get_offsets()) == 100
    assert_saves_png(fig, tmp_path / "pva.png")


def test_comparison_forest(tmp_path):
    rows = [comparison(None, 0.02, 0.01, 0.03, n=1000), comparison("a", 0.03, 0.01, 0.05),
            comparison("b", -0.01, -0.04, 0.02), comparison("c", 0.1, math.nan, math.nan,
                                                              n=12, resamples=0)]
    fig = plots.comparison_forest(rows)
    ax = only_axes(fig)
    assert ax.get_xlabel() == "areaUnderROC difference (positive = candidate better)"
    assert ax.get_title() == "Candidate vs baseline: areaUnderROC, 95% bootstrap intervals"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["overall (n=1,000)", "a (n=500)", "b (n=500)", "c (n=12), no interval"]
    assert ax.get_yticks()[0] > ax.get_yticks()[-1]  # overall on top
    assert any(tuple(line.get_xdata()) == (0.0, 0.0) for line in ax.lines)  # zero line
    assert_saves_png(fig, tmp_path / "forest.png")


def test_comparison_forest_rejects_mixed_metrics():
    mixed = [comparison(None, 0.0, -0.1, 0.1),
             Comparison("rmse", 10, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1000)]
    with pytest.raises(ValueError, match="mix metrics"):
        plots.comparison_forest(mixed)


def test_metric_trend(tmp_path):
    months = ["2024-01", "2024-02", "2024-03"]
    fig = plots.metric_trend(months, {"overall": [0.81, 0.80, 0.78],
                                      "segment a": [0.85, math.nan, 0.79]}, "areaUnderROC")
    ax = only_axes(fig)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("Month", "areaUnderROC")
    assert ax.get_title() == "areaUnderROC by month"
    assert [t.get_text() for t in ax.get_xticklabels()] == months
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["overall", "segment a"]
    assert_saves_png(fig, tmp_path / "trend.png")
    with pytest.raises(ValueError, match="series 'x' has 2 values for 3 months"):
        plots.metric_trend(months, {"x": [1.0, 2.0]}, "rmse")


@pytest.mark.parametrize("task,data,names", [
    ("binary", binary, {"roc.png", "pr.png", "confusion_matrix.png"}),
    ("multiclass", multiclass, {"confusion_matrix.png"}),
    ("regression", regression, {"residuals.png", "predicted_vs_actual.png"}),
])
def test_evaluation_figures(tmp_path, task, data, names):
    y, prediction = data()
    figures = plots.evaluation_figures(task, y, prediction)
    assert set(figures) == names
    for name, fig in figures.items():
        assert_saves_png(fig, tmp_path / name)


def test_save_and_close_releases_a_pyplot_figure(tmp_path):
    fig = plt.figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    assert plt.get_fignums()
    assert_saves_png(fig, tmp_path / "nested" / "plain.png")  # creates the directory
