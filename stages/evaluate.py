"""Score the fine-tuned model: data/model + data/tokenized -> metrics/eval.json, test.json,
confusion.csv (validation, for the confusion plot), test_predictions.tsv (GLUE submission format),
and a diagnosis of the training curves (diagnosis.json: verdict and flags; diagnosis_details.json:
evidence and suggestions)."""

import csv
import time

import numpy as np
import torch
from datasets import Dataset, load_from_disk
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from stages.common import (
    EVAL_CURVE,
    METRICS,
    MODEL,
    TOKENIZED,
    TRAIN_CURVE,
    bf16_supported,
    choose_precision,
    length_order,
    precision_args,
    run_stage,
    warn_remote_code,
    write_json,
    write_text_atomic,
)
from stages.diagnose import diagnose, format_report
from stages.metric import scores_with_loss
from stages.params import Params, load_params

EVAL_METRICS = METRICS / "eval.json"
TEST_METRICS = METRICS / "test.json"
CONFUSION = METRICS / "confusion.csv"
PREDICTIONS = METRICS / "test_predictions.tsv"
DIAGNOSIS = METRICS / "diagnosis.json"
DIAGNOSIS_DETAILS = METRICS / "diagnosis_details.json"


def eval_args(p: Params, precision: str) -> TrainingArguments:
    return TrainingArguments(
        output_dir="data/checkpoints",
        per_device_eval_batch_size=p.eval_batch_size,
        **precision_args(precision),
        disable_tqdm=False,
        report_to="none",
    )


def confusion_csv(predictions: np.ndarray, labels: np.ndarray, names: list[str]) -> str:
    rows = [f"{names[r]},{names[p]}" for p, r in zip(predictions, labels, strict=True)]
    return "\n".join(["actual,predicted", *rows]) + "\n"


def predictions_tsv(indices: list[int], predictions: np.ndarray) -> str:
    return (
        "\n".join(["index\tprediction", *(f"{i}\t{p}" for i, p in zip(indices, predictions, strict=True))])
        + "\n"
    )


def read_tsv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def diagnosis_of_run(val_metrics: dict, predictions: np.ndarray, labels: np.ndarray) -> dict:
    """Read the train stage's curves, plus what the final model predicts, for a verdict per pattern."""
    share = {
        str(c): float(np.mean(predictions == c)) for c in np.unique(np.concatenate([predictions, labels]))
    }
    majority = float(np.bincount(labels).max() / len(labels))
    return diagnose(read_tsv(TRAIN_CURVE), read_tsv(EVAL_CURVE), val_metrics, share, majority_rate=majority)


def predict(trainer: Trainer, split: Dataset) -> np.ndarray:
    """Logits in the split's own row order, computed over rows sorted by length."""
    columns = [c for c in split.column_names if c not in ("idx", "label")]
    order = length_order(split)
    logits = trainer.predict(split.select_columns(columns).select(order)).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    restored = np.empty_like(logits)
    restored[order] = logits
    return restored


def main() -> None:
    p = load_params()
    precision = choose_precision(p.precision, torch.cuda.is_available(), bf16_supported())
    data = load_from_disk(str(TOKENIZED))
    warn_remote_code(p.trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        MODEL, use_safetensors=True, trust_remote_code=p.trust_remote_code
    )
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    trainer = Trainer(
        model=model,
        args=eval_args(p, precision),
        data_collator=DataCollatorWithPadding(
            AutoTokenizer.from_pretrained(MODEL, trust_remote_code=p.trust_remote_code)
        ),
    )

    start = time.perf_counter()
    val = data["validation"]
    val_logits = predict(trainer, val)  # gathered from all processes under a distributed launcher
    test = data["test"] if "test" in data else None
    test_logits = predict(trainer, test) if test is not None else np.zeros((0, len(names)))
    print(f"evaluate: predictions took {time.perf_counter() - start:.1f} s", flush=True)
    if not trainer.is_world_process_zero():
        return
    val_labels = np.array(val["label"])
    val_metrics = scores_with_loss(val_logits, val_labels)
    write_json(EVAL_METRICS, val_metrics)
    write_text_atomic(CONFUSION, confusion_csv(val_logits.argmax(-1), val_labels, names))

    test_metrics = {"pairs": len(test_logits)}
    if test is not None and "label" in test.column_names:
        test_metrics.update(scores_with_loss(test_logits, np.array(test["label"])))
    write_json(TEST_METRICS, test_metrics)
    indices = test["idx"] if test is not None else []
    write_text_atomic(PREDICTIONS, predictions_tsv(indices, test_logits.argmax(-1)))
    print("evaluate: validation " + ", ".join(f"{k} {v:.4f}" for k, v in val_metrics.items()))

    found = diagnosis_of_run(val_metrics, val_logits.argmax(-1), val_labels)
    flags = {k: v for k, v in found.items() if k not in ("evidence", "suggestions")}
    write_json(DIAGNOSIS, flags)  # flat: verdict + one flag per pattern, as dvc exp show columns
    write_json(DIAGNOSIS_DETAILS, {"evidence": found["evidence"], "suggestions": found["suggestions"]})
    print(format_report(found))


if __name__ == "__main__":
    run_stage(main)
