"""The champion's health on a month, and the month's alerts.

The champion's metric on the month is compared with its reference, its holdout metric when it
was promoted. It is `degraded` when even the favourable end of the month's bootstrap interval
(percentile, 95%) is worse than the reference by more than `monitoring.max_degradation`: a
credible drop, not one month's noise. Direction-aware (for rmse or logLoss, worse is higher).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from automl_tasks.evaluation.resampling import bootstrap_metric
from automl_tasks.evaluation.metrics import compute_metric, orientation
from automl_tasks.monitoring.messages import DEGRADED, DRIFT

RESAMPLES = 2000


@dataclass(frozen=True)
class Health:
    metric: str
    value: float                  # the champion's metric on the month
    ci_low: float
    ci_high: float
    reference: float | None       # its holdout metric when promoted; None: not recorded
    max_degradation: float
    degraded: bool

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        interval = f"{self.metric} {self.value:.4f} [95% CI {self.ci_low:.4f}, {self.ci_high:.4f}]"
        if self.reference is None:
            return f"{interval}; no reference recorded at its promotion"
        verdict = "degraded" if self.degraded else "within"
        return (f"{interval} against {self.reference:.4f} at its promotion: {verdict} "
                f"(monitoring.max_degradation {self.max_degradation:g})")


def interval(metric: str, task: str, y, prediction, *, seed: int = 0, resamples: int = RESAMPLES,
             confidence: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of one model's `metric` on these rows."""
    values = bootstrap_metric(metric, task, y, prediction, resamples=resamples, seed=seed)
    values = values[np.isfinite(values)]
    alpha = 1.0 - confidence
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def champion_health(metric: str, task: str, y, prediction, reference: float | None,
                    max_degradation: float, *, seed: int = 0) -> Health:
    value = compute_metric(metric, task, y, prediction)
    low, high = interval(metric, task, y, prediction, seed=seed)
    sign = orientation(metric)
    degraded = reference is not None and max(sign * low, sign * high) < sign * reference - max_degradation
    return Health(metric, value, low, high, reference, max_degradation, bool(degraded))


def alerts(health: Health | None, drift: dict, *, name: str, month: str, version: str | None,
           health_month: str | None = None) -> list[dict]:
    """The month's evaluation alerts, `{kind, message}`: `degraded` (on `health_month`, default
    `month`) and `drift` (on `month`)."""
    out = []
    if health is not None and health.degraded:
        out.append({"kind": DEGRADED,
                    "message": f"{name} {health_month or month}: champion v{version} {health.describe()}"})
    if drift.get("dataset_drift"):
        out.append({"kind": DRIFT, "message": (
            f"{name} {month}: {drift['share_drifted']:.0%} of columns drifted "
            f"({', '.join(drift['drifted_columns'])}), threshold {drift['threshold']:.0%}")})
    return out
