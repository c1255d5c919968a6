"""The Airflow Assets a promotion updates: one per model, `automl://<model>/champion`.

The monthly DAG's `apply_decision` lists the alias `CHAMPION_MOVES` as its outlet and, when
`champion` moved, adds an event for the model's asset with the version in its extra (an alias,
because which models a run decides is known only at run time). A downstream DAG schedules on
one model's asset, or on the alias for every model (dags/score_new_champion.py).
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

CHAMPION_MOVES = AssetAlias("automl-champion-moves")


def champion_asset(model: str) -> Asset:
    return Asset(uri=f"automl://{model}/champion", name=f"automl/{model}/champion", group="automl")
