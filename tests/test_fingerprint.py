"""The data fingerprint a month's steps compare (prepare's row hashes), on real local Spark.

`prepare` caches only the columns it uses, but the fingerprint must still cover every source
column of the months it reads, nothing else, and keep its definition across versions (a month
checked by an older version is not to look like changed data).
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from automl_tasks.data.prepare import load_frame, prepare
from automl_tasks.data.sources import MONTH_COL
from automl_tasks.spec import load_spec
from tests.support.specs import write_spec

MONTH = "2017-12"                 # window: 2017-08..2017-11, holdout 2017-12


def _fingerprint(spark, tmp_path, loans: pd.DataFrame) -> str:
    """prepare's fingerprint of `loans`, always written to the same path (the path is part of it)."""
    loans.to_parquet(tmp_path / "loans.parquet", coerce_timestamps="us", allow_truncated_timestamps=True)
    spec = load_spec(write_spec(tmp_path, data={"source": str(tmp_path / "loans.parquet")}))
    return prepare(spark, spec, MONTH).fingerprint


def _with_grade(loans: pd.DataFrame, month: str, grade: str) -> pd.DataFrame:
    changed = loans.copy()
    changed.loc[changed.index[changed["month"] == month][0], "grade"] = grade
    return changed


def test_the_fingerprint_covers_every_column_of_the_months_read_and_no_other(spark, demo_dir, tmp_path):
    loans = pd.read_parquet(demo_dir / "loans")
    assert "grade" in loans and "grade" not in load_spec(write_spec(tmp_path)).features
    fingerprint = _fingerprint(spark, tmp_path, loans)

    # `grade` is neither a feature nor the label: a change in a window month still counts...
    assert _fingerprint(spark, tmp_path, _with_grade(loans, "2017-09", "Z")) != fingerprint
    # ...and one in a month the window does not read does not.
    assert _fingerprint(spark, tmp_path, _with_grade(loans, "2017-02", "Z")) == fingerprint

    # The definition (per month: rows and the sum of xxhash64 of every source column) is unchanged.
    from pyspark.sql import functions as F

    loans.to_parquet(tmp_path / "loans.parquet", coerce_timestamps="us", allow_truncated_timestamps=True)
    base = load_spec(tmp_path / "spec.yaml")
    frame = load_frame(spark, base)
    columns = [c for c in frame.columns if c != MONTH_COL]
    stats = {r[0]: [r[1], r[2]] for r in frame.groupBy(MONTH_COL).agg(
        F.count(F.lit(1)), F.sum(F.pmod(F.xxhash64(*columns), F.lit(2**31 - 1)))).collect()}
    months = ["2017-08", "2017-09", "2017-10", "2017-11", MONTH]
    payload = json.dumps({"source": base.data.source, "months": {m: stats[m] for m in months}}, sort_keys=True)
    assert fingerprint == hashlib.sha256(payload.encode()).hexdigest()[:16]
