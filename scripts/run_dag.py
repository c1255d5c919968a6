"""Run a DAG in-process with dag.test(), optionally answering its approval tasks as a person.

`make demo` and the DAG tests use it: one process, the local Airflow metadata DB
under AIRFLOW_HOME, no scheduler. Several --date values run one after another in the
same process (a backfill: imports and the Spark session are paid once). With
--answer (Approve or Reject) a thread answers every human-in-the-loop task through
Airflow's own HITL REST handler (the function behind PATCH .../hitlDetails), as the
person would from the UI; without it the run waits for an answer from outside (the
UI or the REST API of an api-server on the same metadata DB).

    python scripts/run_dag.py DAG_ID --date LOGICAL_DATE [--date ...] [--conf JSON] [--answer OPTION]

Prints one `RESULT {json}` line per date: the run's state, every task's state and its tries, and
the asset events its tasks emitted.
"""

from __future__ import annotations

import argparse
import json
import threading
import time


class Person:
    """The user Airflow records as the respondent."""

    def get_id(self) -> str:
        return "tester"

    def get_name(self) -> str:
        return "tester"


def answer_when_asked(dag_id: str, option: str, stop: threading.Event) -> None:
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    while not stop.is_set():
        with create_session() as session:
            waiting = session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag_id, TaskInstance.state == TaskInstanceState.AWAITING_INPUT).all()
            for ti in waiting:
                update_hitl_detail(dag_id=dag_id, dag_run_id=ti.run_id, task_id=ti.task_id,
                                   update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option]),
                                   user=Person(), session=session, map_index=ti.map_index)
                print(f"ANSWERED {ti.task_id}[{ti.map_index}] {option}", flush=True)
        time.sleep(1)


def asset_events(dag_id: str, run_id: str) -> list[dict]:
    """The asset events a run's tasks emitted: uri, extra."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_dag_id == dag_id,
                                                  AssetEvent.source_run_id == run_id).all()
        return [{"uri": e.asset.uri, "extra": e.extra} for e in events]


def main() -> None:
    import warnings

    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.deprecation_tools import DeprecatedImportWarning

    # skops (loaded by mlflow) scans every loaded module's attributes, which touches each of
    # Airflow's deprecated import aliases: thousands of warning lines that bury the task logs.
    warnings.filterwarnings("ignore", category=DeprecatedImportWarning)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dag_id")
    parser.add_argument("--date", action="append", required=True, help="logical date (ISO 8601)")
    parser.add_argument("--conf", default="{}", help="run conf (JSON)")
    parser.add_argument("--answer", help="answer every approval task with this option")
    args = parser.parse_args()
    bag = DagBag()
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    stop = threading.Event()
    if args.answer:
        threading.Thread(target=answer_when_asked, args=(args.dag_id, args.answer, stop), daemon=True).start()
    dag = bag.get_dag(args.dag_id)
    for date in args.date:
        run = dag.test(logical_date=pendulum.parse(date), run_conf=json.loads(args.conf))
        tis = run.get_task_instances()
        states = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in tis}
        tries = {f"{ti.task_id}[{ti.map_index}]": ti.try_number for ti in tis}
        print("RESULT " + json.dumps({"logical_date": date, "state": str(run.state), "tasks": states,
                                      "tries": tries, "asset_events": asset_events(dag.dag_id, run.run_id)}),
              flush=True)
    stop.set()


if __name__ == "__main__":
    main()
