"""End-to-end: the real dvc CLI in a temporary git repo, on tiny data with a tiny random BERT."""

import json
import re

import yaml

from tests.conftest import TINY_TRAIN, make_repo, run

STAGES = {"download", "tokenize", "train", "evaluate"}


def stages_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def test_pipeline_runs_and_reruns_only_what_a_param_touches(tmp_path, mrpc_dir, tiny_model):
    repo = make_repo(tmp_path / "repo", {"dataset": str(mrpc_dir), "model": str(tiny_model), **TINY_TRAIN})

    out = run(["dvc", "repro"], repo)
    assert stages_ran(out.stdout) == STAGES

    source = json.loads((repo / "data/source.json").read_text())
    assert source["splits"] == {"train": 48, "validation": 16, "test": 12}
    assert source["labeled"]["test"] is False
    assert "model.safetensors" in source["model"]["files_sha256"]
    assert (repo / "data/model/model.safetensors").exists()
    assert not list((repo / "data/model").glob("*.bin"))

    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert set(metrics) == {"accuracy", "f1", "precision", "recall", "loss"}
    assert all(0 <= metrics[k] <= 1 for k in ("accuracy", "f1", "precision", "recall"))
    assert json.loads((repo / "metrics/test.json").read_text()) == {"pairs": 12}

    train_curve = (repo / "metrics/curves/train.tsv").read_text().splitlines()
    assert train_curve[0] == "step\tepoch\ttrain_loss\tlr" and len(train_curve) > 2
    eval_curve = (repo / "metrics/curves/eval.tsv").read_text().splitlines()
    assert eval_curve[0] == "step\tepoch\tval_loss\tval_accuracy\tval_f1"
    assert [line.split("\t")[1] for line in eval_curve[1:]] == ["1.0", "2.0"]  # one row per epoch
    predictions = (repo / "metrics/test_predictions.tsv").read_text().splitlines()
    assert predictions[0] == "index\tprediction" and len(predictions) == 13
    confusion = (repo / "metrics/confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 17

    # Nothing changed: nothing runs.
    assert stages_ran(run(["dvc", "repro"], repo).stdout) == set()
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline run"], repo)

    # A train-only param reruns train and evaluate, with the value DVC writes as the string 3e-05.
    out = run(["dvc", "exp", "run", "-S", "lr=3e-5"], repo)
    assert stages_ran(out.stdout) == {"train", "evaluate"}
    assert "3e-05" in (repo / "params.yaml").read_text()

    diff = json.loads(run(["dvc", "metrics", "diff", "--all", "--json"], repo).stdout)
    assert {"accuracy", "f1", "loss"} <= set(diff["metrics/eval.json"])
    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], repo).stdout)
    assert set(params_diff["params.yaml"]) == {"lr"}

    # max_length reruns tokenize and what follows; download stays cached.
    out = run(["dvc", "exp", "run", "-S", "max_length=24"], repo)
    assert stages_ran(out.stdout) == {"tokenize", "train", "evaluate"}

    # The plots page renders the three curated plots.
    run(["dvc", "plots", "show", "-o", "plots"], repo)
    html = (repo / "plots/index.html").read_text()
    for title in ("Loss (train", "Validation accuracy and F1", "Confusion matrix"):
        assert title in html


def test_bad_param_fails_before_any_work(tmp_path, mrpc_dir, tiny_model):
    repo = make_repo(tmp_path / "repo", {"dataset": str(mrpc_dir), "model": str(tiny_model), **TINY_TRAIN})
    values = yaml.safe_load((repo / "params.yaml").read_text())
    values["lerning_rate"] = 1e-4
    (repo / "params.yaml").write_text(yaml.safe_dump(values))
    out = run(["dvc", "repro"], repo, check=False)
    assert out.returncode != 0
    assert "unknown key 'lerning_rate'" in out.stdout + out.stderr
    assert not (repo / "data/raw").exists()
