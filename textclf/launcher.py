"""The `launcher` param, turned into the command that starts a train or evaluate process.

dvc.yaml runs `python -m stages.launch <stage>`, which checks the param and only then starts the
stage. (Interpolating `${launcher}` into the command, as before, let DVC run any shell text put in
the param, e.g. `dvc exp run -s train -S "launcher=touch pwned"`, before any check could run.) The
command is started without a shell, from this list of programs only.
"""

import re
import shlex
import sys

from textclf.console import DropRecords
from textclf.errors import InputError

EXAMPLES = "python, 'torchrun --nproc_per_node 2', 'accelerate launch --multi_gpu --num_processes 2'"
# Environment settings before the program, e.g. CUDA_VISIBLE_DEVICES=1 python (one GPU per experiment):
# only the device and thread-count families; never LD_PRELOAD, PYTHONPATH and the like.
FAMILIES = "CUDA|NCCL|OMP|MKL|HIP|ROCR|PYTORCH|TORCH|ACCELERATE|GLOO"
ENV = re.compile(rf"^({FAMILIES})_[A-Z0-9_]*=[A-Za-z0-9_.,:/@%+-]*$")
OPTION = re.compile(r"^(--?[A-Za-z][A-Za-z0-9_-]*(=[A-Za-z0-9_.,:/@%+-]*)?|[A-Za-z0-9_.,:/@%+-]+)$")
# Options that would make the launcher run something other than the stage module.
FORBIDDEN = {"--no-python", "--no_python", "--run-path", "--run_path", "-m", "--module", "--module_name"}
# torchrun options that say where the other nodes are: without them it runs on one host, and
# --standalone lets it pick a free port, so two runs on one host do not collide on the default one.
MULTI_NODE = ("--nnodes", "--rdzv", "--master", "--node", "--standalone")


def processes(options: list[str]) -> int:
    """accelerate launch's --num_processes (as `--num_processes 2` or `--num_processes=2`), else 1."""
    for i, option in enumerate(options):
        name, _, value = option.partition("=")
        if name == "--num_processes":
            value = value or (options[i + 1] if i + 1 < len(options) else "")
            return int(value) if value.isdigit() else 1
    return 1


def launcher_argv(launcher: str, module: str | None = None) -> tuple[dict[str, str], list[str]]:
    """(environment additions, argv) that start `python -m <module>` under the launcher.

    Raises InputError for anything but python, torchrun or `accelerate launch` with plain options.
    """
    try:
        words = shlex.split(launcher)
    except ValueError as e:
        raise InputError(f"launcher: '{launcher}' is not a command line ({e}). Examples: {EXAMPLES}.") from None
    env = {}
    while words and ENV.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    if not words or words[0] not in ("python", "torchrun", "accelerate"):
        found = words[0] if words else "nothing"
        raise InputError(
            f"launcher: '{launcher}' starts with {found!r}; it must start with python, torchrun or "
            f"accelerate (optionally after VAR=value settings). Examples: {EXAMPLES}."
        )
    program, options = words[0], words[1:]
    if program == "accelerate":
        if options[:1] != ["launch"]:
            raise InputError(f"launcher: '{launcher}': accelerate must be followed by launch.")
        options = options[1:]
    if program == "python" and options:
        raise InputError(f"launcher: '{launcher}': plain python takes no options here; use 'python'.")
    bad = [o for o in options if not OPTION.match(o) or o.split("=")[0] in FORBIDDEN]
    if bad:
        raise InputError(f"launcher: '{launcher}': option {bad[0]!r} is not allowed. Examples: {EXAMPLES}.")
    if program == "accelerate" and "--cpu" in options and processes(options) > 1 and "--mpirun_hostfile" not in options:
        # accelerate's --cpu runs its simple launcher: one process, whatever --num_processes says, unless MPI
        # is configured. Without this check a run meant for 2 processes trained as 1, silently.
        raise InputError(
            f"launcher: '{launcher}': accelerate launch --cpu starts a single process (several need MPI: "
            "--mpirun_hostfile). For several processes on a CPU use 'torchrun --nproc_per_node 2' or "
            "'accelerate launch --multi_gpu --num_processes 2' (on a machine without a GPU it runs them on the "
            "CPU, with gloo)."
        )
    if program == "torchrun" and not any(o.startswith(MULTI_NODE) for o in options):
        options = ["--standalone", *options]
    start = {
        "python": [sys.executable],
        "torchrun": [sys.executable, "-m", "torch.distributed.run"],
        "accelerate": [sys.executable, "-m", "accelerate.commands.launch"],
    }[program]
    return env, [*start, *options, *(["-m", module] if module else [])]


IN_PROCESS = ("torch.distributed.run", "accelerate.commands.launch")  # run here rather than exec'd


def run_in_process(stage: str, argv: list[str]) -> int:
    """Run torchrun or accelerate launch (argv from launcher_argv: python -m <launcher> ...) in this
    process, rather than exec it, and return the exit code. Exec'd, each printed a traceback and a
    40-line failure table after a rank's own `error:` line, and a traceback on Ctrl-C. Here the ranks'
    own lines tell what happened; one line is added only for a rank killed by a signal (it could not
    say anything itself)."""
    import logging
    import signal
    import subprocess
    import tempfile

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # The launcher's log lines of what is reported here, or by the ranks, once more.
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").addFilter(
        DropRecords("closing signal", "failed (exitcode")
    )
    logging.getLogger("torch.distributed.elastic.agent.server.api").addFilter(DropRecords("death signal"))
    module, options = argv[2], argv[3:]
    # torch's elastic agent logs into a fresh tempfile.mkdtemp("torchelastic_") per run and never removes
    # it: give this process's tempfile a folder of its own, removed when the run ends. Not where the
    # ranks' output is redirected or teed into files there (the user asked to keep them); a --log-dir
    # the user passes is theirs and kept either way.
    logged = any(o.split("=")[0] in ("--redirects", "-r", "--tee", "-t") for o in options)
    scratch = tempfile.TemporaryDirectory(prefix="textclf-launch-") if not logged else None
    tempfile.tempdir = scratch.name if scratch else None
    try:
        if module == "torch.distributed.run":
            from torch.distributed.run import parse_args, run

            run(parse_args(options))
        else:
            from accelerate.commands.launch import launch_command, launch_command_parser

            # Its single-process launcher waits on the stage with no Ctrl-C handling of its own: the stage,
            # in the same process group, gets the Ctrl-C and saves its checkpoint; this process waits for
            # it (a handler, not SIG_IGN, which the stage would inherit). Its multi-process ones install
            # torch's handlers over this one.
            signal.signal(signal.SIGINT, lambda signum, frame: None)
            launch_command(launch_command_parser().parse_args(options))
    except SignalException as e:  # Ctrl-C, or SIGTERM: the launcher passed it on to the ranks and waited
        return 128 + int(e.sigval)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        return exit_code(stage, rank, failure.exitcode)
    except subprocess.CalledProcessError as e:  # accelerate's single-process launcher
        return exit_code(stage, 0, e.returncode)
    finally:
        tempfile.tempdir = None
        if scratch:
            scratch.cleanup()
    return 0


def exit_code(stage: str, rank: int, code: int) -> int:
    """A failed process's exit code as a shell gives it; a line for one killed by a signal (it could not
    say anything itself). One that exited by itself has printed why."""
    import signal

    if code >= 0:
        return code
    name = signal.Signals(-code).name
    hint = " (out of memory? the kernel's OOM killer sends it)" if name == "SIGKILL" else ""
    print(f"{stage}: process {rank} was killed by {name}{hint}", file=sys.stderr)
    return 128 - code
