"""pooling: mean: the head reads the mean of the token vectors, and the saved model reloads with it."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from tests.conftest import TINY_FAMILIES, TINY_TRAIN, build_tiny_model, make_repo, run, write_mrpc
from tests.test_params import defaults
from textclf.errors import InputError
from textclf.heads import MeanPooledBertForSequenceClassification, classifier_class
from textclf.model import encoder_layers, load_model, weight_places
from textclf.params import parse_params


@pytest.fixture(scope="module")
def mean_model(tmp_path_factory):
    checkpoint = build_tiny_model(tmp_path_factory.mktemp("tiny") / "bert")
    p = parse_params(defaults() | {"pooling": "mean", "freeze_layers": 0})
    torch.manual_seed(0)
    return load_model(p, ["neg", "pos"], pretrained=checkpoint).eval()


def batch():
    ids = torch.tensor([[101, 2023, 2003, 102, 0, 0], [101, 2307, 3185, 2003, 2307, 102]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long(), "token_type_ids": torch.zeros_like(ids)}


def test_the_head_reads_the_mean_of_the_real_tokens(mean_model):
    inputs = batch()
    with torch.no_grad():
        hidden = mean_model.bert(**inputs).last_hidden_state
        expected = torch.stack([hidden[0, :4].mean(0), hidden[1].mean(0)])  # row 0: 4 tokens, 2 padding
        assert torch.allclose(mean_model(**inputs).logits, mean_model.classifier(expected), atol=1e-6)
        alone = {k: v[:1, :4] for k, v in inputs.items()}  # row 0 without its padding
        assert torch.allclose(mean_model(**alone).logits[0], mean_model(**inputs).logits[0], atol=1e-5)


def test_saved_model_reloads_with_its_head(mean_model, tmp_path):
    mean_model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, MeanPooledBertForSequenceClassification)
    assert reloaded.config.id2label == {0: "neg", 1: "pos"}
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch()).logits, mean_model(**batch()).logits, atol=1e-6)


def test_mean_pooling_is_refused_for_other_architectures():
    assert classifier_class("cls", "gpt2") is AutoModelForSequenceClassification
    with pytest.raises(InputError, match="pooling: mean is built for these encoders: bert, roberta"):
        classifier_class("mean", "gpt2")


@pytest.mark.parametrize("model_type", list(TINY_FAMILIES))
def test_the_mean_head_on_each_encoder_family_pools_freezes_and_reloads(tmp_path, model_type):
    """all-mpnet-base-v2, the most used sentence-embedding checkpoint, is an MPNet: `pooling: mean` (the
    default) refused it and every family but BERT. Now each family gets the head on its own base model,
    with its pretrained weights, its bottom layers frozen, and a model_type that reloads it."""
    checkpoint = build_tiny_model(tmp_path / model_type, model_type)
    p = parse_params(defaults() | {"pooling": "mean", "freeze_layers": 1})
    torch.manual_seed(0)
    model = load_model(p, ["neg", "pos"], pretrained=checkpoint).eval()
    assert model.config.model_type == f"textclf_{model_type}"
    encoder = getattr(model, model.base_model_prefix)
    base = AutoModel.from_pretrained(checkpoint).eval()  # the pretrained encoder: its weights were loaded
    inputs = batch()
    plain = {k: v for k, v in inputs.items() if k != "token_type_ids" or model.takes_token_types}
    with torch.no_grad():
        hidden = encoder(**plain).last_hidden_state
        assert torch.allclose(hidden, base(**plain).last_hidden_state, atol=1e-5)
        expected = torch.stack([hidden[0, :4].mean(0), hidden[1].mean(0)])  # row 0: 4 tokens, 2 padding
        logits = model(**inputs).logits
        assert torch.allclose(logits, model.classifier(expected), atol=1e-5)
    layers = encoder_layers(encoder)
    assert not any(w.requires_grad for w in layers[0].parameters())
    assert all(w.requires_grad for w in layers[1].parameters())
    # Nothing below the trained layer trains (MPNet's relative attention bias and DeBERTa's relative
    # embeddings feed every layer: they trained, so the "frozen" layer's output changed).
    places = weight_places(encoder)
    below = [n for n, w in encoder.named_parameters() if w.requires_grad and places[n] not in (1, "above")]
    assert below == [], below
    model.save_pretrained(tmp_path / "trained")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "trained").eval()
    assert type(reloaded) is type(model) and reloaded.config.id2label == {0: "neg", 1: "pos"}
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, logits, atol=1e-5)


def test_a_mean_pooled_model_of_another_family_reloads_in_a_fresh_process(tmp_path):
    """The families' classes are built when first needed; `import textclf.heads` alone must make the
    saved model loadable, as the model card tells users."""
    checkpoint = build_tiny_model(tmp_path / "mpnet", "mpnet")
    p = parse_params(defaults() | {"pooling": "mean", "freeze_layers": 0})
    load_model(p, ["neg", "pos"], pretrained=checkpoint).save_pretrained(tmp_path / "trained")
    code = (
        "import sys, textclf.heads\n"
        "from transformers import AutoModelForSequenceClassification as A\n"
        "print(type(A.from_pretrained(sys.argv[1])).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "trained")], capture_output=True, text=True)
    assert out.stdout.strip() == "MeanPooledMPNetForSequenceClassification", out.stderr[-2000:]


def test_a_pipeline_on_an_mpnet_trains_evaluates_predicts_and_exports(tmp_path):
    """The whole pipeline, by DVC, on a (tiny, random) MPNet with the default `pooling: mean`: no token
    types, no frozen-layer cache (BERT's only), then predict with the saved model and its ONNX export."""
    checkpoint = build_tiny_model(tmp_path / "mpnet", "mpnet")
    data = write_mrpc(tmp_path / "mrpc", n_train=64)
    repo = make_repo(tmp_path / "repo", {"dataset": str(data), "model": str(checkpoint), **TINY_TRAIN})
    out = run(["dvc", "repro"], repo)
    assert "frozen-layer cache" not in out.stdout + out.stderr
    assert json.loads((repo / "data/model/config.json").read_text())["model_type"] == "textclf_mpnet"
    assert 0 <= json.loads((repo / "metrics/eval.json").read_text())["f1"] <= 1
    pairs = tmp_path / "new.tsv"
    pairs.write_text("sentence1\tsentence2\nA cat sat.\tA cat was sitting.\nIt rained.\tStocks rose.\n")
    cli = [sys.executable, "-m", "textclf.cli"]
    torch_rows = run([*cli, "predict", str(pairs)], repo).stdout
    assert len(torch_rows.splitlines()) == 3, torch_rows
    run([*cli, "export", "--output", str(tmp_path / "onnx")], repo)
    onnx_rows = run([*cli, "predict", str(pairs), "--model", str(tmp_path / "onnx"), "--backend", "onnx"], repo).stdout
    assert [r.split("\t")[:2] for r in onnx_rows.splitlines()] == [r.split("\t")[:2] for r in torch_rows.splitlines()]


def test_layer_lr_decay_follows_each_familys_own_stack(tmp_path):
    """layer_lr_decay read a layer's index from `.layer.N.` names: GPT-2's blocks (h.N) all got the
    embeddings' lr, and ModernBERT's final norm, above its layers, got the embeddings' lr too."""
    from transformers import CONFIG_MAPPING

    from textclf.model import lr_scales

    gpt2 = AutoModelForSequenceClassification.from_config(
        CONFIG_MAPPING["gpt2"](n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64, pad_token_id=0)
    )
    scales = lr_scales(gpt2, head=10.0, decay=0.5)
    assert scales["transformer.h.1.attn.c_attn.weight"] == 1.0 and scales["transformer.h.0.attn.c_attn.weight"] == 0.5
    assert scales["transformer.wte.weight"] == 0.25 and scales["transformer.ln_f.weight"] == 1.0
    assert scales["score.weight"] == 10.0
    p = parse_params(defaults() | {"pooling": "mean", "freeze_layers": 0})
    modern = load_model(p, ["neg", "pos"], pretrained=build_tiny_model(tmp_path / "modernbert", "modernbert"))
    scales = lr_scales(modern, head=10.0, decay=0.5)
    assert scales["model.final_norm.weight"] == 1.0 and scales["model.embeddings.tok_embeddings.weight"] == 0.25
    assert scales["model.layers.0.attn.Wqkv.weight"] == 0.5 and scales["classifier.weight"] == 10.0
    mpnet = load_model(p, ["neg", "pos"], pretrained=build_tiny_model(tmp_path / "mpnet", "mpnet"))
    scales = lr_scales(mpnet, head=10.0, decay=0.5)  # its relative attention bias feeds every layer
    assert scales["mpnet.encoder.relative_attention_bias.weight"] == 0.25


def test_a_trained_mean_model_continues_with_the_head_asked_for_and_pickles(tmp_path):
    """`model` set to a folder this pipeline trained (textclf_mpnet) with pooling: cls trained the mean
    head again; each family's classes could not be pickled (torch.save of a model, its config)."""
    import pickle

    from textclf.errors import InputError

    trained = tmp_path / "trained"
    mean = parse_params(defaults() | {"pooling": "mean", "freeze_layers": 0})
    model = load_model(mean, ["neg", "pos"], pretrained=build_tiny_model(tmp_path / "mpnet", "mpnet"))
    model.save_pretrained(trained)
    again = pickle.loads(pickle.dumps(model))
    assert type(again) is type(model) and type(again.config) is type(model.config)
    cls_head = parse_params(defaults() | {"pooling": "cls", "freeze_layers": 1})
    cls = load_model(cls_head, ["neg", "pos"], pretrained=trained)
    assert type(cls).__name__ == "MPNetForSequenceClassification" and cls.config.model_type == "mpnet"
    checkpointing = parse_params(defaults() | {"pooling": "mean", "gradient_checkpointing": True})
    with pytest.raises(InputError, match="gradient_checkpointing: textclf_mpnet models do not support it"):
        load_model(checkpointing, ["neg", "pos"], pretrained=trained)


def test_export_leaves_the_model_in_evaluation_mode(tmp_path):
    """torch.onnx.export put the model back in the mode of the wrapper it was given (training): with
    dropout above 0 the agreement check then ran PyTorch with dropout and refused a correct export."""
    from transformers import AutoTokenizer

    from textclf.export import export_onnx

    checkpoint = build_tiny_model(tmp_path / "roberta", "roberta")
    p = parse_params(defaults() | {"pooling": "mean", "freeze_layers": 0, "dropout": 0.1})
    model = load_model(p, ["neg", "pos"], pretrained=checkpoint).eval()
    export_onnx(model, AutoTokenizer.from_pretrained(checkpoint), tmp_path / "model.onnx")
    assert not model.training
