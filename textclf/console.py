"""What a run prints: one progress bar for training on a terminal, plain lines where the output is a
file or a pipe (a queued experiment's log, CI), one readable line per evaluation, and the libraries'
expected-and-harmless messages (their own progress bars, the load report of a fresh classification
head) silenced at their source."""

import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

HEAD_PREFIXES = ("classifier.", "score.", "pre_classifier.", "logits_proj.")  # a new task head's weights


def interactive() -> bool:
    """A terminal is watching: bars redraw in place there; anywhere else they leave hundreds of lines."""
    return sys.stderr.isatty()


def quiet_libraries() -> None:
    """Turn off the progress bars of datasets (saving, mapping), transformers (loading and writing
    weights) and huggingface_hub, in whichever of them this process has imported."""
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        # Checkpoints saved less than a second apart (small runs) make the Trainer doubt file times.
        logging.getLogger("transformers.trainer_utils").addFilter(DropRecords("mtime may not be reliable"))
        # A resumed run compares eval_steps 0.1 (a fraction) with the step count it became; textclf
        # resumes only a checkpoint made with the same params (textclf.checkpoints), so it is never news.
        logging.getLogger("transformers.trainer_utils").addFilter(DropRecords("do not match the ones in the"))
        # peft reloads the base config at every save with the mean-pooled head's class (textclf.heads):
        # a bert config read as textclf_bert (mpnet as textclf_mpnet, ...), which is the design.
        logging.getLogger("transformers.configuration_utils").addFilter(
            DropRecords("to instantiate a model of type `textclf_")
        )
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


@contextmanager
def library_bars(enabled: bool) -> Iterator[None]:
    """datasets' progress bar for one long step (tokenizing millions of rows), on a terminal only."""
    import datasets

    if enabled and interactive():
        datasets.enable_progress_bars()
    try:
        yield
    finally:
        datasets.disable_progress_bars()


class DropRecords(logging.Filter):
    """Drops a library's log records that contain any of `texts`."""

    def __init__(self, *texts: str) -> None:
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


@contextmanager
def without_load_report() -> Iterator[None]:
    """Silence transformers' table of missing weights while loading a checkpoint under a new head: the
    head is missing by design. The caller reports what was missing (see describe_load)."""
    logger = logging.getLogger("transformers.modeling_utils")
    drop = DropRecords("LOAD REPORT")
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def describe_load(info: Mapping[str, list], num_labels: int) -> list[str]:
    """One line for the expected (a new head), a warning for anything else the checkpoint lacked."""
    missing = list(info.get("missing_keys") or [])
    head = [k for k in missing if k.startswith(HEAD_PREFIXES)]
    lines = [f"train: new classification head for {num_labels} labels ({', '.join(sorted(head)) or 'none'})"]
    others = [k for k in missing if k not in head]
    if others:
        shown = ", ".join(sorted(others)[:5]) + (" ..." if len(others) > 5 else "")
        lines.append(f"WARNING: {len(others)} model weight(s) not in the checkpoint start random: {shown}")
    unused = list(info.get("unexpected_keys") or [])
    if unused:
        lines.append(f"train: {len(unused)} checkpoint weight(s) unused by a classifier (e.g. {unused[0]})")
    return lines


def eval_line(
    epoch: float, epochs: int, step: int, steps: int, scores: Mapping, train_loss, best: bool, train_acc=None
) -> str:
    """e.g. `epoch 1.2/3 (step 280/690): train loss 0.41, train accuracy 0.852 | validation loss 0.452,
    accuracy 0.800, f1 0.862 (best so far)`"""
    where = f"epoch {epoch:.2g}/{epochs} (step {step}/{steps})"
    parts = [f"train loss {train_loss:.3f}"] if train_loss is not None else []  # none logged before a first eval
    parts += [f"train accuracy {train_acc:.3f}"] if train_acc is not None else []
    train = ", ".join(parts) + " | " if parts else ""
    val = ", ".join(f"{k} {scores[k]:.3f}" for k in ("loss", "accuracy", "f1") if k in scores)
    return f"{where}: {train}validation {val}" + (" (best so far)" if best else "")


def early_stop_line(metric: str, evaluations: int) -> str:
    """Said when early stopping ends a run (both engines)."""
    name = metric.removeprefix("eval_").removeprefix("validation_")
    return f"early stopping: no better validation {name} in {evaluations} evaluation(s); the best one is the model"


class Progress:
    """Training progress: a bar on a terminal; elsewhere a plain line at every tenth of the run.
    Silent in all but the main process."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True) -> None:
        self.total, self.enabled, self.loss = total, enabled, None
        self.start, self.start_step = time.perf_counter(), done
        self.next_line = done + max(1, total // 10)
        self.bar = None
        if enabled and interactive():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc="train", unit="step", dynamic_ncols=True)

    def step(self, step: int) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if self.loss is not None:
                self.bar.set_postfix(loss=f"{self.loss:.3f}", refresh=False)
        elif step >= self.next_line or step == self.total:
            self.next_line = step + max(1, self.total // 10)
            elapsed = time.perf_counter() - self.start
            rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0
            left = f", {(self.total - step) / rate:.0f} s left" if rate > 0 and step < self.total else ""
            loss = f", train loss {self.loss:.3f}" if self.loss is not None else ""
            done = f"{step}/{self.total} ({100 * step // self.total}%)"
            self.say(f"train: step {done}{loss}, {rate:.1f} steps/s{left}")

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
