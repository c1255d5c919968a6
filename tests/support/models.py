"""Tiny real models logged to MLflow, for the registry tests (promotion, rollback)."""

from __future__ import annotations

import numpy as np
import pytest


def log_tiny_models(mlflow_url: str, experiment: str, count: int) -> list[tuple[str, str]]:
    """`count` small LightGBM classifiers, each logged in its own run of `experiment`:
    [(run_id, model_uri)]."""
    import lightgbm
    import mlflow

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_url)
        from automl_tasks.registry.tracking import client

        c = client()
        exp = c.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else c.create_experiment(experiment)
        rng = np.random.default_rng(0)
        out = []
        for seed in range(count):
            x = rng.random((50, 3))
            model = lightgbm.LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1,
                                            random_state=seed).fit(x, x[:, 0] > 0.5)
            with mlflow.start_run(experiment_id=exp_id) as run:
                info = mlflow.lightgbm.log_model(model, name="m", pip_requirements=["lightgbm"])
            out.append((run.info.run_id, info.model_uri))
        return out
