"""The real default checkpoint on a slice of real MRPC, through the real dvc CLI."""

import json

import pytest

from tests.conftest import SHARED_MRPC, make_repo, run


@pytest.mark.skipif(not SHARED_MRPC.exists(), reason="../shared/mrpc is absent")
def test_default_model_on_a_slice_of_mrpc(tmp_path):
    params = {"dataset": str(SHARED_MRPC), "max_train_samples": 96, "max_eval_samples": 48, "epochs": 1}
    repo = make_repo(tmp_path / "repo", params)
    run(["dvc", "repro"], repo)
    source = json.loads((repo / "data/source.json").read_text())
    assert source["splits"] == {"train": 3667, "validation": 408, "test": 1725}
    assert source["model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    config = json.loads((repo / "data/model/config.json").read_text())
    assert config["num_hidden_layers"] == 6 and config["id2label"] == {
        "0": "not_equivalent",
        "1": "equivalent",
    }
    assert config["hidden_dropout_prob"] == config["attention_probs_dropout_prob"] == 0.0  # `dropout: 0.0`
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and metrics["loss"] > 0
    assert json.loads((repo / "metrics/test.json").read_text()) == {"rows": 48}
