"""The promotion policy: may a candidate replace the champion on this evidence?

Gates, in the order they are checked; the first that fails decides (`Verdict.gate`):

1. `evidence`: at least `promotion.min_rows` evaluated rows and, for a classifier, at least
   `promotion.min_class_rows` rows of the rarest class (binary: either class; multiclass:
   the rarest class present). Below that the outcome is `insufficient_evidence`: the
   bootstrap interval of a few dozen rows is itself unreliable (percentile intervals
   under-cover on small samples), so neither a promotion nor a rejection is claimed.
2. First month (no champion): the candidate's holdout metric must reach `min_metric` when set.
3. `improvement`: the lower bound of the overall delta's 95% CI must be strictly above
   `min_improvement` (a bound of exactly 0 is no evidence of improvement).
4. `segment`: a segment blocks only when it is credibly worse: the upper bound of its
   interval lies below `-max_segment_drop`. The segments' intervals are Bonferroni-corrected
   (each at 1 - 0.05/k for the k gated segments, see `segment_confidence`), so the chance
   that any of them blocks by noise alone stays under 5%. Segments under `min_rows` are
   reported, not gated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from automl_tasks.evaluation.compare import Comparison
from automl_tasks.spec import ModelSpec

PROMOTE, KEEP, INSUFFICIENT = "promote", "keep", "insufficient_evidence"
FAMILY_ALPHA = 0.05


@dataclass(frozen=True)
class Evidence:
    """How much the evaluated month holds: rows, and rows of the rarest class (classifiers)."""
    rows: int
    rarest_class_rows: int | None = None

    @classmethod
    def of_labels(cls, task: str, y) -> Evidence:
        y = np.asarray(y)
        if task == "regression":
            return cls(int(y.size))
        counts = np.bincount(y.astype(np.int64), minlength=2 if task == "binary" else 0)
        present = counts if task == "binary" else counts[counts > 0]
        return cls(int(y.size), int(present.min()) if present.size else 0)


@dataclass(frozen=True)
class Verdict:
    outcome: str            # promote | keep | insufficient_evidence
    gate: str               # the gate that decided: evidence, min_metric, improvement, segment, all
    reasons: list[str]
    rows: int
    rarest_class_rows: int | None = None

    @property
    def approve(self) -> bool:
        return self.outcome == PROMOTE

    def to_json(self) -> dict:
        """As a month record's `policy`: `approve`, then the fields."""
        return {"approve": self.approve, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict) -> Verdict:
        """Records written before the evidence gates carry `approve` and `reasons` only: their
        outcome is promote or keep, and gate and rows are None."""
        outcome = data.get("outcome") or (PROMOTE if data["approve"] else KEEP)
        return cls(outcome, data.get("gate"), list(data["reasons"]), data.get("rows"), data.get("rarest_class_rows"))


def segment_confidence(segment_rows: list[int], min_rows: int) -> float:
    """Per-segment confidence so that the k gated segments together keep a 5% error rate."""
    gated = sum(1 for n in segment_rows if n >= min_rows)
    return 1.0 - FAMILY_ALPHA / max(gated, 1)


def decide(comparisons: list[Comparison], spec: ModelSpec, candidate_value: float | None,
           evidence: Evidence) -> Verdict:
    """The verdict on the month's evidence; `comparisons` is empty when there is no champion yet."""
    from automl_tasks.evaluation.metrics import orientation

    gates = spec.promotion
    counted = f"{evidence.rows} evaluated rows" + (
        f", {evidence.rarest_class_rows} in the rarest class" if evidence.rarest_class_rows is not None else "")

    def verdict(outcome: str, gate: str, reasons: list[str]) -> Verdict:
        return Verdict(outcome, gate, reasons, evidence.rows, evidence.rarest_class_rows)

    thin = []
    if evidence.rows < gates.min_rows:
        thin.append(f"{evidence.rows} evaluated rows < min_rows {gates.min_rows}")
    if evidence.rarest_class_rows is not None and evidence.rarest_class_rows < gates.min_class_rows:
        thin.append(f"{evidence.rarest_class_rows} rows in the rarest class < min_class_rows "
                    f"{gates.min_class_rows}")
    if thin:
        return verdict(INSUFFICIENT, "evidence", [f"insufficient evidence: {'; '.join(thin)}; "
                                                  "the champion stays, nothing is promoted"])
    if not comparisons:
        if gates.min_metric is None:
            return verdict(PROMOTE, "all", [f"no champion yet: the best candidate becomes the first "
                                            f"champion ({counted})"])
        if candidate_value is None:
            return verdict(KEEP, "min_metric", [f"no champion yet and no holdout {spec.metric} to check "
                                                "min_metric against"])
        ok = orientation(spec.metric) * (candidate_value - gates.min_metric) >= 0
        word = "reaches" if ok else "does not reach"
        return verdict(PROMOTE if ok else KEEP, "all" if ok else "min_metric",
                       [f"no champion yet: candidate {spec.metric} {candidate_value:.4f} {word} "
                        f"min_metric {gates.min_metric} ({counted})"])

    overall, segments = comparisons[0], comparisons[1:]
    if _missing(overall.ci_low):
        return verdict(INSUFFICIENT, "evidence", [f"overall {overall.metric} delta has no interval "
                                                  f"({overall.note or 'no finite resample'})"])
    ok = overall.ci_low > gates.min_improvement
    reasons = [f"overall {overall.metric} delta {overall.delta:+.4f} (95% CI {overall.ci_low:+.4f}.."
               f"{overall.ci_high:+.4f}, {counted}) {'clears' if ok else 'does not clear'} "
               f"min_improvement {gates.min_improvement}: the CI's lower bound must be above it"]
    gate = "all" if ok else "improvement"
    ungated = []
    for seg in segments:
        if seg.n_rows < gates.min_rows or _missing(seg.ci_high):
            ungated.append(f"{seg.segment} ({seg.n_rows} rows)")
            continue
        if seg.ci_high < -gates.max_segment_drop:
            if ok:
                gate = "segment"
            ok = False
            reasons.append(f"segment {seg.segment}: delta {seg.delta:+.4f} ({seg.confidence:.1%} CI "
                           f"{seg.ci_low:+.4f}..{seg.ci_high:+.4f}, {seg.n_rows} rows) is credibly worse "
                           f"than -max_segment_drop {gates.max_segment_drop}")
    if ungated:
        reasons.append(f"segments under min_rows {gates.min_rows}, reported, not gated: {', '.join(ungated)}")
    return verdict(PROMOTE if ok else KEEP, gate, reasons)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
