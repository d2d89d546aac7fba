"""The dependency rule, checked on the source: every import of the package, at module level or
inside a function, is read with ast and placed in its layer. (CI also runs import-linter's
contracts in pyproject.toml, which check the same rule and cycles.)

- the pure core (native/ and hardware/ included) never imports pytest, the API, the glue or a
  feature;
- the API (api.py, hookspecs.py) imports pytest and the core only;
- the core glue (plugin*.py) never imports a feature; no feature imports the glue, and no module
  imports a private name (``_x``) from another package;
- only torch_models imports torch;
- the fleet (a feature without a pytest plugin) and the console script (commands.py, which
  dispatches to the core's commands and the fleet's) import no pytest;
- no two modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_llmperf"
API = {"api", "hookspecs"}
GLUE = {"plugin", "plugin_options", "plugin_verdicts", "plugin_finish", "plugin_history", "plugin_progress"}
FEATURES = {"llama2c", "torch_models", "profilers", "fleet"}
# the console script, above the core and the features: it dispatches to the core's commands and the fleet's
ENTRY = {"commands"}
# the parts that run without pytest: the fleet runs pytest as a process on each node
NO_PYTEST = ("core", "entry", "feature:fleet")
# known exceptions, each with its reason (none today)
ALLOWED: dict[str, str] = {}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path):
    """(imported module, imported names) for every import in the file, relative ones resolved."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, [a.name for a in node.names]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "pytest_llmperf":
        return None
    if len(parts) == 1:
        return "core"
    top = parts[1]
    if top in FEATURES:
        return "feature:" + top
    if top in API:
        return "api"
    if top in GLUE:
        return "glue"
    if top in ENTRY:
        return "entry"
    return "core"


def _violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _module_name(path)
        mine = _layer(me)
        for module, names in _imports(path):
            theirs = _layer(module)
            where = f"{path.relative_to(PACKAGE.parent)} imports {module}"
            if module.split(".")[0] == "torch" and not me.startswith("pytest_llmperf.torch_models"):
                found.append(f"{where}: only torch_models imports torch")
            if module == "pytest" and mine == "core":
                found.append(f"{where}: the core does not import pytest")
            elif module == "pytest" and mine in NO_PYTEST:
                found.append(f"{where}: the fleet and the console script do not import pytest")
            if theirs is None:
                continue
            if mine == "core" and theirs != "core":
                found.append(f"{where}: the core imports only the core")
            if mine == "api" and theirs not in ("core", "api"):
                found.append(f"{where}: the API imports only the core")
            if mine == "entry" and theirs in ("api", "glue"):
                found.append(f"{where}: the console script imports the core and the features only")
            if mine.startswith("feature:") and theirs == "glue":
                found.append(f"{where}: a feature never imports the glue")
            if mine == "glue" and theirs.startswith("feature:"):
                found.append(f"{where}: the core glue never imports a feature")
            for name in names:
                # a submodule imported by name is a module, not a private name
                if name.startswith("_") and not name.startswith("__") and theirs != mine:
                    found.append(f"{where}: private name {name} taken across packages")
    return found


def test_the_arrows_run_one_way():
    assert [v for v in _violations() if v not in ALLOWED] == []


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
    """The check itself can fail: a core module importing the glue and a private name is caught."""
    import shutil

    copy = tmp_path / "pytest_llmperf"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "stats.py").write_text((copy / "stats.py").read_text() + "\nfrom .plugin import _value\nimport pytest\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", copy)
    found = _violations()
    assert "pytest_llmperf/stats.py imports pytest_llmperf.plugin: the core imports only the core" in found
    assert "pytest_llmperf/stats.py imports pytest_llmperf.plugin: private name _value taken across packages" in found
    assert "pytest_llmperf/stats.py imports pytest: the core does not import pytest" in found


def _cycles() -> list[list[str]]:
    """The import cycles between the package's modules (Tarjan's strongly connected components of
    the graph of every import, function-level ones included)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _module_name(path)
        edges = graph.setdefault(me, set())
        for module, names in _imports(path):
            if module.split(".")[0] != "pytest_llmperf":
                continue
            for name in names or [""]:
                # `from . import x` names a submodule (or subpackage) when there is one
                sub = PACKAGE.parent.joinpath(*f"{module}.{name}".split("."))
                target = f"{module}.{name}" if name and (sub.with_suffix(".py").exists() or sub.is_dir()) else module
                # a submodule reading its own package's names (profilers.DEFAULT_PERF_EVENTS) is not a
                # cycle between siblings, even when the package's factory imports that submodule
                if target != me and not me.startswith(target + "."):
                    edges.add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle():
    assert _cycles() == []


def test_the_cycle_check_sees_a_cycle(tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "pytest_llmperf"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "stats.py").write_text((copy / "stats.py").read_text() + "\n\ndef _late():\n    from . import report\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", copy)
    # stats -> report -> compare -> stats
    assert any({"pytest_llmperf.report", "pytest_llmperf.stats"} <= set(c) for c in _cycles())
