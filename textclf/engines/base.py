"""What both engines take (a Job) and hand back (an Outcome), and how they stop on Ctrl-C."""

import math
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict
from transformers.trainer_pt_utils import LengthGroupedSampler

from textclf.params import Params


class Interrupt:
    """Turns Ctrl-C / SIGTERM into a flag, so the engine saves a checkpoint at the next step and stops."""

    def __init__(self, announce: bool = True) -> None:
        self.requested, self.announce = False, announce  # announce: the main process's line; ranks keep quiet
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            if signum == signal.SIGINT:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            # Another SIGTERM (a supervisor's again; or the parent's death, see textclf.lifeline,
            # after its own signal): the checkpoint is under way, and aborting would lose it.
            return
        self.requested = True
        if self.announce:
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


@dataclass
class Job:
    """Everything an engine needs for one training run."""

    p: Params
    precision: str  # resolved: fp32, bf16 or fp16
    data: DatasetDict  # tokenized train and validation
    tokenizer: object
    model: torch.nn.Module
    checkpoints: Path  # where to save checkpoints (and the best model, for the loop)
    resume: Path | None  # a checkpoint of this same run to resume from
    interrupt: Interrupt
    class_weights: torch.Tensor | None = None  # loss weights per class, for training only


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
    frozen_layers_cached: int = 0  # bottom layers run once per row before training (textclf.frozen)


class EpochLengthSampler(LengthGroupedSampler):
    """Length-grouped batches (rows of similar length together, the groups shuffled) in an order fixed by
    the seed and the epoch, not by the global random state: a run resumed in the middle of an epoch
    replays exactly the order the interrupted run had, and skips the batches it already trained on."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by the Trainer (through Accelerate) and the loop
        self.epoch = epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


LOSS_KEY = "eval_validation_loss"


def is_better(
    value: float, best: float | None, greater: bool, loss: float | None = None, best_loss: float | None = None
) -> bool:
    """Whether an evaluation beats the best so far: a better metric, or (given the validation losses) the
    same metric at a lower validation loss. Where validation F1 saturates (easy data: 1.000 from a third
    of the run on), the kept model is then the later, surer one, not the first to reach it. Selecting
    by loss itself, an equal loss is no gain."""
    if best is None:
        return True
    if value != best:
        return value > best if greater else value < best
    return loss is not None and best_loss is not None and loss < best_loss


def best_metric_key(p: Params) -> tuple[str, bool]:
    """The log key that picks the best evaluation, and whether greater is better."""
    return f"eval_validation_{p.metric_for_best_model}", p.metric_for_best_model != "loss"


def eval_interval(eval_steps: float | None, total_steps: int) -> int | None:
    """Optimizer steps between evaluations (None: once per epoch). Below 1, a fraction of the run, as the
    Trainer reads it."""
    if not eval_steps:
        return None
    return max(1, math.ceil(total_steps * eval_steps)) if eval_steps < 1 else int(eval_steps)


def train_sample(train, rows: int, seed: int = 0):
    """A fixed, seeded sample of train scored in eval mode at each evaluation, so the gap between train
    and validation accuracy is a curve (the same rows in every run, whatever its `seed`)."""
    if not rows:
        return None
    picked = np.sort(np.random.default_rng(seed).permutation(len(train))[: min(rows, len(train))])
    return train.select(picked)
