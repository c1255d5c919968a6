"""score_new_champion: an example of work scheduled on a promotion (README, "Downstream of a promotion").

Runs whenever the monthly DAG moves any model's `champion` (the asset alias of
plugins/champion_assets.py; schedule on `champion_asset("<model>")` for one model). Here it
only reports which model version to use; a team's scoring job loads `models:/<model>@champion`
(or the version in the event) in its place.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from champion_assets import CHAMPION_MOVES      # plugins/


@dag(dag_id="score_new_champion", schedule=[CHAMPION_MOVES], start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
     catchup=False, tags=["automl", "example"])
def score_new_champion():
    @task(inlets=[CHAMPION_MOVES])
    def new_champions(inlet_events=None) -> list[dict]:
        moved = [event.extra for event in inlet_events[CHAMPION_MOVES]]
        for extra in moved:
            print(f"score with models:/{extra['model']}/{extra['version']} (champion since {extra['month']}, "
                  f"was v{extra['previous']})")
        return moved

    new_champions()


score_new_champion()
