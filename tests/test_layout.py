"""The code's shape holds: each stage's code dependencies in dvc.yaml are exactly the project files it
imports (so editing a module reruns the stages that run it, and only those), no module imports
itself through others, and the stage scripts stay thin."""

import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import code_deps  # noqa: E402


def test_each_stage_depends_on_exactly_the_code_it_runs():
    for stage, (runs, listed) in code_deps.expected().items():
        assert set(listed) == set(runs), (
            f"{stage}: missing {sorted(set(runs) - set(listed))}, extra {sorted(set(listed) - set(runs))}; "
            "fix with: python tools/code_deps.py --write"
        )


def test_no_import_cycles():
    edges = code_deps.graph()
    for name in edges:
        for other in edges[name]:
            assert name not in code_deps.closure(other, edges) or other.startswith(name + "."), (
                f"{name} imports {other}, which imports {name} back"
            )


def test_stage_scripts_stay_thin():
    for path in (ROOT / "stages").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 150, f"{path.name}: move logic into textclf/"
