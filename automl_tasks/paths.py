"""Paths that come from users (Airflow Params, triggers) stay inside configured roots."""

from __future__ import annotations

from pathlib import Path

from automl_tasks.errors import SpecError


def confined(root: str | Path, relative: str) -> Path:
    """`root/relative`, refusing anything that resolves outside `root` (`../../etc/passwd`)."""
    base = Path(root).resolve()
    path = (base / relative).resolve()
    if path != base and base not in path.parents:
        raise SpecError(f"path {relative!r} is outside the allowed folder {base}")
    return path


def specs_in(specs_dir: str | Path, only: str | None = None) -> list[str]:
    """Every *.yaml spec in the folder, or the one named (confined to the folder)."""
    if only:
        path = confined(specs_dir, only)
        if not path.is_file():
            raise SpecError(f"spec {only!r} not found in {Path(specs_dir).resolve()}")
        return [str(path)]
    found = sorted(str(p) for p in Path(specs_dir).glob("*.y*ml"))
    if not found:
        raise SpecError(f"no spec (*.yaml) in {Path(specs_dir).resolve()}")
    return found
