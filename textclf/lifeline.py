"""A stage stops when the DVC or launcher process that started it dies (Linux).

DVC killed alone (`kill <pid>`, a supervisor) does not pass the signal on, and torchrun starts its ranks
in sessions of their own, so a SIGKILL of the whole group misses them: either way the stage went on as an
orphan, wrote outputs that no dvc.lock records and removed the checkpoints, and a rerun resumed from
checkpoints it was still writing. With this, the stage is sent SIGTERM: training stops as on Ctrl-C (a
checkpoint, then exit); other stages just stop (their outputs appear whole or not at all).

DVC is not always the stage's parent: it runs a command through $SHELL -c, or /bin/sh -c where SHELL is
unset (containers, CI runners), and dash and fish stay, as the parent, outliving a killed DVC; a rank's
parent is its launcher. So a stage watches two processes: its parent, by the kernel's parent-death
signal (kept across stages.launch's exec of plain python), and DVC, by a thread waiting on its pidfd.
DVC is found as the first ancestor outside the stage's command: DVC gives that command, and so every
process below it, DVC_STAGE in the environment. The first stage process to find it passes it on (pid and
start time) through the environment to the ranks its launcher starts, restarted ones too.
"""

import os
import signal
import threading
from pathlib import Path

LAUNCH_PID = "TEXTCLF_LAUNCH_PID"  # set by stages.launch: the pid the launcher keeps
DVC_PROCESS = "TEXTCLF_DVC_PROCESS"  # "<pid>:<start time>" of the DVC above, once found
# Launchers whose death stops the ranks they start without DVC (by hand, a cluster job): stages.launch, known
# by LAUNCH_PID, and these, as a console script or a module.
# Not any parent: a stage started by hand (nohup, a scheduler's thread) runs on as before.
LAUNCHERS = {"torchrun", "accelerate", "torch.distributed.run", "accelerate.commands.launch"}
MOST_ANCESTORS = 8  # dvc -> sh -> torchrun -> rank is the longest line a stage has


def stop() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def arm() -> None:
    """Have this process sent SIGTERM when DVC or the launcher above it dies. Called when `stages` is
    first imported, before the stage's imports, so that neither can die unseen."""
    parent, launcher = os.getppid(), os.environ.get(LAUNCH_PID, "")
    if launcher.isdigit() and int(launcher) != os.getpid() and not alive(int(launcher)):
        return stop()  # a rank whose launcher has gone (under mpirun the rank's parent is another process)
    dvc = dvc_above(parent)
    if dvc is False or os.getppid() != parent:  # DVC, or the parent, died meanwhile
        return stop()
    launched = launcher == str(parent)  # a rank of stages.launch (which runs torchrun in its own process)
    if dvc is None and not launched and not LAUNCHERS & names(parent):
        return None  # started by hand or by a script
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the direct parent
    if os.getppid() != parent:  # the parent died before the call: no signal will come
        return stop()
    if dvc is not None and dvc != parent:
        watch(dvc, os.environ[DVC_PROCESS].partition(":")[2])  # the process dvc_above found, not a pid reuse
    return None


def dvc_above(parent: int) -> int | None | bool:
    """The pid of the DVC process running this stage; None where DVC did not start it; False where it
    was started by a DVC that has died."""
    if "DVC_STAGE" not in os.environ:
        return None
    passed_on = os.environ.get(DVC_PROCESS, "")
    if passed_on:
        pid, _, started = passed_on.partition(":")
        return int(pid) if pid.isdigit() and start_time(int(pid)) == started else False
    pid = parent
    for _ in range(MOST_ANCESTORS):
        named_dvc = "dvc" in names(pid)
        if pid <= 1 and not named_dvc:
            return False  # the line was handed to init: DVC is gone (unless DVC is a container's init)
        if b"DVC_STAGE" not in environment(pid) or named_dvc:
            started = start_time(pid)
            if not started:
                return False
            os.environ[DVC_PROCESS] = f"{pid}:{started}"  # for the ranks a launcher starts
            return pid
        pid = parent_of(pid)
    return None


def watch(pid: int, started: str) -> None:
    """A thread that sends this process SIGTERM when `pid`, which started at `started`, ends: by its
    pidfd, or where pidfds are refused (kernels before 5.3, some container sandboxes), by looking every
    second."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return stop()
    except (OSError, AttributeError):
        fd = None
    if start_time(pid) != started:  # ended, and the pid reused, before the pidfd was open
        return stop()

    def wait() -> None:
        import select
        import time

        if fd is None:
            while running(pid, started):
                time.sleep(1.0)
        else:
            poll = select.poll()
            poll.register(fd, select.POLLIN)
            poll.poll()  # a pidfd turns readable when its process ends
        stop()

    threading.Thread(target=wait, name="textclf-dvc-watch", daemon=True).start()
    return None


def alive(pid) -> bool:
    """Whether a process of that pid exists (a pid as read from a file: anything not a number is not)."""
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's: it exists
        pass
    return True


def cmdline(pid: int) -> list[bytes]:
    try:
        return [arg for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if arg]
    except OSError:  # unreadable (pid 0 in a container), or gone
        return []


def names(pid: int) -> set[str]:
    """The file names of a process's command line: its program, script or module, and arguments."""
    return {os.path.basename(arg.decode(errors="replace")) for arg in cmdline(pid)}


def environment(pid: int) -> list[bytes]:
    """The variable names of a process's environment as it started; [] where unreadable."""
    try:
        return [entry.partition(b"=")[0] for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")]
    except OSError:
        return []


def stat_fields(pid: int) -> list[str]:
    try:  # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def parent_of(pid: int) -> int:
    fields = stat_fields(pid)
    return int(fields[1]) if len(fields) > 1 else 0


def running(pid: int, started: str) -> bool:
    """Whether the process that started at `started` is there and not ended (a zombie: not yet reaped)."""
    fields = stat_fields(pid)
    return len(fields) > 19 and fields[19] == started and fields[0] != "Z"


def start_time(pid: int) -> str:
    """When the process started (clock ticks since boot): with the pid, it names one process."""
    fields = stat_fields(pid)
    return fields[19] if len(fields) > 19 else ""
