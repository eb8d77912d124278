"""Fine-tune the checkpoint: data/tokenized + data/pretrained -> data/model, curves, metrics/train.json.

Two engines share one contract (same params, same outputs): the HF Trainer (`engine: trainer`) and a
hand-written Accelerate loop (`engine: accelerate`, stages/loop.py). Both checkpoint every epoch and
on Ctrl-C/SIGTERM into data/checkpoints (not a DVC output), resume from there when the next run has
the same params and data, and output the best epoch's model by `metric_for_best_model`.
"""

import hashlib
import json
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict, load_from_disk
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    EvalPrediction,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from stages.common import (
    METRICS,
    MODEL,
    PRETRAINED,
    TOKENIZED,
    StageError,
    atomic_dir,
    bf16_supported,
    choose_precision,
    run_stage,
    warn_remote_code,
    write_json,
    write_text_atomic,
)
from stages.metric import classification_metrics
from stages.params import Params, as_dict, load_params

CHECKPOINTS = Path("data/checkpoints")  # scratch space for resuming; not a DVC output
TRAIN_CURVE = METRICS / "curves" / "train.tsv"
EVAL_CURVE = METRICS / "curves" / "eval.tsv"
TRAIN_METRICS = METRICS / "train.json"
# The params that change what training computes; a checkpoint made under others is not resumed.
TRAIN_KEYS = [
    "lr", "epochs", "batch_size", "weight_decay", "warmup", "lr_scheduler", "grad_accum", "max_grad_norm",
    "seed", "precision", "group_by_length", "freeze_embeddings", "engine", "early_stopping_patience",
    "metric_for_best_model", "logging_steps",
]  # fmt: skip


@dataclass
class Outcome:
    """What an engine hands back: the best model and a Trainer-style log history."""

    model: torch.nn.Module
    log_history: list[dict]
    global_step: int
    train_seconds: float
    best_epoch: float | None
    is_main: bool
    interrupted: bool = False
    resumed_from: str | None = None
    extra: dict = field(default_factory=dict)


class Interrupt:
    """Turns Ctrl-C / SIGTERM into a flag, so the engine saves a checkpoint at the next step and stops."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        print("\ntrain: interrupted; saving a checkpoint to resume from (Ctrl-C again to abort)", flush=True)


def fingerprint(p: Params, data_dir: Path = TOKENIZED, pretrained: Path = PRETRAINED) -> str:
    """Identity of a training run: train params, the tokenized data instance, the starting weights."""
    h = hashlib.sha256(json.dumps({k: as_dict(p)[k] for k in TRAIN_KEYS}, sort_keys=True).encode())
    for state in sorted(data_dir.glob("*/state.json")):  # datasets writes a fresh fingerprint per save
        h.update(state.read_bytes())
    with (pretrained / "model.safetensors").open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def prepare_checkpoints(folder: Path, run_id: str, is_main: bool) -> Path | None:
    """Return the newest complete checkpoint of this same run, or None; wipe checkpoints of other runs."""
    stamp = folder / "run.json"
    same_run = stamp.exists() and json.loads(stamp.read_text()).get("fingerprint") == run_id
    if not same_run:
        if is_main:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            stamp.write_text(json.dumps({"fingerprint": run_id}))
        return None
    # trainer_state.json / loop_state.json are written last: without one the checkpoint is partial.
    done = [
        d
        for d in folder.glob("*-[0-9]*")
        if (d / "trainer_state.json").exists() or (d / "loop_state.json").exists()
    ]
    return max(done, key=lambda d: int(d.name.rsplit("-", 1)[1]), default=None)


def check_labels(pretrained: Path, label_names: list[str], trust_remote_code: bool = False) -> None:
    """A checkpoint that already has a classification head must agree with the data's label count."""
    config = AutoConfig.from_pretrained(pretrained, trust_remote_code=trust_remote_code)
    heads = [a for a in (config.architectures or []) if a.endswith("ForSequenceClassification")]
    if heads and config.num_labels != len(label_names):
        raise StageError(
            f"model {pretrained} is a classifier with {config.num_labels} labels, but the data has "
            f"{len(label_names)} ({label_names}). Use a base checkpoint or one trained on these labels."
        )


def load_model(p: Params, label_names: list[str]) -> torch.nn.Module:
    model = AutoModelForSequenceClassification.from_pretrained(
        PRETRAINED,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={n: i for i, n in enumerate(label_names)},
        use_safetensors=True,
        attn_implementation="eager",  # measured faster than SDPA for training on CPU
        trust_remote_code=p.trust_remote_code,
    )
    # transformers 5 sees **kwargs in forward() and assumes the loss is normalised by num_items_in_batch.
    # Sequence classifiers take a plain mean, so the Trainer would then sum gradients over accumulation
    # steps (lr x grad_accum) and scale the loss by the process count under DDP (lr x world size).
    model.accepts_loss_kwargs = False
    if p.freeze_embeddings:
        # The word-embedding matrix is half of MiniLM's parameters and dominates the optimizer step.
        model.get_input_embeddings().weight.requires_grad_(False)
    return model


def best_metric_key(p: Params) -> tuple[str, bool]:
    """The log key that picks the best epoch, and whether greater is better."""
    return f"eval_{p.metric_for_best_model}", p.metric_for_best_model != "loss"


