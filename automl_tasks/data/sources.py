"""Reading the spec's data sources into Spark DataFrames (the I/O edge of the data layer)."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from automl_tasks.data import months
from automl_tasks.errors import DataError, SpecError
from automl_tasks.spec import CsvSpec

MONTH_COL = "__month"   # YYYY-MM of each row, derived from the timestamp or month column
ALL_ROWS = "all"        # the one "month" of data without a time column (a PoC's table)


def read_source(spark, source: str, fmt: str | None = None, csv: CsvSpec | None = None):
    """A parquet file or folder, a CSV file or folder (read as `csv` says: the main source
    passes `data.csv`; joined and validation sources use the defaults), or `table:db.name`."""
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
    csv = csv or CsvSpec()
    charset = _spark_charset(csv.encoding) if fmt == "csv" else None
    try:
        if fmt == "csv":
            df = spark.read.csv(source, header=csv.header, inferSchema=True, sep=csv.sep, quote=csv.quote,
                                encoding=charset)
        else:
            df = spark.read.option("mergeSchema", "true").parquet(source)
        df.schema  # noqa: B018 - forces schema resolution so unreadable files fail here
    except AnalysisException as exc:
        raise DataError(f"cannot read {fmt} source {source}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # corrupt files surface as JVM errors of many kinds
        conflict = _schema_conflict(source) if "CANNOT_MERGE_SCHEMAS" in str(exc) else None
        if conflict:
            raise DataError(f"cannot read {fmt} source {source}: {conflict}") from None
        first = _jvm_message(exc)
        hint = ""
        if "TIMESTAMP(NANOS" in str(exc):
            hint = ("; Spark reads timestamps in micro- or milliseconds: write them so (pandas: "
                    "to_parquet(..., coerce_timestamps='us', allow_truncated_timestamps=True))")
        raise DataError(f"cannot read {fmt} source {source}: {first[:300]}{hint}") from None
    if not df.columns:
        raise DataError(f"data source {source} has no columns")
    if fmt == "csv":
        _check_csv_header(source, df.columns, csv)
    return df


# The charsets Spark 4 reads CSV in (other names fail unless spark.sql.legacy.javaCharsets is set),
# keyed by Python's canonical codec name, so `latin-1`, `latin1`, `ISO-8859-1` and `utf8` all work.
_SPARK_CHARSETS = {"utf-8": "utf-8", "iso8859-1": "iso-8859-1", "ascii": "us-ascii", "utf-16": "utf-16",
                   "utf-16-be": "utf-16be", "utf-16-le": "utf-16le", "utf-32": "utf-32"}


def _spark_charset(encoding: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        name = None
    if name not in _SPARK_CHARSETS:
        raise SpecError(f"data.csv.encoding {encoding!r} is not one Spark reads CSV in; use one of "
                        "utf-8, iso-8859-1 (latin-1), us-ascii, utf-16, utf-16be, utf-16le, utf-32, "
                        "or re-encode the file as UTF-8")
    return _SPARK_CHARSETS[name]


def _check_csv_header(source: str, columns: list[str], csv: CsvSpec) -> None:
    """A wrong separator or encoding reads without error: catch the two signs the header shows."""
    if len(columns) == 1:
        other = next((s for s in (";", ",", "\t", "|") if s != csv.sep and s in columns[0]), None)
        if other:
            raise DataError(f"CSV source {source} reads as one column {columns[0][:60]!r} with "
                            f"sep {csv.sep!r}; set data.csv.sep: {other!r} if that is its separator")
    garbled = next((c for c in columns if "\ufffd" in c), None)
    if garbled:
        raise DataError(f"CSV source {source} is not {csv.encoding}: its header has {garbled!r} "
                        "(undecodable bytes); set data.csv.encoding, e.g. latin-1")


def _schema_conflict(source: str) -> str | None:
    """Which column has which type in which partitions of a local parquet folder, from each
    file's footer (Spark's CANNOT_MERGE_SCHEMAS names neither); None when that cannot be told."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(source)
    if "://" in source or not root.is_dir():
        return None
    # Spark skips names starting with "_" or "." (_SUCCESS, .crc); partition folders have "=".
    files = sorted(p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith(("_", ".")) and "=" not in part for part in p.relative_to(root).parts))
    types: dict[str, dict[str, list[Path]]] = {}     # column -> parquet type -> files
    try:
        for path in files:
            for column in pq.read_schema(path):
                types.setdefault(column.name, {}).setdefault(str(column.type), []).append(path)
    except (OSError, pa.ArrowException):
        return None    # a footer pyarrow cannot read: the caller raises Spark's own message
    mixed = [c for c, by_type in types.items() if len(by_type) > 1]
    if not mixed:
        return None
    labels = sorted({_partition(root, p) for p in files})
    # The most common type first; each other type with one of its files, to find and rewrite.
    groups = sorted(types[mixed[0]].items(), key=lambda item: (-len(item[1]), str(item[1][0])))
    usual, odd = groups[0][0], groups[1:]
    where = [{_partition(root, p) for p in paths} for _, paths in groups]
    parts = [f"{kind} in {_spans(labels, found)} ({paths[0]})" for (kind, paths), found in zip(odd, where[1:])]
    more = f" (mixed too: {', '.join(map(repr, mixed[1:4]))})" if len(mixed) > 1 else ""
    partition = "that partition" if len(set().union(*where[1:])) == 1 else "those partitions"
    return (f"column {mixed[0]!r} is {usual} in {_spans(labels, where[0])} "
            f"but {', '.join(parts)}{more}; rewrite {partition} with one type")


