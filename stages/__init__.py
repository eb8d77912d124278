"""The pipeline's stages, one thin script each, run as `python -m stages.<name>` (see dvc.yaml).

Each reads params, calls into the `textclf` package, and writes its outputs. `run_stage` is how every
stage starts: bad input ends in one `error: ...` line and exit code 1, not a traceback.
"""

import gc
import signal
import sys
from collections.abc import Callable
from pathlib import Path

# A stage process imports torch, transformers and datasets: millions of Python objects that the cyclic
# garbage collector scans again and again while they load (0.9 s of a 3.5 s import, measured) and once
# more at exit (1.1 s). This runs while `python -m` is still locating the stage module (sys.argv[0] is
# "-m" until then), so collection pauses before those imports; run_stage freezes what was imported
# out of the collector's sight and turns collection back on. Importing `stages` from anywhere else
# (tests, notebooks) leaves the collector alone.
started_as_a_stage = sys.argv[:1] == ["-m"]
gc_paused = started_as_a_stage and gc.isenabled()
if gc_paused:
    gc.disable()


def interrupted_while_starting(signum, frame) -> None:
    """Ctrl-C while a stage imports its libraries (seconds): nothing is written yet, so one line, not the
    traceback of whatever import it landed in (one per process under torchrun)."""
    if not a_later_rank():
        print(f"\n{stage_name()}: interrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)


if started_as_a_stage and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, interrupted_while_starting)  # run_stage puts Python's own back


RANK_LINE_DELAY_S = 5.0


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(): bad input and failed writes end in one clear line and exit code 1.

    Outputs are written through textclf.files.atomic_dir / write_text_atomic, so a failure leaves none
    half-written.
    """
    import errno

    from textclf.console import quiet_libraries
    from textclf.errors import InputError

    global gc_paused
    if signal.getsignal(signal.SIGINT) is interrupted_while_starting:  # started: Ctrl-C is KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if gc_paused:  # the imports are done: resume collecting
        gc.freeze()
        gc.enable()
        gc_paused = False
    if "datasets" in sys.modules:  # not imported here: the source stage runs on every repro, and is light
        # datasets writes cache-*.arrow files beside the data it maps: inside a DVC output that marks the
        # output as modified and reruns its stage. With caching off, map() results go to a temp folder.
        sys.modules["datasets"].disable_caching()
    quiet_libraries()
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C outside training's own handling (which saves a checkpoint)
        if not a_later_rank():  # the first process's line is enough
            print(f"\n{stage_name()}: interrupted; no half-written output is left: run it again", file=sys.stderr)
        sys.exit(130)
    except InputError as e:
        if a_later_rank():
            # Every rank checks the same params and data, so the first process fails too, and its launcher
            # then ends this one (by SIGTERM: no handler of training's may keep it): held back a moment,
            # the line shows once, not once per process.
            import time

            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            time.sleep(RANK_LINE_DELAY_S)
        sys.exit(f"error: {e}")
    except OSError as e:
        fixes = {
            errno.ENOSPC: "the disk is full: free space and rerun",
            errno.EDQUOT: "the disk quota is used up: free space and rerun",
            errno.EACCES: "make it writable (or run from a writable clone)",
            errno.EPERM: "make it writable (or run from a writable clone)",
            errno.EROFS: "the file system is read-only: run from a writable clone",
            errno.ENOTDIR: "a file stands where a folder is needed: remove it",
            errno.EEXIST: "a file stands where a folder is needed: remove it",
        }
        if e.errno not in fixes:
            raise
        # filename2 is the destination where there are two (shutil.copyfile names its source first).
        target = e.filename2 or e.filename or "an output"
        sys.exit(f"error: cannot write {target}: {e.strerror}; {fixes[e.errno]}.")


def stage_name() -> str:
    """This stage's name (train, ...; the stage a `stages.launch` starts)."""
    name = sys.argv[1] if Path(sys.argv[0]).stem == "launch" and sys.argv[1:] else Path(sys.argv[0]).stem
    return "stage" if name == "-m" else name  # argv[0] is "-m" until python -m has found the module


def a_later_rank() -> bool:
    """A process of torchrun's (or accelerate's multi-process launch) other than the first."""
    import os

    return os.environ.get("RANK", "0") not in ("", "0") and "LOCAL_RANK" in os.environ


def require_inputs(stage: str, *paths: Path) -> None:
    """One error line for inputs that earlier stages write and that are absent: a stage run on its own
    (python -m stages.<name>) before the stages it needs. Without it: a traceback, or for a missing
    data/pretrained, a minute of retries fetching a Hub model of that name."""
    from textclf.errors import InputError

    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise InputError(
            f"{' and '.join(missing)} not found: earlier stages write {'them' if len(missing) > 1 else 'it'}. Run "
            f"the pipeline up to this stage: dvc repro {stage}"
        )


if started_as_a_stage and sys.platform.startswith("linux"):  # stop when DVC or the launcher dies
    from textclf import lifeline

    lifeline.arm()
