"""Learning curves from an engine's Trainer-style log: train rows per logging step, validation rows per
evaluation. Written by the train stage, read by the diagnosis and by `dvc plots`."""

TRAIN_COLUMNS = ["step", "epoch", "train_loss", "lr"]
EVAL_COLUMNS = ["step", "epoch", "val_loss", "val_accuracy", "val_f1"]


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
