"""Accuracy, F1, precision and recall as an `evaluate` metric that needs no Hub, plus per-class scores.

`evaluate.load("glue", "mrpc")` downloads its definition from the Hub, so it fails offline. This
module defines the same numbers through evaluate's own API (add_batch() while predicting, compute() at
the end). A binary task reports precision/recall/F1 of the positive class, label id 1 (GLUE's MRPC F1;
the second name in `labels`); a task with more classes reports their macro averages (over the classes
that occur in the references or the predictions) under the same keys, so `dvc exp show` has the same
columns for every task.
"""

import datasets
import evaluate
import numpy as np


class ClassificationMetrics(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Accuracy, and precision/recall/F1 of the positive class (binary) or macro-averaged.",
            citation="",
            inputs_description="predictions and references: integer class ids",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions: list[int], references: list[int], num_labels: int = 2) -> dict:
        table = confusion(np.asarray(predictions), np.asarray(references), num_labels)
        accuracy = float(np.trace(table) / table.sum()) if table.sum() else 0.0
        # Macro averages run over the classes in the references or the predictions (as scikit-learn's do):
        # a class with no row on either side has no precision or recall to average.
        present = np.flatnonzero(table.sum(0) + table.sum(1))
        classes = [1] if num_labels == 2 else present.tolist()
        per_class = [class_scores(table, c) for c in classes]
        precision, recall, f1 = (float(np.mean([x[i] for x in per_class])) if per_class else 0.0 for i in range(3))
        return {"accuracy": accuracy, "f1": f1, "precision": precision, "recall": recall}


def confusion(predictions: np.ndarray, references: np.ndarray, num_labels: int) -> np.ndarray:
    """table[actual, predicted] = count."""
    table = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(table, (references.astype(np.int64), predictions.astype(np.int64)), 1)
    return table


def class_scores(table: np.ndarray, cls: int) -> tuple[float, float, float]:
    """(precision, recall, F1) of one class; 0 where a ratio has nothing to divide by."""
    tp = table[cls, cls]
    predicted, actual = table[:, cls].sum(), table[cls, :].sum()
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def per_class(predictions, references, names: list[str]) -> dict[str, dict]:
    """Precision, recall, F1 and support of every class, by label name."""
    table = confusion(np.asarray(predictions), np.asarray(references), len(names))
    found = {}
    for c, name in enumerate(names):
        precision, recall, f1 = class_scores(table, c)
        found[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(table[c].sum())}
    return found


def scores_with_loss(logits, labels) -> dict:
    """Accuracy, F1, precision, recall (evaluate's add_batch/compute) and mean cross-entropy, from logits."""
    import torch

    logits, labels = torch.as_tensor(logits).float(), torch.as_tensor(labels).long()
    predictions = logits.argmax(-1)
    metric = ClassificationMetrics(keep_in_memory=True)
    for start in range(0, len(labels), 1024):  # the way a streaming evaluation feeds it
        metric.add_batch(
            predictions=predictions[start : start + 1024].tolist(),
            references=labels[start : start + 1024].tolist(),
        )
    result = metric.compute(num_labels=logits.shape[-1])
    return {**result, "loss": torch.nn.functional.cross_entropy(logits, labels).item()}


def classification_metrics(predictions, references, num_labels: int = 2) -> dict:
    """One-shot helper: a fresh in-memory metric, fed in one batch."""
    metric = ClassificationMetrics(keep_in_memory=True)
    metric.add_batch(predictions=[int(x) for x in predictions], references=[int(x) for x in references])
    return metric.compute(num_labels=num_labels)
