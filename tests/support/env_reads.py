"""Every environment variable the project's code reads, found in the source (AST), not run.

A read is `os.environ.get("X", default)`, `os.environ["X"]`, `os.getenv("X")`,
`os.environ.setdefault("X", ...)`, `env.get("X")` / `environ.get("X")` on a name holding the
environment (plugins/automl_notify.py's settings), or a call with a literal name to a settings
helper: a function that reads the variable named by one of its parameters
(`automl_tasks.config.url_setting("AUTOML_MLFLOW_UI_URL")`). Only the project's own names count
(PREFIXES); AIRFLOW_CTX_* is what Airflow sets in a task, not a setting.

Each read says whether its default is relative to the file's own folder (`Path(__file__)...`,
directly or through a module-level name made from it): inside the Airflow image the DAGs live
in /opt/airflow/dags, so such a default names a folder the image does not have.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

PREFIXES = ("AUTOML_", "SPARK_", "MLFLOW_", "PYSPARK_", "AIRFLOW__")
_ENV_NAMES = {"env", "environ"}
_READERS = {"get", "setdefault", "getenv"}


@dataclass(frozen=True)
class Read:
    var: str
    where: str            # path:line
    default: str | None   # the default's source ("a or b" fallbacks included), None when there is none
    file_relative: bool


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id in _ENV_NAMES) or \
        (isinstance(node, ast.Attribute) and node.attr == "environ")


def _key(call: ast.Call) -> ast.AST | None:
    """The variable-name argument of an environment read, or None when `call` is not one."""
    func = call.func
    if not isinstance(func, ast.Attribute) or not call.args:
        return None
    if func.attr in _READERS and _is_environ(func.value):
        return call.args[0]
    if func.attr == "getenv" and isinstance(func.value, ast.Name) and func.value.id == "os":
        return call.args[0]
    return None


def _mentions(node: ast.AST, names: set[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _reads_env(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and _key(n) is not None for n in ast.walk(node))


def _helpers(tree: ast.Module) -> dict[str, int]:
    """Settings helpers: function name -> index of the parameter naming the variable it reads."""
    found = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            params = [a.arg for a in fn.args.args]
            for n in ast.walk(fn):
                key = _key(n) if isinstance(n, ast.Call) else None
                if isinstance(key, ast.Name) and key.id in params:
                    found[fn.name] = params.index(key.id)
    return found


def _file_names(tree: ast.Module) -> set[str]:
    """Module-level names made from `__file__` (not through an environment read): ROOT = Path(__file__)..."""
    names = {"__file__"}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and _mentions(stmt.value, names) and not _reads_env(stmt.value):
            names |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
    return names


def reads_in(path: Path, root: Path, helpers: dict[str, int] | None = None) -> list[Read]:
    source = path.read_text()
    tree = ast.parse(source)
    helpers = {**(helpers or {}), **_helpers(tree)}
    file_names = _file_names(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        key, default = None, None
        if isinstance(node, ast.Call):
            key = _key(node)
            default = node.args[1] if key is not None and len(node.args) > 1 else None
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if key is None and name in helpers and len(node.args) > helpers[name]:
                key = node.args[helpers[name]]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            key = node.slice
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.startswith(PREFIXES)):
            continue
        fallbacks = [default] if default is not None else []
        parent = parents.get(node)
        if isinstance(parent, ast.BoolOp) and isinstance(parent.op, ast.Or) and parent.values[0] is node:
            fallbacks += parent.values[1:]        # os.environ.get("X") or <fallback>
        text = " or ".join(ast.get_source_segment(source, f) or "?" for f in fallbacks) or None
        found.append(Read(key.value, f"{path.relative_to(root)}:{node.lineno}", text,
                          any(_mentions(f, file_names) for f in fallbacks)))
    return found


def reads(root: Path, folders: tuple[str, ...]) -> list[Read]:
    """Every read in the .py files under `folders` of `root`; helpers of one module count in all
    (automl_tasks.config.url_setting is called from other modules)."""
    files = [p for folder in folders for p in sorted((root / folder).rglob("*.py"))]
    helpers = {name: i for p in files for name, i in _helpers(ast.parse(p.read_text())).items()}
    return [read for p in files for read in reads_in(p, root, helpers)]


def shell_reads(path: Path) -> set[str]:
    """`${VAR...}` references of a shell script, with the project's prefixes."""
    return {v for v in re.findall(r"\$\{!?(\w+)", path.read_text()) if v.startswith(PREFIXES)}
