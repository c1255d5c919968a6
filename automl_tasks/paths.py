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


def inside_roots(path: str, roots: list[str | Path]) -> Path:
    """`path` (absolute, or relative to a root) if it resolves inside one of `roots`.

    A relative path is looked up in each root in turn (the first where it exists wins);
    anything that resolves outside every root is refused, naming the roots.
    """
    if not roots:
        raise SpecError("no data folders are configured (AUTOML_DATA_ROOTS)")
    found = []
    for root in roots:
        try:
            found.append(confined(root, path))
        except SpecError:
            continue
    if not found:
        shown = ", ".join(str(Path(r).resolve()) for r in roots)
        raise SpecError(f"path {path!r} is outside the allowed data folders ({shown}); "
                        "set AUTOML_DATA_ROOTS to allow another folder")
    return next((p for p in found if p.exists()), found[0])
