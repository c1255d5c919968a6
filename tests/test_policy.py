"""Promotion gates from the spec, on hand-made comparisons and labels (no Spark, no MLflow)."""

import numpy as np
import pytest
import yaml

from automl_tasks.errors import SpecError
from automl_tasks.evaluation.compare import Comparison, compare_by_segment
from automl_tasks.registry.policy import (INSUFFICIENT, KEEP, PROMOTE, Evidence, decide,
                                          segment_confidence)
from automl_tasks.spec import parse_spec
from tests.support.specs import spec_dict

PLENTY = Evidence(rows=5000, rarest_class_rows=1500)


def _spec(**promotion):
    return parse_spec(yaml.safe_dump(spec_dict(promotion={"mode": "auto", **promotion})))


def _cmp(delta, low, high, segment=None, n_rows=500, confidence=0.95):
    return Comparison(metric="areaUnderROC", n_rows=n_rows, candidate=0.7 + delta, baseline=0.7, delta=delta,
                      raw_delta=delta, ci_low=low, ci_high=high, p_value=0.01, resamples=2000,
                      segment=segment, confidence=confidence)


def test_min_improvement_is_on_the_ci_lower_bound():
    spec = _spec(min_improvement=0.01)
    verdict = decide([_cmp(0.03, 0.012, 0.05)], spec, 0.73, PLENTY)
    assert verdict.outcome == PROMOTE and verdict.approve and "clears min_improvement 0.01" in verdict.reasons[0]
    verdict = decide([_cmp(0.03, 0.005, 0.05)], spec, 0.73, PLENTY)     # point clears, CI does not
    assert verdict.outcome == KEEP and verdict.gate == "improvement" and "does not clear" in verdict.reasons[0]


def test_a_lower_bound_touching_the_threshold_does_not_pass():
    # The ten-row case of issue 20: CI +0.0000..+0.2500 against the default min_improvement 0.
    verdict = decide([_cmp(0.0476, 0.0, 0.25)], _spec(), 0.75, PLENTY)
    assert verdict.outcome == KEEP and verdict.gate == "improvement"
    assert decide([_cmp(0.0476, 0.01, 0.25)], _spec(min_improvement=0.01), 0.75, PLENTY).outcome == KEEP
    assert decide([_cmp(0.0476, 1e-9, 0.25)], _spec(), 0.75, PLENTY).outcome == PROMOTE


def test_a_month_below_min_rows_never_promotes_and_says_so():
    tiny = Evidence.of_labels("binary", [0, 0, 0, 0, 0, 0, 0, 1, 1, 1])       # 7 and 3
    assert tiny == Evidence(rows=10, rarest_class_rows=3)
    for comparisons in ([_cmp(0.2, 0.1, 0.3)], []):                   # with a champion, and the first month
        verdict = decide(comparisons, _spec(), 0.9, tiny)
        assert verdict.outcome == INSUFFICIENT and verdict.gate == "evidence" and not verdict.approve
        assert "10 evaluated rows < min_rows 200" in verdict.reasons[0]
        assert "3 rows in the rarest class < min_class_rows 20" in verdict.reasons[0]
    enough_rows_rare_class = Evidence(rows=1000, rarest_class_rows=12)
    verdict = decide([_cmp(0.2, 0.1, 0.3)], _spec(), 0.9, enough_rows_rare_class)
    assert verdict.outcome == INSUFFICIENT and "min_rows" not in verdict.reasons[0]
    assert decide([_cmp(0.2, 0.1, 0.3)], _spec(min_rows=10, min_class_rows=3), 0.9, tiny).outcome == PROMOTE
    # Regression counts rows only.
    assert Evidence.of_labels("regression", np.arange(300.0)) == Evidence(rows=300)
    assert decide([_cmp(0.2, 0.1, 0.3)], _spec(), 0.9, Evidence(rows=300)).outcome == PROMOTE


