"""Ablation figures: deltas with their intervals, sorted by effect; gain and SHAP bars."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from automl_tasks.evaluation.plots import _figure

COLOURS = {"adopt": "tab:green", "reject": "tab:red", "inconclusive": "tab:grey"}


def delta_chart(results: list[dict], metric: str, direction: str = "add") -> Figure:
    """One horizontal bar per candidate (largest effect on top), 95% CI whiskers, zero line;
    coloured by verdict, leaky candidates hatched."""
    if not results:
        raise ValueError("delta_chart needs at least one result with a delta")
    rows = sorted(results, key=lambda r: r["delta"])          # barh draws bottom-up
    y = np.arange(len(rows))
    delta = np.array([r["delta"] for r in rows])
    low = delta - np.array([r["ci_low"] for r in rows])
    high = np.array([r["ci_high"] for r in rows]) - delta
    fig, ax = _figure((7.5, 1.6 + 0.45 * len(rows)))
    bars = ax.barh(y, delta, xerr=[low, high], capsize=4,
                   color=[COLOURS[r["verdict"]] for r in rows], alpha=0.85)
    for bar, r in zip(bars, rows):
        if r.get("leakage"):
            bar.set_hatch("//")
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{r['feature']} ({r['verdict']}{', leakage' if r.get('leakage') else ''})"
                      for r in rows])
    what = "adding" if direction == "add" else "keeping"
    ax.set_xlabel(f"{metric} delta from {what} the feature (positive = better), 95% CI")
    ax.set_title("Feature ablation: corrected resampled t intervals")
    ax.grid(axis="x", alpha=0.3)
    return fig


def importance_chart(rows: list[dict], top: int = 30) -> Figure:
    """Mean |SHAP| and share of total gain per feature, most important first."""
    if not rows:
        raise ValueError("importance_chart needs at least one feature")
    rows = sorted(rows, key=lambda r: -r["shap"])[:top][::-1]
    y = np.arange(len(rows))
    total_gain = sum(r["gain"] for r in rows) or 1.0
    fig = Figure(figsize=(10.0, 1.5 + 0.35 * len(rows)), layout="constrained")
    shap_ax, gain_ax = fig.subplots(1, 2, sharey=True)
    shap_ax.barh(y, [r["shap"] for r in rows], color="tab:blue")
    shap_ax.set_yticks(y, [r["feature"] for r in rows])
    shap_ax.set_xlabel("mean |SHAP| (native TreeSHAP)")
    gain_ax.barh(y, [r["gain"] / total_gain for r in rows], color="tab:orange")
    gain_ax.set_xlabel("share of total gain")
    fig.suptitle("Feature importance, base + candidates model")
    return fig
