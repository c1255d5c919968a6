"""Paths from users (Airflow Params) stay inside their configured folder."""

import pytest

from automl_tasks.errors import SpecError
from automl_tasks.paths import confined, specs_in


def test_traversal_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a")
    assert confined(tmp_path, "a.yaml") == (tmp_path / "a.yaml").resolve()
    for bad in ("../../etc/passwd", "/etc/passwd", "sub/../../x.yaml"):
        with pytest.raises(SpecError, match="outside the allowed folder"):
            confined(tmp_path, bad)


def test_specs_in_lists_or_names_one(tmp_path):
    with pytest.raises(SpecError, match="no spec"):
        specs_in(tmp_path)
    (tmp_path / "b.yaml").write_text("name: b")
    (tmp_path / "a.yml").write_text("name: a")
    assert [p.rsplit("/", 1)[1] for p in specs_in(tmp_path)] == ["a.yml", "b.yaml"]
    assert specs_in(tmp_path, "b.yaml") == [str((tmp_path / "b.yaml").resolve())]
    with pytest.raises(SpecError, match="not found"):
        specs_in(tmp_path, "c.yaml")