def test_rarest_class_counts_a_missing_binary_class_as_zero_and_ignores_absent_multiclass_ones():
    assert Evidence.of_labels("binary", [0] * 50).rarest_class_rows == 0
    assert Evidence.of_labels("multiclass", [0] * 40 + [2] * 30).rarest_class_rows == 30


def test_a_credibly_worse_segment_blocks_a_noisy_or_small_one_does_not():
    spec = _spec(max_segment_drop=0.02)
    better = _cmp(0.03, 0.01, 0.05)
    # The demo's case: a 274-row segment at -0.0116 with CI -0.055..+0.030: noisy, no veto.
    noisy = _cmp(-0.0116, -0.055, 0.030, "sme", n_rows=274)
    verdict = decide([better, noisy], spec, 0.73, PLENTY)
    assert verdict.outcome == PROMOTE and verdict.gate == "all"
    # A small segment far below is reported, not gated.
    small = _cmp(-0.2, -0.3, -0.1, "tiny", n_rows=40)
    verdict = decide([better, small], spec, 0.73, PLENTY)
    assert verdict.outcome == PROMOTE and "not gated: tiny (40 rows)" in verdict.reasons[-1]
    # Credibly worse than -max_segment_drop: the whole interval below -0.02.
    worse = _cmp(-0.06, -0.09, -0.025, "retail", n_rows=800)
    verdict = decide([better, worse, noisy], spec, 0.73, PLENTY)
    assert verdict.outcome == KEEP and verdict.gate == "segment"
    assert any("segment retail: delta -0.0600" in r and "credibly worse" in r for r in verdict.reasons)
    # Worse, but not credibly beyond the allowed drop: no veto.
    assert decide([better, _cmp(-0.03, -0.05, -0.01, "retail", n_rows=800)], spec, 0.73, PLENTY).approve


def test_segment_intervals_are_bonferroni_corrected_over_the_gated_segments():
    assert segment_confidence([1000, 500, 50], min_rows=200) == pytest.approx(1 - 0.05 / 2)
    assert segment_confidence([10, 20], min_rows=200) == pytest.approx(0.95)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 900)
    base = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, 900), 0, 1)
    cand = np.clip(base + rng.normal(0, 0.05, 900), 0, 1)
    proba = lambda p: np.column_stack([1 - p, p])                               # noqa: E731
    segments = np.array(["a"] * 400 + ["b"] * 400 + ["c"] * 100)
    plain = compare_by_segment("areaUnderROC", "binary", y, proba(cand), proba(base), segments, min_rows=200)
    wide = compare_by_segment("areaUnderROC", "binary", y, proba(cand), proba(base), segments, min_rows=200,
                              segment_confidence=1 - 0.05 / 2)
    assert plain[0] == wide[0]                                                  # overall stays at 95%
    for p, w in zip(plain[1:3], wide[1:3]):
        assert w.confidence == pytest.approx(0.975) and w.ci_low < p.ci_low and w.ci_high > p.ci_high
    assert wide[3].segment == "c" and wide[3].resamples == 0                    # under min_rows: no interval


def test_first_month_needs_min_metric_when_set():
    assert decide([], _spec(), 0.55, PLENTY).approve                            # no gate: first champion
    verdict = decide([], _spec(min_metric=0.6), 0.55, PLENTY)
    assert not verdict.approve and "does not reach min_metric 0.6" in verdict.reasons[0]
    assert verdict.gate == "min_metric"
    assert decide([], _spec(min_metric=0.6), 0.65, PLENTY).approve
    assert not decide([], _spec(min_metric=0.6), None, PLENTY).approve


@pytest.mark.parametrize("gate, value, message", [
    ("min_improvement", -0.01, "min_improvement: Input should be greater than or equal to 0"),
    ("max_segment_drop", -1, "max_segment_drop: Input should be greater than or equal to 0"),
    ("min_improvement", float("nan"), "min_improvement: Input should be a finite number"),
    ("min_rows", 0, "min_rows: Input should be greater than or equal to 1"),
])
def test_gate_values_out_of_range_are_spec_errors(gate, value, message):
    with pytest.raises(SpecError, match=message):
        _spec(**{gate: value})
