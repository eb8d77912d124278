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
from dataclasses import dataclass
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
    EVAL_CURVE,
    METRICS,
    MODEL,
    PRETRAINED,
    TOKENIZED,
    TRAIN_CURVE,
    StageError,
    atomic_dir,
    bf16_supported,
    choose_precision,
    length_order,
    precision_args,
    run_stage,
    sha256_file,
    warn_remote_code,
    write_json,
    write_text_atomic,
)
from stages.metric import classification_metrics
from stages.params import Params, as_dict, load_params

CHECKPOINTS = Path("data/checkpoints")  # scratch space for resuming; not a DVC output
TRAIN_METRICS = METRICS / "train.json"
# The params that change what training computes; a checkpoint made under others is not resumed.
TRAIN_KEYS = [
    "lr", "epochs", "batch_size", "weight_decay", "warmup", "lr_scheduler", "grad_accum", "max_grad_norm",
    "seed", "precision", "group_by_length", "freeze_embeddings", "freeze_layers", "dropout", "engine",
    "early_stopping_patience", "metric_for_best_model", "logging_steps",
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

    def everywhere(self) -> bool:
        """True once any process got the signal. Under torchrun/accelerate launch all ranks must stop at
        the same step: a rank that stops alone leaves the others waiting in an all-reduce."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            from accelerate import PartialState

            flag = torch.tensor([1.0 if self.requested else 0.0], device=PartialState().device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.requested = bool(flag.item())
        return self.requested


def fingerprint(p: Params, precision: str, processes: int, data_dir: Path = TOKENIZED) -> str:
    """Identity of a training run: train params, resolved precision, process count (step counts are per
    process), the tokenized data instance and the starting weights."""
    run = {k: as_dict(p)[k] for k in TRAIN_KEYS} | {"precision": precision, "processes": processes}
    h = hashlib.sha256(json.dumps(run, sort_keys=True).encode())
    for state in sorted(data_dir.glob("*/state.json")):  # datasets writes a fresh fingerprint per save
        h.update(state.read_bytes())
    for weights in sorted(PRETRAINED.glob("*.safetensors")):
        h.update(sha256_file(weights).encode())
    return h.hexdigest()


def read_stamp(stamp: Path) -> str | None:
    try:
        return json.loads(stamp.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):  # missing or cut short by a kill: treat as stale
        return None


def prepare_checkpoints(folder: Path, run_id: str, is_main: bool) -> Path | None:
    """Return the newest complete checkpoint of this same run, or None; wipe checkpoints of other runs."""
    stamp = folder / "run.json"
    if read_stamp(stamp) != run_id:
        if is_main:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(stamp, json.dumps({"fingerprint": run_id}))
        return None
    # The Trainer writes checkpoint-N/trainer_state.json last; the Accelerate loop renames tmp-N to
    # step-N when complete. A folder without its marker is partial and is never resumed from.
    done = [d for d in folder.glob("checkpoint-[0-9]*") if (d / "trainer_state.json").exists()]
    done += [d for d in folder.glob("step-[0-9]*") if (d / "loop_state.json").exists()]
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


def dropout_overrides(config, dropout: float | None) -> dict[str, float]:
    """Every dropout rate the architecture's config has (BERT: hidden, attention; DistilBERT: dropout,
    attention_dropout, seq_classif_dropout; ...) set to `dropout`; none when it is null."""
    if dropout is None:
        return {}
    rates = {k: v for k, v in config.to_dict().items() if "dropout" in k and isinstance(v, float)}
    return dict.fromkeys(rates, dropout)


def load_model(p: Params, label_names: list[str]) -> torch.nn.Module:
    config = AutoConfig.from_pretrained(PRETRAINED, trust_remote_code=p.trust_remote_code)
    model = AutoModelForSequenceClassification.from_pretrained(
        PRETRAINED,
        **dropout_overrides(config, p.dropout),
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
    if p.freeze_layers:
        freeze_bottom_layers(model, p.freeze_layers, freeze_embeddings=p.freeze_embeddings)
    return model


def freeze_bottom_layers(model: torch.nn.Module, n: int, freeze_embeddings: bool) -> None:
    """Freeze the n lowest encoder layers. With the embeddings frozen too, nothing below layer n needs
    a gradient, so the backward pass stops there: the saving grows with n."""
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if layers is None:
        raise StageError(
            f"freeze_layers: {type(model).__name__} has no base_model.encoder.layer; set it to 0."
        )
    if n > len(layers):
        raise StageError(f"freeze_layers: {n} exceeds the model's {len(layers)} layers.")
    for layer in layers[:n]:
        layer.requires_grad_(False)
    if freeze_embeddings:
        model.base_model.embeddings.requires_grad_(False)  # positions and token types too


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
        **precision_args(precision),
        eval_strategy="epoch",
        save_strategy="epoch",
        # 2, not 1: with load_best_model_at_end the best is always kept, and at 1 the Trainer deletes the
        # latest checkpoint at the end of train(), also the one an interrupt has just saved.
        save_total_limit=2,
        restore_callback_states_from_checkpoint=True,  # early stopping's patience counter survives a resume
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

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run restores the control flags saved with the checkpoint ("save", and "stop" after an
        # interrupt): start from clean ones, as an uninterrupted run does.
        control._new_training()
        control._new_epoch()
        control._new_step()

    def on_step_end(self, args, state, control, **kwargs):
        if self.interrupt.everywhere():
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.interrupt.requested:
            # The Trainer still ends the cut-short epoch: no evaluation of a part epoch (it would be a
            # validation row at epoch 1.3), only the checkpoint.
            control.should_evaluate = False


def train_with_trainer(p, precision, data, tokenizer, resume, interrupt) -> Outcome:
    callbacks = [StopOnInterrupt(interrupt)]
    if p.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=p.early_stopping_patience))
    trainer = Trainer(
        model=load_model(p, data["train"].features["label"].names),
        args=training_args(p, precision, CHECKPOINTS),
        train_dataset=data["train"],
        eval_dataset=data["validation"].select(length_order(data["validation"])),
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
            # Time of this process only: after a resume it does not cover the epochs run before, so
            # a throughput would be wrong; it is left out (null) then.
            "train_runtime_s": round(out.train_seconds, 1),
            "train_samples_per_s": None
            if out.resumed_from or not out.train_seconds
            else round(n_train * epochs_run / out.train_seconds, 1),
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

    # cpu=True on a CPU machine: without it, Accelerate sees no distributed run under torchrun (every
    # rank believes it is the main process and they race to wipe and write data/checkpoints).
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.is_main_process:
        print(f"train: engine {p.engine}, {precision}, {state.num_processes} process(es)", flush=True)
    run_id = fingerprint(p, precision, state.num_processes)
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
