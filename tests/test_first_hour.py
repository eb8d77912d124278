"""A new user's first hour, replayed: the README's commands run as written, in a clone that sits
beside a `../shared/mrpc` (and the `../sms`, `../nli` of the "Your own data" recipes) of tiny data;
mistakes that must not break the next run; a quiet first run; a clean `git status`.

The clone's params.yaml points `model` at the tiny BERT and trains briefly; the README's commands never
name those params, so they run exactly as a user types them."""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_TRAIN, make_repo, run, tool_env, write_mrpc

README = ROOT / "README.md"
SKIP = "<!-- readme-test: skip"
NOISE = {
    "transformers' load report": "LOAD REPORT",
    "a printed dict of logs": "{'loss'",
    "a progress bar's carriage return": "\r",
    "an ANSI escape": "\x1b[",
    "a tqdm rate": "it/s]",
    "an fsspec path": "memory://",
    "a traceback": "Traceback",
    "the Trainer doubting file times": "mtime may not be reliable",
}


def readme_commands() -> list[str]:
    """Every command line in the README's bash blocks, minus setup (this test runs in the venv) and the
    test command itself; trailing comments dropped."""
    commands = []
    for block in re.finditer(r"(<!-- readme-test: skip[^\n]*\n)?```bash\n(.*?)```", README.read_text(), re.S):
        if block.group(1):
            continue
        for line in block.group(2).splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            parts = [p.strip() for p in line.split("&&")]
            parts = [p for p in parts if p and not p.startswith(("./setup.sh", ". .venv/bin/activate", "#"))]
            if parts and "pytest" not in line:
                commands.append(" && ".join(parts))
    return commands


def write_sms(folder: Path) -> None:
    folder.mkdir()
    rows = ["category,message"] + [
        f"{'spam' if i % 3 == 0 else 'ham'},{'win free cash now' if i % 3 == 0 else 'see you at lunch'} {i}"
        for i in range(60)
    ]
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    (folder / "test.csv").write_text("message\nfree prize\nlunch at noon\n")


def write_nli(folder: Path) -> None:
    folder.mkdir()
    pairs = [
        ("A man sleeps.", "A person rests.", "ENTAILMENT"),
        ("A man sleeps.", "A man runs.", "CONTRADICTION"),
    ]
    pairs.append(("A dog barks.", "The dog is hungry.", "NEUTRAL"))
    for split, n in (("train", 12), ("validation", 3)):
        lines = [json.dumps({"premise": a, "hypothesis": b, "label": y}) for a, b, y in (pairs * n)]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def clone_beside_data(base: Path, tiny_model: Path) -> Path:
    """`base/repo` (the project, committed, as a clone has it) beside `base/shared/mrpc`, `base/sms`,
    `base/nli`. Only params a README command never names are set for a tiny, fast run."""
    write_mrpc(base / "shared" / "mrpc")
    write_sms(base / "sms")
    write_nli(base / "nli")
    repo = make_repo(base / "repo", {"model": str(tiny_model), **TINY_TRAIN})
    return repo


def sh(command: str, repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=repo, env=tool_env(), capture_output=True, text=True)


def wait_for_queue(repo: Path) -> None:
    deadline = time.time() + 600
    while re.search(r"\b(Queued|Running)\b", status := run(["dvc", "queue", "status"], repo).stdout):
        assert time.time() < deadline, status
        time.sleep(2)
    run(["dvc", "queue", "stop"], repo, check=False)
    assert "Failed" not in status, status


