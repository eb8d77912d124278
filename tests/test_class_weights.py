"""class_weights: balanced and label_smoothing change the training loss the same way in both engines;
validation loss stays the plain one; none / 0 leave the model's own loss untouched."""

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

from tests.test_params import defaults
from textclf.engines.loop import batch_loss
from textclf.engines.trainer import PipelineTrainer
from textclf.errors import InputError
from textclf.model import class_weights
from textclf.params import parse_params

PARAMS = parse_params(defaults())


def tiny_classifier(num_labels: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    config.num_labels = num_labels
    return BertForSequenceClassification(config)


def batch() -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(0, 50, (6, 5), generator=g),
        "attention_mask": torch.ones(6, 5, dtype=torch.long),
        "labels": torch.tensor([0, 0, 0, 0, 1, 2]),  # imbalanced: class 0 dominates
    }


def test_balanced_weights_follow_the_train_label_counts():
    weights = class_weights("balanced", np.array([0] * 6 + [1] * 3 + [2] * 1), ["a", "b", "c"])
    assert weights.tolist() == pytest.approx([10 / 18, 10 / 9, 10 / 3])  # n / (k * n_c)
    assert class_weights("none", np.array([0, 1]), ["a", "b"]) is None
    with pytest.raises(InputError, match="needs a train row of every class; train has none of 'c': set class_"):
        class_weights("balanced", np.array([0, 0, 1]), ["a", "b", "c"])
    with pytest.raises(InputError, match="none of 'b', 'c': max_train_samples cut them out: raise it"):
        class_weights("balanced", np.array([0, 0]), ["a", "b", "c"], cut=True)


def logits_of(model, inputs) -> torch.Tensor:
    return model(**{k: v for k, v in inputs.items() if k != "labels"}).logits


def manual(model, inputs, weights=None) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits_of(model, inputs), inputs["labels"], weight=weights)


def without_dropout(model) -> None:
    """Training mode without dropout's randomness: the same logits every call."""
    for layer in model.modules():
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0


def test_the_loop_engine_weighs_its_training_loss():
    model, inputs = tiny_classifier(), batch()
    model.eval()  # dropout off: the same logits every call
    weights = class_weights("balanced", inputs["labels"].numpy(), ["a", "b", "c"])
    weighted = batch_loss(model, inputs, weights, 0.0)
    assert weighted.item() == pytest.approx(manual(model, inputs, weights).item(), rel=1e-6)
    assert batch_loss(model, inputs, None, 0.0).item() == pytest.approx(manual(model, inputs).item(), rel=1e-6)
    assert abs(weighted.item() - manual(model, inputs).item()) > 1e-3  # the weights changed it


def test_the_trainer_engine_weighs_training_but_not_evaluation(tmp_path):
    model, inputs = tiny_classifier(), batch()
    weights = class_weights("balanced", inputs["labels"].numpy(), ["a", "b", "c"])
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = PipelineTrainer(model=model, args=args, class_weights=weights, pipeline_params=PARAMS)
    without_dropout(model)
    model.train()
    trained = trainer.compute_loss(model, dict(inputs)).item()
    assert trained == pytest.approx(manual(model, inputs, weights).item(), rel=1e-5)
    model.eval()
    assert trainer.compute_loss(model, dict(inputs)).item() == pytest.approx(manual(model, inputs).item(), rel=1e-5)
    plain = PipelineTrainer(model=model, args=args, pipeline_params=PARAMS)  # class_weights: none
    model.train()
    assert plain.compute_loss(model, dict(inputs)).item() == pytest.approx(manual(model, inputs).item(), rel=1e-5)


def smoothed(model, inputs, eps: float) -> torch.Tensor:
    """Label smoothing written out: (1 - eps) of the target's -log p, plus eps of the mean over classes."""
    logp = torch.log_softmax(logits_of(model, inputs), dim=-1)
    target = -logp.gather(1, inputs["labels"].unsqueeze(1)).squeeze(1)
    return ((1 - eps) * target + eps * -logp.mean(dim=-1)).mean()


def test_label_smoothing_changes_training_loss_in_both_engines_but_not_evaluation(tmp_path):
    model, inputs = tiny_classifier(), batch()
    with torch.no_grad():  # confident logits, so that smoothing makes a visible difference
        model.classifier.weight.mul_(100)
    model.eval()
    assert batch_loss(model, inputs, None, 0.1).item() == pytest.approx(smoothed(model, inputs, 0.1).item(), rel=1e-5)
    assert abs(smoothed(model, inputs, 0.1).item() - manual(model, inputs).item()) > 1e-3
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    params = parse_params(defaults() | {"label_smoothing": 0.1})
    trainer = PipelineTrainer(model=model, args=args, pipeline_params=params)
    without_dropout(model)
    model.train()
    assert trainer.compute_loss(model, dict(inputs)).item() == pytest.approx(
        smoothed(model, inputs, 0.1).item(), rel=1e-5
    )
    model.eval()
    assert trainer.compute_loss(model, dict(inputs)).item() == pytest.approx(manual(model, inputs).item(), rel=1e-5)
