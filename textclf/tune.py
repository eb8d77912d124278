"""`textclf tune`: an Optuna search in which every trial is a DVC experiment.

Each trial is queued with `dvc exp run --queue -n <study>-<number> -S key=value ...` and run by DVC's
queue workers (`--jobs` of them), so it shows in `dvc exp show`, compares with `dvc metrics diff` /
`dvc plots diff`, and comes back with `dvc exp apply`. Its objective is read from the experiment's
metrics. The study lives in a database (SQLite under .tune/ by default, or any Optuna RDB URL such as
PostgreSQL, which lets workers on several machines join one study), so a search stopped by Ctrl-C or
a crash resumes where it stopped: trials finished meanwhile are recorded, none is repeated. A trial
the pipeline refuses, that fails, or that DVC's queue loses (shown Running with no worker left to run
it) is recorded as failed and the search goes on. While a trial runs, its train stage mirrors each
evaluation to .dvc/tmp/progress/<name>.json; the median pruner stops trials that fall behind the
others at the same step.
"""

import json
import math
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import yaml

from textclf.errors import InputError, first_few
from textclf.lifeline import alive
from textclf.params import FAMILIAR_NAMES, Params, did_you_mean

STORE = Path(".tune")
# Which clone runs a trial: a stopped search picks up only its own (other machines run theirs).
WORKER = f"{socket.gethostname()}:{Path.cwd().resolve()}"
PROGRESS_DIR = Path(".dvc/tmp/progress")  # where queued trials mirror their progress (textclf.curves)
KINDS = ("float", "int", "categorical")
EXPS_TMP = Path(".dvc/tmp/exps")  # DVC's queue: workers' process files under celery/, executors under run/
LOST_AFTER = 30.0  # seconds a trial may show Running with nothing able to run it before it counts as lost


@dataclass
class Dimension:
    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list | None = None

    def sample(self, trial):
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)


def load_space(path: Path) -> list[Dimension]:
    """The search space file: one entry per param, checked against the params the pipeline knows."""
    if not path.exists():
        raise InputError(f"search space {path} not found: write one beside params.yaml (see tune.yaml).")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise InputError(f"{path} is not valid YAML: {e}") from None
    known = list(Params.__dataclass_fields__)
    space = []
    for name, spec in raw.items():
        if name not in known:
            raise InputError(f"{path}: unknown param '{name}'.{did_you_mean(str(name), known, FAMILIAR_NAMES)}")
        if not isinstance(spec, dict) or spec.get("type") not in KINDS:
            raise InputError(f"{path}: '{name}' needs type: float, int or categorical (got {spec!r}).")
        space.append(dimension(path, name, spec))
    if not space:
        raise InputError(f"{path} is empty: name at least one param to search, e.g. lr: {{type: float, ...}}")
    return space


def dimension(path: Path, name: str, spec: dict) -> Dimension:
    kind = spec["type"]
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise InputError(f"{path}: '{name}' has no choices; give choices: [a, b, ...].")
        return Dimension(name, kind, choices=choices)
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{path}: '{name}' needs numbers low and high (got {spec!r}).") from None
    if not low < high:
        raise InputError(f"{path}: '{name}' has an empty range (low {spec['low']} is not below high {spec['high']}).")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise InputError(f"{path}: '{name}' is searched on a log scale, so low must be above 0 (got {spec['low']}).")
    return Dimension(name, kind, low, high, log, spec.get("step"))


def dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a dvc command and return its output. Read through files, not pipes: `dvc queue start` spawns
    workers that inherit its output, and reading a pipe would wait for them to exit, i.e. for the queue
    to empty (a trial's progress was then seen only after it ended, and nothing was ever pruned)."""
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        code = subprocess.run(["dvc", *args], stdout=stdout, stderr=stderr).returncode
        stdout.seek(0)
        stderr.seek(0)
        out = subprocess.CompletedProcess(["dvc", *args], code, stdout.read(), stderr.read())
    if check and out.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed: {(out.stderr or out.stdout).strip()[-500:]}")
    return out


def setting(value) -> str:
    """A value as `-S` takes it (YAML flow: lists as [a, b])."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def queue_status() -> dict[str, str]:
    """Experiment name -> Queued | Running | Success | Failed, from `dvc queue status`."""
    found = {}
    for line in dvc("queue", "status", check=False).stdout.splitlines():
        words = line.split()
        for state in ("Queued", "Running", "Success", "Failed"):
            if state in words and len(words) >= 2:
                found[words[1]] = state
    return found


def queue_idle() -> bool:
    """True when nothing can be running a queued experiment: no live queue worker and no live executor.
    dvc-task keeps each process's pid and, once it exited, its exit code: workers' in
    .dvc/tmp/exps/celery/dvc-exp-worker-<n>.json, executors' (`dvc exp exec-run`) in
    .dvc/tmp/exps/run/<rev>/<rev>.json. An executor folder without one is being set up by a worker."""
    records = [*(EXPS_TMP / "celery").glob("dvc-exp-worker-*.json"), *(EXPS_TMP / "run").glob("*/*.json")]
    for record in records:
        try:
            process = json.loads(record.read_text())
        except (OSError, ValueError):
            return False  # being written: a process is starting
        if process.get("returncode") is None and alive(process.get("pid")):
            return False
    return True


def experiment_metric(name: str, metric: str) -> float | None:
    """The metric (a key of metrics/eval.json, or file:key) of a finished experiment, or None."""
    file, _, key = metric.rpartition(":")
    file = file or "metrics/eval.json"
    for commit in json.loads(dvc("exp", "show", "--json").stdout or "[]"):
        for exp in commit.get("experiments") or []:
            rev = exp["revs"][0]
            if (rev.get("name") or exp.get("name")) == name:
                data = ((rev.get("data") or {}).get("metrics") or {}).get(file, {}).get("data") or {}
                value = data.get(key)
                return float(value) if value is not None else None
    return None


LOST = (
    "experiment {name} was lost by DVC's queue: shown Running, but no queue worker or executor is alive to "
    "run it (a worker took it and left without running it, a known DVC queue race, or was killed). "
    "Recorded as failed; the search goes on"
)


class Stopped(Exception):
    """The search is stopping (Ctrl-C): leave the trial running; the next search picks it up."""


class Search:
    def __init__(
        self, study, space, metric: str, jobs: int = 1, poll: float = 2.0, lost_after: float = LOST_AFTER
    ) -> None:
        self.study, self.space, self.metric, self.jobs, self.poll = study, space, metric, jobs, poll
        self.lost_after = lost_after
        self.lock, self.stopping = threading.Lock(), threading.Event()
        self.progress_key = {"f1": "val_f1", "accuracy": "val_accuracy", "loss": "val_loss"}.get(metric)

    def run(self, trial) -> None:
        """Queue one trial as a DVC experiment, follow it, and tell the study how it ended."""
        import optuna

        name = f"{self.study.study_name}-{trial.number}"
        trial.set_user_attr("experiment", name)
        trial.set_user_attr("worker", WORKER)
        trial.set_user_attr("queued", False)  # a trial DVC never got is failed on recovery, never followed
        with self.lock:  # sampling reads the study; DVC's queue takes one enqueue at a time
            values = {d.name: d.sample(trial) for d in self.space}
            settings = [x for k, v in values.items() for x in ("-S", f"{k}={setting(v)}")]
            queued = dvc("exp", "run", "--queue", "-n", name, *settings, check=False)
            if queued.returncode != 0:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                reason = (queued.stderr or queued.stdout).strip().splitlines()[-1:] or ["no output"]
                raise InputError(f"could not queue trial {trial.number} as experiment {name}: {reason[0]}")
            trial.set_user_attr("queued", True)
            # Queue workers leave when the queue is empty, so each new trial makes sure they run.
            dvc("queue", "start", "-j", str(self.jobs))
        try:
            state = self.follow(trial, name)
        except Stopped:
            return
        self.conclude(trial, name, state)

    def conclude(self, trial, name: str, state: str) -> None:
        """Tell the study how the trial's experiment ended: its metric, pruned, or failed and why."""
        import optuna

        if state == "pruned":
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
        value = experiment_metric(name, self.metric) if state == "Success" else None
        if value is not None and not math.isnan(value):
            self.study.tell(trial, value)
            return
        if state == "lost":
            failure = LOST.format(name=name)
            print(f"tune: {failure}", file=sys.stderr, flush=True)
        else:
            failure = f"experiment {name} {state.lower()}; see: dvc queue logs {name}"
        trial.set_user_attr("failure", failure)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def follow(self, trial, name: str) -> str:
        """Wait for the experiment to end; report its evaluations to the pruner on the way. An experiment
        DVC calls Running while no queue worker or executor is alive, for `lost_after` seconds, was lost
        by DVC's queue (a worker took it and left without running it, or was killed): it would show
        Running forever, so it is killed (DVC then calls it Failed) and reported "lost"."""
        seen, idle_since = None, None
        while True:
            if self.stopping.is_set():
                raise Stopped
            state = queue_status().get(name, "Queued")
            if state in ("Success", "Failed"):
                return state
            if state == "Running" and queue_idle():
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since >= self.lost_after:
                    dvc("queue", "kill", name, check=False)
                    return "lost"
            else:
                idle_since = None
            progress = PROGRESS_DIR / f"{name}.json"
            if self.progress_key and progress.exists():
                try:
                    latest = json.loads(progress.read_text())
                except ValueError:
                    latest = None
                if latest and latest.get("step") != seen and latest.get(self.progress_key) not in (None, ""):
                    seen = latest["step"]
                    trial.report(float(latest[self.progress_key]), int(seen))
                    if trial.should_prune():
                        dvc("queue", "kill", name, check=False)
                        return "pruned"
            time.sleep(self.poll)


def finished(study) -> int:
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return sum(t.state in done for t in study.get_trials(deepcopy=False))


def recover(study, search: Search, pool: ThreadPoolExecutor) -> list:
    """Trials left running by a stopped search: follow those DVC still has, fail those it never got."""
    import optuna

    futures = []
    statuses = queue_status()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get("worker", WORKER) != WORKER:
            continue  # another machine's (or clone's) trial: it follows it itself
        name = t.user_attrs.get("experiment") if t.user_attrs.get("queued", True) else None
        if name and (name in statuses or experiment_metric(name, search.metric) is not None):
            trial = optuna.trial.Trial(study, t._trial_id)
            futures.append(pool.submit(finish_recovered, search, trial, name))
        else:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return futures


def finish_recovered(search: Search, trial, name: str) -> None:
    if queue_status().get(name) == "Queued":  # stopped before a worker took it
        dvc("queue", "start", "-j", str(search.jobs))
    try:
        state = search.follow(trial, name) if queue_status().get(name) in ("Queued", "Running") else "Success"
    except Stopped:
        return
    search.conclude(trial, name, state)


def foreign_experiments(study) -> list[str]:
    """Experiments of this repository named as the study's trials are (<study>-<n>) that the study did
    not queue: an earlier search's, whose study was deleted (.tune/) or kept elsewhere. DVC refuses to
    queue a trial under such a name, and a recovered trial would read that experiment's metric."""
    pattern = re.compile(rf"{re.escape(study.study_name)}-\d+")
    trials = study.get_trials(deepcopy=False)
    ours = {t.user_attrs.get("experiment") for t in trials if t.user_attrs.get("queued", True)}
    waiting = [name for name, state in queue_status().items() if state in ("Queued", "Running")]
    names = dvc("exp", "list", "--name-only", check=False).stdout.split() + waiting
    return sorted({n for n in names if pattern.fullmatch(n) and n not in ours})


def sampler(seed: int, done: int, shared: bool):
    """TPE seeded by `seed`, offset by the trials the study already holds (a restarted search drew the
    same first points as the stopped one) and, on storage that workers on other machines may share, by
    this worker (two machines started at once would draw the same points)."""
    import optuna

    offset = done + (zlib.crc32(WORKER.encode()) if shared else 0)
    return optuna.samplers.TPESampler(seed=(seed + offset) % 2**32)


def open_study(name: str, storage: str, sampler, pruner, direction: str, attempts: int = 5):
    """Create or join the study. Workers that start together on a new database race to create its
    tables; the losers retry."""
    import optuna

    for attempt in range(attempts):
        try:
            return optuna.create_study(
                study_name=name, storage=storage, sampler=sampler, pruner=pruner, direction=direction,
                load_if_exists=True,
            )  # fmt: skip
        except Exception as e:  # a bad URL, a server that can't be reached, a missing driver, a race
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if attempt == attempts - 1 or "duplicate key" not in reason and "already exists" not in reason:
                raise InputError(f"could not open the study storage {storage}: {reason}") from None
            time.sleep(1 + attempt)


def tune(
    space_file: Path,
    trials: int,
    timeout: float | None,
    jobs: int,
    study_name: str,
    storage: str | None,
    metric: str,
    direction: str | None,
    seed: int,
    prune: bool,
) -> object:
    import optuna

    space = load_space(space_file)
    STORE.mkdir(exist_ok=True)
    shared = storage is not None
    storage = storage or f"sqlite:///{STORE / 'studies.db'}"
    direction = direction or ("minimize" if metric.endswith("loss") else "maximize")
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0) if prune else optuna.pruners.NopPruner()
    study = open_study(study_name, storage, optuna.samplers.TPESampler(seed=seed), pruner, direction)
    study.sampler = sampler(seed, len(study.get_trials(deepcopy=False)), shared)
    foreign = foreign_experiments(study)
    if foreign:
        raise InputError(
            f"experiment(s) {first_few(foreign)} already exist here but are not trials of study {study_name} in "
            f"{storage} (an earlier search's?): remove them (dvc exp remove {' '.join(foreign)}) or name "
            "another study (--study)."
        )
    search = Search(study, space, metric, jobs)
    deadline = time.time() + timeout if timeout else math.inf
    say = lambda text: print(f"tune: {text}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"study {study_name} in {storage}: {finished(study)} of {trials} trials finished before")
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            try:
                running = set(recover(study, search, pool))
                while finished(study) + len(running) < trials and time.time() < deadline or running:
                    while len(running) < jobs and finished(study) + len(running) < trials and time.time() < deadline:
                        running.add(pool.submit(search.run, study.ask()))
                    done, running = wait(running, timeout=30, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                    if done:  # a line when a trial ends, not at every 30-second wait
                        say(f"{finished(study)} of {trials} trials finished")
            except KeyboardInterrupt:
                search.stopping.set()
                say("stopped; running trials go on in DVC's queue, and the next `textclf tune` picks them up")
                raise
            except BaseException:  # a trial's error: the other threads stop following theirs, so it shows at once
                search.stopping.set()
                raise
    except BaseException:
        # Only when stopped early: the workers finish their running trials and leave. A normal end needs
        # no stop (workers leave once the queue is empty), and a stop sent when no worker is left stays
        # in DVC's queue and ends the next `dvc queue start` worker after its first experiment.
        dvc("queue", "stop", check=False)
        raise
    write_plots(study)
    return study


def write_plots(study) -> list[Path]:
    """Optuna's optimisation history, parameter importances and parallel coordinates, as HTML."""
    import optuna

    written = []
    plots = {
        "history": optuna.visualization.plot_optimization_history,
        "importances": optuna.visualization.plot_param_importances,
        "parallel": optuna.visualization.plot_parallel_coordinate,
    }
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    for name, plot in plots.items():
        if name == "importances" and len(complete) < 2:
            continue
        path = STORE / f"{study.study_name}-{name}.html"
        try:
            plot(study).write_html(str(path), include_plotlyjs=True)
            written.append(path)
        except (ValueError, RuntimeError, ImportError) as e:
            print(f"tune: no {name} plot ({e})", file=sys.stderr)
    return written


def summary(study, metric: str) -> str:
    import optuna

    states = [t.state for t in study.get_trials(deepcopy=False)]
    counts = {s.name.lower(): states.count(s) for s in optuna.trial.TrialState if states.count(s)}
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    lines = [f"tune: trials {counts}"]
    if complete:
        best = study.best_trial
        lines.append(f"tune: best trial {best.number} ({best.user_attrs.get('experiment')}): {metric} {best.value:.4f}")
        lines.append("tune: params " + ", ".join(f"{k}={v}" for k, v in best.params.items()))
        lines.append(f"tune: apply it: dvc exp apply {best.user_attrs.get('experiment')}")
    return "\n".join(lines)
