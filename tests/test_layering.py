"""The library's layering, as a contract over its import graph (read from the source, not run).

Layers, bottom to top. A module imports only from its own layer or the layers below it, at
module level and inside functions alike (an import inside a function is still a dependency;
only `if TYPE_CHECKING:` blocks are left out: they exist for annotations and never run).
A module belongs to the layer of the longest prefix naming it.

- foundation: errors, settings, logging and the small rules everyone shares (months, labels).
- rules: what the spec contract checks against, importing nothing project-specific above the
  foundation: the algorithm registry, metrics and comparison statistics, drift monitoring, and
  the search-space grammar (`tuning.space`: the spec validates each algorithm's space with it).
- spec: the model-spec contract.
- data: reading, checking and encoding a window.
- models: fitting, scoring and exporting a model.
- registry: MLflow conventions, the champion, the promotion policy, claims.
- tuning: fitting and scoring folds (`fitting`), the search, the tuning job.
- month blocks: what the monthly and branches jobs share: the month's runs (finding, reusing,
  the month's context and tuning) and the holdout (rows, scores, comparisons).
- jobs: monthly, branches, ablation, PoC. Jobs are independent: a job imports no other
  job, except the public entries in JOB_ENTRIES (each with its reason).
- entry: the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "automl_tasks"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("errors", "config", "paths", "formatting", "progress", "spark",
                    "data.months", "data.labels")),
    ("rules", ("models.algorithms", "models.lightgbm_distributed", "evaluation", "monitoring",
               "tuning.space")),
    ("spec", ("spec",)),
    ("data", ("data",)),
    ("models", ("models",)),
    ("registry", ("registry",)),
    ("tuning", ("fitting", "tuning")),
    ("month blocks", ("pipelines.holdout", "pipelines.month_runs")),
    ("jobs", ("pipelines", "ablation", "poc")),
    ("entry", ("cli", "__main__", "spark_classes")),
]
# The monthly and the branches (develop vs master) jobs share the month blocks, not each other.
JOBS = ("pipelines.monthly", "pipelines.branches", "ablation", "poc")
# (importing job, imported module, name): a job that runs another job whole, through its entry.
JOB_ENTRIES = {
    # The month's optional ablation step (spec `ablation:`) is the ablation job itself.
    ("pipelines.monthly", "automl_tasks.ablation.study", "run_ablation"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in (ROOT / PACKAGE).rglob("*.py")}


def _outside_type_checking(tree: ast.AST):
    """Every node, skipping the bodies of `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, str, int]]:
    """(imported project module, imported name or "", line) for each project import in `path`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in _outside_type_checking(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                # `from pkg import sub` imports the submodule when there is one.
                sub = f"{base}.{alias.name}"
                found.append((sub, "", node.lineno) if sub in known else (base, alias.name, node.lineno))
    return [(m, name, line) for m, name, line in found if m == PACKAGE or m.startswith(PACKAGE + ".")]


def layer_of(module: str) -> int:
    relative = module.removeprefix(PACKAGE).removeprefix(".")
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if relative == prefix or relative.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return best[0]


def job_of(module: str) -> str | None:
    relative = module.removeprefix(PACKAGE + ".")
    matches = [job for job in JOBS if relative == job or relative.startswith(job + ".")]
    return max(matches, key=len, default=None)


def violations(modules: dict[str, Path]) -> list[str]:
    known = set(modules)
    found = []
    for module, path in sorted(modules.items()):
        if module == PACKAGE:
            continue
        here = layer_of(module)
        for target, name, line in imports(module, path, known):
            if target == PACKAGE:
                continue
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            where = f"{shown}:{line} imports {target}{'.' + name if name else ''}"
            if layer_of(target) > here:
                found.append(f"{where}: layer {LAYERS[layer_of(target)][0]} is above "
                             f"{LAYERS[here][0]}")
            job, other = job_of(module), job_of(target)
            if job and other and job != other and (job, target, name) not in JOB_ENTRIES:
                found.append(f"{where}: job {job} imports job {other}")
    return found


def test_the_library_keeps_its_layers():
    modules = _modules()
    assert len(modules) > 40   # the walk found the package
    assert violations(modules) == []


def test_no_import_cycles_between_modules():
    """Cycles through function-level imports count: they are the ones that hide."""
    modules = _modules()
    known = set(modules)
    graph = {m: {t for t, _, _ in imports(m, p, known) if t in known and t != m}
             for m, p in modules.items()}
    # A package's __init__ importing its own modules is how a package re-exports: not a cycle
    # unless the module imports the package back.
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


@pytest.mark.parametrize("module, source, expected", [
    # A rule module reaching up into tuning, from inside a function.
    ("automl_tasks.evaluation.extra", "def f():\n    from automl_tasks.tuning.job import tune\n",
     "layer tuning is above rules"),
    # A job importing another job's internals.
    ("automl_tasks.poc.extra", "from automl_tasks.ablation.study import _plan\n",
     "job poc imports job ablation"),
    # An import only for annotations is no dependency.
    ("automl_tasks.evaluation.extra",
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from automl_tasks.tuning.job import tune\n", None),
])
def test_the_contract_catches_a_violation(tmp_path, module, source, expected):
    planted = tmp_path / "extra.py"
    planted.write_text(source)
    found = [v for v in violations({**_modules(), module: planted}) if str(planted) in v]
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0], found
