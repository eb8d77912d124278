"""The `engine: accelerate` training loop: plain PyTorch driven by Accelerate.

Same params and outputs as the Trainer engine. Gradient accumulation goes through
`accelerator.accumulate`, which steps the optimizer only on the last micro-batch of each group (the
classic `step % grad_accum == 0` loop steps on the first one). Evaluation gathers logits from all
processes with `gather_for_metrics`, which drops the samples padded in to even out the shards.
"""

import json
import math
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator
from datasets import Dataset
from safetensors.torch import load_model, save_model
from torch.utils.data import DataLoader, RandomSampler
from transformers import DataCollatorWithPadding, get_scheduler

from textclf.averaging import WeightAverage, averaging
from textclf.console import Progress, early_stop_line, eval_line
from textclf.curves import write_progress
from textclf.engines.base import (
    LOSS_KEY,
    EpochLengthSampler,
    Job,
    Outcome,
    best_metric_key,
    eval_interval,
    is_better,
    train_sample,
)
from textclf.files import atomic_dir, restore_set_aside
from textclf.inference import length_order
from textclf.metrics import scores_with_loss
from textclf.model import param_groups, training_loss
from textclf.params import Params
from textclf.precision import accelerate_mixed


def warmup_steps(warmup: float, total_steps: int) -> int:
    return int(warmup) if warmup >= 1 else math.ceil(total_steps * warmup)


def train_loader(ds: Dataset, p: Params, collator, epoch: int, grad_accum: int) -> DataLoader:
    # Orders seeded per epoch: a resumed run trains on the same batches as an uninterrupted one.
    if p.group_by_length:
        # Grouped per optimizer step's rows (batch x grad_accum), as the Trainer groups: the same batches.
        sampler = EpochLengthSampler(p.batch_size * grad_accum, [len(x) for x in ds["input_ids"]], p.seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(p.seed + epoch))
    return DataLoader(ds, batch_size=p.batch_size, sampler=sampler, collate_fn=collator)


def step_batches(done: int, batches: int, grad_accum: int) -> int:
    """How many batches the optimizer step that batch number `done` (0-based, in its epoch) belongs to
    gathers: grad_accum, fewer for the epoch's last step where the batches don't divide evenly."""
    return min(grad_accum, batches - done // grad_accum * grad_accum)


def evaluate(accelerator: Accelerator, model, loader: DataLoader) -> dict:
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for batch in loader:
            out = model(**batch)
            lg, lb = accelerator.gather_for_metrics((out.logits.float(), batch["labels"]))
            logits.append(lg.cpu())
            labels.append(lb.cpu())
    model.train()
    return scores_with_loss(torch.cat(logits), torch.cat(labels))


def out_of_patience(p: Params, evaluations_without_gain: int) -> bool:
    return bool(p.early_stopping_patience) and evaluations_without_gain >= p.early_stopping_patience


def window_file(folder: Path, rank: int) -> Path:
    return folder / f"loss_window_{rank}.json"


def save_checkpoint(
    accelerator: Accelerator,
    folder: Path,
    step: int,
    state: dict,
    window: list[torch.Tensor],
    average: WeightAverage | None,
) -> None:
    """Write to tmp-N and rename to step-N when complete, so a kill never leaves a partial checkpoint.

    Each process also saves the losses of its steps since the last logged train loss, so that a
    resumed run logs the same mean at the next logging step as an uninterrupted one.
    """
    tmp, final = folder / f"tmp-{step}", folder / f"step-{step}"
    accelerator.save_state(str(tmp))  # model (safetensors), optimizer, scheduler, RNG states
    window_file(tmp, accelerator.process_index).write_text(json.dumps([x.item() for x in window]))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "loop_state.json").write_text(json.dumps(state))
        if average is not None:
            average.save(tmp)
        shutil.rmtree(final, ignore_errors=True)  # the same step saved before (epoch end, then Ctrl-C)
        tmp.rename(final)
        # Older ones go only now, so at every moment one complete checkpoint exists.
        for old in [*folder.glob("step-[0-9]*"), *folder.glob("tmp-[0-9]*")]:
            if old != final:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()


