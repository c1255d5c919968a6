"""The study's plan: the model to fit, candidate tables joined, candidates resolved and checked.

Every check here runs before the first fit and the first MLflow call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from automl_tasks.errors import DataError, SpecError
from automl_tasks.spec import JoinSpec, ModelSpec


@dataclass
class Plan:
    """The study after its checks: what to fit, and candidates already settled by a check."""
    base: list[str]
    candidates: list[str]            # to fit
    settled: dict[str, str]          # candidate -> reason it is rejected without a fit
    tables: list[JoinSpec]
    table_report: list[dict] = field(default_factory=list)


def join_spec(spec: ModelSpec, raw: dict) -> JoinSpec:
    """A candidate table given as a dict; as_of compares with the data's timestamp by default."""
    join = JoinSpec.model_validate(raw)
    if join.as_of and not join.timestamp:
        if not spec.data.timestamp:
            raise SpecError(f"table {join.source}: as_of needs data.timestamp in the spec")
        join.timestamp = spec.data.timestamp
    return join


def table_from_path(spark, spec: ModelSpec, source: str, on: str, as_of: str | None = None) -> JoinSpec:
    """A --table/--on pair: point-in-time when `as_of` is given or the table has an `as_of` column."""
    from automl_tasks.data.sources import read_source

    keys = [k.strip() for k in on.split(",") if k.strip()]
    if not keys:
        raise SpecError(f"table {source}: --on names no key column")
    if ":" not in source:             # a local path: one spelling per file, so a re-run is recognised
        source = str(Path(source).resolve())
    if as_of is None and "as_of" in read_source(spark, source).columns and spec.data.timestamp:
        as_of = "as_of"
    return join_spec(spec, {"source": source, "on": keys[0] if len(keys) == 1 else keys, "as_of": as_of})


def request(spark, spec: ModelSpec, *, candidates: str | None, table: str | None, on: str | None,
            as_of: str | None = None) -> tuple[list[str] | None, list[JoinSpec] | None]:
    """A study as a person asks for it (CLI flags, DAG form): comma lists and one optional table."""
    if bool(table) != bool(on):
        raise SpecError("table and on go together: the candidate table and its join key(s)")
    names = [c.strip() for c in (candidates or "").split(",") if c.strip()] or None
    return names, [table_from_path(spark, spec, table, on, as_of)] if table else None


# --- model: the champion's, else the spec's ---------------------------------------------

def model_config(spec: ModelSpec, progress) -> tuple[str, dict, str, list[str] | None]:
    """(algorithm, params, where they came from, champion's features by gain or None)."""
    from automl_tasks.models import adapters
    from automl_tasks.registry import promotion

    version = promotion.current_champion(spec.name)
    if version is not None:
        from automl_tasks.registry.champion import load_champion

        version, champion = load_champion(spec.name)
        algorithm, names = champion.meta["algorithm"], champion.meta["feature_names"]
        gains = adapters.importance(champion.model, algorithm, names)
        by_gain = sorted(names, key=lambda f: -gains[f])
        progress(f"{spec.name}: using champion v{version}'s {algorithm} params")
        return algorithm, dict(champion.params), f"champion v{version}", by_gain
    algorithm = next(iter(spec.algorithms))
    params = dict(spec.algorithms[algorithm].fixed)
    progress(f"{spec.name}: no champion; using {algorithm} with the spec's fixed params {params or '(defaults)'}")
    return algorithm, params, "spec", None


# --- plan: candidates, tables, checks ---------------------------------------------------

