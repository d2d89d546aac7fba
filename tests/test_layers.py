"""The dependency rule, checked on the source (issue 12, first step): every import of the package,
at module level or inside a function, is read with ast and placed in its layer.

- the pure core never imports pytest, the API, the glue or a feature;
- the API (api.py, hookspecs.py) imports pytest and the core only;
- no feature imports the glue (plugin.py), and no module imports a private name (``_x``) from
  another package;
- only torch_models imports torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_llmperf"
CORE = {"stats", "compare", "measure", "config", "node", "fileutil", "baseline", "recorder", "report",
        "hardware", "errors", "jsonfile", "__init__"}
API = {"api", "hookspecs"}
GLUE = {"plugin"}
FEATURES = {"llama2c", "torch_models", "profilers"}
# known exceptions, each with its reason; issue 12's later steps remove them
ALLOWED = {
    "pytest_llmperf/hardware.py imports torch: only torch_models imports torch":
        "torch's runtime facts, read only when a test already imported torch (detect(include_torch=...)); "
        "they move to torch_models with the split of hardware.py",
}


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
            if theirs is None:
                continue
            if mine == "core" and theirs != "core":
                found.append(f"{where}: the core imports only the core")
            if mine == "api" and theirs not in ("core", "api"):
                found.append(f"{where}: the API imports only the core")
            if mine.startswith("feature:") and theirs == "glue":
                found.append(f"{where}: a feature never imports the glue")
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
