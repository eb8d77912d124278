"""Fine-tune the checkpoint: data/tokenized + data/pretrained -> data/model, curves, metrics/train.json."""

import numpy as np
import torch
from datasets import DatasetDict, load_from_disk
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    Trainer,
    TrainingArguments,
    set_seed,
)

from stages.common import (
    METRICS,
    MODEL,
    PRETRAINED,
    TOKENIZED,
    atomic_dir,
    bf16_supported,
    choose_precision,
    write_json,
    write_text_atomic,
)
from stages.metric import classification_metrics
from stages.params import Params, load_params

CHECKPOINTS = "data/checkpoints"  # scratch space for the Trainer; not a DVC output
TRAIN_CURVE = METRICS / "curves" / "train.tsv"
EVAL_CURVE = METRICS / "curves" / "eval.tsv"
TRAIN_METRICS = METRICS / "train.json"


def training_args(p: Params, precision: str, output_dir: str) -> TrainingArguments:
    return TrainingArguments(
        output_dir=output_dir,
        learning_rate=p.lr,
        num_train_epochs=p.epochs,
        per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=p.eval_batch_size,
        gradient_accumulation_steps=p.grad_accum,
        weight_decay=p.weight_decay,
        warmup_steps=p.warmup,
        lr_scheduler_type=p.lr_scheduler,
        max_grad_norm=p.max_grad_norm,
        seed=p.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=p.logging_steps,
        train_sampling_strategy="group_by_length" if p.group_by_length else "random",
        disable_tqdm=False,
        report_to="none",
    )


def compute_metrics(pred: EvalPrediction) -> dict:
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    num_labels = logits.shape[-1]
    return classification_metrics(np.argmax(logits, axis=-1), pred.label_ids, num_labels=num_labels)


def curves(log_history: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split the Trainer's log into train rows (per logging step) and validation rows (per epoch)."""
    train = [
        {"step": r["step"], "epoch": round(r["epoch"], 4), "train_loss": r["loss"], "lr": r["learning_rate"]}
        for r in log_history
        if "loss" in r and "learning_rate" in r
    ]
    val = [
        {
            "step": r["step"],
            "epoch": round(r["epoch"], 4),
            "val_loss": r["eval_loss"],
            "val_accuracy": r["eval_accuracy"],
            "val_f1": r["eval_f1"],
        }
        for r in log_history
        if "eval_loss" in r
    ]
    return train, val


def to_tsv(rows: list[dict], columns: list[str]) -> str:
    lines = ["\t".join(columns)] + ["\t".join(str(r[c]) for c in columns) for r in rows]
    return "\n".join(lines) + "\n"


def load_model(p: Params, num_labels: int, label_names: list[str]):
    model = AutoModelForSequenceClassification.from_pretrained(
        PRETRAINED,
        num_labels=num_labels,
        id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
        use_safetensors=True,
        attn_implementation="eager",  # measured faster than SDPA for training on CPU
    )
    if p.freeze_embeddings:
        # The word-embedding matrix is half of MiniLM's parameters and dominates the optimizer step.
        model.get_input_embeddings().weight.requires_grad_(False)
    return model


def main() -> None:
    p = load_params()
    precision = choose_precision(p.precision, torch.cuda.is_available(), bf16_supported())
    data: DatasetDict = load_from_disk(str(TOKENIZED))
    label_names = data["train"].features["label"].names
    set_seed(p.seed)
    tokenizer = AutoTokenizer.from_pretrained(PRETRAINED)
    trainer = Trainer(
        model=load_model(p, len(label_names), label_names),
        args=training_args(p, precision, CHECKPOINTS),
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    result = trainer.train()
    train_rows, val_rows = curves(trainer.state.log_history)
    write_text_atomic(TRAIN_CURVE, to_tsv(train_rows, ["step", "epoch", "train_loss", "lr"]))
    write_text_atomic(EVAL_CURVE, to_tsv(val_rows, ["step", "epoch", "val_loss", "val_accuracy", "val_f1"]))
    write_json(
        TRAIN_METRICS,
        {
            "train_loss": result.training_loss,
            "train_runtime_s": round(result.metrics["train_runtime"], 1),
            "train_samples_per_s": round(result.metrics["train_samples_per_second"], 1),
            "steps": result.global_step,
            "precision": precision,
        },
    )
    with atomic_dir(MODEL) as tmp:
        # Not trainer.save_model: it adds training_args.bin, a pickle file.
        trainer.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


if __name__ == "__main__":
    main()
