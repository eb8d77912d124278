"""Fine-tune the checkpoint: data/tokenized + data/pretrained -> data/trained, curves, metrics/train.json.

Two engines share one contract (same params, same outputs; textclf/engines): the HF Trainer
(`engine: trainer`) and a hand-written Accelerate loop (`engine: accelerate`). Both checkpoint every
epoch and on Ctrl-C/SIGTERM into data/checkpoints (not a DVC output), resume from there when the next
run has the same params and data, and output the best epoch's model by `metric_for_best_model`.
"""

import shutil
import sys
from datetime import UTC, datetime

import torch
from datasets import DatasetDict, load_from_disk
from transformers import AutoTokenizer, set_seed

from stages import require_inputs, run_stage
from textclf.allocator import keep_freed_memory
from textclf.checkpoints import fingerprint, how_to_resume, prepare_checkpoints, remove_partial
from textclf.columns import label_ids
from textclf.curves import curves, evaluation_seconds, write_progress
from textclf.engines.base import Interrupt, Job, Outcome, best_metric_key
from textclf.engines.loop import train_with_accelerate
from textclf.engines.trainer import train_with_trainer
from textclf.files import atomic_dir, read_json, write_json, writing
from textclf.frozen import cached_layers, report_frozen_cache
from textclf.frozen import fill as fill_frozen_cache
from textclf.model import check_labels, class_weights, load_model, plain, save_adapter
from textclf.params import Params, ensure_unchanged, load_params
from textclf.paths import CHECKPOINTS, PRETRAINED, SOURCE, TASK_FILE, TOKENIZED, TRAIN_METRICS, TRAINED
from textclf.precision import autocast_dtype, resolve_precision
from textclf.security import warn_remote_code


def train_summary(p: Params, precision: str, out: Outcome, n_train: int, epochs_run: float, started: str) -> dict:
    train_rows = curves(out.log_history)[0]
    return {
        "train_loss": train_rows[-1]["train_loss"] if train_rows else None,
        # Time of this process only: after a resume it does not cover the epochs run before, so
        # a throughput would be wrong; it is left out (null) then.
        "train_runtime_s": round(out.train_seconds, 1),
        # of which scoring validation and the train sample (eval_steps, train_eval_rows) took
        "evaluation_s": evaluation_seconds(out.log_history),
        "train_samples_per_s": None
        if out.resumed_from or not out.train_seconds
        else round(n_train * epochs_run / out.train_seconds, 1),
        "steps": out.global_step,
        "epochs_run": epochs_run,
        "best_epoch": out.best_epoch,
        "stopped_early": epochs_run < p.epochs,
        "engine": p.engine,
        "precision": precision,
        "frozen_layers_cached": out.frozen_layers_cached,  # run once per row before training
        "resumed_from": out.resumed_from,
        "started_at": started,  # UTC, when this process began (after a resume: the resumed part)
        "finished_at": utc_now(),
    }


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_outputs(p: Params, precision: str, out: Outcome, tokenizer, n_train: int, started: str) -> None:
    _, val_rows = write_progress(out.log_history, out.global_step, *best_metric_key(p), done=True)
    epochs_run = val_rows[-1]["epoch"] if val_rows else 0
    write_json(TRAIN_METRICS, train_summary(p, precision, out, n_train, epochs_run, started))
    source = read_json(SOURCE)
    with atomic_dir(TRAINED) as tmp:
        # save_pretrained, not trainer.save_model: the latter adds training_args.bin, a pickle file.
        if p.peft != "none":  # the adapter alone too (small, for peft users), then the merged model
            save_adapter(out.model, tmp / "adapter", source["model"]["name"])
        plain(out.model).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # What a user of the model needs besides the weights: which columns to read, the labels, the truncation
        # length (`textclf predict` reads it; no params.yaml needed); the data's hash, for export's check.
        task = {k: source[k] for k in ("text_columns", "label_column", "label_names")} | {"max_length": p.max_length}
        made = {"base_model": source["model"]["name"], "data_sha256": source["content_sha256"]}
        write_json(tmp / TASK_FILE, task | made)


def main() -> None:
    started = utc_now()
    keep_freed_memory()  # fewer page faults per step (textclf/allocator.py)
    p = load_params()
    require_inputs("train", TOKENIZED, PRETRAINED, SOURCE)
    precision = resolve_precision(p.precision)
    data: DatasetDict = load_from_disk(str(TOKENIZED))
    label_names = data["train"].features["label"].names
    warn_remote_code(p.trust_remote_code)
    check_labels(PRETRAINED, label_names, p.trust_remote_code)
    cut = p.max_train_samples is not None and len(data["train"]) >= p.max_train_samples  # the cut took rows
    weights = class_weights(p.class_weights, label_ids(data["train"]), label_names, cut)
    tokenizer = AutoTokenizer.from_pretrained(PRETRAINED, trust_remote_code=p.trust_remote_code)
    from accelerate import PartialState  # knows the rank under torchrun / accelerate launch

    # cpu=True on a CPU machine: without it, Accelerate sees no distributed run under torchrun (every
    # rank believes it is the main process and they race to wipe and write data/checkpoints).
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.is_main_process:
        print(f"train: engine {p.engine}, {precision}, {state.num_processes} process(es)", flush=True)
        if weights is not None:
            print(f"train: class weights {dict(zip(label_names, weights.tolist(), strict=True))}", flush=True)
    run_id = fingerprint(p, precision, state.num_processes)
    if state.is_main_process:  # the main process alone wipes a stale run, then the others look
        resume = prepare_checkpoints(CHECKPOINTS, run_id, is_main=True)
    state.wait_for_everyone()
    if not state.is_main_process:
        resume = prepare_checkpoints(CHECKPOINTS, run_id, is_main=False)
    if resume and state.is_main_process:
        print(f"train: resuming from {resume} (same params and data as the interrupted run)", flush=True)
    interrupt = Interrupt(announce=state.is_main_process)
    set_seed(p.seed)
    say = print if state.is_main_process else None
    model = load_model(p, label_names, say=say).to(state.device)
    cached_sets = [data["train"], data["validation"]]
    cache_s = fill_frozen_cache(model, cached_sets, autocast_dtype(precision), say)
    job = Job(p, precision, data, tokenizer, model, CHECKPOINTS, resume, interrupt, weights)
    try:
        with writing(CHECKPOINTS):
            out = train_with_trainer(job) if p.engine == "trainer" else train_with_accelerate(job)
    except BaseException:
        if state.is_main_process:
            remove_partial(CHECKPOINTS)
        raise
    out.resumed_from = str(resume) if resume else None
    out.train_seconds += cache_s  # train_runtime_s counts filling the frozen-layer cache
    out.frozen_layers_cached = cached_layers(model)
    report_frozen_cache(model, say)
    if out.interrupted:
        if state.is_main_process:
            print(f"train: stopped at step {out.global_step}; {how_to_resume(CHECKPOINTS)}", flush=True)
        sys.exit(130)
    if out.is_main:
        ensure_unchanged("train")
        with writing(TRAINED):
            write_outputs(p, precision, out, tokenizer, len(data["train"]), started)
        shutil.rmtree(CHECKPOINTS, ignore_errors=True)  # the run is complete: nothing left to resume


if __name__ == "__main__":
    run_stage(main)
