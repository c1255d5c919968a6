"""The reference `models.scoring.encode` must equal: a fitted Spark preprocessing pipeline's own output."""

from __future__ import annotations

import numpy as np


def pipeline_matrix(pipeline_model, meta: dict, df) -> np.ndarray:
    """`df` transformed by the fitted pipeline (data.prepare._pipeline), its model columns as a matrix."""
    from pyspark.sql import functions as F

    from automl_tasks.data.prepare import model_columns

    cols = model_columns(meta["feature_names"], list(meta["categorical"]), meta["impute_strategy"])
    pdf = pipeline_model.transform(df).select(*[F.col(c).cast("double").alias(f"x{i}")
                                                for i, c in enumerate(cols)]).toPandas()
    return pdf.to_numpy(dtype=np.float64)
