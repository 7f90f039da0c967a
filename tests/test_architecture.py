"""Import contracts and static typing (docs/architecture.md).

Why tests and not conventions: the analyzer is meant to be installed in a CI job or next to any
trainer without torch, PyBullet or a tracking service, and the three packages are layered
(analyzer <- reference_trainer <- robot_eval). Both properties erode silently one convenient import
at a time, so they are checked here on every run of the suite.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analyzer", "reference_trainer", "robot_eval")
#: Libraries the analyzer must not load when any of its modules is imported (docs/dependencies.md:
#: an optional reader may import its library lazily, inside the function that reads that source).
HEAVY = ("torch", "pybullet", "ray", "mlflow", "wandb")
#: Layers, lowest first: a package may import the ones before it, never the ones after it.
LAYERS = ("analyzer", "reference_trainer", "robot_eval")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): imports there never run."""
    if not isinstance(node, ast.If):
        return False
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, imported module name) of every absolute import in `path` that can run.

    Imports under `if TYPE_CHECKING:` are left out (annotations only). `top_level_only`: only
    imports that run when the module is imported (not inside a function or class body; those under
    a module-level `if`/`try` count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes: list[ast.AST] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        nodes.append(node)
        stack.extend(ast.iter_child_nodes(node))
    found: list[tuple[int, str]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)] + [
                (node.lineno, f"{node.module}.{a.name}") for a in node.names
            ]
    return found


def test_layers_are_in_order():
    """analyzer never imports reference_trainer or robot_eval (not even lazily); reference_trainer
    never imports robot_eval."""
    bad = []
    for name, path in _modules().items():
        layer = LAYERS.index(name.split(".")[0])
        for line, mod in _imports(path):
            root = mod.split(".")[0]
            if root in LAYERS and LAYERS.index(root) > layer:
                bad.append(f"{path.relative_to(ROOT)}:{line}: imports {mod}")
    assert not bad, "layer violations:\n" + "\n".join(sorted(set(bad)))


def test_analyzer_modules_import_no_heavy_library_at_module_level():
    bad = [
        f"{path.relative_to(ROOT)}:{line}: imports {mod}"
        for name, path in _modules().items()
        if name.split(".")[0] == "analyzer"
        for line, mod in _imports(path, top_level_only=True)
        if mod.split(".")[0] in HEAVY
    ]
    assert not bad, "\n".join(sorted(set(bad)))


def test_importing_every_analyzer_module_loads_no_heavy_library():
    """At run time too: a dependency that pulls torch in (or an import hidden in a helper called at
    import time) fails here, which the static check above cannot see."""
    names = [n for n in _modules() if n.split(".")[0] == "analyzer" and not n.endswith("__main__")]
    code = (
        "import importlib, json, sys\n"
        f"for n in {names!r}:\n"
        "    importlib.import_module(n)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY + LAYERS[1:])!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles():
    """No two modules import each other, directly or through others (lazy imports included: a
    function-level import that closes a cycle still ties the two modules' load order together)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {
        name: {r for _, mod in _imports(path) if (r := resolve(mod)) and r != name}
        for name, path in mods.items()
    }
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy not installed (the 'test' extra)")
def test_mypy_is_clean():
    """mypy over the three packages ([tool.mypy] in pyproject.toml); incremental, so a rerun takes
    about a second and a cold run well under a minute."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
