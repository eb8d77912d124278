"""Start a stage under the `launcher` param: `python -m stages.launch train` (see dvc.yaml).

The param is checked before anything runs (textclf/launcher.py), then this process is replaced by
the launcher, which runs `-m stages.<stage>` in one or more processes.
"""

import os
import sys

from stages import run_stage
from textclf.errors import InputError
from textclf.launcher import launcher_argv
from textclf.lifeline import LAUNCH_PID
from textclf.params import load_params

STAGES = ("train", "evaluate")  # the stages that may run in several processes


def main() -> None:
    stage = sys.argv[1] if len(sys.argv) > 1 else ""
    if stage not in STAGES:
        raise InputError(f"stages.launch: expected one of {', '.join(STAGES)}, got {stage!r}.")
    env, argv = launcher_argv(load_params().launcher, f"stages.{stage}")
    sys.stdout.flush()
    # The launcher keeps this pid: its ranks check that it is still alive (textclf.lifeline).
    os.execve(argv[0], argv, os.environ | env | {LAUNCH_PID: str(os.getpid())})


if __name__ == "__main__":
    run_stage(main)