def test_the_readme_commands_run_as_written(tmp_path, tiny_model):
    repo = clone_beside_data(tmp_path, tiny_model)
    commands = readme_commands()
    assert any("--queue" in c for c in commands) and any("plots diff" in c for c in commands), commands
    for command in commands:
        if "<exp-a>" in command:
            names = run(["dvc", "exp", "list", "--name-only"], repo).stdout.split()
            command = command.replace("<exp-a>", names[0]).replace("<exp-b>", names[1])
        if command.startswith("dvc queue start"):  # started without capturing: workers outlive it
            subprocess.run(["bash", "-c", command], cwd=repo, env=tool_env(), stdout=subprocess.DEVNULL)
            wait_for_queue(repo)
            continue
        out = sh(command, repo)
        assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
        if command == "textclf compare":
            assert "| lr=5e-05 | 5 |" in out.stdout and "| lr=0.0001 | 5 |" in out.stdout, out.stdout
            assert "Left out, scored on other validation rows" in out.stdout, out.stdout  # the sms and nli runs
            assert "P(lr=0.0001 better) = " in out.stdout or "P(lr=5e-05 better) = " in out.stdout, out.stdout
        if command.startswith("dvc exp show"):
            header = out.stdout.splitlines()[1]
            assert header.split() == ["Experiment", "accuracy", "f1", "loss", "verdict", "lr", "seed"], header
    # The queued grid ran each experiment with its own params, from the relative ../shared/mrpc path.
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    grid = set()
    for exp in [e for c in shown for e in c.get("experiments") or []]:
        params = exp["revs"][0]["data"]["params"]["params.yaml"]["data"]
        if exp["revs"][0]["data"]["metrics"]:
            grid.add((float(params["lr"]), int(params["seed"]), params["dataset"]))
    assert {(lr, seed, "../shared/mrpc") for lr in (5e-5, 1e-4) for seed in (1, 2, 3, 4, 5)} <= grid
    assert (repo / "plots" / "index.html").exists()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_model) -> tuple[Path, subprocess.CompletedProcess]:
    """A clone, after the README's first command."""
    repo = clone_beside_data(tmp_path_factory.mktemp("first-hour"), tiny_model)
    out = sh("dvc exp run -S dataset=../shared/mrpc", repo)
    assert out.returncode == 0, out.stdout + out.stderr
    return repo, out


def test_the_first_run_is_quiet(first_run):
    _, out = first_run
    output = out.stdout + out.stderr
    for what, sign in NOISE.items():
        assert sign not in output, f"{what} in the output:\n{output}"
    assert "train: new classification head for 2 labels (classifier.bias, classifier.weight)" in output
    assert re.search(r"epoch 2/2 \(step \d+/\d+\): train loss [\d.]+, train accuracy [\d.]+ \| validation loss", output)
    assert "Diagnosis:" in output


def test_git_status_after_the_first_run_shows_only_what_the_user_changed(first_run):
    repo, _ = first_run
    status = run(["git", "status", "--porcelain"], repo).stdout.splitlines()
    assert [line for line in status if not line.startswith("??")] == [" M params.yaml"], status
    assert {line[3:] for line in status if line.startswith("??")} <= {"dvc.lock", "metrics/"}, status
    diff = run(["git", "diff", "-U0", "params.yaml"], repo).stdout
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert [line.split("#")[0].strip() for line in changed] == [
        "-dataset: nyu-mll/glue",
        "+dataset: ../shared/mrpc",
    ], diff


def test_a_typo_gets_a_did_you_mean_and_the_one_fix_it_gives_works(first_run):
    repo, _ = first_run
    out = sh("dvc exp run -S +lerning_rate=1e-4", repo)
    assert out.returncode != 0
    assert "unknown key 'lerning_rate'. Did you mean 'lr'?" in out.stderr
    fix = re.search(r"delete that line, or restore the committed file: (git show HEAD:\S+ > params.yaml)", out.stderr)
    assert fix, out.stderr
    assert sh(fix.group(1), repo).returncode == 0
    assert "lerning_rate" not in (repo / "params.yaml").read_text()
    assert sh("dvc exp run -S dataset=../shared/mrpc -S lr=2e-3", repo).returncode == 0


def test_a_bad_value_says_how_to_set_it_back(first_run):
    repo, _ = first_run
    run(["git", "add", "params.yaml", "dvc.lock", "metrics"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    out = sh("dvc exp run -S lr=abc", repo)
    assert out.returncode != 0 and "'lr: abc' is not a number" in out.stderr
    fix = re.search(r"set it back with the next run \((dvc exp run -S '[^']+')\)", out.stderr)
    assert fix, out.stderr
    again = sh(fix.group(1), repo)
    assert again.returncode == 0, again.stderr


def test_a_refused_run_leaves_the_previous_model_and_metrics(first_run):
    repo, _ = first_run
    before = {
        p: (repo / p).read_bytes() for p in ("data/model/model.safetensors", "metrics/eval.json", "metrics/train.json")
    }
    out = sh("dvc exp run -S precision=fp16", repo)  # fp16 on a CPU: refused
    assert out.returncode != 0 and "precision: fp16 needs a CUDA GPU" in out.stderr
    assert "Running stage 'train'" not in out.stdout
    assert {p: (repo / p).read_bytes() for p in before} == before
    assert sh("git show HEAD:params.yaml > params.yaml", repo).returncode == 0
