"""Airflow plugin: a monthly timetable whose run ids name the month a run covers.

A run's data interval is the month it monitors and evaluates, but Airflow names runs by
when they start (`scheduled__2018-11-01T00:00:00+00:00` covers October), so the grid and
run list never showed the month. `MonthRuns` is a `CronDataIntervalTimetable`
with ids like `scheduled__2018-10__2018-11-01T00:00:00+00:00` (manual triggers with a
logical date likewise; a `month` Param overrides what the run computes, and the tasks'
labels show that month). Registered here because the scheduler deserializes a DAG's
timetable only from classes that plugins declare.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from airflow.timetables.interval import CronDataIntervalTimetable


class MonthRuns(CronDataIntervalTimetable):
    """Use as `MonthRuns("@monthly", timezone="UTC")`."""

    def generate_run_id(self, *, run_type, run_after, data_interval, **extra) -> str:
        if data_interval is None:
            return super().generate_run_id(run_type=run_type, run_after=run_after, data_interval=None, **extra)
        return run_type.generate_run_id(suffix=f"{data_interval.start:%Y-%m}__{run_after.isoformat()}")


class MonthRunsPlugin(AirflowPlugin):
    name = "month_runs"
    timetables = [MonthRuns]
