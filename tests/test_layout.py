"""The code's shape holds: each stage's code dependencies in dvc.yaml are exactly the project files it
imports (so editing a module reruns the stages that run it, and only those), and no module imports
itself through others."""

import ast
import re
from pathlib import Path

import yaml

from tests.conftest import ROOT

PACKAGES = ("stages", "textclf")


def module_file(name: str) -> Path | None:
    """The project file behind a dotted module name, or None for anything outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT / name.replace(".", "/")
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imported_modules(path: Path) -> set[str]:
    """Every project module a file imports, at any depth in the file (lazy imports inside functions
    count: they run too), including the packages that hold them (importing a.b runs a/__init__.py)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    found = set()
    for name in names:
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {n for n in found if (f := module_file(n)) is not None and f.exists()}


def graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
    names = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in files}
    return {name: imported_modules(path) - {name} for name, path in names.items()}


def closure(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges.get(name, ()))
    return seen


def test_each_stage_depends_on_exactly_the_code_it_runs():
    edges = graph()
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        listed = {d for d in spec["deps"] if d.endswith(".py")}
        started = {f"stages.{stage}", *re.findall(r"-m (stages\.\w+)", spec["cmd"])}  # stages.launch too
        modules = set().union(*(closure(m, edges) for m in started))
        runs = {str(module_file(m).relative_to(ROOT)) for m in modules}
        assert listed == runs, f"{stage}: missing {sorted(runs - listed)}, extra {sorted(listed - runs)}"


def test_no_import_cycles():
    edges = graph()
    for name in edges:
        for other in edges[name]:
            assert name not in closure(other, edges) or other.startswith(name + "."), (
                f"{name} imports {other}, which imports {name} back"
            )


def test_stage_scripts_stay_thin():
    for path in (ROOT / "stages").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 150, f"{path.name}: move logic into textclf/"
