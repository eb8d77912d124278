"""Score the fine-tuned model: data/model + data/tokenized ->
metrics/eval.json (validation), test.json (test, when labeled), per_class.json, confusion.csv
(validation, for the confusion plot), test_predictions.tsv (GLUE submission format),
data/predictions/{validation,test}.tsv (label names and class probabilities per row), and a diagnosis
of the training curves (diagnosis.json: verdict and flags; diagnosis_details.json: evidence)."""

import tempfile
import time

import numpy as np
from datasets import load_from_disk
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from stages import run_stage
from textclf.columns import label_ids
from textclf.diagnose import diagnose, format_report, prior_loss
from textclf.files import read_tsv, write_json, write_text_atomic
from textclf.heads import register as register_heads
from textclf.inference import predict_logits
from textclf.metrics import per_class, scores_with_loss
from textclf.params import ensure_unchanged, load_params
from textclf.paths import (
    CONFUSION,
    DIAGNOSIS,
    DIAGNOSIS_DETAILS,
    EVAL_CURVE,
    EVAL_METRICS,
    MODEL,
    PER_CLASS,
    PREDICTIONS,
    SUBMISSION,
    TEST_METRICS,
    TOKENIZED,
    TRAIN_CURVE,
)
from textclf.precision import precision_args, resolve_precision
from textclf.predictions import confusion_csv, predictions_tsv, submission_tsv
from textclf.security import warn_remote_code


def main() -> None:
    p = load_params()
    precision = resolve_precision(p.precision)
    data = load_from_disk(str(TOKENIZED))
    warn_remote_code(p.trust_remote_code)
    register_heads()  # a `pooling: mean` model has its own class
    model = AutoModelForSequenceClassification.from_pretrained(
        MODEL, use_safetensors=True, trust_remote_code=p.trust_remote_code
    )
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scratch = tempfile.TemporaryDirectory(prefix="textclf-evaluate-")  # the Trainer wants an output_dir
    args = TrainingArguments(
        output_dir=scratch.name, per_device_eval_batch_size=p.eval_batch_size, report_to="none",
        disable_tqdm=True, **precision_args(precision),
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(MODEL, trust_remote_code=p.trust_remote_code)
    trainer = Trainer(model=model, args=args, data_collator=DataCollatorWithPadding(tokenizer))

    start = time.perf_counter()
    # Gathered from all processes under a distributed launcher, in each split's row order.
    logits = {
        split: predict_logits(trainer, data[split]) for split in ("validation", "test") if split in data
    }
    print(f"evaluate: predictions took {time.perf_counter() - start:.1f} s", flush=True)
    if not trainer.is_world_process_zero():
        return
    ensure_unchanged("evaluate")
    scores, classes = {}, {}
    for split, split_logits in logits.items():
        ds = data[split]
        labels = label_ids(ds) if "label" in ds.column_names else None
        write_text_atomic(
            PREDICTIONS / f"{split}.tsv", predictions_tsv(ds["idx"], split_logits, names, labels)
        )
        if labels is not None:
            scores[split] = scores_with_loss(split_logits, labels)
            classes[split] = per_class(split_logits.argmax(-1), labels, names)
    val_labels = label_ids(data["validation"])
    write_json(EVAL_METRICS, scores["validation"])
    write_json(TEST_METRICS, {"rows": len(logits.get("test", []))} | scores.get("test", {}))
    write_json(PER_CLASS, classes)
    write_text_atomic(CONFUSION, confusion_csv(logits["validation"].argmax(-1), val_labels, names))
    test_logits = logits.get("test", np.zeros((0, len(names))))
    write_text_atomic(SUBMISSION, submission_tsv(data["test"]["idx"] if "test" in data else [], test_logits))
    print("evaluate: validation " + ", ".join(f"{k} {v:.4f}" for k, v in scores["validation"].items()))

    predicted = logits["validation"].argmax(-1)
    share = {
        names[c]: float(np.mean(predicted == c)) for c in np.unique(np.concatenate([predicted, val_labels]))
    }
    train_counts = np.bincount(label_ids(data["train"]), minlength=len(names))
    found = diagnose(
        read_tsv(TRAIN_CURVE), read_tsv(EVAL_CURVE), scores["validation"], share,
        majority_rate=float(np.bincount(val_labels).max() / len(val_labels)),
        prior=prior_loss(train_counts.tolist(), class_weighted=p.class_weights == "balanced"),
        n_validation=len(val_labels), train_counts=dict(zip(names, train_counts.tolist(), strict=True)),
    )  # fmt: skip
    write_json(DIAGNOSIS, {k: v for k, v in found.items() if k not in ("evidence", "suggestions")})
    write_json(DIAGNOSIS_DETAILS, {"evidence": found["evidence"], "suggestions": found["suggestions"]})
    print(format_report(found))


if __name__ == "__main__":
    run_stage(main)
