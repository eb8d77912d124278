import random

import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from textclf.metrics import ClassificationMetrics, classification_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_match_sklearn(seed):
    rng = random.Random(seed)
    refs = [rng.randint(0, 1) for _ in range(200)]
    preds = [r if rng.random() < 0.7 else 1 - r for r in refs]
    got = classification_metrics(preds, refs)
    assert got["accuracy"] == pytest.approx(accuracy_score(refs, preds))
    assert got["f1"] == pytest.approx(f1_score(refs, preds))
    assert got["precision"] == pytest.approx(precision_score(refs, preds))
    assert got["recall"] == pytest.approx(recall_score(refs, preds))


def test_multiclass_is_macro_averaged_like_sklearn():
    rng = random.Random(3)
    refs = [rng.randint(0, 2) for _ in range(150)]
    preds = [r if rng.random() < 0.6 else rng.randint(0, 2) for r in refs]
    got = classification_metrics(preds, refs, num_labels=3)
    assert got["f1"] == pytest.approx(f1_score(refs, preds, average="macro"))
    assert got["precision"] == pytest.approx(precision_score(refs, preds, average="macro"))


def test_macro_averages_skip_classes_absent_from_references_and_predictions():
    # 40 classes, validation holds one row of each of 36 (a carved split leaves the rarest out): macro
    # recall over the classes present equals accuracy, as in scikit-learn; over all 40 it was lower.
    refs = list(range(36))
    preds = [0] * 36  # right on class 0 only; classes 36-39 never occur
    got = classification_metrics(preds, refs, num_labels=40)
    assert got["recall"] == pytest.approx(got["accuracy"]) == pytest.approx(1 / 36)
    for name, score in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
        assert got[name] == pytest.approx(score(refs, preds, average="macro", zero_division=0)), name
    assert classification_metrics([], [], num_labels=3) == {"accuracy": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    # A class only predicted (never a reference) still counts, with precision 0, as in scikit-learn.
    got = classification_metrics([0, 1, 3], [0, 1, 1], num_labels=5)
    assert got["precision"] == pytest.approx(precision_score([0, 1, 1], [0, 1, 3], average="macro", zero_division=0))


def test_add_batch_then_compute_equals_one_shot():
    refs = [0, 1, 1, 0, 1, 1, 0, 0]
    preds = [0, 1, 0, 0, 1, 1, 1, 0]
    metric = ClassificationMetrics(keep_in_memory=True)
    for i in range(0, 8, 3):
        metric.add_batch(predictions=preds[i : i + 3], references=refs[i : i + 3])
    assert metric.compute() == classification_metrics(preds, refs)


def test_one_class_predictions_on_mrpc_dev_balance():
    # Predicting "paraphrase" for all of MRPC dev (279 of 408 positive) gives acc 68.4, F1 81.2.
    refs = [1] * 279 + [0] * 129
    got = classification_metrics([1] * 408, refs)
    assert round(got["accuracy"] * 100, 1) == 68.4 and round(got["f1"] * 100, 1) == 81.2
