"""pooling: mean: the head reads the mean of the token vectors, and the saved model reloads with it."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tests.conftest import build_tiny_model
from tests.test_params import defaults
from textclf.errors import InputError
from textclf.heads import MeanPooledBertForSequenceClassification, classifier_class
from textclf.model import load_model
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
    assert classifier_class("cls", "distilbert") is AutoModelForSequenceClassification
    with pytest.raises(InputError, match="pooling: mean is built for BERT-style encoders"):
        classifier_class("mean", "distilbert")


def test_the_joint_projection_computes_what_three_projections_do(mean_model):
    """Each layer's query, key and value run as one matrix product: the same outputs and gradients as
    BERT's own self-attention with the same weights, and the same parameter names in checkpoints."""
    from transformers.models.bert.modeling_bert import BertSelfAttention

    from textclf.heads import JointProjectionSelfAttention

    joint = mean_model.bert.encoder.layer[0].attention.self
    assert isinstance(joint, JointProjectionSelfAttention)
    stock = BertSelfAttention(mean_model.config, layer_idx=0)
    stock.load_state_dict(joint.state_dict())
    assert (
        set(stock.state_dict())
        == set(joint.state_dict())
        == {f"{n}.{w}" for n in ("query", "key", "value") for w in ("weight", "bias")}
    )
    torch.manual_seed(1)
    hidden = torch.randn(2, 6, mean_model.config.hidden_size)
    mask = torch.zeros(2, 1, 6, 6)
    mask[0, ..., 4:] = torch.finfo(torch.float32).min  # row 0: its last two tokens are padding
    results = []
    for module in (joint, stock):
        x = hidden.clone().requires_grad_()
        out = module(x, attention_mask=mask)[0]
        (out * torch.arange(out.numel()).view_as(out)).sum().backward()
        results.append((out, x.grad, [m.weight.grad for m in (module.query, module.key, module.value)]))
        module.zero_grad()
    (out_j, dx_j, dw_j), (out_s, dx_s, dw_s) = results
    assert torch.allclose(out_j, out_s, atol=1e-6)
    assert torch.allclose(dx_j, dx_s, rtol=1e-5, atol=1e-4)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-4) for a, b in zip(dw_j, dw_s, strict=True))
