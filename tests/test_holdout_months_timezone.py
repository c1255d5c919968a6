"""window.holdout_months (the holdout is the months ending at --month) and data.timezone (the
zone whose calendar months timestamps fall in), on real local Spark."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from automl_tasks.data.prepare import load_frame, prepare
from automl_tasks.data.sources import MONTH_COL, with_month
from automl_tasks.errors import SpecError
from automl_tasks.pipelines.branches import _check_comparable
from automl_tasks.pipelines.holdout import holdout_rows
from automl_tasks.spec import load_spec, parse_spec
from automl_tasks.tuning.training_path import Decision
from tests.support.specs import spec_dict, write_spec

MONTH = "2017-12"


def _spec(tmp_path, demo_dir, holdout_months: int, **override):
    return load_spec(write_spec(tmp_path, filename=f"holdout{holdout_months}.yaml",
                                data={"source": str(demo_dir / "loans")},
                                window={"train_months": 4, "holdout_months": holdout_months}, **override))


def _month_rows(demo_dir) -> dict[str, int]:
    return pd.read_parquet(demo_dir / "loans", columns=["month"])["month"].value_counts().to_dict()


def test_holdout_of_two_months_is_one_holdout_and_training_precedes_it(spark, demo_dir, tmp_path):
    rows = _month_rows(demo_dir)
    one = prepare(spark, _spec(tmp_path, demo_dir, 1), MONTH)
    two = prepare(spark, _spec(tmp_path, demo_dir, 2), MONTH)

    # One month: the month's rows, trained on the four months before it.
    assert one.window.holdout == MONTH and one.window.holdout_months == (MONTH,)
    assert one.window.train == ("2017-08", "2017-09", "2017-10", "2017-11")
    assert set(one.holdout.months) == {MONTH} and len(one.holdout.y) == rows[MONTH]

    # Two months: 2017-11 and 2017-12 held out together; training ends before 2017-11.
    assert two.window.holdout == MONTH and two.window.holdout_months == ("2017-11", MONTH)
    assert two.window.train == ("2017-07", "2017-08", "2017-09", "2017-10")
    assert sorted(set(two.holdout.months)) == ["2017-11", MONTH]
    assert len(two.holdout.y) == rows["2017-11"] + rows[MONTH]
    assert set(two.row_counts) == {"2017-07", "2017-08", "2017-09", "2017-10", "2017-11", MONTH}
    assert two.fingerprint != one.fingerprint        # other months: other data

    # The monthly job's holdout (every model scores it) is the same rows.
    frame, y, _ = holdout_rows(load_frame(spark, two.spec), two.spec, MONTH, two.classes)
    try:
        assert sorted(r[0] for r in frame.select(MONTH_COL).distinct().collect()) == ["2017-11", MONTH]
        assert np.array_equal(np.bincount(y), np.bincount(two.holdout.y))
    finally:
        frame.unpersist()


def test_data_parallel_holdout_frame_holds_every_holdout_month(spark, demo_dir, tmp_path):
    spec = _spec(tmp_path, demo_dir, 2)
    decision = Decision("data_parallel", "data_parallel", "set in the test", 0, 0, 0)
    prepared = prepare(spark, spec, MONTH, decide=lambda rows, features: decision)
    held = prepared.frames.holdout
    assert sorted(r[0] for r in held.select("month").distinct().collect()) == ["2017-11", MONTH]
    assert held.count() == sum(prepared.row_counts[m] for m in ("2017-11", MONTH))


def test_branches_must_hold_out_the_same_months():
    specs = [parse_spec(yaml.safe_dump(spec_dict(window={"holdout_months": n}))) for n in (2, 1)]
    with pytest.raises(SpecError, match=r"window.holdout_months is 1 at master but 2 at develop"):
        _check_comparable(specs, ("develop", "master"), "specs/x.yaml")


def test_a_timestamp_falls_in_the_month_of_its_instant_in_data_timezone(spark, tmp_path):
    # 23:30 in New York on Jan 31 is 04:30 UTC on Feb 1; a timestamp without an offset is UTC.
    df = spark.createDataFrame([(0, "2018-01-31T23:30:00-05:00"), (1, "2018-02-01T03:00:00"),
                                (2, "2018-02-15T12:00:00Z")], ["row", "ts"])

    def months(zone):
        return [r[MONTH_COL] for r in with_month(df, "ts", None, zone).orderBy("row").collect()]

    assert months("UTC") == ["2018-02", "2018-02", "2018-02"]
    assert months("America/New_York") == ["2018-01", "2018-01", "2018-02"]

    # The spec's data.timezone reaches the data layer.
    path = tmp_path / "rows.csv"
    path.write_text("ts,y,x\n2018-01-31T23:30:00-05:00,1,0.5\n")
    spec = parse_spec(yaml.safe_dump(spec_dict(data={"source": str(path), "timestamp": "ts", "label": "y",
                                                     "id": None, "timezone": "America/New_York"})))
    assert [r[MONTH_COL] for r in load_frame(spark, spec).collect()] == ["2018-01"]
    utc = spec.model_copy(update={"data": spec.data.model_copy(update={"timezone": "UTC"})})
    assert [r[MONTH_COL] for r in load_frame(spark, utc).collect()] == ["2018-02"]
