"""Batch scoring: the champion's predictions for one month of a spec's data, as a parquet partition.

`<out>/<model>/month=YYYY-MM/part-00000.parquet`: the spec's id, `score` (binary: P(class 1);
regression: the prediction) or one `proba_<class>` per class (multiclass), `prediction`,
`model_name`, `model_version`, `run_id` (the tuning run that trained the version).

The month is read as the monthly job reads its holdout (`load_frame`, the month column), labels
never: a month scores before its labels arrive. The model is the version's native export
(`native/<algorithm>/`: the booster and metadata.json a deployment's predict.py uses), encoded
with the encoding metadata.json records (`models.scoring.encode`, as every step scores), so no Spark
pipeline is loaded.
Every check runs before anything is written; the partition is replaced whole or not at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from automl_tasks import config
from automl_tasks.data.checks import bad_numbers
from automl_tasks.data.labels import class_key
from automl_tasks.data.months import Month
from automl_tasks.data.prepare import load_frame, resolve_columns
from automl_tasks.data.sources import MONTH_COL
from automl_tasks.data.windows import select_window
from automl_tasks.errors import AutomlError, DataError, SpecError
from automl_tasks.models import portable, scoring
from automl_tasks.models.scoring import NativeModel
from automl_tasks.progress import report
from automl_tasks.registry import promotion, tracking
from automl_tasks.registry.champion import source_tags
from automl_tasks.spec import ModelSpec

PART = "part-00000.parquet"


@dataclass(frozen=True)
class NativeChampion:
    name: str
    version: str
    run_id: str                # the tuning run that trained and exported it
    model: NativeModel


def load_native_champion(name: str, version: str | None = None) -> NativeChampion:
    """`name`'s champion (or `version`) as its native export; an error naming the model or version."""
    import mlflow
    from mlflow.exceptions import MlflowException

    promotion.require_model(name)
    version = str(version) if version else promotion.current_champion(name)
    if version is None:
        raise SpecError(f"model {name!r} has no champion (no version carries the alias 'champion'); "
                        "pass --version to score with a given version")
    c = tracking.client()
    known = sorted((str(mv.version) for mv in c.search_model_versions(f"name = '{name}'")), key=int)
    if version not in known:
        raise SpecError(f"model {name!r} has no version {version} (versions: {', '.join(known)})")
    tags = source_tags(name, version, f"{name} v{version} cannot be scored", SpecError)
    run_id, algorithm = tags["automl.source_run_id"], tags["automl.algorithm"]
    local = config.home() / "cache" / "runs" / run_id / algorithm    # the cache load_champion uses
    try:
        folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"native/{algorithm}",
                                                     dst_path=str(local))
        return NativeChampion(name, version, run_id, NativeModel(folder))
    except (MlflowException, OSError, ValueError, KeyError) as exc:   # missing, partial or corrupt
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise AutomlError(f"{name} v{version} cannot be loaded from run {run_id}: "
                          f"artifact native/{algorithm}/: {detail}") from None


def score_month(spec: ModelSpec, month: str, *, version: str | None = None, out: str | Path | None = None,
                spark=None, progress: Callable[[str], None] = report) -> dict:
    """Write the champion's (or `version`'s) predictions for `month`; returns what was written:
    model, version, month, rows, path, columns, run_id."""
    from pyspark.sql import functions as F

    Month.parse(month)
    if not (spec.data.timestamp or spec.data.month_column):
        raise SpecError(f"month {month} needs data.timestamp or data.month_column in the spec")
    if not spec.data.id:
        raise SpecError("scoring writes one row per id: set data.id in the spec")
    champion = load_native_champion(spec.name, version)
    if spark is None:
        from automl_tasks.spark import get_spark

        spark = get_spark()
    frame = load_frame(spark, spec)
    counts = {r[0]: r[1] for r in frame.groupBy(MONTH_COL).count().collect()}
    select_window(counts, month, train_months=0)          # the month has rows, or says which exist
    dtypes = dict(frame.dtypes)
    check_columns(spec, champion, dtypes, month)
    rows = frame.where(F.col(MONTH_COL) == month)
    _check_numbers(rows, champion.model.meta, dtypes, month)
    X, ids = scoring.encode(champion.model.meta, rows, carry=spec.data.id)
    table = predictions(X, ids, spec.data.id, champion)
    path = write_partition(table, Path(out) if out else config.predictions_dir(), spec.name, month)
    progress(f"{spec.name} {month}: scored {len(table)} rows with v{champion.version} -> {path}")
    return {"model": spec.name, "version": champion.version, "month": month, "rows": len(table),
            "path": str(path), "columns": list(table.columns), "run_id": champion.run_id}


def check_columns(spec: ModelSpec, champion: NativeChampion, dtypes: dict[str, str], month: str) -> None:
    """The data has every feature of the champion, and the spec's model is the champion's (same task
    and features; same categorical columns when the spec lists them)."""
    meta, where = champion.model.meta, f"{champion.name} v{champion.version}"
    if spec.data.id not in dtypes:
        raise DataError(f"id column {spec.data.id!r} is not in the data; columns: {', '.join(dtypes)}")
    scoring.check_can_score(meta, where, spec.task, dtypes,
                            f"the data of {month}; columns: {', '.join(c for c in dtypes if c != MONTH_COL)}")
    features = list(meta["feature_names"])
    # The label is not needed to score: present or not, it is no feature of the spec.
    ours, categorical = resolve_columns(spec, {**dtypes, spec.data.label: dtypes.get(spec.data.label, "string")})
    compared = [("features", ours, features)]
    if spec.categorical is not None:     # inferred from today's column types, it would not be the spec's word
        compared.append(("categorical columns", categorical, list(meta["categorical"])))
    for what, spec_side, champion_side in compared:
        difference = _difference(spec_side, champion_side, where)
        if difference:
            raise SpecError(f"the spec's {what} differ from the champion's: {difference}; score with the "
                            "version trained on this spec (--version) or restore the spec")


