"""The champion's health: its month's bootstrap interval against its metric at promotion."""

from __future__ import annotations

import numpy as np
import pytest

from automl_tasks.monitoring.health import alerts, champion_health, interval


def _constant_error(error: float, n: int = 400):
    """Regression predictions off by exactly `error` on every row: rmse == error on any resample."""
    y = np.linspace(0.0, 10.0, n)
    return y, y + error


@pytest.mark.parametrize("error, degraded", [(1.03, True), (1.01, False), (0.5, False)])
def test_rmse_is_degraded_only_beyond_the_allowed_drop(error, degraded):
    # Lower is better: degraded when even the best end of the interval is above 1.0 + 0.02.
    y, prediction = _constant_error(error)
    health = champion_health("rmse", "regression", y, prediction, reference=1.0, max_degradation=0.02)
    assert health.ci_low == pytest.approx(error) and health.ci_high == pytest.approx(error)
    assert health.degraded is degraded


def test_auc_is_degraded_when_the_whole_interval_is_below_the_reference():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    perfect = np.column_stack([1.0 - y, y.astype(float)])
    noise = rng.random(1000)
    random = np.column_stack([1.0 - noise, noise])
    assert not champion_health("areaUnderROC", "binary", y, perfect, 0.8, 0.02).degraded
    poor = champion_health("areaUnderROC", "binary", y, random, 0.8, 0.02)
    assert poor.degraded and poor.ci_high < 0.78 and poor.ci_low < poor.value < poor.ci_high
    # The same month with no recorded reference says so and raises nothing.
    unknown = champion_health("areaUnderROC", "binary", y, random, None, 0.02)
    assert not unknown.degraded and "no reference" in unknown.describe()


def test_a_noisy_month_near_the_reference_is_not_degraded():
    # AUC around 0.75 on 300 rows: its interval is wide and reaches the reference 0.76.
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    score = 0.35 * y + rng.random(300)
    proba = np.column_stack([1 - score / score.max(), score / score.max()])
    health = champion_health("areaUnderROC", "binary", y, proba, reference=0.76, max_degradation=0.02)
    assert health.ci_high > 0.74 and not health.degraded


def test_the_interval_drawn_in_chunks_equals_one_draw(monkeypatch):
    from automl_tasks.evaluation import resampling

    rng = np.random.default_rng(1)
    y = rng.normal(size=5000)
    prediction = y + rng.normal(scale=0.5, size=5000)
    chunked = interval("rmse", "regression", y, prediction, seed=7)   # 2000 x 5000 > one chunk
    monkeypatch.setattr(resampling, "MAX_CHUNK_INDICES", 2000 * 5000)
    assert interval("rmse", "regression", y, prediction, seed=7) == chunked
    value = float(np.sqrt(np.mean((prediction - y) ** 2)))
    assert chunked[0] < value < chunked[1] and chunked[1] - chunked[0] < 0.05


def test_alerts_name_the_model_month_and_evidence():
    y, prediction = _constant_error(1.5)
    health = champion_health("rmse", "regression", y, prediction, reference=1.0, max_degradation=0.02)
    drift = {"dataset_drift": True, "share_drifted": 0.6, "drifted_columns": ["income", "age"], "threshold": 0.5}
    found = alerts(health, drift, name="loans", month="2018-07", version="3")
    assert [a["kind"] for a in found] == ["degraded", "drift"]
    assert found[0]["message"].startswith("loans 2018-07: champion v3 rmse 1.5000 [95% CI 1.5000, 1.5000]")
    assert "against 1.0000 at its promotion: degraded" in found[0]["message"]
    assert found[1]["message"] == "loans 2018-07: 60% of columns drifted (income, age), threshold 50%"
    assert alerts(None, {**drift, "dataset_drift": False}, name="loans", month="2018-07", version=None) == []
