"""Curves while training runs: metrics/progress.json and the curve files are rewritten at every
evaluation, so a running experiment shows its progress; report_to reaches the Trainer."""

import json
import subprocess
import time

from tests.conftest import copy_work, set_params, stage_cmd, tool_env
from tests.test_params import defaults
from textclf.console import eval_line
from textclf.curves import curves
from textclf.params import parse_params


def test_progress_file_changes_while_training_runs(prepared, tmp_path):
    work = copy_work(prepared, tmp_path / "w")
    set_params(work, epochs=4, eval_steps=10)  # 80 steps, an evaluation every 10
    proc = subprocess.Popen(stage_cmd("train"), cwd=work, env=tool_env(), stdout=subprocess.DEVNULL)
    progress, seen = work / "metrics/progress.json", []
    while proc.poll() is None:
        if progress.exists():
            try:
                state = json.loads(progress.read_text())  # written atomically: never half a file
            except ValueError as e:
                raise AssertionError(f"progress.json was read half-written: {e}") from None
            if not state["done"] and (not seen or seen[-1] != state["step"]):
                seen.append(state["step"])
        time.sleep(0.05)
    assert proc.returncode == 0
    assert len(seen) >= 2 and seen == sorted(seen), seen  # several evaluations seen while it ran
    final = json.loads(progress.read_text())
    assert final["done"] is True and final["step"] == final["of_steps"] == 80
    assert set(final) >= {"epoch", "val_f1", "val_accuracy", "val_loss", "best_val_f1"}


def test_report_to_reaches_the_trainer(tmp_path):
    from textclf.engines.trainer import training_args

    args = training_args(parse_params(defaults() | {"report_to": "tensorboard"}), "fp32", tmp_path)
    assert args.report_to == ["tensorboard"]
    assert training_args(parse_params(defaults()), "fp32", tmp_path).report_to in ("none", [], ["none"])


def test_one_row_per_evaluation_with_both_scores():
    log = [
        {"loss": 0.7, "learning_rate": 1e-4, "epoch": 0.5, "step": 10},
        {"eval_train_sample_loss": 0.6, "eval_train_sample_accuracy": 0.7, "epoch": 0.5, "step": 10},
        {
            "eval_validation_loss": 0.65,
            "eval_validation_accuracy": 0.6,
            "eval_validation_f1": 0.7,
            "epoch": 0.5,
            "step": 10,
        },
        {
            "eval_validation_loss": 0.6,
            "eval_validation_accuracy": 0.65,
            "eval_validation_f1": 0.72,
            "epoch": 1.0,
            "step": 20,
        },
    ]
    train, evals = curves(log)
    assert [r["step"] for r in train] == [10] and [r["step"] for r in evals] == [10, 20]
    assert evals[0]["train_sample_accuracy"] == 0.7 and evals[1]["train_sample_accuracy"] == ""


def test_the_evaluation_line_reads_well_before_the_first_logged_loss():
    scores = {"loss": 0.5, "accuracy": 0.8, "f1": 0.75}
    assert eval_line(0.32, 3, 6, 57, scores, None, True, 0.91) == (
        "epoch 0.32/3 (step 6/57): train accuracy 0.910 | validation loss 0.500, accuracy 0.800, f1 0.750 (best so far)"
    )
    line = eval_line(1, 3, 20, 57, scores, 0.4, False, 0.9)
    assert line.startswith("epoch 1/3 (step 20/57): train loss 0.400, train accuracy 0.900 | validation loss")
    assert eval_line(1, 3, 20, 57, scores, None, False).startswith("epoch 1/3 (step 20/57): validation loss 0.500")
