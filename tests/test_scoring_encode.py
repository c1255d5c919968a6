"""`models.scoring.encode` (Spark's casts, then metadata.json's categories and fill values) and
predict.py's `portable.encode` (rows of plain Python values, as a deployment passes them) give the
matrix the fitted Spark preprocessing pipeline gives, on values that could tell them apart."""

from __future__ import annotations

import math

import numpy as np
import pytest

from automl_tasks.data.prepare import _encoding, _pipeline
from automl_tasks.errors import DataError, SpecError
from automl_tasks.models import portable, scoring
from tests.support.encoding import pipeline_matrix

FEATURES = ["amount", "count", "text_number", "region", "code", "flag", "grade"]
CATEGORICAL = ["region", "code", "flag", "grade"]
SCHEMA = ("id long, amount double, count int, text_number string, region string, code int, flag boolean, "
          "grade double")
TRAIN = [
    (1, 1.5, 3, "2.5", "north", 7, True, 1.0),
    (2, None, 4, " 4 ", "south", 12, False, 2.5),
    (3, math.nan, None, "1e3", "east", None, None, None),
    (4, -2.0, 9, None, "north", 7, True, 1e20),
    (5, 8.25, 1, "-0.5", None, 3, False, 1.5e-5),     # Spark writes 1.0E20 and 1.5E-5
]
SCORED = TRAIN + [
    (6, 3.0, 2, "7", "atlantis", 99, True, 3.0),          # unseen region, code and grade
    (7, None, None, None, None, None, None, None),        # every value missing
    (8, math.nan, 5, "0", "", 12, False, 1.0),            # an empty string is a category of its own
]


@pytest.mark.parametrize("impute", ["mean", "median", "none"])
def test_encode_equals_the_fitted_pipeline(impute, spark):
    train, scored = spark.createDataFrame(TRAIN, SCHEMA), spark.createDataFrame(SCORED, SCHEMA)
    pipeline = _pipeline(FEATURES, CATEGORICAL, impute).fit(train)
    encoding = _encoding(pipeline, FEATURES, CATEGORICAL)
    meta = {"feature_names": encoding.feature_names, "categorical": encoding.categorical,
            "impute": encoding.impute, "impute_strategy": impute}

    X, ids = scoring.encode(meta, scored, carry="id")
    expected = pipeline_matrix(pipeline, meta, scored)

    assert ids.tolist() == [row[0] for row in SCORED]
    np.testing.assert_array_equal(X, expected)              # NaN where the pipeline leaves NaN
    rows = [dict(zip(["id", *FEATURES], row)) for row in SCORED]
    np.testing.assert_array_equal(portable.encode(meta, rows), expected)
    unseen = {name: len(cats) for name, cats in meta["categorical"].items()}
    atlantis, missing = X[5], X[6]
    for name in ("region", "code", "grade"):
        assert atlantis[FEATURES.index(name)] == unseen[name]
    for name in CATEGORICAL:
        assert missing[FEATURES.index(name)] == unseen[name]
    if impute == "none":
        assert np.isnan(missing[FEATURES.index("amount")])
    else:
        assert missing[FEATURES.index("amount")] == meta["impute"]["amount"]


def test_a_model_lacking_a_column_or_of_another_task_cannot_score():
    meta = {"feature_names": ["amount", "region"], "task": "binary"}
    scoring.check_can_score(meta, "m v1", "binary", {"amount", "region", "id"}, "the data")   # nothing to say
    with pytest.raises(DataError, match=r"feature 'region' of m v1 is not in the data of 2018-06$"):
        scoring.check_can_score(meta, "m v1", "binary", {"amount"}, "the data of 2018-06")
    with pytest.raises(SpecError, match="m v1 is a binary model; the spec says task regression"):
        scoring.check_can_score(meta, "m v1", "regression", {"amount", "region"}, "the data")
