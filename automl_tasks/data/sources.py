"""Reading the spec's data sources into Spark DataFrames (the I/O edge of the data layer)."""

from __future__ import annotations

import re
from pathlib import Path

from automl_tasks.errors import DataError, SpecError

MONTH_COL = "__month"   # YYYY-MM of each row, derived from the timestamp or month column
ALL_ROWS = "all"        # the one "month" of data without a time column (a PoC's table)


def read_source(spark, source: str, fmt: str | None = None):
    """A parquet file or folder, a CSV file or folder, or `table:db.name`."""
    from pyspark.errors import AnalysisException

    if source.startswith("table:"):
        name = source.removeprefix("table:")
        try:
            return spark.table(name)
        except AnalysisException as exc:
            raise DataError(f"cannot read table {name!r}: {str(exc).splitlines()[0]}") from None
    if "://" not in source and not Path(source).exists():
        raise DataError(f"data source {source} does not exist")
    fmt = fmt or _infer_format(source)
    try:
        if fmt == "csv":
            df = spark.read.csv(source, header=True, inferSchema=True)
        else:
            df = spark.read.option("mergeSchema", "true").parquet(source)
        df.schema  # noqa: B018 - forces schema resolution so unreadable files fail here
    except AnalysisException as exc:
        raise DataError(f"cannot read {fmt} source {source}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # corrupt files surface as JVM errors of many kinds
        first = _jvm_message(exc)
        hint = ""
        if "TIMESTAMP(NANOS" in str(exc):
            hint = ("; Spark reads timestamps in micro- or milliseconds: write them so (pandas: "
                    "to_parquet(..., coerce_timestamps='us', allow_truncated_timestamps=True))")
        raise DataError(f"cannot read {fmt} source {source}: {first[:300]}{hint}") from None
    if not df.columns:
        raise DataError(f"data source {source} has no columns")
    return df


def _jvm_message(exc: Exception) -> str:
    """The error's own first line, not py4j's "An error occurred while calling o123.parquet." header."""
    lines = [line for line in str(exc).strip().splitlines()
             if line.strip() and not line.startswith("An error occurred while calling")]
    return re.sub(r"^:?\s*[\w.$]+(Exception|Error): ", "", lines[0]) if lines else type(exc).__name__


def _infer_format(source: str) -> str:
    path = Path(source)
    if path.suffix.lower() in (".csv", ".txt"):
        return "csv"
    if path.is_dir():
        names = [p.suffix.lower() for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))]
        if names and all(s == ".csv" for s in names):
            return "csv"
    return "parquet"


def with_month(df, timestamp: str | None, month_column: str | None):
    """Add MONTH_COL; bad time values are an error naming the column and a value.

    Data without a time column (neither given) is one window: every row's month is ALL_ROWS.
    """
    from pyspark.sql import functions as F

    if not timestamp and not month_column:
        return df.withColumn(MONTH_COL, F.lit(ALL_ROWS))
    column = timestamp or month_column
    if column not in df.columns:
        raise DataError(f"time column {column!r} is not in the data; columns: {', '.join(df.columns)}")
    if timestamp:
        month = F.date_format(F.col(column).try_cast("timestamp"), "yyyy-MM")
    else:
        raw = F.trim(F.col(column).cast("string"))
        month = F.when(raw.rlike(r"^\d{4}-(0[1-9]|1[0-2])$"), raw)
    bad = df.where(F.col(column).isNotNull() & month.isNull()).select(column).limit(3).collect()
    if bad:
        shown = ", ".join(repr(r[0]) for r in bad)
        want = "a timestamp" if timestamp else "YYYY-MM"
        raise DataError(f"column {column!r} has values that are not {want}: {shown}")
    nulls = df.where(F.col(column).isNull()).limit(1).count()
    if nulls:
        raise DataError(f"column {column!r} has null values: every row needs a time to fall in a month")
    return df.withColumn(MONTH_COL, month)


