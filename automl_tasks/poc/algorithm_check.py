"""Is the champion's algorithm still the right one? (PoC, when the spec name has a champion.)

The champion's algorithm with the champion's params, and the best other algorithm of the
PoC leaderboard with its tuned params, are both fitted on the PoC's own folds; their
out-of-fold predictions on the same rows are compared with the paired bootstrap
(evaluation/compare.py). It compares algorithms, not the deployed model: both are
refitted on the PoC data. Switching is warranted only when the interval of the
alternative's advantage lies entirely above zero.
"""

from __future__ import annotations

import json

from automl_tasks.evaluation.compare import paired_bootstrap
from automl_tasks.evaluation.metrics import is_better
from automl_tasks.registry.records import LeaderboardEntry


def champion_config(name: str) -> dict | None:
    """The champion's version, algorithm and params, or None when `name` has no champion."""
    import mlflow

    from automl_tasks.registry import promotion, tracking

    version = promotion.current_champion(name)
    if version is None:
        return None
    tags = tracking.client().get_model_version(name, version).tags
    algorithm, run_id = tags["automl.algorithm"], tags["automl.source_run_id"]
    meta = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/native/{algorithm}/metadata.json"))
    return {"version": str(version), "algorithm": algorithm, "params": meta["params"], "run_id": run_id}


def best_alternative(leaderboard: list[LeaderboardEntry], metric: str, exclude: str) -> LeaderboardEntry | None:
    best = None
    for entry in leaderboard:
        if entry.status != "ok" or entry.algorithm == exclude:
            continue
        if best is None or is_better(metric, entry.cv_value, best.cv_value):
            best = entry
    return best


def verdict(comparison, champion_algorithm: str, alternative: str) -> tuple[str, str]:
    """(switch | keep, why) from the alternative-minus-champion interval (positive = alternative better)."""
    c = comparison
    interval = f"{c.metric} delta {c.delta:+.4f}, {c.confidence:.0%} CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}]"
    if c.ci_low > 0:
        return "switch", (f"{alternative} beats the champion's algorithm {champion_algorithm} on the same "
                          f"folds ({interval}): switching is warranted")
    if c.ci_high < 0:
        return "keep", f"{champion_algorithm} beats {alternative} on the same folds ({interval})"
    return "keep", (f"no significant difference between {alternative} and {champion_algorithm} "
                    f"({interval}): keep the champion's algorithm")


def compare_algorithms(champion: dict, champion_oof, alternative: LeaderboardEntry, alternative_oof, metric: str,
                       task: str, seed: int = 0) -> dict:
    """The evidence: both algorithms' out-of-fold metric, the paired delta with its CI, the verdict."""
    comparison = paired_bootstrap(metric, task, champion_oof.y, alternative_oof.prediction,
                                  champion_oof.prediction, seed=seed)
    decision, why = verdict(comparison, champion["algorithm"], alternative.algorithm)
    return {"champion_version": champion["version"], "champion_algorithm": champion["algorithm"],
            "champion_params": champion["params"], "alternative": alternative.algorithm,
            "alternative_params": alternative.params, "rows": int(len(champion_oof.rows)),
            "comparison": comparison.to_dict(), "verdict": decision, "reason": why}
