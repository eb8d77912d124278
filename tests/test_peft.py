"""Bigger models on small machines: LoRA (through peft) and gradient checkpointing, in both engines, on
the tiny model. The saved LoRA model is an ordinary classifier (adapters merged): evaluate, predict and
a plain from_pretrained load it and predict what the trained model predicted."""

import json

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import copy_work, read, stage_run
from tests.test_params import defaults
from textclf.model import load_model, plain
from textclf.params import parse_params

ENGINES = ["trainer", "accelerate"]


@pytest.mark.parametrize("engine", ENGINES)
def test_lora_trains_few_weights_and_saves_a_plain_classifier(prepared, tmp_path, engine):
    pytest.importorskip("peft", reason="the lora extra is not installed (pip install -e '.[lora]')")
    work = copy_work(prepared, tmp_path / engine)
    out = stage_run(work, "train", engine=engine, peft="lora", lora_r=4, lr=5e-3, epochs=1, freeze_layers=0)
    assert "train: engine" in out.stdout
    assert "to instantiate a model of type" not in out.stdout + out.stderr  # peft's config reload at each save
    trained = work / "data/trained"
    assert (trained / "adapter/adapter_config.json").exists()  # the adapter alone, for peft users
    model = AutoModelForSequenceClassification.from_pretrained(trained).eval()  # merged: a plain classifier
    assert not any("lora" in name for name, _ in model.named_parameters())
    stage_run(work, "evaluate")
    assert 0 <= read(work, "metrics/eval.json")["accuracy"] <= 1
    if engine == "trainer":
        adapter_alone_predicts_as_the_merged_model(work, model)


def adapter_alone_predicts_as_the_merged_model(work, merged) -> None:
    """The recipe of the adapter's README: the base checkpoint with the classifier's config, then the
    adapter. It was peft's blank template, and the adapter named data/pretrained as its base."""
    from peft import PeftModel
    from transformers import AutoConfig

    from textclf.heads import register

    adapter = work / "data/trained/adapter"
    assert "PeftModel.from_pretrained" in (adapter / "README.md").read_text()
    base_named = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base_named == yaml.safe_load((work / "params.yaml").read_text())["model"]  # not data/pretrained
    register()
    config = AutoConfig.from_pretrained(work / "data/trained")
    base = AutoModelForSequenceClassification.from_pretrained(base_named, config=config)
    model = PeftModel.from_pretrained(base, adapter).eval()
    batch = AutoTokenizer.from_pretrained(work / "data/trained")(["a pair ."], ["of texts ."], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**batch).logits, merged(**batch).logits, atol=1e-4)


def test_lora_adapts_only_the_targets_and_merging_keeps_the_predictions(prepared, tmp_path, monkeypatch):
    pytest.importorskip("peft", reason="the lora extra is not installed (pip install -e '.[lora]')")
    monkeypatch.chdir(prepared)
    p = parse_params(defaults() | {"peft": "lora", "lora_r": 4, "freeze_layers": 1, "dropout": 0.0})
    torch.manual_seed(0)
    model = load_model(p, ["no", "yes"])
    trainable = [n for n, w in model.named_parameters() if w.requires_grad]
    assert trainable and all("lora_" in n or "classifier" in n or "pooler" in n for n in trainable), trainable
    assert not [n for n in trainable if "layer.0." in n]  # the frozen bottom layer gets no adapter
    with torch.no_grad():  # give the adapters weight, so that merging has something to merge
        for name, w in model.named_parameters():
            if "lora_B" in name:
                w.normal_(0, 0.1)
    tokenizer = AutoTokenizer.from_pretrained("data/pretrained")
    batch = tokenizer(["a short one", "and another sentence here"], ["b", "c d"], padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        adapted = model(**batch).logits
        merged = plain(model).eval()
        assert torch.allclose(merged(**batch).logits, adapted, atol=1e-4)
    merged.save_pretrained(tmp_path / "saved")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, adapted, atol=1e-4)


def test_head_lr_scale_and_layer_lr_decay_reach_the_adapters_as_their_layers(tiny_model):
    """Under peft every name starts base_model.model.: the adapters had all trained at the head's lr,
    and layer_lr_decay did nothing."""
    pytest.importorskip("peft", reason="the lora extra is not installed (pip install -e '.[lora]')")
    from textclf.model import param_groups

    settings = {"peft": "lora", "lr": 1e-4, "head_lr_scale": 10, "layer_lr_decay": 0.5, "freeze_layers": 0}
    p = parse_params(defaults() | settings)
    model = load_model(p, ["no", "yes"], pretrained=tiny_model)
    lr_of = {id(w): g["lr"] for g in param_groups(model, p) for w in g["params"]}
    trained = {n: lr_of[id(w)] for n, w in model.named_parameters() if w.requires_grad}
    assert len(trained) == len(lr_of)  # every trainable weight in a group, and only those
    for name, lr in trained.items():
        if "lora_" in name:  # the tiny model's 2 layers: the top one at lr, the one below at half
            layer = int(name.split(".layer.")[1].split(".")[0])
            assert lr == pytest.approx(1e-4 * 0.5 ** (1 - layer)), name
        else:
            assert "classifier" in name or "pooler" in name, name
            assert lr == pytest.approx(1e-3), name


def test_gradient_checkpointing_is_switched_on_by_the_model_set_up(tiny_model):
    """load_model turns it on, for both engines (the Trainer is not asked to do it again)."""

    def checkpointing(on: bool) -> bool:
        p = parse_params(defaults() | {"gradient_checkpointing": on, "freeze_layers": 1})
        model = load_model(p, ["a", "b"], pretrained=tiny_model)
        if hasattr(model, "is_activation_checkpointing"):  # transformers 5.24 renamed the flag
            return model.is_activation_checkpointing
        return model.is_gradient_checkpointing

    assert checkpointing(True) and not checkpointing(False)


@pytest.mark.parametrize("engine", ENGINES)
def test_gradient_checkpointing_gives_the_same_training(prepared, tmp_path, engine):
    runs = []
    for checkpointing in (False, True):
        work = copy_work(prepared, tmp_path / f"{engine}-{checkpointing}")
        stage_run(work, "train", engine=engine, epochs=1, gradient_checkpointing=checkpointing, precision="fp32")
        runs.append([row.split("\t")[2] for row in read(work, "metrics/curves/train.tsv")[1:]])
    # Recomputing activations in the backward pass changes the memory, not the arithmetic.
    assert [float(x) for x in runs[0]] == pytest.approx([float(x) for x in runs[1]], rel=1e-4)
