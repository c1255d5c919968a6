"""From a spec and a month to numeric matrices: checks, label mapping, Spark ML encoding.

Everything that can be wrong with the data is checked here (data/checks.py), before any
MLflow run starts, so a bad input leaves no half-written state behind.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from automl_tasks.data.checks import (ROW_HASH, check_duplicate_ids, check_feature_values, missing_labels,
                                      month_facts)
from automl_tasks.data.labels import class_key, class_values
from automl_tasks.data.months import describe_months
from automl_tasks.data.sources import MONTH_COL, join_tables, read_source, with_month
from automl_tasks.data.windows import Window, select_window
from automl_tasks.errors import DataError, SpecError
from automl_tasks.spec import ModelSpec

if TYPE_CHECKING:
    from automl_tasks.tuning.training_path import Decision

NUMERIC_TYPES = ("double", "float", "int", "bigint", "smallint", "tinyint", "decimal", "boolean")
LABEL_COL, SEGMENT_COL = "__label", "__segment"


@dataclass
class Encoding:
    """How raw columns become model inputs; recorded in metadata.json for portable scoring."""
    feature_names: list[str]
    categorical: dict[str, list[str]]        # name -> categories; code = index, unseen/null = len
    impute: dict[str, float]                 # numeric fill values for null/NaN

    @property
    def categorical_idx(self) -> list[int]:
        return [i for i, f in enumerate(self.feature_names) if f in self.categorical]


@dataclass
class Matrix:
    X: np.ndarray
    y: np.ndarray
    months: np.ndarray
    segments: np.ndarray | None = None

    def of_months(self, months) -> Matrix:
        """The rows of these months, in order."""
        import pandas as pd

        rows = pd.Series(self.months).isin(list(months)).to_numpy()
        return Matrix(self.X[rows], self.y[rows], self.months[rows],
                      None if self.segments is None else self.segments[rows])


@dataclass
class Frames:
    """The encoded window kept on Spark (data-parallel path): x0..x{n-1}, y, month columns."""
    train: object                            # DataFrame
    holdout: object | None


@dataclass
class Prepared:
    spec: ModelSpec
    window: Window
    train: Matrix | None                     # None when the window stays on Spark (`frames`)
    holdout: Matrix | None
    given: Matrix | None                     # validation.method: given
    encoding: Encoding
    classes: list | None                     # class values in index order (classification)
    pipeline: object                         # fitted Spark PipelineModel
    fingerprint: str
    row_counts: dict[str, int] = field(default_factory=dict)
    frames: Frames | None = None             # set instead of train/holdout on the data-parallel path
    training: Decision | None = None         # the training path, when `prepare` was given `decide`
    duplicate_ids: dict | None = None        # {"ids", "rows", "months"}: data.duplicate_ids: warn found some


def resolve_columns(spec: ModelSpec, dtypes: dict[str, str]) -> tuple[list[str], list[str]]:
    """Features in order and the categorical ones: named in the spec or inferred from types."""
    data = spec.data
    if data.label not in dtypes:
        raise DataError(f"label column {data.label!r} is not in the data; columns: {', '.join(dtypes)}")
    reserved = {data.label, data.timestamp, data.month_column, data.id, MONTH_COL} - {None}
    if spec.features is None:
        features = [c for c in dtypes if c not in reserved]
    else:
        missing = [f for f in spec.features if f not in dtypes]
        if missing:
            raise DataError(f"feature {missing[0]!r} is not in the data; columns: {', '.join(dtypes)}")
        features = list(spec.features)
    if not features:
        raise DataError("no feature columns left after removing label, time and id columns")
    for f in features:
        if dtypes[f] in ("timestamp", "timestamp_ntz", "date"):
            raise DataError(f"feature {f!r} is a {dtypes[f]}; derive numeric features from it instead")
        if dtypes[f].startswith(("array", "map", "struct", "binary")):
            raise DataError(f"feature {f!r} has type {dtypes[f]}, which cannot be a model input")
    if spec.categorical is not None:
        unknown = [c for c in spec.categorical if c not in features]
        if unknown:
            raise DataError(f"categorical column {unknown[0]!r} is not among the features")
        categorical = list(spec.categorical)
    else:
        categorical = [f for f in features if dtypes[f] == "string"]
    return features, categorical


def canonical_label(column: str):
    """Label as a canonical string, so `1.0` (old exports) and `1` (new ones) are one class.

    The Spark twin of data.labels.class_key: change both or neither (tests/test_labels.py).
    """
    from pyspark.sql import functions as F

    raw = F.trim(F.col(column).cast("string"))
    number = raw.try_cast("double")
    as_number = F.when((number == F.floor(number)) & (F.abs(number) < 1e15), number.cast("bigint").cast("string")).otherwise(
        number.cast("string"))
    return F.when(number.isNotNull() & ~F.isnan(number), as_number).otherwise(raw)


def segment_column(spec: ModelSpec):
    """The segment as text (null for every row when the spec names none): how comparisons group rows."""
    from pyspark.sql import functions as F

    return F.col(spec.segment).cast("string") if spec.segment else F.lit(None).cast("string")


def label_column(spec: ModelSpec):
    """The label as models see it: the canonical text (classification) or a double (regression);
    null where the value cannot be read as one."""
    from pyspark.sql import functions as F

    label = spec.data.label
    return canonical_label(label) if spec.task != "regression" else F.col(label).try_cast("double")


def with_label(df, spec: ModelSpec):
    """`df` with LABEL_COL (`label_column`)."""
    return df.withColumn(LABEL_COL, label_column(spec))


def _fingerprint(spec: ModelSpec, counts: dict[str, int], facts: dict[str, dict], months) -> str:
    stats = {m: (counts[m], facts[m]["hash"]) for m in months}
    payload = json.dumps({"source": spec.data.source, "months": stats}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _label_classes(df, spec: ModelSpec) -> list | None:
    from pyspark.sql import functions as F

    label = spec.data.label
    if spec.task == "regression":
        bad = df.where(F.col(LABEL_COL).isNull()).select(label).limit(3).collect()
        if bad:
            raise DataError(f"regression label {label!r} has non-numeric values: "
                            f"{', '.join(repr(r[0]) for r in bad)}")
        return None
    values = [r[0] for r in df.select(LABEL_COL).distinct().limit(1001).collect()]
    if len(values) < 2:
        raise DataError(f"label {label!r} has a single class ({values[0]!r}) in the training window; "
                        "a classifier needs at least two")
    if spec.task == "binary" and len(values) > 2:
        raise DataError(f"task binary but label {label!r} has {len(values)} classes "
                        f"(e.g. {', '.join(sorted(values)[:5])}); use task: multiclass")
    if len(values) > 1000:
        raise DataError(f"label {label!r} has over 1000 classes; is it a regression target?")
    return class_values(values)


def _pipeline(features, categorical, impute: str):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import Imputer, SQLTransformer, StringIndexer, VectorAssembler

    numeric = [f for f in features if f not in categorical]
    casts = [f"CAST(`{f}` AS DOUBLE) AS `__num_{f}`" for f in numeric]
    casts += [f"CAST(`{f}` AS STRING) AS `__cat_{f}`" for f in categorical]
    stages = [SQLTransformer(statement=f"SELECT *, {', '.join(casts)} FROM __THIS__")]
    if numeric and impute != "none":
        stages.append(Imputer(strategy=impute, inputCols=[f"__num_{f}" for f in numeric],
                              outputCols=[f"__imp_{f}" for f in numeric]))
    if categorical:
        # alphabetAsc: codes do not move when category frequencies change month to month.
        stages.append(StringIndexer(inputCols=[f"__cat_{f}" for f in categorical],
                                    outputCols=[f"__idx_{f}" for f in categorical],
                                    handleInvalid="keep", stringOrderType="alphabetAsc"))
    stages.append(VectorAssembler(inputCols=model_columns(features, categorical, impute),
                                  outputCol="features", handleInvalid="keep"))
    return Pipeline(stages=stages)


def model_columns(features, categorical, impute: str) -> list[str]:
    num = "__num_" if impute == "none" else "__imp_"
    return [f"__idx_{f}" if f in categorical else f"{num}{f}" for f in features]


def _encoding(pipeline_model, features, categorical) -> Encoding:
    from pyspark.ml.feature import ImputerModel, StringIndexerModel

    cats, fills = {}, {}
    for stage in pipeline_model.stages:
        if isinstance(stage, StringIndexerModel):
            for f, labels in zip(categorical, stage.labelsArray):
                cats[f] = list(labels)
        elif isinstance(stage, ImputerModel):
            row = stage.surrogateDF.first()
            fills = {c.removeprefix("__num_"): float(row[c]) for c in row.asDict()}
    return Encoding(list(features), cats, fills)


def encoded_frame(pipeline_model, encoding: Encoding, df, spec: ModelSpec, classes: list | None):
    """Rows encoded with the fitted pipeline, on Spark: x0..x{n-1} (double), y (class index or
    value), raw_label, month, segment. A label outside `classes` gives a null y."""
    from pyspark.sql import functions as F

    cols = model_columns(encoding.feature_names, list(encoding.categorical), spec.impute)
    out = pipeline_model.transform(df)
    if classes is None:
        label = F.col(LABEL_COL)
    else:
        mapping = F.create_map(*[x for i, c in enumerate(classes) for x in (F.lit(class_key(c)), F.lit(i))])
        label = mapping[F.col(LABEL_COL)]
    return out.select(*[F.col(c).cast("double").alias(f"x{i}") for i, c in enumerate(cols)],
                      label.alias("y"), F.col(LABEL_COL).alias("raw_label"),
                      F.col(MONTH_COL).alias("month") if MONTH_COL in df.columns else F.lit("").alias("month"),
                      segment_column(spec).alias("segment"))


def _unseen_label(value, classes: list) -> DataError:
    return DataError(f"label value {value!r} does not occur in the training window "
                     f"(classes: {', '.join(map(str, classes))})")


def check_labels_known(frame, classes: list | None) -> None:
    """An encoded frame's labels all belong to the training window's classes (a Spark query)."""
    if classes is None:
        return
    unseen = frame.where(frame["y"].isNull()).select("raw_label").limit(1).collect()
    if unseen:
        raise _unseen_label(unseen[0][0], classes)


def to_matrix(pipeline_model, encoding: Encoding, df, spec: ModelSpec, classes: list | None) -> Matrix:
    """Encode rows with the fitted pipeline and bring them to the driver as numpy."""
    pdf = encoded_frame(pipeline_model, encoding, df, spec, classes).toPandas()
    cols = encoding.feature_names
    if classes is not None and pdf["y"].isna().any():
        raise _unseen_label(pdf.loc[pdf["y"].isna(), "raw_label"].iloc[0], classes)
    X = pdf[[f"x{i}" for i in range(len(cols))]].to_numpy(dtype=np.float64)
    y = pdf["y"].to_numpy(dtype=np.int64 if classes is not None else np.float64)
    segments = pdf["segment"].to_numpy(dtype=object) if spec.segment else None
    return Matrix(X, y, pdf["month"].to_numpy(dtype=object), segments)


def load_frame(spark, spec: ModelSpec):
    """The source with joins applied and the month column added."""
    df = read_source(spark, spec.data.source, spec.data.format, spec.data.csv)
    df = join_tables(spark, df, spec.data.join)
    return with_month(df, spec.data.timestamp, spec.data.month_column, spec.data.timezone)


def prepare(spark, spec: ModelSpec, month: str | None = None, decide=None, monitored: tuple[str, ...] = ()
            ) -> Prepared:
    """Check the data for `month` and encode its window; raises DataError on bad input.

    `monitored`: later months the caller reads without labels (labels.delay_months); each must
    have rows, and their rows are part of the fingerprint.

    `decide(rows, n_features)`: the training path's Decision (tuning/training_path.py), asked
    once the window's size is known and before anything is collected; on `data_parallel` the
    encoded window and holdout stay Spark DataFrames (`Prepared.frames`), never collected.
    """
    from pyspark.sql import functions as F

    if month is not None and not (spec.data.timestamp or spec.data.month_column):
        raise SpecError(f"month {month} needs data.timestamp or data.month_column in the spec; "
                        "without a time column all rows are one window: run without a month")
    df = load_frame(spark, spec)
    dtypes = dict(df.dtypes)
    features, categorical = resolve_columns(spec, dtypes)
    if spec.segment and spec.segment not in dtypes:
        raise DataError(f"segment column {spec.segment!r} is not in the data")
    if spec.data.id and spec.data.id not in dtypes:
        raise DataError(f"id column {spec.data.id!r} is not in the data; columns: {', '.join(df.columns)}")

    counts = {r[0]: r[1] for r in df.groupBy(MONTH_COL).count().collect()}
    window = select_window(counts, month, spec.window.train_months,
                           holdout_count=spec.window.holdout_months)
    months = list(window.train) + list(window.holdout_months)
    empty = [m for m in monitored if not counts.get(m)]
    if empty:
        raise DataError(f"the monitored month {empty[0]} (labels.delay_months {spec.labels.delay_months} after "
                        f"{month}) has no rows in {spec.data.source}; months with rows: "
                        f"{describe_months(sorted(counts))}")

    # Only the kept months and the columns used from here on are cached; the row hash covers
    # every source column, so the fingerprint still sees a change in any of them.
    used = dict.fromkeys([*features, spec.data.label, MONTH_COL, *(c for c in (spec.segment, spec.data.id) if c)])
    source_cols = [c for c in df.columns if c != MONTH_COL]
    df = (df.where(F.col(MONTH_COL).isin([*months, *monitored]))
          .select(*used, F.pmod(F.xxhash64(*source_cols), F.lit(2**31 - 1)).alias(ROW_HASH)))
    df = with_label(df, spec).persist()
    try:
        facts = month_facts(df, spec, features, dtypes)
        missing = {m: facts[m]["missing"] for m in months if facts[m]["missing"]}
        if missing:
            raise missing_labels(spec, missing, counts)
        train_df = df.where(F.col(MONTH_COL).isin(list(window.train)))
        check_feature_values(facts, features, categorical, spec, dtypes, window)
        duplicate_ids = check_duplicate_ids(df, spec, window)
        classes = _label_classes(train_df, spec)
        pipeline_model = _pipeline(features, categorical, spec.impute).fit(train_df)
        encoding = _encoding(pipeline_model, features, categorical)
        decision = decide(sum(counts[m] for m in window.train), len(features)) if decide else None
        if decision is not None and decision.path == "data_parallel":
            # Encoded from the source again, not from `df`: that cache ends with this function.
            frames = _frames(load_frame(spark, spec), pipeline_model, encoding, spec, classes, window)
            train = holdout = given = None
        else:
            frames = None
            both = to_matrix(pipeline_model, encoding, df.where(F.col(MONTH_COL).isin(months)), spec, classes)
            train = both.of_months(window.train)
            holdout = both.of_months(window.holdout_months) if window.holdout else None
            given = (_given(spark, spec, pipeline_model, encoding, classes)
                     if spec.validation.method == "given" else None)
    finally:
        df.unpersist()
    return Prepared(spec=spec, window=window, train=train, holdout=holdout, given=given,
                    encoding=encoding, classes=classes,
                    pipeline=pipeline_model, fingerprint=_fingerprint(spec, counts, facts, [*months, *monitored]),
                    row_counts={m: counts[m] for m in months}, frames=frames, training=decision,
                    duplicate_ids=duplicate_ids)


def _frames(source, pipeline_model, encoding: Encoding, spec: ModelSpec, classes, window: Window) -> Frames:
    from pyspark.sql import functions as F

    def encoded(months: list[str]):
        rows = with_label(source.where(F.col(MONTH_COL).isin(months)), spec)
        return encoded_frame(pipeline_model, encoding, rows, spec, classes)

    holdout = encoded(list(window.holdout_months)) if window.holdout else None
    if holdout is not None:
        check_labels_known(holdout, classes)
    return Frames(encoded(list(window.train)), holdout)


def _given(spark, spec: ModelSpec, pipeline_model, encoding: Encoding, classes) -> Matrix:
    from pyspark.sql import functions as F

    df = read_source(spark, spec.validation.path)
    missing = [c for c in [*encoding.feature_names, spec.data.label] if c not in df.columns]
    if missing:
        raise DataError(f"validation source {spec.validation.path} lacks column {missing[0]!r}")
    df = with_label(df, spec)
    if df.where(F.col(LABEL_COL).isNull()).limit(1).count():
        raise DataError(f"validation source {spec.validation.path} has rows with a missing label")
    matrix = to_matrix(pipeline_model, encoding, df, spec, classes)
    if len(matrix.y) == 0:
        raise DataError(f"validation source {spec.validation.path} has no rows")
    return matrix
