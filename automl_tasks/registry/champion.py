"""The champion as a model that scores raw rows: loaded from the run that trained it.

A registered version carries the tags `automl.source_run_id`, `automl.algorithm` and
`automl.model_uri`; the run holds the native metadata (the encoding) and the flavor model.
Anything missing or unreadable is one error naming the version and what is missing,
raised before the month writes anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automl_tasks import config
from automl_tasks.errors import AutomlError
from automl_tasks.models import export, scoring
from automl_tasks.registry import promotion, tracking

NEEDED_TAGS = ("automl.source_run_id", "automl.algorithm", "automl.model_uri")


@dataclass
class ScoredModel:
    """A model able to score raw rows: its metadata (the encoding), its flavor model."""
    meta: dict
    model: object
    params: dict

    def predict(self, df) -> np.ndarray:
        return self.predict_encoded(self.encode(df))

    def encode(self, df, *, carry: str | None = None):
        """Raw Spark rows -> this model's inputs (and the `carry` column beside them)."""
        return scoring.encode(self.meta, df, carry=carry)

    def predict_encoded(self, X: np.ndarray) -> np.ndarray:
        return scoring.predict(self.model, self.meta, X)


def load_run_model(run_id: str, algorithm: str, model_uri: str) -> ScoredModel:
    """The model a tuning run exported: native metadata and flavor model.

    Raises AutomlError("cannot be loaded from run ...: <which artifact>: <why>") when one is
    missing or unreadable."""
    import mlflow

    from mlflow.exceptions import MlflowException

    local = config.home() / "cache" / "runs" / run_id / algorithm   # run artifacts never change
    local.mkdir(parents=True, exist_ok=True)
    step = f"artifact native/{algorithm}/metadata.json"
    try:
        meta = json.loads(Path(mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"native/{algorithm}/metadata.json", dst_path=str(local))).read_text())
        step = f"model {model_uri}"
        return ScoredModel(meta, export.load_flavor_model(algorithm, model_uri, meta), meta["params"])
    except (MlflowException, OSError, ValueError, KeyError) as exc:   # missing, partial or corrupt
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise AutomlError(f"cannot be loaded from run {run_id} ({algorithm}): {step}: {detail}") from None


def source_tags(name: str, version: str, what: str, error: type[Exception], hint: str = "") -> dict[str, str]:
    """The version's NEEDED_TAGS (where its model came from), or `error`: `what` and the tag missing."""
    tags = tracking.client().get_model_version(name, version).tags
    missing = [t for t in NEEDED_TAGS if not tags.get(t)]
    if missing:
        raise error(f"{what}: its model version has no tag {missing[0]!r} (not registered by automl-tasks?){hint}")
    return {t: tags[t] for t in NEEDED_TAGS}


def load_champion(name: str, version: str | None = None) -> tuple[str, ScoredModel] | None:
    """(version, model) of `name`'s champion (or of the version named, the champion when a month's
    checks ran); None without one; AutomlError if it cannot load."""
    version = version or promotion.current_champion(name)
    if version is None:
        return None
    where = f"champion {name} v{version}"
    tags = source_tags(name, version, f"{where} cannot be loaded", AutomlError,
                       hint="; roll the champion alias back to a version that has it")
    try:
        return version, load_run_model(*(tags[t] for t in NEEDED_TAGS))
    except AutomlError as exc:
        raise AutomlError(f"{where} {exc}") from None
