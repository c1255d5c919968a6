"""Label keys: the Python rule (data/labels.py) and its Spark twin (data.prepare.canonical_label) agree."""

import math

import numpy as np
import pytest

from automl_tasks.data.labels import class_key, class_values

STRINGS = ["1", "1.0", " 1 ", "1.50", "a", " a ", "\ta", "\t1", "001", "+1", "-0", "-1.5", ".5", "1.", "1E0",
           "1d", "1_000", "1,5", "٣", "", "  ", "true", "nan", "NaN", "0.1", "0.001", "0.0001", "2e-3", "1e-5",
           "1.1e-5", "12345678.5", "123456789012.75", "999999999999999", "1e15", "1.0E16", "9007199254740993"]
DOUBLES = [1.0, 1.5, -0.0, math.nan, 0.1 + 0.2, 0.001, 1e-4, 1e-5, 9999999.5, 1e7, 12345678.5, 1e14 + 0.5,
           1e15, 1e16]
LONGS = [1, 0, -3, 10**15 - 1, 10**15, 10**16, 9007199254740993]


def test_spark_and_python_agree_on_every_value(spark):
    from pyspark.sql import types as T

    from automl_tasks.data.prepare import canonical_label

    # (column type, values Spark stores, the same values as Python (or pandas, via toPandas) holds them)
    columns = [(T.StringType(), STRINGS, STRINGS), (T.DoubleType(), DOUBLES, DOUBLES),
               (T.LongType(), LONGS, LONGS), (T.BooleanType(), [True, False], [True, np.False_]),
               (T.FloatType(), [0.1, 1.5, 2.0], [np.float32(v) for v in (0.1, 1.5, 2.0)]),
               (T.IntegerType(), [7, None], [np.int64(7), None])]
    for kind, stored, python in columns:
        schema = T.StructType([T.StructField("i", T.IntegerType()), T.StructField("v", kind)])
        rows = spark.createDataFrame(list(enumerate(stored)), schema).select("i", canonical_label("v").alias("k"))
        spark_keys = [k for _, k in sorted(rows.collect())]
        assert [class_key(v) for v in python] == spark_keys, kind


def test_the_table_reads_as_intended():
    assert {class_key(v) for v in (1, 1.0, "1", " 1 ", "1.0", np.int64(1), np.float64(1.0))} == {"1"}
    assert [class_key(v) for v in ("1.50", " a ", True, 1e-5, 1e16, math.nan, None)] == [
        "1.5", "a", "true", "1.0E-5", "1.0E16", "NaN", None]


@pytest.mark.parametrize("keys, values", [
    (["1", "0"], [0, 1]),
    (["2", "1.5", "1.0E-5", "1.0E16"], [1e-5, 1.5, 2, 10**16]),
    (["b", "a", "1"], ["1", "a", "b"]),
    (["1", "nan"], ["1", "nan"]),                # "nan" is no number's key (that is "NaN"): text
    (["1_000", "2"], ["1_000", "2"]),            # Spark reads "1_000" as text, so it stays text
])
def test_class_values_give_their_keys_back(keys, values):
    assert class_values(keys) == values
    assert sorted(class_key(v) for v in class_values(keys)) == sorted(keys)
