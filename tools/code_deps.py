"""The code each DVC stage runs, from its imports: check dvc.yaml's code deps against it, or rewrite them.

    python tools/code_deps.py          # list what each stage's deps lack or list too much (exit 1 if any)
    python tools/code_deps.py --write  # rewrite the .py entries of each stage's deps in dvc.yaml

A stage runs its own module, any `-m stages.X` in its command (stages.launch), and every project
module those import, at any depth (lazy imports in functions too: they run as well).
"""

import ast
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stages", "textclf")


def module_file(name: str) -> Path | None:
    """The project file behind a dotted module name, or None for anything outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT / name.replace(".", "/")
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imported_modules(path: Path) -> set[str]:
    """Every project module a file imports, including the packages that hold them (importing a.b runs
    a/__init__.py)."""
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


def stage_code(stage: str, cmd: str, edges: dict[str, set[str]]) -> list[str]:
    started = {f"stages.{stage}", *re.findall(r"-m (stages\.\w+)", cmd)}
    modules = set().union(*(closure(m, edges) for m in started))
    return sorted(str(module_file(m).relative_to(ROOT)) for m in modules)


def expected() -> dict[str, tuple[list[str], list[str]]]:
    """stage -> (code files it runs, .py deps dvc.yaml lists)."""
    edges = graph()
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {
        stage: (stage_code(stage, spec["cmd"], edges), [d for d in spec["deps"] if d.endswith(".py")])
        for stage, spec in stages.items()
    }


def rewrite(text: str, code: dict[str, list[str]]) -> str:
    """dvc.yaml with each stage's .py deps replaced by `code[stage]`, comments and order kept."""
    out, stage = [], None
    for line in text.splitlines(keepends=True):
        if m := re.match(r"^  (\w+):\s*$", line):
            stage = m.group(1)
        if stage in code and re.match(r"^      - \S+\.py\s*$", line):
            if code[stage] is not None:
                out += [f"      - {path}\n" for path in code[stage]]
                code[stage] = None  # written once, where the first .py dep stood
            continue
        out.append(line)
    return "".join(out)


def main() -> None:
    found = expected()
    if "--write" in sys.argv:
        path = ROOT / "dvc.yaml"
        path.write_text(rewrite(path.read_text(), {s: runs for s, (runs, _) in found.items()}))
        return
    bad = False
    for stage, (runs, listed) in found.items():
        if set(runs) != set(listed):
            bad = True
            print(f"{stage}: missing {sorted(set(runs) - set(listed))}, extra {sorted(set(listed) - set(runs))}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