def batch_loss(model, batch: dict, class_weights: torch.Tensor | None, smoothing: float) -> torch.Tensor:
    if class_weights is None and not smoothing:
        return model(**batch).loss
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    return training_loss(logits, batch["labels"], class_weights, smoothing)


def train_with_accelerate(job: Job) -> Outcome:
    p, data, model, resume, interrupt = job.p, job.data, job.model, job.resume, job.interrupt
    accelerator = Accelerator(
        mixed_precision=accelerate_mixed(job.precision),
        gradient_accumulation_steps=p.grad_accum,
        cpu=not torch.cuda.is_available(),
    )
    collator = DataCollatorWithPadding(job.tokenizer)
    train_ds = data["train"].remove_columns(["idx"])
    scored = {"validation": data["validation"], "train_sample": train_sample(data["train"], p.train_eval_rows)}
    eval_loaders = {
        name: DataLoader(
            ds.remove_columns(["idx"]).select(length_order(ds)), batch_size=p.eval_batch_size, collate_fn=collator
        )
        for name, ds in scored.items()
        if ds is not None
    }
    # fused: one kernel for all parameters, as the Trainer's default optimizer (adamw_torch_fused)
    optimizer = torch.optim.AdamW(param_groups(model, p), lr=p.lr, fused=True)
    # Optimizer steps per epoch and process, counted as the prepared loader will shard the data.
    batches = math.ceil(len(train_ds) / p.batch_size / accelerator.num_processes)
    # grad_accum as accelerate counts it: the param, unless the launcher's environment set it
    grad_accum = accelerator.gradient_accumulation_steps
    steps_per_epoch = math.ceil(batches / grad_accum)
    total = steps_per_epoch * p.epochs
    scheduler = get_scheduler(p.lr_scheduler, optimizer, warmup_steps(p.warmup, total), total)
    average = averaging(model, p.ema)  # before prepare: the names without DDP's "module."
    model, optimizer = accelerator.prepare(model, optimizer)
    eval_loaders = {name: accelerator.prepare(loader) for name, loader in eval_loaders.items()}
    accelerator.register_for_checkpointing(scheduler)  # stepped by hand, once per optimizer step

    metric, greater = best_metric_key(p)
    st = {
        "epoch": 0,
        "batches_done": 0,
        "step": 0,
        "log_history": [],
        "best": None,
        "best_loss": None,
        "best_epoch": None,
        "bad": 0,
    }
    window = []  # the step losses since the last logged train loss (the mean of the steps', as the Trainer's)
    group = []  # the batch losses of the step under way (grad_accum batches make a step)
    if resume:
        accelerator.load_state(str(resume))
        st = json.loads((resume / "loop_state.json").read_text())
        saved = window_file(resume, accelerator.process_index)
        window = [torch.tensor(x) for x in json.loads(saved.read_text())] if saved.exists() else []
        if average is not None:
            average.load(resume)
    best_dir = job.checkpoints / "step-best"
    restore_set_aside(best_dir)  # a run killed in the middle of replacing it
    start = time.perf_counter()
    progress = Progress(total, st["step"], enabled=accelerator.is_main_process)
    every = eval_interval(p.eval_steps, total)  # None: once per epoch

    def evaluate_here() -> None:
        """Score the train sample and validation, log them, keep the best weights, checkpoint."""
        with average.swapped() if average is not None else nullcontext():
            score_and_keep()
        save_checkpoint(accelerator, job.checkpoints, st["step"], st, window, average)
        if accelerator.is_main_process:
            write_progress(st["log_history"], total, metric, greater, done=False)

    def epoch_now() -> float:
        # The share of the epoch's batches trained on, as the Trainer counts it: with grad_accum, an epoch
        # of 16 batches at 3 per step is 6 steps, the first of them 3/16 of it (not 1/6).
        return st["epoch"] + st["batches_done"] / batches

    def score_and_keep() -> None:
        scores = {}
        for name in ("train_sample", "validation"):
            if name in eval_loaders:
                began = time.perf_counter()
                scores |= {f"eval_{name}_{k}": v for k, v in evaluate(accelerator, model, eval_loaders[name]).items()}
                scores[f"eval_{name}_runtime"] = round(time.perf_counter() - began, 4)  # as the Trainer logs it
        epoch = epoch_now()
        st["log_history"].append({**scores, "epoch": epoch, "step": st["step"]})
        # Patience counts evaluations without a better metric, as the Trainer's early stopping does; the
        # kept model also moves to an equal metric at a lower validation loss (is_better).
        gained = is_better(scores[metric], st["best"], greater)
        better = is_better(scores[metric], st["best"], greater, scores[LOSS_KEY], st.get("best_loss"))
        named = {k.removeprefix("eval_validation_"): v for k, v in scores.items()}
        sample = scores.get("eval_train_sample_accuracy")
        progress.say(eval_line(epoch, p.epochs, st["step"], total, named, progress.loss, better, sample))
        st["bad"] = 0 if gained else st["bad"] + 1
        if better:
            st["best"], st["best_loss"], st["best_epoch"] = scores[metric], scores[LOSS_KEY], round(epoch, 4)
            if accelerator.is_main_process:
                with atomic_dir(best_dir) as tmp:  # a kill mid-save keeps the previous best intact
                    save_model(accelerator.unwrap_model(model), str(tmp / "model.safetensors"))

    model.train()
    # out_of_patience in the condition too: a run killed right after its stopping evaluation stays stopped.
    while st["epoch"] < p.epochs and not out_of_patience(p, st["bad"]) and not interrupt.requested:
        loader = accelerator.prepare(train_loader(train_ds, p, collator, st["epoch"], grad_accum))
        # Accelerate's loader tells its sampler its own epoch count when iterated, 0 for a new loader: without
        # this, a single-process run trained every epoch on epoch 0's batch order.
        loader.set_epoch(st["epoch"])
        if st["batches_done"]:
            loader = accelerator.skip_first_batches(loader, st["batches_done"])
        for batch in loader:
            with accelerator.accumulate(model):
                loss = batch_loss(model, batch, job.class_weights, p.label_smoothing)
                # backward() divides by grad_accum; an epoch's last step may gather fewer batches, and
                # its gradient is their mean too (as the Trainer computes it), not a share of one.
                accelerator.backward(loss * grad_accum / step_batches(st["batches_done"], batches, grad_accum))
                if accelerator.sync_gradients and p.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), p.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            st["batches_done"] += 1
            group.append(loss.detach().float())
            if not accelerator.sync_gradients:
                continue
            window.append(torch.stack(group).mean())  # the step's loss: the mean over its batches
            group = []
            used_lr = scheduler.get_last_lr()[0]  # this step's lr, the one logged (as the Trainer does)
            scheduler.step()
            st["step"] += 1
            if average is not None:
                average.update()
            if st["step"] % p.logging_steps == 0 or st["step"] == total:  # the last window too, however short
                mean = accelerator.gather(torch.stack(window).mean()).mean().item()
                progress.loss = mean
                st["log_history"].append(
                    {"loss": mean, "learning_rate": used_lr, "epoch": epoch_now(), "step": st["step"]}
                )
                window = []
            progress.step(st["step"])
            if every and (st["step"] % every == 0 or st["step"] == total):
                evaluate_here()
                if out_of_patience(p, st["bad"]):
                    break
            if interrupt.everywhere():
                break
        if interrupt.requested:
            save_checkpoint(accelerator, job.checkpoints, st["step"], st, window, average)
            break
        st["epoch"], st["batches_done"] = st["epoch"] + 1, 0
        if not every:
            evaluate_here()
        if out_of_patience(p, st["bad"]):
            progress.say(early_stop_line(metric, st["bad"]))
            break
    progress.close()
    accelerator.wait_for_everyone()
    final = accelerator.unwrap_model(model)
    if not interrupt.requested and best_dir.exists():
        load_model(final, str(best_dir / "model.safetensors"))
    return Outcome(
        model=final,
        log_history=st["log_history"],
        global_step=st["step"],
        train_seconds=time.perf_counter() - start,
        best_epoch=st["best_epoch"],
        is_main=accelerator.is_main_process,
        interrupted=interrupt.requested,
    )