def join_tables(spark, df, joins, report: list | None = None):
    """Left-join extra tables on their keys; a join that multiplies rows is an error.

    A join with `as_of` is point-in-time: each row takes the table's latest row for its
    keys whose `as_of` is at or before the row's own time (`join.timestamp`, by default
    `data.timestamp`), never a later one; a table row with a null `as_of` never matches,
    and the `as_of` column itself is not brought in. `report`, when given, receives one
    dict per table: source, keys, point_in_time, rows, matched, match_rate (one Spark job
    per table, so only callers that show it ask).
    """
    from pyspark.sql import functions as F

    for join in joins:
        keys = [join.on] if isinstance(join.on, str) else list(join.on)
        other = read_source(spark, join.source)
        for key in keys:
            for name, frame in (("data", df), (join.source, other)):
                if key not in frame.columns:
                    raise DataError(f"join key {key!r} is not in {name}")
        unique = keys + ([join.as_of] if join.as_of else [])
        if join.as_of:
            _check_as_of(df, other, join)
        dupes = other.groupBy(*unique).count().where("count > 1").limit(1).collect()
        if dupes:
            raise DataError(f"join with {join.source} would multiply rows: "
                            f"{'key and as_of' if join.as_of else 'key'} "
                            f"{dict((k, dupes[0][k]) for k in unique)} appears {dupes[0]['count']} times")
        values = [c for c in other.columns if c not in unique]
        clash = sorted(set(values) & set(df.columns))
        if clash:
            raise DataError(f"join with {join.source} brings column {clash[0]!r}, which the data has already")
        on = keys
        if join.as_of:
            df = df.withColumn("__t", F.col(join.timestamp).try_cast("timestamp"))
            other, on = _point_in_time(df, other, keys, join.as_of), keys + ["__t"]
        if report is not None:
            other = other.withColumn("__matched", F.lit(1))
        df = df.join(other, on=on, how="left").drop("__t")
        if report is not None:
            row = df.agg(F.count(F.lit(1)).alias("rows"), F.count("__matched").alias("matched")).first()
            report.append({"source": join.source, "keys": keys, "point_in_time": bool(join.as_of),
                           "as_of": join.as_of, "rows": row["rows"], "matched": row["matched"],
                           "match_rate": row["matched"] / row["rows"] if row["rows"] else None})
            df = df.drop("__matched")
    return df


def _check_as_of(df, other, join) -> None:
    from pyspark.sql import functions as F

    if not join.timestamp:
        raise SpecError(f"data.join {join.source}: as_of {join.as_of!r} needs the data's time column "
                        "(data.timestamp or join.timestamp) to compare with")
    if join.as_of not in other.columns:
        raise DataError(f"as_of column {join.as_of!r} is not in {join.source}")
    if join.timestamp not in df.columns:
        raise DataError(f"time column {join.timestamp!r} (compared with {join.source}'s as_of) "
                        "is not in the data")
    column = F.col(join.as_of)
    example = other.where(column.isNotNull() & column.try_cast("timestamp").isNull()).select(column).limit(1).collect()
    if example:
        raise DataError(f"as_of column {join.as_of!r} of {join.source} has a value that is not a "
                        f"timestamp: {example[0][0]!r}")


def _point_in_time(df, other, keys: list[str], as_of: str):
    """Per distinct (keys, `__t`) of the data: the table's latest row with as_of <= `__t`.

    Keyed on (keys, `__t`), so the caller's left join on them brings one row or nulls,
    and rows of one key at different times each get the value known at their own time.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    wanted = df.select(*keys, "__t").distinct()
    history = other.withColumn("__as_of", F.col(as_of).try_cast("timestamp")).drop(as_of)
    history = history.where(F.col("__as_of").isNotNull())
    candidates = wanted.join(history, on=keys, how="inner").where(F.col("__as_of") <= F.col("__t"))
    latest = Window.partitionBy(*keys, "__t").orderBy(F.col("__as_of").desc())
    picked = (candidates.withColumn("__rank", F.row_number().over(latest))
              .where(F.col("__rank") == 1).drop("__rank", "__as_of"))
    return picked
