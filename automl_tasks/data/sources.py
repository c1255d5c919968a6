"""Reading the spec's data sources into Spark DataFrames (the I/O edge of the data layer)."""

from __future__ import annotations

from pathlib import Path

from automl_tasks.errors import DataError, SpecError

MONTH_COL = "__month"   # YYYY-MM of each row, derived from the timestamp or month column


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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "TIMESTAMP(NANOS" in first:
            hint = ("; Spark reads timestamps in micro- or milliseconds: write them so (pandas: "
                    "to_parquet(..., coerce_timestamps='us', allow_truncated_timestamps=True))")
        raise DataError(f"cannot read {fmt} source {source}: {first[:300]}{hint}") from None
    if not df.columns:
        raise DataError(f"data source {source} has no columns")
    return df


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
    """Add MONTH_COL; bad time values are an error naming the column and a value."""
    from pyspark.sql import functions as F

    if not timestamp and not month_column:
        raise SpecError("data.timestamp or data.month_column is needed for month windows")
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


def join_tables(spark, df, joins):
    """Left-join extra tables on their keys; a join that multiplies rows is an error."""
    for join in joins:
        if join.as_of:
            raise SpecError(f"data.join {join.source}: as_of (point-in-time) joins are not supported yet")
        keys = [join.on] if isinstance(join.on, str) else list(join.on)
        other = read_source(spark, join.source)
        for key in keys:
            for name, frame in (("data", df), (join.source, other)):
                if key not in frame.columns:
                    raise DataError(f"join key {key!r} is not in {name}")
        dupes = other.groupBy(*keys).count().where("count > 1").limit(1).collect()
        if dupes:
            raise DataError(f"join with {join.source} would multiply rows: key "
                            f"{dict((k, dupes[0][k]) for k in keys)} appears {dupes[0]['count']} times")
        clash = sorted((set(other.columns) - set(keys)) & set(df.columns))
        if clash:
            raise DataError(f"join with {join.source} brings column {clash[0]!r}, which the data has already")
        df = df.join(other, on=keys, how="left")
    return df
