"""Run a DAG in-process with dag.test(), optionally answering its approval tasks as a person.

`make demo` and tests/test_dags.py use it: one process, the local Airflow metadata
DB under AIRFLOW_HOME, no scheduler. With ANSWER (Approve or Reject) a thread answers
every human-in-the-loop task through Airflow's own HITL REST handler (the function
behind PATCH .../hitlDetails), as the person would from the UI.

    python scripts/run_dag.py DAG_ID LOGICAL_DATE CONF_JSON [ANSWER]
"""

from __future__ import annotations

import json
import sys
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


def main() -> None:
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    dag_id, logical_date, conf = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    option = sys.argv[4] if len(sys.argv) > 4 else None
    bag = DagBag()
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    stop = threading.Event()
    if option:
        threading.Thread(target=answer_when_asked, args=(dag_id, option, stop), daemon=True).start()
    run = bag.get_dag(dag_id).test(logical_date=pendulum.parse(logical_date), run_conf=conf)
    stop.set()
    states = {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in run.get_task_instances()}
    print("RESULT " + json.dumps({"state": str(run.state), "tasks": states}), flush=True)


if __name__ == "__main__":
    main()
