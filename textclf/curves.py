"""Learning curves from an engine's Trainer-style log: train rows per logging step, evaluation rows per
evaluation (validation scores, and the fixed train sample's loss and accuracy). Written while training
runs, at every evaluation, and once more at the end; read by the diagnosis and by `dvc plots`.

While a run is going, metrics/progress.json holds its latest evaluation (step, epoch, scores, best so
far), so `dvc exp show` lists a running or queued experiment's progress (DVC reads the files from a
queued experiment's temporary workspace), and `dvc plots show` draws the curves so far. A resumed run
rewrites the files from its restored log: no row is lost or repeated.
"""

import os
from pathlib import Path

from textclf.files import to_tsv, write_json, write_text_atomic
from textclf.paths import EVAL_CURVE, PROGRESS, TRAIN_CURVE

TRAIN_COLUMNS = ["step", "epoch", "train_loss", "lr"]
EVAL_COLUMNS = ["step", "epoch", "val_loss", "val_accuracy", "val_f1", "train_sample_loss", "train_sample_accuracy"]
FROM_LOG = {  # evaluation columns and the log keys they come from
    "val_loss": "eval_validation_loss",
    "val_accuracy": "eval_validation_accuracy",
    "val_f1": "eval_validation_f1",
    "train_sample_loss": "eval_train_sample_loss",
    "train_sample_accuracy": "eval_train_sample_accuracy",
}


def curves(log_history: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split a Trainer-style log into train rows (per logging step) and evaluation rows (per evaluation;
    the validation and train-sample entries of one step merged into one row)."""
    train = [
        {"step": r["step"], "epoch": round(r["epoch"], 4), "train_loss": r["loss"], "lr": r["learning_rate"]}
        for r in log_history
        if "loss" in r and "learning_rate" in r
    ]
    by_step: dict[int, dict] = {}
    for r in log_history:
        found = {column: r[key] for column, key in FROM_LOG.items() if key in r}
        if found:
            row = by_step.setdefault(r["step"], {"step": r["step"], "epoch": round(r["epoch"], 4)})
            row.update(found)
    evals = [{c: row.get(c, "") for c in EVAL_COLUMNS} for row in by_step.values() if "val_loss" in row]
    return train, evals


def evaluation_seconds(log_history: list[dict]) -> float:
    """Seconds spent scoring validation and the train sample: each evaluation's `eval_<set>_runtime`."""
    runtimes = (v for r in log_history for k, v in r.items() if k.startswith("eval_") and k.endswith("_runtime"))
    return round(sum(runtimes), 2)


def write_curves(log_history: list[dict]) -> tuple[list[dict], list[dict]]:
    train, evals = curves(log_history)
    write_text_atomic(TRAIN_CURVE, to_tsv(train, TRAIN_COLUMNS))
    write_text_atomic(EVAL_CURVE, to_tsv(evals, EVAL_COLUMNS))
    return train, evals


def write_progress(
    log_history: list[dict], total_steps: int, best_key: str, greater: bool, done: bool
) -> tuple[list[dict], list[dict]]:
    """The curves so far, and the latest evaluation as metrics/progress.json; returns the curve rows."""
    train, evals = write_curves(log_history)
    if not evals:
        return train, evals
    last = evals[-1]
    column = {v: k for k, v in FROM_LOG.items()}[best_key]
    values = [e[column] for e in evals if e[column] != ""]
    best = (max if greater else min)(values) if values else None
    state = {
        "step": last["step"],
        "of_steps": total_steps,
        "epoch": last["epoch"],
        "val_f1": last["val_f1"],
        "val_accuracy": last["val_accuracy"],
        "val_loss": last["val_loss"],
        f"best_{column}": best,
        "done": done,
    }
    write_json(PROGRESS, state)
    mirror = queued_progress_file()
    if mirror is not None:
        write_json(mirror, state)
    return train, evals


def queued_progress_file() -> Path | None:
    """Where a queued experiment (DVC names it in DVC_EXP_NAME, and its repository in DVC_ROOT) also
    leaves its progress, so `textclf tune` can follow a trial it cannot see the workspace of."""
    name, root = os.environ.get("DVC_EXP_NAME"), os.environ.get("DVC_ROOT")
    return Path(root) / ".dvc" / "tmp" / "progress" / f"{name}.json" if name and root else None
