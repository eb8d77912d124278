"""textclf tune: an Optuna study whose trials are DVC experiments, on a tiny model and data. The space
file is checked; trials show in `dvc exp show` with their sampled params; a refused trial is recorded
as failed and the search goes on; a stopped search resumes without repeating finished trials; workers
join one study through PostgreSQL (a real server, started here; skipped where none can be)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN, free_port, make_repo, run, tool_env, write_mrpc
from textclf.errors import InputError
from textclf.tune import load_space

SPACE = "lr: {type: categorical, choices: [0.001, 5.0]}\nepochs: {type: int, low: 1, high: 2}\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("lerning_rate: {type: float, low: 1.0e-5, high: 1.0e-4}", "unknown param 'lerning_rate'. Did you mean 'lr'"),
        ("lr: {type: float, low: 1.0e-4, high: 1.0e-5}", "'lr' has an empty range"),
        ("lr: {type: float, low: 0, high: 1.0e-4, log: true}", "log scale, so low must be above 0"),
        ("pooling: {type: categorical, choices: []}", "'pooling' has no choices"),
        ("epochs: {type: integer, low: 1, high: 3}", "needs type: float, int or categorical"),
        ("", "is empty"),
    ],
)
def test_the_space_file_is_checked(tmp_path, text, message):
    (tmp_path / "tune.yaml").write_text(text)
    with pytest.raises(InputError, match=message):
        load_space(tmp_path / "tune.yaml")


def tiny_repo(base: Path, tiny_model: Path) -> Path:
    data = write_mrpc(base / "mrpc")
    repo = make_repo(base / "repo", {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN, "eval_steps": 0})
    (repo / "tune.yaml").write_text(SPACE)
    run(["git", "add", "tune.yaml"], repo)
    run(["git", "commit", "-qm", "search space"], repo)
    return repo


def textclf(repo: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "textclf.cli", "tune", "--no-prune", "--seed", "6", *args]
    return subprocess.run(cmd, cwd=repo, env=tool_env(), capture_output=True, text=True, timeout=900)


def trials(repo: Path, storage: str | None = None, study: str = "search") -> list:
    import optuna

    storage = storage or f"sqlite:///{repo / '.tune/studies.db'}"
    return optuna.load_study(study_name=study, storage=storage).get_trials()


def experiments(repo: Path) -> dict[str, dict]:
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    found = {}
    for exp in [e for c in shown for e in c.get("experiments") or []]:
        rev = exp["revs"][0]
        found[rev.get("name") or exp.get("name")] = rev["data"]["params"]["params.yaml"]["data"]
    return found


def test_a_search_whose_trials_are_experiments_survives_failures_and_a_restart(tmp_path, tiny_model):
    import optuna

    repo = tiny_repo(tmp_path, tiny_model)
    out = textclf(repo, "--trials", "3")
    assert out.returncode == 0, out.stderr[-3000:]
    recorded = trials(repo)
    assert len(recorded) == 3 and all(t.state.is_finished() for t in recorded)
    shown = experiments(repo)
    for t in recorded:
        assert t.user_attrs["experiment"] == f"search-{t.number}"
        if t.params["lr"] == 5.0:  # lr 5 is refused by the pipeline: a failed trial, and the search went on
            assert t.state == optuna.trial.TrialState.FAIL
        else:
            assert t.state == optuna.trial.TrialState.COMPLETE and 0 <= t.value <= 1
            params = shown[f"search-{t.number}"]
            assert float(params["lr"]) == t.params["lr"] and int(params["epochs"]) == t.params["epochs"]
    assert {t.state for t in recorded} == {optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE}
    assert "dvc exp apply search-" in out.stdout and (repo / ".tune/search-history.html").exists()

    # Stop a longer search once a fourth trial has finished, then start it again: it completes the
    # study without running any finished trial again.
    cmd = [sys.executable, "-m", "textclf.cli", "tune", "--no-prune", "--seed", "6", "--trials", "6"]
    proc = subprocess.Popen(cmd, cwd=repo, env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while sum(t.state.is_finished() for t in trials(repo)) < 4:
        if proc.poll() is not None or time.time() > deadline:
            ended = "ended" if proc.poll() is not None else "timed out"
            proc.kill()  # first: a search still running keeps stderr open, and reading it would wait forever
            queue = run(["dvc", "queue", "status"], repo, check=False).stdout
            pytest.fail(f"the search {ended} before 4 trials finished:\n{proc.communicate()[1][-2000:]}\n{queue}")
        time.sleep(1)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=300)
    out = textclf(repo, "--trials", "6")
    assert out.returncode == 0, out.stderr[-3000:]
    recorded = trials(repo)
    assert sum(t.state.is_finished() for t in recorded) >= 6
    names = [name for name in experiments(repo) if name.startswith("search-")]
    assert len(names) == len(set(names))  # no trial's experiment was run twice
    assert "search-0" in names


def test_a_restarted_search_draws_new_points(tmp_path):
    """Each `textclf tune` made a TPE sampler with the same seed, so a restarted search drew the points
    of the stopped one again (its first trial's params, already measured)."""
    import optuna

    from textclf.tune import sampler

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    drawn = []
    for _ in range(3):  # three searches of one trial each, as three restarts
        study = optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
        study.sampler = sampler(0, len(study.get_trials()), shared=False)
        trial = study.ask()
        drawn.append(trial.suggest_float("lr", 1e-5, 1e-3, log=True))
        study.tell(trial, 0.5)
    assert len(set(drawn)) == 3
    first = [
        optuna.create_study(sampler=s).ask().suggest_float("lr", 1e-5, 1e-3, log=True)
        for s in (sampler(0, 0, shared=False), optuna.samplers.TPESampler(seed=0))
    ]
    assert first[0] == first[1] == drawn[0]  # a new study draws what its seed always drew


def test_an_experiment_named_like_a_trial_is_refused_before_any_trial(tmp_path, tiny_model):
    """An earlier search's experiment search-0 (its .tune/ deleted): DVC refused to queue trial 0 (a
    traceback), and the next search recorded that experiment's metric as trial 0's result."""
    repo = tiny_repo(tmp_path, tiny_model)
    run(["dvc", "exp", "run", "-n", "search-0"], repo)
    out = textclf(repo, "--trials", "1")
    assert out.returncode == 1, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "error: experiment(s) 'search-0' already exist here but are not trials of study search in "
        "sqlite:///.tune/studies.db (an earlier search's?): remove them (dvc exp remove search-0) or name "
        "another study (--study)."
    )
    assert trials(repo) == []


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server of Debian's package on a free local port, for this test only."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bins or not (bins[-1] / "initdb").exists():
        pytest.skip("no PostgreSQL server installed (Debian package postgresql)")
    # The server refuses to run as root: as root, run it as Debian's postgres user, in a folder that user
    # can reach (pytest's temporary folders are private to root).
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="textclf-pg-"))
    bin_dir, data, port = bins[-1], base / "data", free_port()
    data.mkdir()
    if as_user:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run(
        [*as_user, bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust"], check=True, capture_output=True
    )
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    # The server outlives pg_ctl: its output goes to a log file, not to a pipe this test would wait on.
    start = [*as_user, bin_dir / "pg_ctl", "-D", data, "-o", opts, "-l", base / "log", "-w", "start"]
    subprocess.run(start, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        subprocess.run(
            [bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "optuna"], check=True
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_user, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_workers_in_two_clones_join_one_study_through_postgresql(tmp_path, tiny_model, postgres):
    first = tiny_repo(tmp_path / "a", tiny_model)
    second = tmp_path / "b" / "repo"
    run(["git", "clone", "-q", str(first), str(second)], tmp_path)
    (second / "tune.yaml").write_text("lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}\n")
    (first / "tune.yaml").write_text("lr: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}\n")
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "textclf.cli", "tune", "--no-prune", "--trials", "3", "--storage", postgres],
            cwd=repo, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for repo in (first, second)
    ]  # fmt: skip
    for proc in runs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-3000:]
    recorded = trials(first, storage=postgres)
    assert sum(t.state.is_finished() for t in recorded) >= 3
    numbers = [t.number for t in recorded]
    assert len(numbers) == len(set(numbers))
    worked = {repo: [n for n in experiments(repo) if n.startswith("search-")] for repo in (first, second)}
    assert sum(len(v) for v in worked.values()) == len(recorded)  # each trial ran in one of the clones


