"""Start a stage under the `launcher` param: `python -m stages.launch train` (see dvc.yaml).

The param is checked before anything runs (textclf/launcher.py), then this process runs the launcher
(torchrun, accelerate launch), or is replaced by plain python, which runs `-m stages.<stage>` in one
or more processes.
"""

import os
import sys

from stages import run_stage
from textclf.errors import InputError
from textclf.launcher import IN_PROCESS, launcher_argv, run_in_process
from textclf.lifeline import LAUNCH_PID
from textclf.params import load_params

STAGES = ("train", "evaluate")  # the stages that may run in several processes


def main() -> None:
    stage = sys.argv[1] if len(sys.argv) > 1 else ""
    if stage not in STAGES:
        raise InputError(f"stages.launch: expected one of {', '.join(STAGES)}, got {stage!r}.")
    env, argv = launcher_argv(load_params().launcher, f"stages.{stage}")
    # The launcher keeps this pid: its ranks check that it is still alive (textclf.lifeline).
    os.environ.update(env | {LAUNCH_PID: str(os.getpid())})
    if argv[1:2] == ["-m"] and argv[2] in IN_PROCESS:
        sys.exit(run_in_process(stage, argv))
    sys.stdout.flush()
    os.execv(argv[0], argv)


if __name__ == "__main__":
    run_stage(main)
