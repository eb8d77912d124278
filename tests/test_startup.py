"""Stage processes pause the garbage collector while importing torch/transformers/datasets (see
stages/__init__.py); anything else that imports `stages` keeps it running."""

import subprocess
import sys

from tests.conftest import ROOT


def python(code: str, cwd=ROOT, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, *args] if args else [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_importing_stages_leaves_the_collector_alone():
    assert python("import gc, stages; print(gc.isenabled(), stages.gc_paused)") == "True False"


def test_python_dash_m_shows_as_argv_dash_m_while_the_package_imports(tmp_path):
    # The assumption stages/__init__.py rests on, checked on this Python.
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "__init__.py").write_text("import sys\nprint('package', sys.argv[0])\n")
    (tmp_path / "probe" / "run.py").write_text("import sys\nprint('module', sys.argv[0] == __file__)\n")
    assert python("", tmp_path, "-m", "probe.run").splitlines() == ["package -m", "module True"]


def test_a_stage_imports_with_collection_paused_and_runs_with_it_on():
    code = (
        "import sys; sys.argv[0] = '-m'\n"  # what `python -m stages.x` shows while importing the package
        "import gc, stages\n"
        "paused = not gc.isenabled()\n"
        "from stages import run_stage\n"
        "run_stage(lambda: print(paused, gc.isenabled(), gc.get_freeze_count() > 0, stages.gc_paused))\n"
    )
    assert python(code) == "True True True False"
