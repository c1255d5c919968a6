"""docs/bad-inputs.md stays true: every row names a test pytest collects, and that test (its own
function, or for a parametrized test its parametrize arguments) checks (a distinctive part of)
the message the row shows."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CATALOGUE = REPO / "docs" / "bad-inputs.md"
COLUMNS = ["id", "area", "case", "error the user sees", "checked", "test"]
CELL = re.compile(r"(?<!\\)\|")   # a column border: a pipe not escaped as \|


def _code(cell: str) -> str:
    """The text of a `code span` cell, with markdown's table escape \\| undone."""
    assert cell.startswith("`") and cell.endswith("`") and len(cell) > 2, f"not a code span: {cell}"
    return cell[1:-1].replace("\\|", "|")


def _rows() -> list[dict[str, str]]:
    lines = [line for line in CATALOGUE.read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in CELL.split(lines[0].strip("|"))]
    assert header == COLUMNS
    rows = []
    for line in lines[2:]:                              # after the header and its --- line
        cells = [c.strip() for c in CELL.split(line.strip()[1:-1])]
        assert len(cells) == len(COLUMNS), line
        row = dict(zip(COLUMNS, cells))
        for column in ("error the user sees", "checked", "test"):
            row[column] = _code(row[column])
        rows.append(row)
    return rows


ROWS = _rows()


@pytest.fixture(scope="module")
def collected() -> set[str]:
    """Node ids pytest collects from the files the catalogue names (one collection run)."""
    files = sorted({row["test"].split("::")[0] for row in ROWS})
    missing = [f for f in files if not (REPO / f).is_file()]
    assert missing == [], f"test files named in {CATALOGUE.name} do not exist: {missing}"
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *files], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {line for line in done.stdout.splitlines() if "::" in line}


def test_catalogue_has_enough_rows_with_unique_ids():
    ids = [row["id"] for row in ROWS]
    assert len(ROWS) >= 20
    assert len(set(ids)) == len(ids), sorted(i for i in ids if ids.count(i) > 1)
    assert all(re.fullmatch(r"[A-Z]\d+", i) for i in ids), ids
    assert len({row["area"] for row in ROWS}) >= 6     # spec, data, Params, CLI, paths, registry, ...


@pytest.mark.parametrize("row", ROWS, ids=[row["id"] for row in ROWS])
def test_row_names_a_test_that_checks_its_message(row, collected):
    checked, message, node = row["checked"], row["error the user sees"], row["test"]
    assert checked and checked in message, f"{row['id']}: `{checked}` is not part of the message"
    assert node in collected, f"{row['id']}: pytest collects no {node}"
    path, *names = node.split("[", 1)[0].split("::")        # the function, without the parametrize id
    source = _test_source(REPO / path, names)
    assert checked in source, f"{row['id']}: {node.split('[')[0]} never mentions `{checked}`"


def _test_source(path: Path, names: list[str]) -> str:
    """The source of the test `names` (classes, then the function) in `path`: the function and
    the arguments of its parametrize decorators, a module-level constant they name included
    (`@pytest.mark.parametrize("case", CASES)`: CASES is the argument). Nothing else in the
    file counts: not a helper it calls, not another test that happens to show the same text."""
    text = path.read_text()
    module = ast.parse(text).body
    constants = {target.id: node for node in module if isinstance(node, (ast.Assign, ast.AnnAssign))
                 for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                 if isinstance(target, ast.Name)}
    scope: list[ast.stmt] = module
    found = None
    for name in names:
        found = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and n.name == name), None)
        assert found is not None, f"{path.name} defines no {'::'.join(names)}"
        scope = found.body if isinstance(found, ast.ClassDef) else []
    assert isinstance(found, (ast.FunctionDef, ast.AsyncFunctionDef)), f"{'::'.join(names)} is not a function"
    parts = [ast.get_source_segment(text, found)]          # from `def` to the end of the body
    for decorator in found.decorator_list:
        if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "parametrize"):
            for arg in (*decorator.args, *decorator.keywords):
                parts.append(ast.get_source_segment(text, arg))
                parts += [ast.get_source_segment(text, constants[n.id]) for n in ast.walk(arg)
                          if isinstance(n, ast.Name) and n.id in constants]
    return "\n".join(parts)
