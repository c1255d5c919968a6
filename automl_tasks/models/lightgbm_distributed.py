"""LightGBM's own data-parallel training inside Spark barrier tasks (no SynapseML, no jars).

One barrier stage of `num_workers` tasks, each holding one partition of the training
rows. Each task picks a free port on its executor's host, the tasks exchange
`host:port` with `BarrierTaskContext.allGather`, and every task calls `lightgbm.train`
with `tree_learner=data`, `num_machines`, `machines` and its own `local_listen_port`:
LightGBM's socket network then syncs histograms between them. Rank 0 returns the
model string; the others return nothing. Barrier mode is what makes this safe: the
tasks start together (or not at all), and if one fails Spark fails them all, so no
task waits on a dead peer until LightGBM's `time_out`.

Limits (docs/data-parallel.md): the stage needs `num_workers` free task slots at once;
executors must reach each other on the chosen ports (any port above 1024 the host
hands out: open the executors' firewall between them); a port taken between the
pick and LightGBM's bind fails the stage, which then runs again with new ports
(BIND_ATTEMPTS in all); any other failure is the caller's FAILED trial.
"""

from __future__ import annotations

import socket

import numpy as np

from automl_tasks.errors import TuningError
from automl_tasks.spark import job_failure

# Minutes LightGBM's sockets wait for a peer (connect and each receive).
TIME_OUT_MIN = 5
OUTPUT_SCHEMA = "rank int, model string, rows long"
# LightGBM's message when its listen port is taken; the stage then runs again with new ports.
BIND_FAILED, BIND_ATTEMPTS = "Binding port", 3
# Params the trainer sets itself; a spec value for them would break the network.
NETWORK_PARAMS = ("tree_learner", "num_machines", "machines", "local_listen_port", "time_out",
                  "machine_list_filename", "pre_partition")


def lgb_params(task: str, params: dict, n_classes: int | None, seed: int) -> tuple[dict, int]:
    """The spec's scikit-learn style params as `lightgbm.train` params, and the number of rounds."""
    if "class_weight" in params:   # a scikit-learn wrapper feature, unknown to lightgbm.train
        raise TuningError("lightgbm data-parallel: 'class_weight' is not supported; use "
                          "'scale_pos_weight' (binary) or the per-trial path")
    params = {"random_state": seed, **params}
    rounds = int(params.pop("n_estimators", 100))
    objective = {"binary": "binary", "multiclass": "multiclass", "regression": "regression"}[task]
    out = {**params, "objective": objective, "verbose": -1}
    if task == "multiclass":
        out["num_class"] = int(n_classes)
    return out, rounds


def free_port() -> int:
    """A port the OS hands out now on all interfaces (LightGBM listens on all of them)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _address(context) -> str:
    """This executor's IP as Spark knows it (what the other executors reach it by). LightGBM
    finds its own rank by matching `machines` against its local IPs and port: names won't do."""
    host = context.getTaskInfos()[context.partitionId()].address.rsplit(":", 1)[0]
    return socket.gethostbyname(host.strip("[]"))


def _train_partition(batches, *, features: list[str], label: str, params: dict, rounds: int,
                     categorical: list[int], threads: int, time_out_min: int):
    import lightgbm as lgb
    import pandas as pd
    from pyspark import BarrierTaskContext

    context = BarrierTaskContext.get()
    frames = list(batches)
    frame = pd.concat(frames) if frames else pd.DataFrame(columns=[*features, label])
    port = free_port()
    peers = context.allGather(f"{_address(context)}:{port}")
    rank = context.partitionId()
    if len(frame) == 0:
        # LightGBM cannot build an empty dataset: every task needs rows.
        raise RuntimeError(f"LightGBM data-parallel task {rank} got no rows; use fewer workers")
    network = {"tree_learner": "data", "num_machines": len(peers), "machines": ",".join(peers),
               "local_listen_port": port, "time_out": time_out_min, "num_threads": threads,
               "pre_partition": True}
    data = lgb.Dataset(frame[features].to_numpy(np.float64), frame[label].to_numpy(np.float64),
                       categorical_feature=categorical or "auto", free_raw_data=True)
    booster = lgb.train({**params, **network}, data, num_boost_round=rounds)
    yield pd.DataFrame({"rank": [rank], "model": [booster.model_to_string() if rank == 0 else None],
                        "rows": [len(frame)]})


def train(frame, *, features: list[str], label: str, task: str, params: dict, num_workers: int,
          categorical: list[int] = (), n_classes: int | None = None, seed: int = 0,
          threads_per_task: int = 1, time_out_min: int = TIME_OUT_MIN):
    """Train one LightGBM model on `frame` (feature columns + label) across `num_workers` barrier
    tasks; returns the `lightgbm.Booster`. Raises TuningError naming the cause on failure."""
    import functools

    import lightgbm as lgb

    clash = sorted(set(params) & set(NETWORK_PARAMS))
    if clash:
        raise TuningError(f"lightgbm data-parallel: parameter {clash[0]!r} is set by the trainer")
    lgb_args, rounds = lgb_params(task, params, n_classes, seed)
    run = functools.partial(_train_partition, features=list(features), label=label, params=lgb_args,
                            rounds=rounds, categorical=list(categorical), threads=threads_per_task,
                            time_out_min=time_out_min)
    parts = frame.select(*features, label).repartition(num_workers)
    for attempt in range(1, BIND_ATTEMPTS + 1):
        try:
            rows = parts.mapInPandas(run, schema=OUTPUT_SCHEMA, barrier=True).collect()
            break
        except Exception as exc:   # Py4J / Spark errors carry the task's Python traceback deep inside
            if BIND_FAILED in str(exc) and attempt < BIND_ATTEMPTS:
                continue           # a picked port was taken before LightGBM bound it: new ports
            raise TuningError(f"lightgbm data-parallel training on {num_workers} barrier tasks failed: "
                              f"{job_failure(exc)}") from exc
    model = next((r["model"] for r in rows if r["rank"] == 0), None)
    if model is None:
        raise TuningError(f"lightgbm data-parallel training returned no model from rank 0 "
                          f"({len(rows)} of {num_workers} tasks answered)")
    return lgb.Booster(model_str=model)

