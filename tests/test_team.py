"""Working as a team, and beyond one laptop: a shared DVC remote (a folder, and S3 through a local moto
server) between two clones of one git remote; experiments moved with dvc exp push/pull; the run-cache
sparing a teammate the training someone already did; two queued experiments with different
launchers at once; a cluster job's hand-run stages saved as an experiment."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN, free_port, make_repo, run, set_params, tool_env, write_mrpc
from textclf.checkpoints import prepare_checkpoints
from textclf.errors import InputError


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output)) - {"source"}  # source runs on every repro


def team(base: Path, tiny_model: Path, remote: list[list[str]] | None = None) -> tuple[Path, Path]:
    """A git remote (bare) and a DVC remote shared by a first clone, which has run the pipeline and
    pushed both; returns (first clone, the git remote)."""
    data = write_mrpc(base / "mrpc")
    first = make_repo(base / "first", {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN})
    origin = base / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], base)
    for command in remote or [["dvc", "remote", "add", "-d", "shared", str(base / "storage")]]:
        run(command, first)
    run(["git", "remote", "add", "origin", str(origin)], first)
    run(["dvc", "repro"], first)
    run(["git", "add", "-A"], first)
    run(["git", "commit", "-qm", "baseline with a shared remote"], first)
    run(["dvc", "push", "--run-cache"], first)
    run(["git", "push", "-q", "origin", "HEAD:main"], first)
    return first, origin


def clone(origin: Path, dest: Path) -> Path:
    run(["git", "clone", "-q", "-b", "main", str(origin), str(dest)], origin.parent)
    run(["git", "config", "user.email", "ci@example.com"], dest)
    run(["git", "config", "user.name", "CI"], dest)
    return dest


def test_a_teammate_pulls_everything_and_nothing_reruns(tmp_path, tiny_model):
    first, origin = team(tmp_path, tiny_model)
    second = clone(origin, tmp_path / "second")
    run(["dvc", "pull"], second)
    assert ran(run(["dvc", "repro"], second).stdout) == set()
    assert (second / "data/model/model.safetensors").read_bytes() == (
        first / "data/model/model.safetensors"
    ).read_bytes()

    # An experiment moves between the clones through the git remote and the DVC remote.
    run(["dvc", "exp", "run", "-n", "lr-2e-3", "-S", "lr=2e-3"], first)
    run(["dvc", "exp", "push", "origin", "lr-2e-3"], first)
    run(["dvc", "exp", "pull", "origin", "lr-2e-3"], second)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], second).stdout)
    names = {(e["revs"][0].get("name") or e.get("name")) for c in shown for e in c.get("experiments") or []}
    assert "lr-2e-3" in names
    run(["dvc", "exp", "apply", "lr-2e-3"], second)
    assert json.loads((second / "metrics/eval.json").read_text()) == json.loads(
        (first / "metrics/eval.json").read_text()
    )


def test_the_run_cache_spares_a_teammate_training_that_was_done(tmp_path, tiny_model):
    """As the README says: experiments run, the workspace back on the committed results, then `dvc push
    --run-cache` (the run records; outputs of the workspace's results only) and `dvc exp push origin -A`
    (every experiment's outputs). Without the second, the teammate's run-cache hit found no outputs on
    the remote and trained again."""
    first, origin = team(tmp_path, tiny_model)
    out = run(["dvc", "exp", "run", "-S", "lr=3e-3"], first)
    assert "train" in ran(out.stdout)
    first_model = (first / "data/trained/model.safetensors").read_bytes()
    run(["git", "read-tree", "HEAD"], first)
    run(["git", "checkout", "--", "params.yaml", "dvc.lock", "metrics"], first)
    run(["dvc", "checkout"], first)
    run(["dvc", "push", "--run-cache"], first)
    run(["dvc", "exp", "push", "origin", "-A"], first)
    second = clone(origin, tmp_path / "second")
    run(["dvc", "pull"], second)
    assert ran(run(["dvc", "repro"], second).stdout) == set()
    out = run(["dvc", "exp", "run", "--pull", "-S", "lr=3e-3"], second)
    assert "train" not in ran(out.stdout), out.stdout  # restored from the shared run-cache
    assert "Stage 'train' is cached" in out.stdout, out.stdout
    assert (second / "data/trained/model.safetensors").read_bytes() == first_model


def test_experiments_made_before_the_remote_push_their_outputs_with_the_local_remote(tmp_path, tiny_model):
    """As the README says: `dvc exp push` and `pull` read the remote from each experiment's commit, and
    one made before the commit that added the remote moved no outputs ("Pushed" all the same); with the
    remote named in .dvc/config.local too, on both clones, a teammate applies it."""
    data = write_mrpc(tmp_path / "mrpc")
    first = make_repo(tmp_path / "first", {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN})
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    run(["git", "remote", "add", "origin", str(origin)], first)
    run(["dvc", "repro"], first)
    run(["git", "add", "-A"], first)
    run(["git", "commit", "-qm", "baseline, no remote yet"], first)
    run(["dvc", "exp", "run", "-n", "early", "-S", "lr=2e-3"], first)
    storage = str(tmp_path / "storage")
    run(["dvc", "remote", "add", "-d", "shared", storage], first)
    run(["git", "add", ".dvc/config"], first)
    run(["git", "commit", "-qm", "Team DVC remote"], first)
    run(["dvc", "remote", "add", "--local", "-d", "shared", storage], first)
    run(["dvc", "push", "--run-cache"], first)
    run(["git", "push", "-q", "origin", "HEAD:main"], first)
    run(["dvc", "exp", "push", "origin", "-A"], first)
    second = clone(origin, tmp_path / "second")
    run(["dvc", "remote", "add", "--local", "-d", "shared", storage], second)
    run(["dvc", "exp", "pull", "origin", "early"], second)
    run(["dvc", "exp", "apply", "early"], second)  # its checkout failed: no outputs on the remote
    assert (second / "data/trained/model.safetensors").exists()
    assert json.loads((second / "metrics/eval.json").read_text()) != {}


@pytest.fixture
def s3(monkeypatch):
    """A local S3-compatible server (moto), its endpoint and a bucket; skipped where it can't start."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("dvc_s3", reason="dvc's S3 support (dvc[s3]) is not installed")
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="team-cache")
    yield endpoint
    server.stop()


def test_s3_remote_through_a_local_s3_server(tmp_path, tiny_model, s3):
    remote = [
        ["dvc", "remote", "add", "-d", "s3", "s3://team-cache/dvc"],
        ["dvc", "remote", "modify", "s3", "endpointurl", s3],
    ]
    first, origin = team(tmp_path, tiny_model, remote)
    second = clone(origin, tmp_path / "second")
    run(["dvc", "pull"], second)
    assert ran(run(["dvc", "repro"], second).stdout) == set()
    assert (second / "data/model/model.safetensors").exists()


def test_two_queued_experiments_with_different_launchers_run_at_once(tmp_path, tiny_model):
    data = write_mrpc(tmp_path / "mrpc", n_train=160)
    repo = make_repo(tmp_path / "repo", {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN, "epochs": 6})
    run(["dvc", "repro", "tokenize"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "data"], repo)
    run(["dvc", "exp", "run", "--queue", "-n", "one-process", "-S", "launcher=python"], repo)
    run(["dvc", "exp", "run", "--queue", "-n", "two-processes", "-S", "launcher=torchrun --nproc_per_node 2"], repo)
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=repo, env=tool_env(), stdout=subprocess.DEVNULL)
    deadline, both_running = time.time() + 600, False
    while re.search(r"\b(Queued|Running)\b", status := run(["dvc", "queue", "status"], repo).stdout):
        both_running |= status.count("Running") == 2  # seen running at the same moment
        assert time.time() < deadline, status
        time.sleep(0.5)
    run(["dvc", "queue", "stop"], repo, check=False)
    assert status.count("Success") == 2, status
    assert both_running
    assert "2 process(es)" in run(["dvc", "queue", "logs", "two-processes"], repo).stdout
    assert "1 process(es)" in run(["dvc", "queue", "logs", "one-process"], repo).stdout


