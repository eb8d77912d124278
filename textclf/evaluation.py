"""Scoring a trained model's predictions: the metric files, the per-row prediction files, and the
inputs of the learning-curve diagnosis. Pure file writing around logits the evaluate stage computed."""

import numpy as np
from datasets import DatasetDict

from textclf.columns import label_ids
from textclf.diagnose import diagnose, prior_loss
from textclf.files import read_tsv, write_json, write_text_atomic
from textclf.metrics import confusion, per_class, scores_with_loss
from textclf.paths import (
    CONFUSION,
    DIAGNOSIS,
    DIAGNOSIS_DETAILS,
    EVAL_CURVE,
    EVAL_METRICS,
    PER_CLASS,
    PREDICTIONS,
    SUBMISSION,
    TEST_METRICS,
    TRAIN_CURVE,
)
from textclf.predictions import confusion_csv, predictions_tsv, submission_tsv


def write_scores(data: DatasetDict, logits: dict[str, np.ndarray], names: list[str]) -> dict:
    """Metrics of every labeled split and the prediction files of every split; returns
    {"scores": {split: metrics}, "per_class": {split: {name: metrics}}}."""
    scores, classes = {}, {}
    for split, split_logits in logits.items():
        ds = data[split]
        labels = label_ids(ds) if "label" in ds.column_names else None
        table = predictions_tsv(ds["idx"], split_logits, names, labels)
        write_text_atomic(PREDICTIONS / f"{split}.tsv", table)
        if labels is not None:
            scores[split] = scores_with_loss(split_logits, labels)
            classes[split] = per_class(split_logits.argmax(-1), labels, names)
    write_json(EVAL_METRICS, scores["validation"])
    write_json(TEST_METRICS, {"rows": len(logits.get("test", []))} | scores.get("test", {}))
    write_json(PER_CLASS, classes)
    val_labels = label_ids(data["validation"])
    write_text_atomic(CONFUSION, confusion_csv(logits["validation"].argmax(-1), val_labels, names))
    test_logits = logits.get("test", np.zeros((0, len(names))))
    write_text_atomic(SUBMISSION, submission_tsv(data["test"]["idx"] if "test" in data else [], test_logits))
    return {"scores": scores, "per_class": classes}


def write_diagnosis(
    data: DatasetDict,
    val_logits: np.ndarray,
    names: list[str],
    class_weights: str,
    label_smoothing: float,
    lr: float | None = None,
    adapters: bool = False,
) -> dict:
    """The diagnosis of the train stage's curves plus what the final model predicts on validation."""
    val_labels = label_ids(data["validation"])
    predicted = val_logits.argmax(-1)
    shown = np.unique(np.concatenate([predicted, val_labels]))
    share = {names[c]: float(np.mean(predicted == c)) for c in shown}
    train_counts = np.bincount(label_ids(data["train"]), minlength=len(names)).tolist()
    found = diagnose(
        read_tsv(TRAIN_CURVE),
        read_tsv(EVAL_CURVE),
        scores_with_loss(val_logits, val_labels),
        share,
        majority_rate=float(np.bincount(val_labels).max() / len(val_labels)),
        prior=prior_loss(train_counts, class_weighted=class_weights == "balanced", smoothing=label_smoothing),
        n_validation=len(val_labels),
        train_counts=dict(zip(names, train_counts, strict=True)),
        lr=lr,
        # A class-weighted run trades accuracy for the smaller classes: judged by balanced accuracy.
        confusion=confusion(predicted, val_labels, len(names)).tolist() if class_weights == "balanced" else None,
        adapters=adapters,
    )
    write_json(DIAGNOSIS, {k: v for k, v in found.items() if k not in ("evidence", "suggestions")})
    write_json(DIAGNOSIS_DETAILS, {"evidence": found["evidence"], "suggestions": found["suggestions"]})
    return found
