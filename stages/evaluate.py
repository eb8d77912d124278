"""Score the fine-tuned model and publish it: data/trained + data/tokenized ->
metrics/eval.json (validation), test.json (test, when labeled), per_class.json, confusion.csv
(validation, for the confusion plot), test_predictions.tsv (GLUE submission format),
data/predictions/{validation,test}.tsv (label names and class probabilities per row), a diagnosis of
the training curves (diagnosis.json: verdict and flags; diagnosis_details.json: evidence), and
data/model: the trained model with its model card (README.md), the folder to use and to share."""

import shutil
import tempfile
import time

from datasets import load_from_disk
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from stages import require_inputs, run_stage
from textclf.allocator import keep_freed_memory
from textclf.card import model_card
from textclf.columns import label_counts
from textclf.diagnose import format_report, model_warnings
from textclf.evaluation import write_diagnosis, write_scores
from textclf.files import atomic_dir, read_json, write_json, writing
from textclf.heads import register as register_heads
from textclf.inference import predict_logits
from textclf.params import ensure_unchanged, load_params
from textclf.paths import CARD_FILE, MODEL, SOURCE, TASK_FILE, TOKENIZED, TRAIN_METRICS, TRAINED
from textclf.precision import precision_args, resolve_precision
from textclf.security import warn_remote_code


def main() -> None:
    keep_freed_memory()  # fewer page faults per batch (textclf/allocator.py)
    p = load_params()
    require_inputs("evaluate", TRAINED, TOKENIZED, SOURCE)
    precision = resolve_precision(p.precision)
    data = load_from_disk(str(TOKENIZED))
    warn_remote_code(p.trust_remote_code)
    register_heads()  # a `pooling: mean` model has its own class
    model = AutoModelForSequenceClassification.from_pretrained(
        TRAINED, use_safetensors=True, trust_remote_code=p.trust_remote_code
    )
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scratch = tempfile.TemporaryDirectory(prefix="textclf-evaluate-")  # the Trainer wants an output_dir
    args = TrainingArguments(
        output_dir=scratch.name, per_device_eval_batch_size=p.eval_batch_size, report_to="none",
        disable_tqdm=True, **precision_args(precision),
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(TRAINED, trust_remote_code=p.trust_remote_code)
    trainer = Trainer(model=model, args=args, data_collator=DataCollatorWithPadding(tokenizer))

    start = time.perf_counter()
    # Gathered from all processes under a distributed launcher, in each split's row order.
    splits = [s for s in ("validation", "test") if s in data]
    logits = {split: predict_logits(trainer, data[split]) for split in splits}
    if not trainer.is_world_process_zero():
        return
    took = f"{time.perf_counter() - start:.1f} s, {trainer.args.world_size} process(es)"
    print(f"evaluate: predictions took {took}", flush=True)
    ensure_unchanged("evaluate")
    results = write_scores(data, logits, names)
    print("evaluate: validation " + ", ".join(f"{k} {v:.4f}" for k, v in results["scores"]["validation"].items()))
    lora = p.peft == "lora"  # its lr advice: adapters take a larger lr
    found = write_diagnosis(data, logits["validation"], names, p.class_weights, p.label_smoothing, p.lr, lora)
    print(format_report(found))

    card = model_card(
        p, read_json(SOURCE), read_json(TRAIN_METRICS), results, found, read_json(TRAINED / TASK_FILE),
        test_rows=len(logits.get("test", [])),
        used={"splits": {split: len(ds) for split, ds in data.items()}, "label_counts": label_counts(data)},
    )  # fmt: skip
    with writing(MODEL), atomic_dir(MODEL) as tmp:
        shutil.copytree(TRAINED, tmp, dirs_exist_ok=True)
        (tmp / CARD_FILE).write_text(card)
        # What predict needs, plus the warnings it repeats at every use (a near-baseline model, ...).
        write_json(tmp / TASK_FILE, read_json(TRAINED / TASK_FILE) | {"warnings": model_warnings(found)})
    print(f"evaluate: {MODEL} holds the model and its card ({MODEL / CARD_FILE})")


if __name__ == "__main__":
    run_stage(main)
