"""Checkpoint bookkeeping for resume: which run a checkpoint folder belongs to, and the newest complete
checkpoint in it. The engines write the checkpoints; this decides whether the next run may resume."""

import hashlib
import json
import os
import shutil
from pathlib import Path

from textclf.errors import InputError
from textclf.files import sha256_file, write_text_atomic
from textclf.params import Params, as_dict
from textclf.paths import PRETRAINED, TOKENIZED

# The params that change what training computes; a checkpoint made under others is not resumed.
TRAIN_KEYS = [
    "lr", "epochs", "batch_size", "weight_decay", "warmup", "lr_scheduler", "grad_accum", "max_grad_norm",
    "seed", "precision", "group_by_length", "freeze_embeddings", "freeze_layers", "dropout", "engine",
    "early_stopping_patience", "metric_for_best_model", "logging_steps", "class_weights", "pooling",
    "head_lr_scale", "layer_lr_decay", "ema", "eval_steps", "train_eval_rows", "peft", "lora_r", "lora_alpha",
    "lora_dropout", "lora_targets", "gradient_checkpointing", "label_smoothing",
]  # fmt: skip
# The train stage's other params, and why a checkpoint made under another value is still resumed.
NOT_TRAIN_KEYS = {
    "max_length": "in the tokenized data, which the fingerprint reads",
    "launcher": "the process count is in the fingerprint",
    "eval_batch_size": "how evaluation batches rows, not what training computes",
    "frozen_cache_gb": "the frozen-layer cache is exact",
    "report_to": "where progress is logged",
    "trust_remote_code": "whether the checkpoint's code may run",
}


def fingerprint(
    p: Params, precision: str, processes: int, data_dir: Path = TOKENIZED, pretrained: Path = PRETRAINED
) -> str:
    """Identity of a training run: train params, resolved precision, process count (step counts are per
    process), the tokenized data instance and the starting weights."""
    run = {k: as_dict(p)[k] for k in TRAIN_KEYS} | {"precision": precision, "processes": processes}
    if p.engine == "accelerate" and p.grad_accum > 1:  # its batch order and logged losses changed: an older
        run["loop_format"] = 2  # checkpoint would skip the wrong batches on resume; it starts afresh instead
    h = hashlib.sha256(json.dumps(run, sort_keys=True).encode())
    for state in sorted(data_dir.glob("*/state.json")):  # each split's fingerprint: the hash of its rows
        h.update(state.read_bytes())
    for weights in sorted(pretrained.glob("*.safetensors")):
        h.update(sha256_file(weights).encode())
    return h.hexdigest()


def read_stamp(stamp: Path) -> str | None:
    try:
        return json.loads(stamp.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):  # missing or cut short by a kill: treat as stale
        return None


def is_complete(checkpoint: Path) -> bool:
    """The Trainer writes checkpoint-N/trainer_state.json last; the Accelerate loop renames tmp-N to
    step-N when complete. A folder without its marker is partial and is never resumed from."""
    if checkpoint.name.startswith("checkpoint-"):
        return (checkpoint / "trainer_state.json").exists()
    return checkpoint.name.startswith("step-") and (checkpoint / "loop_state.json").exists()


def remove_partial(folder: Path) -> None:
    """Delete checkpoints cut short by a crash or a full disk: they can't be resumed from, and on a full
    disk they hold the space a rerun needs."""
    for d in [*folder.glob("checkpoint-[0-9]*"), *folder.glob("step-[0-9]*"), *folder.glob("tmp-[0-9]*")]:
        if not is_complete(d):
            shutil.rmtree(d, ignore_errors=True)


def prepare_checkpoints(folder: Path, run_id: str, is_main: bool) -> Path | None:
    """Return the newest complete checkpoint of this same run, or None; wipe checkpoints of other runs."""
    stamp = folder / "run.json"
    if read_stamp(stamp) != run_id:
        if not is_main:
            # The main process has just written this stamp (the caller waits for it): not seeing it means
            # this process runs on another machine that does not share the folder.
            raise InputError(
                f"{folder} as the main process left it is not visible to this process (another node?). "
                "A multi-node run needs data/checkpoints on a file system every node shares (NFS, Lustre, ...); "
                "link it there: ln -s /shared/path/checkpoints data/checkpoints"
            )
        left = newest_complete(folder)
        if left is not None:  # an interrupted run's work, given up: say so rather than drop it silently
            print(
                f"train: {left} is of a run with other train params, data or starting model: starting afresh "
                "(to resume it, rerun with the params it had)",
                flush=True,
            )
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(stamp, json.dumps({"fingerprint": run_id}))
        return None
    if is_main:
        remove_partial(folder)
    return newest_complete(folder)


def newest_complete(folder: Path) -> Path | None:
    done = [d for d in [*folder.glob("checkpoint-[0-9]*"), *folder.glob("step-[0-9]*")] if is_complete(d)]
    return max(done, key=lambda d: int(d.name.rsplit("-", 1)[1]), default=None)


def how_to_resume(folder: Path) -> str:
    """Where an interrupted run's checkpoint is and what resumes it. A queued experiment (`dvc exp run
    --queue`, `--temp`) runs in a temporary copy of the repository under .dvc/tmp/exps, which DVC
    removes when the run ends, checkpoint included: running it again starts over."""
    root = os.environ.get("DVC_ROOT")
    temporary = Path(root).resolve() / ".dvc" / "tmp" / "exps" if root else None
    if temporary is not None and temporary in Path.cwd().resolve().parents:
        return "its checkpoint goes with DVC's temporary workspace of this experiment: queue it again to start over."
    return f"checkpoint kept in {folder}.\ntrain: run `dvc repro` (or `dvc exp run`) again to resume."