def test_a_running_trial_reports_its_evaluations_to_the_pruner(tmp_path, tiny_model):
    """The search follows a trial while it runs (its mirrored progress file), not only once it ended:
    `dvc queue start` once held tune's output pipe until its worker exited, so no evaluation reached
    the study and nothing could be pruned."""
    data = write_mrpc(tmp_path / "mrpc")
    params = {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN, "eval_steps": 0.2}
    repo = make_repo(tmp_path / "repo", params)
    (repo / "tune.yaml").write_text("lr: {type: categorical, choices: [0.001]}\n")
    run(["git", "add", "tune.yaml"], repo)
    run(["git", "commit", "-qm", "search space"], repo)
    cmd = [sys.executable, "-m", "textclf.cli", "tune", "--seed", "6", "--trials", "1"]
    out = subprocess.run(cmd, cwd=repo, env=tool_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    (trial,) = trials(repo)
    assert trial.state.name == "COMPLETE" and trial.intermediate_values, trial


def lost_trial_repo(base: Path, name: str) -> Path:
    """A DVC repo with one queued experiment that DVC's queue then loses, as a worker that takes the
    message and leaves without running it does (seen in CI): the message moves from the broker's in/
    to processed/, and DVC calls the experiment Running with nothing to run it."""
    repo = base / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text("x: 1\n")
    (repo / "dvc.yaml").write_text("stages:\n  s:\n    cmd: python -c pass\n    params: [x]\n")
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"], repo)
    run(["dvc", "exp", "run", "--queue", "-n", name, "-S", "x=2"], repo)
    broker = repo / ".dvc/tmp/exps/celery/broker"
    (broker / "processed").mkdir(exist_ok=True)
    for message in (broker / "in").glob("*.msg"):
        message.rename(broker / "processed" / message.name)
    assert f"{name} " in run(["dvc", "queue", "status"], repo).stdout
    assert "Running" in run(["dvc", "queue", "status"], repo).stdout
    return repo


def test_a_trial_lost_by_dvcs_queue_fails_instead_of_hanging_the_search(tmp_path, monkeypatch):
    """A trial DVC shows Running while no queue worker and no executor is alive is lost: the search
    records it as failed, says why, and goes on (it once waited for it forever). While a worker or an
    executor is alive, it waits. Process records as dvc-task writes them: pid, and the exit code once
    the process ended."""
    import optuna

    from textclf.tune import Search, Stopped

    repo = lost_trial_repo(tmp_path, "search-0")
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", tool_env()["PATH"])
    worker = repo / ".dvc/tmp/exps/celery/dvc-exp-worker-1.json"
    executor = repo / ".dvc/tmp/exps/run/0123abc/0123abc.json"
    executor.parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.create_study(study_name="search")
    trial = study.ask()

    def follow(waits: bool) -> str | None:
        search = Search(study, [], "f1", poll=0.2, lost_after=1.0)
        # Waiting 4 times lost_after, it would have given up by then; a lost trial still followed after
        # a minute means the search would hang: Stopped ends the test.
        threading.Timer(4.0 if waits else 60.0, search.stopping.set).start()
        if not waits:
            return search.follow(trial, "search-0")
        with pytest.raises(Stopped):
            search.follow(trial, "search-0")
        return None

    for alive_worker, alive_executor in [(True, False), (False, True)]:
        worker.write_text(json.dumps({"pid": os.getpid(), "returncode": None if alive_worker else 0}))
        executor.write_text(json.dumps({"pid": os.getpid() if alive_executor else dead.pid, "returncode": None}))
        follow(waits=True)
    executor.write_text(json.dumps({"pid": dead.pid, "returncode": None}))  # killed with its worker
    Search(study, [], "f1").conclude(trial, "search-0", follow(waits=False))
    (recorded,) = study.get_trials()
    assert recorded.state == optuna.trial.TrialState.FAIL
    assert "lost by DVC's queue" in recorded.user_attrs["failure"]
    assert "Failed" in run(["dvc", "queue", "status"], repo).stdout  # killed, so DVC no longer shows it Running