def compute_metrics(pred: EvalPrediction) -> dict:
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    return classification_metrics(np.argmax(logits, axis=-1), pred.label_ids, num_labels=logits.shape[-1])


def training_args(p: Params, precision: str, output_dir: Path) -> TrainingArguments:
    metric, greater = best_metric_key(p)
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=p.lr,
        num_train_epochs=p.epochs,
        per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=p.eval_batch_size,
        gradient_accumulation_steps=p.grad_accum,
        weight_decay=p.weight_decay,  # the Trainer exempts biases and LayerNorm weights
        warmup_steps=p.warmup,
        lr_scheduler_type=p.lr_scheduler,
        max_grad_norm=p.max_grad_norm,
        seed=p.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,  # with load_best_model_at_end the best one is kept too
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=greater,
        train_sampling_strategy="group_by_length" if p.group_by_length else "random",
        logging_strategy="steps",
        logging_steps=p.logging_steps,
        disable_tqdm=False,
        report_to="none",
    )


class StopOnInterrupt(TrainerCallback):
    def __init__(self, interrupt: Interrupt) -> None:
        self.interrupt = interrupt

    def on_step_end(self, args, state, control, **kwargs):
        if self.interrupt.requested:
            control.should_save = True
            control.should_training_stop = True


def train_with_trainer(p, precision, data, tokenizer, resume, interrupt) -> Outcome:
    callbacks = [StopOnInterrupt(interrupt)]
    if p.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=p.early_stopping_patience))
    trainer = Trainer(
        model=load_model(p, data["train"].features["label"].names),
        args=training_args(p, precision, CHECKPOINTS),
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    state = trainer.state
    best_epoch = next(
        (
            r["epoch"]
            for r in state.log_history
            if r.get("step") == state.best_global_step and "eval_loss" in r
        ),
        None,
    )
    return Outcome(
        model=trainer.model,
        log_history=state.log_history,
        global_step=state.global_step,
        train_seconds=time.perf_counter() - start,
        best_epoch=best_epoch,
        is_main=trainer.is_world_process_zero(),
        interrupted=interrupt.requested,
    )


def curves(log_history: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split a Trainer-style log into train rows (per logging step) and validation rows (per epoch)."""
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


def write_outputs(p: Params, precision: str, out: Outcome, tokenizer, n_train: int) -> None:
    train_rows, val_rows = curves(out.log_history)
    write_text_atomic(TRAIN_CURVE, to_tsv(train_rows, ["step", "epoch", "train_loss", "lr"]))
    write_text_atomic(EVAL_CURVE, to_tsv(val_rows, ["step", "epoch", "val_loss", "val_accuracy", "val_f1"]))
    epochs_run = val_rows[-1]["epoch"] if val_rows else 0
    write_json(
        TRAIN_METRICS,
        {
            "train_loss": train_rows[-1]["train_loss"] if train_rows else None,
            "train_runtime_s": round(out.train_seconds, 1),
            "train_samples_per_s": round(n_train * epochs_run / out.train_seconds, 1)
            if out.train_seconds
            else 0,
            "steps": out.global_step,
            "epochs_run": epochs_run,
            "best_epoch": out.best_epoch,
            "stopped_early": epochs_run < p.epochs,
            "engine": p.engine,
            "precision": precision,
            "resumed_from": out.resumed_from,
        },
    )
    with atomic_dir(MODEL) as tmp:
        # save_pretrained, not trainer.save_model: the latter adds training_args.bin, a pickle file.
        out.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def main() -> None:
    p = load_params()
    precision = choose_precision(p.precision, torch.cuda.is_available(), bf16_supported())
    data: DatasetDict = load_from_disk(str(TOKENIZED))
    label_names = data["train"].features["label"].names
    warn_remote_code(p.trust_remote_code)
    check_labels(PRETRAINED, label_names, p.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(PRETRAINED, trust_remote_code=p.trust_remote_code)
    from accelerate import PartialState  # knows the rank under torchrun / accelerate launch

    state, run_id = PartialState(), fingerprint(p)
    if state.is_main_process:  # the main process alone wipes a stale run, then the others look
        resume = prepare_checkpoints(CHECKPOINTS, run_id, is_main=True)
    state.wait_for_everyone()
    if not state.is_main_process:
        resume = prepare_checkpoints(CHECKPOINTS, run_id, is_main=False)
    if resume:
        print(f"train: resuming from {resume} (same params and data as the interrupted run)", flush=True)
    interrupt = Interrupt()
    set_seed(p.seed)
    if p.engine == "trainer":
        out = train_with_trainer(p, precision, data, tokenizer, resume, interrupt)
    else:
        from stages.loop import train_with_accelerate

        out = train_with_accelerate(
            p, precision, data, tokenizer, load_model(p, label_names), resume, interrupt
        )
    out.resumed_from = str(resume) if resume else None
    if out.interrupted:
        print(f"train: stopped at step {out.global_step}; checkpoint kept in {CHECKPOINTS}.", flush=True)
        print("train: run `dvc repro` (or `dvc exp run`) again to resume.", flush=True)
        sys.exit(130)
    if out.is_main:
        write_outputs(p, precision, out, tokenizer, len(data["train"]))
        shutil.rmtree(CHECKPOINTS, ignore_errors=True)  # the run is complete: nothing left to resume


if __name__ == "__main__":
    run_stage(main)
