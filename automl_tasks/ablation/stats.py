"""Paired deltas from repeated k-fold: interval, p-value and verdict (pure numpy/scipy).

Why the corrected resampled t-test (Nadeau & Bengio 2003) and not a plain t-test or a
row bootstrap: the J = repeats x folds deltas of a repeated k-fold are not independent
(the training sets overlap, and every repeat reuses the same rows), so a plain t-test
on them is far too confident (Type I error well above 5%). Nadeau-Bengio inflate the
variance of the mean by (1/J + n_test/n_train) instead of 1/J, which keeps the error
rate near nominal (Bouckaert & Frank 2004 recommend exactly this with repeated CV).
A row bootstrap of one holdout would ignore the variation from refitting the model,
which is what a feature changes. The out-of-time holdout delta is reported beside it
as a point value (one fit each, no interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

VERDICTS = ("adopt", "reject", "inconclusive")


@dataclass(frozen=True)
class Interval:
    delta: float       # mean oriented delta (positive = the feature helps)
    ci_low: float
    ci_high: float
    p_value: float     # two-sided, H0: mean delta = 0
    n_pairs: int
    std: float


def corrected_t(deltas, test_train_ratio: float, confidence: float = 0.95) -> Interval:
    """Nadeau-Bengio corrected resampled t interval of the mean of paired fold deltas."""
    from scipy import stats

    d = np.asarray(deltas, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = d.size
    if n < 2:
        raise ValueError(f"{n} finite paired deltas: need at least 2 for an interval")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean, std = float(d.mean()), float(d.std(ddof=1))
    se = math.sqrt((1.0 / n + test_train_ratio) * std ** 2)
    if se == 0.0:  # every pair gave the same delta: no spread to test against
        return Interval(mean, mean, mean, 1.0 if mean == 0.0 else 0.0, n, std)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    return Interval(mean, mean - half, mean + half, p, n, std)


def verdict(interval: Interval, min_effect: float) -> tuple[str, str]:
    """adopt: the CI excludes 0 and the mean reaches min_effect; reject: the whole CI is
    below min_effect (too small to matter, or harmful); otherwise inconclusive."""
    if interval.ci_low > 0 and interval.delta >= min_effect:
        return "adopt", (f"95% CI [{interval.ci_low:+.4f}, {interval.ci_high:+.4f}] excludes 0 and the "
                         f"mean delta {interval.delta:+.4f} reaches min_effect {min_effect:g}")
    if interval.ci_high < min_effect or (min_effect == 0 and interval.ci_high <= 0):
        return "reject", (f"95% CI [{interval.ci_low:+.4f}, {interval.ci_high:+.4f}] lies below "
                          f"min_effect {min_effect:g}")
    return "inconclusive", (f"95% CI [{interval.ci_low:+.4f}, {interval.ci_high:+.4f}] does not settle "
                            f"it (mean {interval.delta:+.4f}, min_effect {min_effect:g}); more data or "
                            "repeats may")
