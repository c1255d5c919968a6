"""The data checks `prepare` runs on a window before anything is encoded or logged.

Most come from one Spark job (`month_facts`), which also gives the fingerprint's per-month
row hashes; each check then names the column, the month and an example value.
"""

from __future__ import annotations

import logging

from automl_tasks.data.sources import MONTH_COL
from automl_tasks.data.windows import Window
from automl_tasks.errors import DataError
from automl_tasks.spec import ModelSpec

log = logging.getLogger(__name__)

ROW_HASH = "__row_hash"                      # every source column of a row, hashed (the fingerprint)


def missing_labels(spec: ModelSpec, missing: dict[str, int], counts: dict[str, int]) -> DataError:
    """The error for rows without a label in the window or holdout, with each month's share."""
    shares = ", ".join(f"{m}: {n} of {counts[m]} ({n / counts[m]:.1%})" for m, n in sorted(missing.items()))
    hint = ("; labels arrive later than the spec says: raise labels.delay_months" if spec.labels.delay_months
            else "; if they arrive months late, set labels.delay_months")
    return DataError(f"label {spec.data.label!r} is missing (null or NaN) in {sum(missing.values())} rows "
                     f"({shares}){hint}")


def bad_numbers(column: str, i: int) -> list:
    """Aggregates over a text column read as numbers: how many values are not numbers (`bad_{i}`;
    null is not such a value) and the largest of them (`ex_{i}`, the example an error names)."""
    from pyspark.sql import functions as F

    bad = F.col(column).isNotNull() & F.trim(F.col(column)).try_cast("double").isNull()
    return [F.sum(bad.cast("long")).alias(f"bad_{i}"), F.max(F.when(bad, F.col(column))).alias(f"ex_{i}")]


def month_facts(df, spec: ModelSpec, features, dtypes) -> dict[str, dict]:
    """One Spark job over the kept months (it fills `prepare`'s cache): per month the sum of
    its row hashes (the fingerprint), missing labels, and per feature the non-null
    count and, for string columns, the values that are not numbers (count and an example)."""
    from pyspark.sql import functions as F

    label = F.col(spec.data.label)
    aggs = [F.sum(ROW_HASH).alias("hash"),
            F.sum((label.isNull() | F.isnan(label.try_cast("double"))).cast("long")).alias("missing")]
    aggs += [F.count(F.col(f)).alias(f"n_{i}") for i, f in enumerate(features)]
    for i, f in enumerate(features):
        if dtypes[f] == "string":
            aggs += bad_numbers(f, i)
    return {r[MONTH_COL]: r.asDict() for r in df.groupBy(MONTH_COL).agg(*aggs).collect()}


def _summed(facts: dict[str, dict], months, key: str):
    """A fact over several months: counts add up, examples keep the largest (Spark's max)."""
    values = [facts[m][key] for m in months if facts[m].get(key) is not None]
    if key.startswith("ex_"):
        return max(values, default=None)
    return sum(values)


def check_feature_values(facts: dict[str, dict], features, categorical, spec: ModelSpec, dtypes,
                          window: Window) -> None:
    """Numbers stored as text, text in numeric columns, columns that are all null.

    The text checks cover each holdout month too: it is encoded with the window's casts, and
    text there would otherwise fail inside Spark (CAST_INVALID_INPUT). `facts`: `month_facts`.
    """
    train = list(window.train)
    for i, f in enumerate(features):
        if _summed(facts, train, f"n_{i}") == 0:
            raise DataError(f"feature {f!r} is null in every row of the window")
    for months, where in [(train, ""), *(([m], f" in month {m}") for m in window.holdout_months)]:
        for i, f in enumerate(features):
            if dtypes[f] != "string":
                continue
            bad, present = _summed(facts, months, f"bad_{i}"), _summed(facts, months, f"n_{i}")
            example = _summed(facts, months, f"ex_{i}")
            if f not in categorical and bad:
                raise DataError(f"numeric column {f!r} has {bad} non-numeric values{where} (e.g. {example!r}); "
                                "clean them or list the column in categorical")
            if f in categorical and spec.categorical is None and 0 < bad <= 0.1 * present:
                raise DataError(f"column {f!r} looks numeric but has {bad} non-numeric values{where} "
                                f"(e.g. {example!r}); clean them, or list it in categorical if it is one")


def check_duplicate_ids(df, spec: ModelSpec, window: Window) -> dict | None:
    """Ids on more than one row of a holdout month (one Spark job): a DataError, or with
    data.duplicate_ids: warn a logged warning and the counts, for the caller's record.

    A duplicated evaluated row weighs twice in the metric and its comparisons. Duplicates in
    the training window are out of scope here: they are not checked.
    """
    from pyspark.sql import functions as F

    id_col, held = spec.data.id, list(window.holdout_months)
    if not id_col or not held:
        return None
    per_month = sorted((df.where(F.col(MONTH_COL).isin(held) & F.col(id_col).isNotNull())
                        .groupBy(MONTH_COL, id_col).count().where(F.col("count") > 1)
                        .groupBy(MONTH_COL).agg(F.count(F.lit(1)).alias("ids"), F.sum("count").alias("rows"),
                                                F.min(id_col).alias("example"),
                                                F.min_by("count", id_col).alias("times"))
                        .collect()), key=lambda r: r[MONTH_COL])
    if not per_month:
        return None
    found = "; ".join(f"{r['ids']} ids on more than one row in month {r[MONTH_COL]} ({r['rows']} rows; "
                      f"e.g. {r['example']!r} on {r['times']} rows)" for r in per_month)
    if spec.data.duplicate_ids == "error":
        raise DataError(f"id column {id_col!r} has {found}; keep one row per id in the evaluated month, "
                        "or set data.duplicate_ids: warn")
    log.warning("id column %r has %s; evaluating them as they are (data.duplicate_ids: warn)", id_col, found)
    return {"ids": sum(r["ids"] for r in per_month), "rows": sum(r["rows"] for r in per_month),
            "months": [r[MONTH_COL] for r in per_month]}