def test_a_cluster_job_runs_the_stages_by_hand_and_saves_an_experiment(tmp_path, tiny_model):
    data = write_mrpc(tmp_path / "mrpc")
    repo = make_repo(tmp_path / "repo", {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN})
    run(["dvc", "repro"], repo)  # the team's baseline, committed: dvc.lock and the metrics are tracked
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    set_params(repo, lr=3e-3)  # the job's setting (a job script edits params.yaml, or sed/yq does)
    # What a SLURM job script does: the stages in order (train and evaluate under the launcher), no DVC.
    for stage in ("source", "download", "tokenize", "launch train", "launch evaluate"):
        out = subprocess.run(
            [sys.executable, "-m", *f"stages.{stage}".replace("stages.launch ", "stages.launch|").split("|")],
            cwd=repo, env=tool_env(), capture_output=True, text=True,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
    run(["dvc", "commit", "-f"], repo)  # record what the job produced in dvc.lock and the cache
    run(["dvc", "exp", "save", "-n", "cluster-run"], repo)
    run(["git", "checkout", "--", "."], repo)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    saved = [
        e["revs"][0] for c in shown for e in c.get("experiments") or [] if e["revs"][0].get("name") == "cluster-run"
    ]
    assert saved and set(saved[0]["data"]["metrics"]["metrics/eval.json"]["data"]) >= {"accuracy", "f1"}
    assert float(saved[0]["data"]["params"]["params.yaml"]["data"]["lr"]) == 3e-3
    run(["dvc", "exp", "apply", "cluster-run"], repo)
    assert ran(run(["dvc", "repro"], repo).stdout) == set()  # DVC agrees the saved outputs are current


def test_a_node_that_cannot_see_the_checkpoint_folder_is_told_so(tmp_path):
    with pytest.raises(InputError, match="needs data/checkpoints on a file system every node shares"):
        prepare_checkpoints(tmp_path / "checkpoints", "run-1", is_main=False)