def _difference(spec_side: list[str], champion_side: list[str], where: str) -> str:
    """`the spec has 'a', <model> vN not; <model> vN has 'b', the spec not`, or "" (order is not compared:
    the champion's order is the one scored)."""
    extra = [repr(f) for f in spec_side if f not in champion_side]
    lacking = [repr(f) for f in champion_side if f not in spec_side]
    return "; ".join(([f"the spec has {', '.join(extra)}, {where} not"] if extra else [])
                     + ([f"{where} has {', '.join(lacking)}, the spec not"] if lacking else []))


def predictions(X: np.ndarray, ids: np.ndarray, id_column: str, champion: NativeChampion):
    """The output table: id, score or proba_<class>, prediction, model_name, model_version, run_id."""
    import pandas as pd

    meta = champion.model.meta
    out = champion.model.predict(X)
    table = pd.DataFrame({id_column: ids, **score_columns(meta, out)})
    if meta["task"] == "regression":
        table["prediction"] = out
    else:
        table["prediction"] = portable.label_of(meta, out) if len(out) else []
    table["model_name"], table["model_version"], table["run_id"] = champion.name, champion.version, champion.run_id
    return table


def score_columns(meta: dict, out: np.ndarray) -> dict[str, np.ndarray]:
    """A model's output as stored: `score` (binary: P(class 1); regression: the value) or one
    `proba_<class>` per class (multiclass)."""
    if meta["task"] == "regression":
        return {"score": out}
    if meta["task"] == "binary":
        return {"score": out[:, 1]}
    return {f"proba_{class_key(c)}": out[:, j] for j, c in enumerate(meta["classes"])}


def output_of(meta: dict, table) -> np.ndarray:
    """The model's output (as its predict returns it) back from the columns `score_columns` named."""
    if meta["task"] == "regression":
        return table["score"].to_numpy(dtype=np.float64)
    if meta["task"] == "binary":
        score = table["score"].to_numpy(dtype=np.float64)
        return np.column_stack([1.0 - score, score])
    return np.column_stack([table[f"proba_{class_key(c)}"].to_numpy(dtype=np.float64) for c in meta["classes"]])


def served(name: str, month: str, version: str, out: str | Path | None = None):
    """The predictions stored for `month` (pandas) when champion `version` wrote them, else None."""
    import pandas as pd

    path = Path(out or config.predictions_dir()) / name / f"month={month}" / PART
    if not path.is_file():
        return None
    table = pd.read_parquet(path)
    return table if len(table) and str(table["model_version"].iloc[0]) == str(version) else None


def _check_numbers(rows, meta: dict, dtypes: dict[str, str], month: str) -> None:
    """A numeric feature holding text is an error naming the column and a value (the encoding's cast
    to double would stop on it inside Spark without naming either). One Spark job over the text columns."""
    text = [f for f in meta["feature_names"] if f not in meta["categorical"] and dtypes[f] == "string"]
    if not text:
        return
    found = rows.agg(*[x for i, f in enumerate(text) for x in bad_numbers(f, i)]).first()
    for i, f in enumerate(text):
        if found[f"bad_{i}"]:
            raise DataError(f"numeric feature {f!r} has {found[f'bad_{i}']} non-numeric values in {month} "
                            f"(e.g. {found[f'ex_{i}']!r})")


def write_partition(table, out: Path, model: str, month: str) -> Path:
    """`<out>/<model>/month=<month>/`, replaced whole: written to a hidden folder beside it (parquet
    readers skip names starting with `.`), then swapped in. A failure leaves the old partition."""
    folder = out / model
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"month={month}"
    staged = Path(tempfile.mkdtemp(prefix=f".{final.name}.new-", dir=folder))
    try:
        table.to_parquet(staged / PART, index=False, engine="pyarrow")
        _swap(staged, final)
    finally:
        shutil.rmtree(staged, ignore_errors=True)     # gone already once swapped in
    return final


def _swap(staged: Path, final: Path) -> None:
    """Two renames (a folder cannot replace a non-empty one in one): the old partition is moved
    aside, and moved back if the new one cannot take its place."""
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}") if final.exists() else None
    if old is not None:
        os.rename(final, old)
    try:
        os.rename(staged, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def jobs_for_champion_moves(specs: list[str], moves: list[dict], out: str | Path | None = None) -> list[dict]:
    """What to score after `champion` moved (the champion asset events' extras): {spec, month} per
    moved model that has a spec in `specs`, scored with the champion of when the job runs (a later
    move then rewrites the same partition). A promotion's month is the one it was decided on; a
    rollback's event names the restored version's old month, so the newest month already written
    for the model is scored again instead (none written: nothing to replace)."""
    from automl_tasks.spec import load_spec

    by_name = {load_spec(path).name: path for path in specs}
    jobs = []
    for move in moves:
        model = move["model"]
        if model not in by_name:
            continue
        rolled_back = move.get("kind") == "rollback"
        month = latest_month(out or config.predictions_dir(), model) if rolled_back else move["month"]
        job = {"spec": by_name[model], "month": month}
        if month is not None and job not in jobs:
            jobs.append(job)
    return jobs


def latest_month(out: str | Path, model: str) -> str | None:
    """The newest `month=YYYY-MM` partition written for `model`, or None."""
    months = sorted(p.name.removeprefix("month=") for p in (Path(out) / model).glob("month=*") if p.is_dir())
    return months[-1] if months else None
