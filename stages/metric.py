"""Accuracy, F1, precision and recall as an `evaluate` metric that needs no Hub.

`evaluate.load("glue", "mrpc")` downloads its definition from the Hub, so it fails offline. This
module defines the same numbers (F1 of the positive class, label 1 = paraphrase, as GLUE reports
it) through evaluate's own API: add_batch() while predicting, compute() at the end.
"""

import datasets
import evaluate


class ClassificationMetrics(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Accuracy, and precision/recall/F1 of the positive class (binary) or macro-averaged.",
            citation="",
            inputs_description="predictions and references: integer class ids",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions: list[int], references: list[int], num_labels: int = 2) -> dict:
        pairs = list(zip(predictions, references, strict=True))
        accuracy = sum(p == r for p, r in pairs) / len(pairs) if pairs else 0.0
        # Binary: F1 of class 1 (GLUE's MRPC F1). More classes: macro average over classes.
        classes = [1] if num_labels == 2 else list(range(num_labels))
        per_class = [_prf(pairs, c) for c in classes]
        precision, recall, f1 = (sum(x[i] for x in per_class) / len(per_class) for i in range(3))
        return {"accuracy": accuracy, "f1": f1, "precision": precision, "recall": recall}


def _prf(pairs: list[tuple[int, int]], cls: int) -> tuple[float, float, float]:
    tp = sum(p == cls and r == cls for p, r in pairs)
    fp = sum(p == cls and r != cls for p, r in pairs)
    fn = sum(p != cls and r == cls for p, r in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


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