def make_plan(spark, spec: ModelSpec, month, candidates, tables, direction, champion_features, progress) -> Plan:
    """Resolve base and candidates on the joined data; settle the ones a check rejects."""
    from automl_tasks.data.prepare import load_frame, resolve_columns
    from automl_tasks.data.sources import MONTH_COL, join_tables, read_source

    data = spec.data
    frame = load_frame(spark, spec)
    own_columns = dict(frame.dtypes)
    report: list[dict] = []
    frame = join_tables(spark, frame, tables, report)
    for entry in report:
        how = (f"point-in-time on {entry['as_of']} <= {data.timestamp}: never a value from after the row's time"
               if entry["point_in_time"] else "plain left join")
        progress(f"{spec.name}: table {entry['source']} joined on {', '.join(entry['keys'])} ({how}); "
                 f"match rate {entry['match_rate']:.1%} ({entry['matched']}/{entry['rows']} rows)")
    dtypes = dict(frame.dtypes)

    reserved = {data.label, data.timestamp, data.month_column, data.id, MONTH_COL} - {None}
    table_columns = []
    for join in tables:
        keys = [join.on] if isinstance(join.on, str) else list(join.on)
        table_columns += [c for c in read_source(spark, join.source).columns
                          if c not in keys and c != join.as_of and c not in table_columns]
    if candidates is None:
        candidates = list(spec.ablation.candidates) or (table_columns if direction == "add" else None)
    if direction == "add" and not candidates:
        raise SpecError("no candidate features: pass candidates (--candidates), a candidate table "
                        "(--table/--on), or list ablation.candidates / ablation.tables in the spec")
    if candidates is not None and len(set(candidates)) != len(candidates):
        raise SpecError(f"candidates list a feature twice: {', '.join(candidates)}")

    if spec.features is None and direction == "add":   # all columns but the candidates
        base, _ = resolve_columns(spec, {c: t for c, t in own_columns.items() if c not in set(candidates)})
    else:
        base, _ = resolve_columns(spec, own_columns)
    if champion_features is not None and spec.ablation.top_k:
        base = [f for f in champion_features if f in dtypes][:spec.ablation.top_k]
        progress(f"{spec.name}: base = the champion's top {len(base)} features by gain: {', '.join(base)}")

    if direction == "drop":
        candidates = list(base) if candidates is None else candidates
        unknown = [c for c in candidates if c not in base]
        if unknown:
            raise SpecError(f"drop candidate {unknown[0]!r} is not a base feature ({', '.join(base)})")
        if len(base) < 2:
            raise SpecError("drop-one needs at least two base features")
        return Plan(base, list(candidates), {}, tables, report)

    for c in candidates:
        if c in reserved:
            raise SpecError(f"candidate {c!r} is the label, time or id column")
        if c in base:
            raise SpecError(f"candidate {c!r} is already a base feature")
        if c not in dtypes:
            where = f" or the candidate tables ({', '.join(t.source for t in tables)})" if tables else ""
            raise DataError(f"candidate {c!r} is not a column of the data{where}; "
                            f"columns: {', '.join(c2 for c2 in dtypes if c2 != MONTH_COL)}")
    settled = _check_candidates(frame, spec, month, base, candidates, dtypes)
    for c, reason in settled.items():
        progress(f"{spec.name}: candidate {c!r} rejected without a fit: {reason}")
    return Plan(base, [c for c in candidates if c not in settled], settled, tables, report)


def _check_candidates(frame, spec: ModelSpec, month, base, candidates, dtypes) -> dict[str, str]:
    """All-null, constant, or identical to a base feature, over the training window's rows."""
    from pyspark.sql import functions as F

    from automl_tasks.data.sources import MONTH_COL
    from automl_tasks.data.windows import select_window

    counts = {r[0]: r[1] for r in frame.groupBy(MONTH_COL).count().collect()}
    window = select_window(counts, month, spec.window.train_months,
                           holdout_count=spec.window.holdout_months)
    rows = frame.where(F.col(MONTH_COL).isin(list(window.train)))
    aggs = []
    for i, c in enumerate(candidates):
        aggs += [F.count(F.col(c)).alias(f"n{i}"), F.countDistinct(F.col(c)).alias(f"d{i}")]
        for j, b in enumerate(base):
            if dtypes[b] == dtypes[c] or {dtypes[b], dtypes[c]} <= {"double", "float", "int", "bigint"}:
                same = F.col(c).cast("double").eqNullSafe(F.col(b).cast("double")) \
                    if dtypes[c] != "string" else F.col(c).eqNullSafe(F.col(b))
                aggs.append(F.sum((~same).cast("long")).alias(f"x{i}_{j}"))
    row = rows.agg(*aggs).first().asDict()
    months = f"{window.train[0]} to {window.train[-1]}"
    settled = {}
    for i, c in enumerate(candidates):
        if row[f"n{i}"] == 0:
            settled[c] = f"null in every row of the training window ({months})"
        elif row[f"d{i}"] <= 1:
            settled[c] = f"constant over the training window ({months})"
        else:
            twin = next((b for j, b in enumerate(base) if row.get(f"x{i}_{j}") == 0), None)
            if twin is not None:
                settled[c] = f"identical to base feature {twin!r} in every row of the window"
    return settled


def study_spec(spec: ModelSpec, plan: Plan, direction: str) -> ModelSpec:
    """The spec the study prepares: base + candidates as features, candidate tables joined."""
    features = list(plan.base) + ([c for c in plan.candidates] if direction == "add" else [])
    categorical = spec.categorical
    if categorical is not None:
        categorical = [c for c in categorical if c in features]
    data = spec.data.model_copy(update={"join": [*spec.data.join, *plan.tables]})
    # impute none: both libraries route missing values natively, and the leakage probe can
    # score a candidate on the rows where it is observed (a table matching 95% of rows would
    # otherwise cap a perfectly leaky column's single-feature AUC near 0.95).
    study = spec.model_copy(update={"features": features, "categorical": categorical, "data": data,
                                    "impute": "none"})
    study.origin = spec.origin
    return study
