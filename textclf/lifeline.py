"""A stage stops when the DVC or launcher process that started it dies (Linux).

DVC killed alone (`kill <pid>`, a supervisor) does not pass the signal on, and torchrun starts its ranks
in sessions of their own, so a SIGKILL of the whole group misses them: either way the stage went on as an
orphan, wrote outputs that no dvc.lock records and removed the checkpoints, and a rerun resumed from
checkpoints it was still writing. With this, the stage is sent SIGTERM: training stops as on Ctrl-C (a
checkpoint, then exit); other stages just stop (their outputs appear whole or not at all).

DVC runs a stage's command through $SHELL -c, or /bin/sh -c where SHELL is unset (containers, CI
runners). bash and zsh replace themselves with the command; dash and fish stay, as the stage's parent,
and outlive a killed DVC. So the stage watches its starters up the line of ancestors, through `-c`
shells: the direct parent by the kernel's parent-death signal (kept across stages.launch's exec of the
launcher), the ones above by a thread waiting on their pidfds.
"""

import os
import signal
import threading
from pathlib import Path

LAUNCH_PID = "TEXTCLF_LAUNCH_PID"  # set by stages.launch: the pid the launcher keeps
# The starters whose death stops a stage: DVC, and the launchers that start its ranks (as a console script
# or a module). Not any ancestor: a stage started by hand (nohup, a scheduler's thread) runs on as before.
STARTERS = {"dvc", "torchrun", "accelerate", "torch.distributed.run", "accelerate.commands.launch"}
SHELLS = {"sh", "dash", "bash", "zsh", "fish", "ksh", "mksh", "ash", "busybox"}  # passed through when run -c
MOST_ANCESTORS = 8  # dvc -> sh -> torchrun -> rank is the longest line a stage has


def stop() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def arm() -> None:
    """Have this process sent SIGTERM when a starter above it dies. Called when `stages` is first
    imported, before the stage's imports, so that no starter can die unseen."""
    parent, launcher = os.getppid(), os.environ.get(LAUNCH_PID, "")
    if launcher.isdigit() and int(launcher) != os.getpid():  # a rank: is its launcher still there?
        try:
            os.kill(int(launcher), 0)  # (under mpirun the rank's parent is another process)
        except ProcessLookupError:
            return stop()
        except PermissionError:
            pass
    line = starters_line(parent)
    if os.getppid() != parent:  # the parent died meanwhile
        return stop()
    if not line:
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the direct parent
    if os.getppid() != parent:  # the parent died before the call: no signal will come
        return stop()
    if len(line) > 1:
        watch(line)
    return None


def starters_line(parent: int) -> list[int]:
    """The ancestors to watch, from the parent up to the last starter, through `-c` shells and
    launchers; [] where no starter is above (a stage run by hand, or by a script)."""
    line, last_starter, pid = [], 0, parent
    while pid > 1 and len(line) < MOST_ANCESTORS:
        args = [Path(a.decode(errors="replace")).name for a in cmdline(pid)]
        if STARTERS & set(args):
            line.append(pid)
            last_starter = len(line)
            if "dvc" in args:  # DVC's own parent is the user's
                break
        elif args and args[0] in SHELLS and "-c" in args:
            line.append(pid)
        else:
            break
        pid = parent_of(pid)
    return line[:last_starter]


def watch(line: list[int]) -> None:
    """A thread that sends this process SIGTERM when any of line[1:] ends (line[0], the parent, has the
    kernel's signal). Each link is checked after its pidfd is open, so a pid reused meanwhile is seen."""
    fds = []
    for pid in line[1:]:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            return stop()
        except (OSError, AttributeError):  # no pidfds here (a kernel before 5.3): the parent's signal only
            return None
    if any(parent_of(child) != pid for child, pid in zip(line, line[1:], strict=False)):
        return stop()  # a link ended before its pidfd was open

    def wait() -> None:
        import select

        poll = select.poll()
        for fd in fds:
            poll.register(fd, select.POLLIN)
        poll.poll()  # a pidfd turns readable when its process ends
        stop()

    threading.Thread(target=wait, name="textclf-starters", daemon=True).start()
    return None


def cmdline(pid: int) -> list[bytes]:
    try:
        return [arg for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if arg]
    except OSError:  # unreadable (pid 0 in a container), or gone
        return []


def parent_of(pid: int) -> int:
    try:  # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0
