"""The algorithm registry: every algorithm the project tunes, one `Algorithm` each (base.py).

The spec, the PoC, the DAG forms and the trainers read this list; adding an algorithm is a
family module and a line here. Light to import (DAG files read `names()`): the family modules
import their libraries only inside their functions.
"""

from __future__ import annotations

from automl_tasks.errors import SpecError
from automl_tasks.models.algorithms.base import Algorithm
from automl_tasks.models.algorithms.hist_gbm import HIST_GBM
from automl_tasks.models.algorithms.lightgbm import LIGHTGBM
from automl_tasks.models.algorithms.spark_ml import SPARK_GBT, SPARK_LINEAR, SPARK_RANDOM_FOREST
from automl_tasks.models.algorithms.xgboost import XGBOOST

# In this order the PoC tunes them: the ones that fit in Spark tasks first, the slow
# driver-fitted Spark ML ones after them.
REGISTERED: tuple[Algorithm, ...] = (XGBOOST, LIGHTGBM, HIST_GBM, SPARK_LINEAR, SPARK_RANDOM_FOREST, SPARK_GBT)
_BY_NAME = {a.name: a for a in REGISTERED}


def names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def names_for(task: str, *, poc_default: bool = False) -> tuple[str, ...]:
    """The algorithms that fit `task` (only the PoC's default set, with `poc_default`)."""
    return tuple(a.name for a in REGISTERED if a.fits(task) and (a.poc_default or not poc_default))


def connect_refusal(names, *, data_parallel: bool = False) -> str | None:
    """Why these algorithms cannot be tuned through Spark Connect (SPARK_REMOTE), or None.
    `data_parallel`: on the data-parallel training path (its trainers have limits of their own)."""
    for name in names:
        algorithm = get(name)
        trainer = algorithm.data_parallel if data_parallel else None
        why, fix = algorithm.connect_refusal, "leave it out"
        if not why and trainer is not None and trainer.connect_refusal:
            why, fix = f"its data-parallel trainer: {trainer.connect_refusal}", "use `training: per_trial`"
        if why:
            return (f"algorithm {name!r} cannot run through Spark Connect (SPARK_REMOTE): {why}; {fix}, "
                    "or run with SPARK_MASTER set and SPARK_REMOTE unset (docs/spark-connect.md)")
    return None


def data_parallel_names() -> tuple[str, ...]:
    """The algorithms with a data-parallel path (their family's `DataParallel`)."""
    return tuple(a.name for a in REGISTERED if a.data_parallel is not None)


def get(name: str) -> Algorithm:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise SpecError(f"unknown algorithm {name!r}; known: {', '.join(names())}") from None
