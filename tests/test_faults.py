"""No wrong result is ever recorded: faults injected on purpose. Two runs in one workspace, a Ctrl-C in
the middle of an epoch, a full disk, a launcher param that tries to run a command, small mistakes."""

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stages import run_stage
from tests.conftest import (
    TINY_TRAIN,
    copy_work,
    make_repo,
    read,
    run,
    set_params,
    stage_cmd,
    stage_run,
    tool_env,
    write_mrpc,
)
from textclf.checkpoints import remove_partial
from textclf.errors import InputError
from textclf.files import writing
from textclf.launcher import launcher_argv
from textclf.sources import require_folder

# --- 1. two `dvc exp run` in one workspace -----------------------------------------------------


def test_a_second_run_in_the_workspace_leaves_no_wrong_cached_result(tmp_path, tiny_model):
    data = write_mrpc(tmp_path / "mrpc", n_train=160)
    repo = make_repo(tmp_path / "repo", {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN})
    run(["dvc", "repro", "tokenize"], repo)
    first = subprocess.Popen(
        ["dvc", "exp", "run", "-S", "lr=5e-5", "-S", "seed=21", "-S", "epochs=12"],
        cwd=repo,
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    for line in first.stdout:  # wait until the first run is training
        seen.append(line)
        if "train: engine" in line:
            break
    assert first.poll() is None, "".join(seen)
    # DVC writes the second run's params into params.yaml, then fails on the first run's lock.
    second = run(["dvc", "exp", "run", "-S", "lr=3e-5", "-S", "seed=22"], repo, check=False)
    assert second.returncode != 0
    output = "".join(seen) + first.communicate(timeout=300)[0]
    assert first.returncode != 0, output
    assert "error: params.yaml changed while train ran (lr: 5e-05 -> 3e-05; seed: 21 -> 22" in output
    # Nothing recorded under the second run's params: train shows as changed, and no model was written.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert "train" not in lock or lock["train"]["params"]["params.yaml"]["seed"] != 22
    assert "train" in run(["dvc", "status"], repo).stdout
    assert not (repo / "data/trained").exists()


def test_params_guard_lets_unrelated_edits_pass(tmp_path, monkeypatch):
    from textclf.params import ensure_unchanged, load_params

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text("stages:\n  train:\n    cmd: x\n    params: [lr, seed]\n")
    load_params()
    set_params(tmp_path, max_length=64)  # not a train param: a user preparing the next experiment
    ensure_unchanged("train")
    set_params(tmp_path, seed=7)
    with pytest.raises(InputError, match="changed while train ran .seed: 42 -> 7"):
        ensure_unchanged("train")


# --- 2. Ctrl-C in the middle of an epoch, with the default params ------------------------------


def interrupt_mid_epoch(work: Path) -> str:
    """Start train; send SIGINT as soon as the first checkpoint is complete (the first evaluation, at
    step 8 of 80), so that the interrupt lands a step or two later, inside the first epoch (20 steps)
    and inside a logging window (5 steps); return the output."""
    proc = subprocess.Popen(
        stage_cmd("train"), cwd=work, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    markers = ("checkpoint-8/trainer_state.json", "step-8/loop_state.json")  # eval_steps 0.1 of 80 steps
    deadline = time.time() + 180
    while not any((work / "data/checkpoints" / m).exists() for m in markers):
        assert proc.poll() is None and time.time() < deadline, "no first-epoch checkpoint appeared"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 130, output[-3000:]
    return output


@pytest.mark.parametrize("engine", ["trainer", "accelerate"])
def test_ctrl_c_mid_epoch_then_resume_is_byte_identical(prepared, tmp_path, engine):
    # The defaults that matter here: group_by_length (batches from a shuffled length-grouped order) and
    # a logging window that the interrupt cuts in two (5 steps; 20 steps per epoch). Also: the moving
    # average of the weights (ema), which the resumed run must continue from the checkpoint's.
    params = {"engine": engine, "epochs": 4, "logging_steps": 5, "group_by_length": True, "ema": 0.9}
    whole = copy_work(prepared, tmp_path / "whole")
    stage_run(whole, "train", **params)
    cut = copy_work(prepared, tmp_path / "cut")
    set_params(cut, **params)
    interrupt_mid_epoch(cut)
    saved = [int(p.name.rsplit("-", 1)[1]) for p in (cut / "data/checkpoints").glob("*-[0-9]*")]
    # The interrupt's checkpoint: inside the first epoch (20 steps); step 8 itself
    # when the signal lands before step 9 starts (seen in CI), which is as good a mid-epoch cut.
    assert max(saved) >= 8 and max(saved) % 20, saved
    assert "train: resuming from" in stage_run(cut, "train").stdout
    for name in ("metrics/curves/train.tsv", "metrics/curves/eval.tsv"):
        assert read(cut, name) == read(whole, name), name
    weights = [(w / "data/trained/model.safetensors").read_bytes() for w in (cut, whole)]
    assert weights[0] == weights[1]


def test_under_torchrun_a_bad_input_is_one_line_and_ctrl_c_no_traceback(prepared, tmp_path):
    """torchrun (exec'd as before) followed each rank's `error:` line with a traceback and a 40-line
    failure table, and a Ctrl-C with a traceback of its own; every rank printed the error line."""
    work = copy_work(prepared, tmp_path / "work")
    set_params(work, launcher="torchrun --nproc_per_node 2", epochs=40)
    (work / "data/tokenized").rename(work / "data/away")
    tmp = tmp_path / "tmp"  # torch's launcher logged into a torchelastic_* folder here, left behind
    tmp.mkdir()
    env = tool_env() | {"TMPDIR": str(tmp)}
    out = subprocess.run(stage_cmd("train"), cwd=work, env=env, capture_output=True, text=True)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 1 and len(errors) == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "data/tokenized not found" in errors[0]
    (work / "data/away").rename(work / "data/tokenized")
    proc = subprocess.Popen(stage_cmd("train"), cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while not list((work / "data/checkpoints").glob("checkpoint-*/trainer_state.json")):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # the launcher's process: the terminal's Ctrl-C reaches it
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 130 and "Traceback" not in output and "death signal" not in output, output[-3000:]
    assert re.search(r"train: stopped at step \d+; checkpoint kept", output), output[-3000:]
    assert not list(tmp.iterdir()), list(tmp.iterdir())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("launcher", ["python", "torchrun --nproc_per_node 2"])
def test_ctrl_c_while_a_stage_starts_is_one_line_not_a_traceback(prepared, tmp_path, launcher):
    """A Ctrl-C in the seconds a stage spends importing torch and transformers printed the traceback of
    whichever import it landed in."""
    work = copy_work(prepared, tmp_path / "work")
    set_params(work, launcher=launcher)
    env = tool_env()
    proc = subprocess.Popen(stage_cmd("train"), cwd=work, env=env, stderr=subprocess.PIPE, text=True)
    importing = [proc.pid] if launcher == "python" else []  # torchrun: its ranks, once started
    deadline = time.time() + 90
    while not importing or not all(b"libtorch" in maps(pid) for pid in importing):  # stages/__init__ ran first
        assert proc.poll() is None and time.time() < deadline, "the stage did not start importing"
        importing = importing or (found if len(found := stage_processes(work)) == 2 else [])
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # the terminal's Ctrl-C (torchrun's ranks are sessions of their own)
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.count("interrupted") <= 1, stderr[-3000:]
    assert not (work / "data/trained").exists()


def maps(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/maps").read_bytes()
    except OSError:
        return b""


INTERRUPTER = """
import os, signal
import textclf.console

at = int(os.environ["TEST_INTERRUPT_AT_STEP"])
step = textclf.console.Progress.step


def step_then_interrupt(self, n):
    step(self, n)
    if n == at and self.enabled:
        os.kill(os.getpid(), signal.SIGINT)


textclf.console.Progress.step = step_then_interrupt
"""


def hooked_env(tmp_path: Path, sitecustomize: str) -> dict:
    """The stages' environment with `sitecustomize` run at each Python start: a fault injected from inside."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(sitecustomize)
    return tool_env() | {"PYTHONPATH": str(hook)}


@pytest.mark.parametrize("engine", ["trainer", "accelerate"])
@pytest.mark.parametrize("stopping", [None, "at epoch end", "mid-epoch"])
def test_ctrl_c_in_an_epochs_last_step_keeps_its_evaluation(prepared, tmp_path, engine, stopping):
    """Evaluating once per epoch, a Ctrl-C in an epoch's last step: the Trainer saved the checkpoint
    without the epoch's evaluation and the resumed run started at the next epoch, so that epoch was
    never evaluated and its model never kept. With early stopping whose patience runs out at that very
    evaluation, the resumed Trainer trained on for another epoch. The signal is sent from inside the run
    (sitecustomize), to land in exactly that step: the Trainer checks it at the step after the bar's
    (19 -> 20), the loop at the bar's own (20)."""
    params = {"engine": engine, "epochs": 2, "eval_steps": 0}
    if stopping:  # lr so small that nothing improves: the 2nd evaluation runs out of patience
        params |= {"epochs": 3, "lr": 1e-9, "early_stopping_patience": 1, "metric_for_best_model": "accuracy"}
    if stopping == "mid-epoch":  # evaluations at steps 5 and 10 of an epoch of 20
        params |= {"eval_steps": 5}
    whole = copy_work(prepared, tmp_path / "whole")
    stage_run(whole, "train", **params)
    cut = copy_work(prepared, tmp_path / "cut")
    set_params(cut, **params)
    at = {None: 20, "at epoch end": 40, "mid-epoch": 10}[stopping]
    env = hooked_env(tmp_path, INTERRUPTER) | {"TEST_INTERRUPT_AT_STEP": str(at - (engine == "trainer"))}
    out = subprocess.run(stage_cmd("train"), cwd=cut, env=env, capture_output=True, text=True)
    assert out.returncode == 130 and f"train: stopped at step {at}" in out.stdout + out.stderr, out.stdout + out.stderr
    assert "train: resuming from" in stage_run(cut, "train").stdout
    assert read(cut, "metrics/curves/eval.tsv") == read(whole, "metrics/curves/eval.tsv")
    assert len(read(cut, "metrics/curves/eval.tsv")) == 1 + 2  # epochs 1 and 2 (and no 3rd when stopping)
    for key in ("stopped_early", "epochs_run", "best_epoch", "steps"):
        assert read(cut, "metrics/train.json")[key] == read(whole, "metrics/train.json")[key], key
    weights = [(w / "data/trained/model.safetensors").read_bytes() for w in (cut, whole)]
    assert weights[0] == weights[1]


def test_an_interrupted_temporary_experiment_does_not_promise_a_resume(tmp_path, tiny_model):
    """`dvc exp run --temp` (and every queued run) trains in a copy of the repository under
    .dvc/tmp/exps that DVC removes when the run fails, checkpoint included; the stage said "checkpoint
    kept ... run `dvc exp run` again to resume", and a rerun started over."""
    data = write_mrpc(tmp_path / "mrpc", n_train=64)
    repo = make_repo(tmp_path / "repo", {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN, "epochs": 4})
    env = hooked_env(tmp_path, INTERRUPTER) | {"TEST_INTERRUPT_AT_STEP": "5"}
    out = subprocess.run(["dvc", "exp", "run", "--temp"], cwd=repo, env=env, capture_output=True, text=True)
    output = out.stdout + out.stderr
    assert out.returncode != 0 and "train: stopped at step" in output, output[-3000:]
    assert "queue it again to start over" in output and "again to resume" not in output, output[-3000:]
    left = [p for p in (repo / ".dvc/tmp/exps").glob("tmp*") if p.is_dir()]
    assert left == [], left  # the workspace, and the checkpoint in it, are gone as the message says


def stage_processes(work: Path) -> list[int]:
    """The pids of the train stage's processes running in `work` (a launcher's ranks included)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(proc / "cwd").resolve() == work.resolve() and b"stages.train" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:  # ended meanwhile, or another user's
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize(
    "launcher, kill, shell",
    [
        ("python", "SIGTERM to dvc alone", "/bin/bash"),  # bash execs the command: the stage's parent is DVC
        ("python", "SIGTERM to dvc alone", "/bin/sh"),  # dash stays, as the stage's parent, and outlives DVC
        ("torchrun --nproc_per_node 2", "SIGTERM to dvc alone", "/bin/sh"),  # dvc > sh > torchrun > ranks
        ("accelerate launch --multi_gpu --num_processes 2", "SIGKILL to dvc's process group", "/bin/bash"),
    ],
)
def test_training_stops_with_a_checkpoint_when_dvc_dies(tmp_path, tiny_model, launcher, kill, shell):
    """DVC killed alone (it does not pass SIGTERM on), or a SIGKILL of the group, which misses the ranks of
    torchrun and accelerate (sessions of their own): the stage went on as an orphan, wrote outputs no
    dvc.lock records and removed the checkpoints, and a rerun resumed from checkpoints the orphans were
    still writing. Now the training stops as on Ctrl-C, with a checkpoint of a step after the one seen
    before the kill. DVC runs commands through $SHELL -c, or /bin/sh where SHELL is unset (CI runners)."""
    data = write_mrpc(tmp_path / "mrpc", n_train=160)
    params = {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN, "epochs": 40, "launcher": launcher}
    repo = make_repo(tmp_path / "repo", params)  # 800 steps: an orphan would train for minutes
    run(["dvc", "repro", "tokenize"], repo)
    tmp = tmp_path / "tmp"  # a launcher killed by SIGKILL leaves its temporary folder: here, not in /tmp
    tmp.mkdir()
    env = tool_env() | {"SHELL": shell, "TMPDIR": str(tmp)}
    dvc = subprocess.Popen(
        ["dvc", "repro", "train"], cwd=repo, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 240
    while not (seen := list((repo / "data/checkpoints").glob("checkpoint-*/trainer_state.json"))):
        assert dvc.poll() is None and time.time() < deadline, "training did not get to a checkpoint"
        time.sleep(0.05)
    first = int(seen[0].parent.name.rsplit("-", 1)[1])
    if kill.startswith("SIGTERM"):
        dvc.send_signal(signal.SIGTERM)
    else:
        os.killpg(dvc.pid, signal.SIGKILL)
    output = dvc.communicate(timeout=180)[0].decode()  # the pipe closes when the last stage process ends
    deadline = time.time() + 60
    while stage_processes(repo) and time.time() < deadline:
        time.sleep(0.2)
    left = stage_processes(repo)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], "the training went on without DVC"
    stopped = re.search(r"train: stopped at step (\d+); checkpoint kept", output)
    assert stopped and int(stopped.group(1)) > first, output[-3000:]
    assert (repo / f"data/checkpoints/checkpoint-{stopped.group(1)}/trainer_state.json").exists()
    assert not (repo / "data/trained").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_stage_finds_the_dvc_above_it_through_a_shell_and_none_when_run_by_hand(tmp_path, monkeypatch):
    """DVC is the first ancestor outside the stage's command (DVC_STAGE in the environment), here past
    a /bin/sh -c that stays as the parent; a stage run by a script or by hand has none (it runs on when
    its parent ends, as before). Once found, DVC is passed on to exec'd launchers and their ranks, and
    a passed-on DVC that has ended (its pid reused or gone) reads as dead."""
    from textclf.lifeline import DVC_PROCESS, dvc_above, start_time

    show = f"{sys.executable} -c 'import os; from textclf.lifeline import dvc_above; print(dvc_above(os.getppid()))'"
    fake_dvc = tmp_path / "dvc"  # runs a command as DVC does: $SHELL -c, with DVC_STAGE set
    fake_dvc.write_text(
        f"#!{sys.executable}\nimport os, subprocess, sys\n"
        "env = {**os.environ, 'DVC_STAGE': 'train'}\n"
        "proc = subprocess.Popen(['/bin/sh', '-c', sys.argv[1]], stdout=subprocess.PIPE, text=True, env=env)\n"
        "print(os.getpid(), proc.communicate()[0].strip())\n"
    )
    fake_dvc.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_STAGE", DVC_PROCESS)}
    dvc_pid, found = subprocess.run(
        [str(fake_dvc), show], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert found == dvc_pid
    by_hand = subprocess.run(["/bin/sh", "-c", show], capture_output=True, text=True, check=True, env=env)
    assert by_hand.stdout.strip() == "None"
    monkeypatch.setenv("DVC_STAGE", "train")
    monkeypatch.setenv(DVC_PROCESS, f"{os.getppid()}:{start_time(os.getppid())}")
    assert dvc_above(os.getpid()) == os.getppid()
    monkeypatch.setenv(DVC_PROCESS, f"{os.getppid()}:1")  # the same pid, another process
    assert dvc_above(os.getpid()) is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_ranks_of_stages_launch_without_dvc_stop_with_it_and_a_stage_run_by_hand_does_not(tmp_path):
    """A cluster job runs `python -m stages.launch train` by hand (README): its ranks' parent is that
    process (it runs torchrun in itself), named by no launcher's name; it is known by LAUNCH_PID."""
    from textclf.lifeline import LAUNCH_PID

    armed = (
        "import ctypes, signal; from textclf import lifeline; lifeline.arm(); sig = ctypes.c_int(); "
        "ctypes.CDLL(None).prctl(2, ctypes.byref(sig)); print(sig.value)"  # PR_GET_PDEATHSIG
    )
    parent = (
        "import os, subprocess, sys; env = {k: v for k, v in os.environ.items() if k != 'DVC_STAGE'}; "
        f"env.update({{{LAUNCH_PID!r}: str(os.getpid())}} if sys.argv[1] == 'launch' else {{}}); "
        f"subprocess.run([sys.executable, '-c', {armed!r}], env=env)"
    )
    for kind, signal_expected in (("launch", signal.SIGTERM), ("by hand", 0)):
        out = subprocess.run([sys.executable, "-c", parent, kind], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str(int(signal_expected)), (kind, out.stdout, out.stderr)


def test_a_second_sigterm_does_not_abort_the_checkpoint_a_second_ctrl_c_does():
    """A supervisor's SIGTERM again, or the parent's death right after its own signal (the parent-death
    SIGTERM): the checkpoint under way is kept. Only a second Ctrl-C aborts."""
    from textclf.engines.base import Interrupt

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        interrupt = Interrupt()
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # no KeyboardInterrupt
        assert interrupt.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # the handler runs at the next bytecode
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_ctrl_c_outside_training_is_one_line_and_exit_130(prepared, tmp_path):
    """Ctrl-C in download, tokenize, evaluate, or before training starts: one line, not a traceback."""
    work = copy_work(prepared, tmp_path / "work")
    env = hooked_env(
        tmp_path,
        "import transformers, os, signal\n"  # the signal lands while the stage loads its model
        "real = transformers.AutoTokenizer.from_pretrained\n"
        "def interrupted(*a, **k):\n    os.kill(os.getpid(), signal.SIGINT)\n    return real(*a, **k)\n"
        "transformers.AutoTokenizer.from_pretrained = interrupted\n",
    )
    out = subprocess.run(stage_cmd("tokenize"), cwd=work, env=env, capture_output=True, text=True)
    assert out.returncode == 130 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1] == "tokenize: interrupted; no half-written output is left: run it again"
    assert (work / "data/tokenized").exists()  # the earlier output, untouched


# --- 3. a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs, mounted where a test says; skipped where this user may not mount one."""
    mounted = []

    def mount(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def stage_fails(work: Path, stage: str) -> str:
    out = subprocess.run(stage_cmd(stage), cwd=work, env=tool_env(), capture_output=True, text=True)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr[-3000:]
    return errors[0]


def test_full_disk_while_checkpointing_gives_one_line_and_no_partial_checkpoint(prepared, tmp_path, small_disk):
    work = copy_work(prepared, tmp_path / "w")
    small_disk(work / "data/checkpoints")  # the tiny model's checkpoint (about 5 MB) does not fit
    error = stage_fails(work, "train")
    assert error.startswith("error: cannot write data/checkpoints") and "the disk is full" in error
    assert not [p for p in (work / "data/checkpoints").iterdir() if p.name.startswith(("checkpoint-", "tmp-"))]
    assert not (work / "data/trained").exists()


def test_full_disk_in_download_names_the_destination(tmp_path, tiny_model, small_disk):
    work = tmp_path / "w"
    work.mkdir()
    values = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    values |= {"dataset": str(write_mrpc(tmp_path / "mrpc")), "model": str(tiny_model)}
    (work / "params.yaml").write_text(yaml.safe_dump(values))
    small_disk(work / "data")
    env = tool_env() | {"PYTHONPATH": str(Path(__file__).parents[1])}
    out = subprocess.run([sys.executable, "-m", "stages.download"], cwd=work, env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert "error: cannot write data/.pretrained.tmp/model.safetensors: No space left on device" in out.stderr
    assert str(tiny_model) not in out.stderr.splitlines()[-1]  # not the (read-only) source


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 990"),  # torch.save
        Exception("No space left on device (os error 28)"),  # tokenizers' Rust
        OSError(errno.ENOSPC, "No space left on device"),
    ],
)
def test_library_write_failures_become_one_line(tmp_path, failure):
    def stage():
        with writing(tmp_path / "data/checkpoints"):
            raise failure

    with pytest.raises(SystemExit) as e:
        run_stage(stage)
    assert str(e.value).startswith(f"error: cannot write {tmp_path / 'data/checkpoints'}") or str(e.value).startswith(
        "error: cannot write an output"
    )
    assert "the disk is full: free space and rerun" in str(e.value)


def test_other_errors_pass_through_writing(tmp_path):
    with pytest.raises(ValueError, match="a bug"), writing(tmp_path):
        raise ValueError("a bug")


def test_partial_checkpoints_are_removed(tmp_path):
    for name, marker in [("checkpoint-10", "trainer_state.json"), ("checkpoint-20", None), ("step-5", None)]:
        (tmp_path / name).mkdir()
        if marker:
            (tmp_path / name / marker).write_text("{}")
    (tmp_path / "tmp-7").mkdir()
    remove_partial(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10"]


# --- 5. the launcher param is checked before anything runs -------------------------------------


def test_a_launcher_that_is_a_shell_command_runs_nothing(tmp_path, mrpc_dir, tiny_model):
    repo = make_repo(tmp_path / "repo", {"dataset": str(mrpc_dir), "model": str(tiny_model), **TINY_TRAIN})
    run(["dvc", "repro", "tokenize"], repo)  # train's inputs exist, so DVC starts its command
    out = run(["dvc", "exp", "run", "-s", "train", "-S", "launcher=touch pwned"], repo, check=False)
    assert out.returncode != 0
    assert "launcher: 'touch pwned' starts with 'touch'" in out.stdout + out.stderr
    assert not (repo / "pwned").exists() and not list(repo.glob("-m*"))


@pytest.mark.parametrize(
    "launcher, argv_tail",
    [
        ("python", []),
        (
            "torchrun --nproc_per_node 2",
            ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
        ),
        ("torchrun --nnodes 2 --rdzv_endpoint host:29400", ["-m", "torch.distributed.run", "--nnodes", "2"]),
        (
            "accelerate launch --multi_gpu --num_processes 2",
            ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes"],
        ),
        ("accelerate launch --num_processes=1 --cpu", ["-m", "accelerate.commands.launch", "--num_processes=1"]),
        ("CUDA_VISIBLE_DEVICES=1 python", []),
    ],
)
def test_launchers_that_are_allowed(launcher, argv_tail):
    env, argv = launcher_argv(launcher, "stages.train")
    assert argv[0] == sys.executable and argv[-2:] == ["-m", "stages.train"]
    assert argv[1 : 1 + len(argv_tail)] == argv_tail
    assert env == ({"CUDA_VISIBLE_DEVICES": "1"} if launcher.startswith("CUDA") else {})


@pytest.mark.parametrize(
    "launcher",
    [
        "touch pwned",
        "python; touch pwned",
        "python -c 'import os'",
        "torchrun --no-python touch",
        "torchrun --nproc_per_node 2 $(touch pwned)",
        "accelerate config",
        "bash -c 'python'",
        "LD_PRELOAD=/tmp/x.so python",
        "",
    ],
)
def test_launchers_that_are_refused(launcher):
    with pytest.raises(InputError, match="launcher"):
        launcher_argv(launcher, "stages.train")


@pytest.mark.parametrize(
    "launcher", ["accelerate launch --num_processes 2 --cpu", "accelerate launch --cpu --num_processes=4"]
)
def test_accelerates_cpu_launcher_with_several_processes_is_refused(launcher):
    """It starts one process whatever --num_processes says (accelerate's simple launcher, unless MPI is set
    up): a run meant for 2 processes trained as 1, silently."""
    with pytest.raises(InputError, match="--cpu starts a single process .* --multi_gpu --num_processes 2"):
        launcher_argv(launcher, "stages.train")
    launcher_argv(launcher + " --mpirun_hostfile hosts", "stages.train")  # MPI: accelerate starts them


# --- 6. smaller ----------------------------------------------------------------------------------


def test_a_process_killed_by_a_signal_gets_a_line_one_that_exited_speaks_for_itself(capsys):
    from textclf.launcher import exit_code

    assert exit_code("train", 1, -9) == 137
    assert (
        capsys.readouterr().err
        == "train: process 1 was killed by SIGKILL (out of memory? the kernel's OOM killer sends it)\n"
    )
    assert exit_code("train", 0, 130) == 130 and exit_code("train", 0, 1) == 1
    assert capsys.readouterr().err == ""


def test_a_dataset_that_is_a_file_says_so(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na,0\n")
    with pytest.raises(InputError, match=r"train.csv is a file, not a folder.*-S dataset="):
        require_folder(tmp_path / "train.csv")


def test_evaluate_leaves_no_checkpoints_folder(prepared, tmp_path):
    work = copy_work(prepared, tmp_path / "w")
    stage_run(work, "train", epochs=1)
    assert not (work / "data/checkpoints").exists()
    stage_run(work, "evaluate")
    assert not (work / "data/checkpoints").exists()
    diagnosis = read(work, "metrics/diagnosis.json")
    assert diagnosis["small_data"] and "small data" in diagnosis["verdict"]  # 41 validation rows