def _partition(root: Path, path: Path) -> str:
    """`month=2018-10` (the hive-style folders a file is in), else the file's own relative path."""
    rel = path.relative_to(root)
    keys = [part for part in rel.parts[:-1] if "=" in part]
    return "/".join(keys) if keys else str(rel)


def _spans(ordered: list[str], chosen: set[str]) -> str:
    """`a..c, e`: runs of consecutive partitions (in `ordered`) shown as their ends."""
    runs: list[list[str]] = []
    for i, label in enumerate(ordered):
        if label in chosen:
            if runs and ordered[i - 1] == runs[-1][-1]:
                runs[-1].append(label)
            else:
                runs.append([label])

    def span(first: str, last: str) -> str:   # month=2018-01..2018-09: the key once
        cut = first.rfind("=") + 1
        return f"{first}..{last[cut:] if last[:cut] == first[:cut] else last}"

    shown = [run[0] if len(run) == 1 else span(run[0], run[-1]) for run in runs[:3]]
    return ", ".join(shown) + (f", … ({len(chosen)} in all)" if len(runs) > 3 else "")


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


def with_month(df, timestamp: str | None, month_column: str | None, timezone: str = "UTC"):
    """Add MONTH_COL; bad time values are an error naming the column and a value.

    A timestamp is an instant (one without an offset is read in the session's zone, UTC:
    automl_tasks/spark.py); its month is the calendar month of that instant in `timezone`.
    Data without a time column (neither given) is one window: every row's month is ALL_ROWS.
    """
    from pyspark.sql import functions as F

    if not timestamp and not month_column:
        return df.withColumn(MONTH_COL, F.lit(ALL_ROWS))
    column = timestamp or month_column
    if column not in df.columns:
        raise DataError(f"time column {column!r} is not in the data; columns: {', '.join(df.columns)}")
    if timestamp:
        # from_utc_timestamp shifts the instant to `timezone`'s wall clock, which date_format
        # then prints as is because the session's zone is UTC.
        month = F.date_format(F.from_utc_timestamp(F.col(column).try_cast("timestamp"), timezone), "yyyy-MM")
    else:
        raw = F.trim(F.col(column).cast("string"))
        month = F.when(raw.rlike(months.PATTERN), raw)
    # One scan on clean data; only a failing check looks again, to name bad values before nulls.
    if df.where(F.col(column).isNull() | month.isNull()).limit(1).count():
        bad = df.where(F.col(column).isNotNull() & month.isNull()).select(column).limit(3).collect()
        if bad:
            shown = ", ".join(repr(r[0]) for r in bad)
            want = "a timestamp" if timestamp else "YYYY-MM"
            raise DataError(f"column {column!r} has values that are not {want}: {shown}")
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
