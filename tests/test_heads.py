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
