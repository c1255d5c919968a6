"""The study's results: paired deltas and verdicts per candidate, and their text form."""

from __future__ import annotations

import numpy as np

from automl_tasks import fitting
from automl_tasks.ablation.fits import Design
from automl_tasks.ablation.plan import Plan
from automl_tasks.ablation.stats import Interval, corrected_t, verdict
from automl_tasks.errors import TuningError
from automl_tasks.formatting import number
from automl_tasks.spec import ModelSpec

LEAK_METRIC = fitting.LEAK_METRIC


def study_results(spec: ModelSpec, plan: Plan, design: Design, values: dict) -> tuple[list[dict], dict]:
    """(one row per candidate with its paired delta, interval and verdict; the base model's values)
    from the wave's {(arm, repeat, fold): value} (fitting.run_keyed)."""
    from automl_tasks.evaluation.metrics import orientation

    sign = orientation(spec.metric)
    repeats, folds, direction = design.repeats, design.folds, design.direction

    def series(arm):
        return np.array([values[(arm, r, f)]["value"] if values[(arm, r, f)]["value"] is not None
                         else np.nan for r in range(repeats) for f in range(folds)], dtype=float)

    def errors(arm):
        return [v["error"] for (a, _, _), v in values.items() if a == arm and v["error"]]

    base_errors = errors("base")
    if base_errors:
        raise TuningError(f"the base model failed in {len(base_errors)} fit(s); first error: "
                          f"{base_errors[0].splitlines()[0]}")
    base_cv = series("base")
    base_holdout = values.get(("base", 0, fitting.HOLDOUT), {}).get("value")
    base = {"features": list(plan.base), "value": float(np.mean(base_cv)), "holdout_value": base_holdout}

    results = []
    for c in plan.candidates:
        arm = f"+{c}" if direction == "add" else f"-{c}"
        alone = [values[(f"alone:{c}", 0, f)]["value"] for f in range(folds)]
        alone_value = float(np.mean(alone)) if all(v is not None for v in alone) else None
        row = {"feature": c, "delta": None, "ci_low": None, "ci_high": None, "p_value": None,
               "holdout_delta": None, "arm_value": None, "alone_value": alone_value,
               "leakage": bool(alone_value is not None and alone_value >= spec.ablation.leakage_threshold),
               "fold_deltas": []}
        failed = errors(arm)
        arm_cv = series(arm)
        # add: (base+f) - base; drop: base - (base-f). Positive = the feature helps.
        deltas = sign * (arm_cv - base_cv) if direction == "add" else sign * (base_cv - arm_cv)
        if np.isfinite(deltas).sum() >= 2:
            interval: Interval = corrected_t(deltas, design.ratio)
            row.update(delta=interval.delta, ci_low=interval.ci_low, ci_high=interval.ci_high,
                       p_value=interval.p_value, arm_value=float(np.nanmean(arm_cv)),
                       fold_deltas=[None if not np.isfinite(d) else float(d) for d in deltas])
            arm_holdout = values.get((arm, 0, fitting.HOLDOUT), {}).get("value")
            if arm_holdout is not None and base_holdout is not None:
                diff = arm_holdout - base_holdout
                row["holdout_delta"] = float(sign * (diff if direction == "add" else -diff))
        if row["leakage"]:
            row["verdict"] = "reject"
            row["reason"] = (f"likely leakage: alone it scores {LEAK_METRIC[spec.task]} {alone_value:.4f} "
                             f">= {spec.ablation.leakage_threshold:g}")
        elif failed:
            row["verdict"] = "inconclusive"
            row["reason"] = f"{len(failed)} fit(s) failed; first error: {failed[0].splitlines()[0][:300]}"
        elif row["delta"] is None:
            row["verdict"], row["reason"] = "inconclusive", "too few finite fold scores for an interval"
        else:
            row["verdict"], row["reason"] = verdict(interval, spec.ablation.min_effect)
        results.append(row)
    for c, reason in plan.settled.items():
        results.append({"feature": c, "delta": None, "ci_low": None, "ci_high": None, "p_value": None,
                        "holdout_delta": None, "arm_value": None, "alone_value": None, "leakage": False,
                        "fold_deltas": [], "verdict": "reject", "reason": reason})
    return results, base


def result_line(r: dict) -> str:
    if r["delta"] is None:
        return f"  {r['feature']:<24} {r['verdict']:<12} {r['reason']}"
    return (f"  {r['feature']:<24} {r['verdict']:<12} delta {number(r['delta'], True)} "
            f"[{number(r['ci_low'], True)}, {number(r['ci_high'], True)}] p={r['p_value']:.3g} "
            f"holdout {number(r['holdout_delta'], True)}"
            + (f"  ({r['reason']})" if r["leakage"] else ""))


def format_results(summary: dict) -> str:
    """The study as the CLI prints it: base, then one line per candidate, best first."""
    base = summary["base"]
    hold = "" if base["holdout_value"] is None else f", holdout {base['holdout_value']:.4f}"
    lines = [f"base ({len(base['features'])} features): {summary['metric']} {base['value']:.4f}{hold}; "
             f"{summary['algorithm']} params from {summary['params_source']}; "
             f"{summary['design']['repeats']}x{summary['design']['folds']} folds"]
    lines += [result_line(r) for r in summary["results"]]
    lines.append(f"run {summary['run_id']} in experiment {summary['experiment']}")
    return "\n".join(lines)
