"""Promotion gates from the spec, on hand-made comparisons (no Spark, no MLflow)."""

import yaml

from automl_tasks.evaluation.compare import Comparison
from automl_tasks.pipelines.monthly import policy
from automl_tasks.spec import parse_spec
from tests.support.specs import spec_dict


def _spec(**promotion):
    return parse_spec(yaml.safe_dump(spec_dict(promotion={"mode": "auto", **promotion})))


def _cmp(delta, low, high, segment=None):
    return Comparison(metric="areaUnderROC", n_rows=500, candidate=0.7 + delta, baseline=0.7, delta=delta,
                      raw_delta=delta, ci_low=low, ci_high=high, p_value=0.01, resamples=2000,
                      segment=segment)


def test_min_improvement_is_on_the_ci_lower_bound():
    spec = _spec(min_improvement=0.01)
    ok, reasons = policy([_cmp(0.03, 0.012, 0.05)], spec, 0.73)
    assert ok and "clears min_improvement 0.01" in reasons[0]
    ok, reasons = policy([_cmp(0.03, 0.005, 0.05)], spec, 0.73)       # point clears, CI does not
    assert not ok and "does not clear" in reasons[0]


def test_a_segment_dropping_too_far_blocks_promotion():
    spec = _spec(min_improvement=0.0, max_segment_drop=0.02)
    comparisons = [_cmp(0.03, 0.01, 0.05), _cmp(0.05, 0.0, 0.1, "retail"), _cmp(-0.03, -0.08, 0.01, "sme")]
    ok, reasons = policy(comparisons, spec, 0.73)
    assert not ok and any("segment sme: delta -0.0300" in r for r in reasons)


def test_first_month_needs_min_metric_when_set():
    assert policy([], _spec(), 0.55)[0]                                 # no gate: first champion
    ok, reasons = policy([], _spec(min_metric=0.6), 0.55)
    assert not ok and "does not reach min_metric 0.6" in reasons[0]
    assert policy([], _spec(min_metric=0.6), 0.65)[0]
    assert not policy([], _spec(min_metric=0.6), None)[0]
