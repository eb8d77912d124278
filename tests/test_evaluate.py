"""The evaluate stage's pure parts."""

from types import SimpleNamespace

import numpy as np
from datasets import Dataset, DatasetDict

from textclf.evaluation import write_diagnosis
from textclf.files import to_tsv
from textclf.inference import predict_logits as predict
from textclf.paths import EVAL_CURVE, TRAIN_CURVE


class LengthEcho:
    """A stand-in Trainer whose logits name the length of the row they were computed for."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def predict(self, ds: Dataset) -> SimpleNamespace:
        self.seen = [len(ids) for ids in ds["input_ids"]]
        return SimpleNamespace(predictions=np.array([[n, 0.0] for n in self.seen]))


def test_predictions_run_sorted_by_length_and_come_back_in_row_order():
    split = Dataset.from_dict({"input_ids": [[1] * 5, [1] * 2, [1] * 9, [1] * 3], "label": [0, 1, 0, 1]})
    trainer = LengthEcho()
    logits = predict(trainer, split)
    assert trainer.seen == [2, 3, 5, 9]  # batches of similar length: little padding
    assert logits[:, 0].tolist() == [5, 2, 9, 3]  # each row's own logits, in the split's order


def test_the_diagnosis_judges_a_class_weighted_run_by_balanced_accuracy(tmp_path, monkeypatch):
    # 100 validation rows, 10 positive; the model finds 9 of them with 11 false alarms: accuracy 0.88,
    # below the 0.90 majority rate, balanced accuracy 0.89. Only the class-weighted run is judged useful.
    monkeypatch.chdir(tmp_path)
    labels = [0] * 90 + [1] * 10
    predicted = [0] * 79 + [1] * 11 + [0] * 1 + [1] * 9
    logits = np.eye(2)[predicted]
    data = DatasetDict(
        {"train": Dataset.from_dict({"label": labels * 5}), "validation": Dataset.from_dict({"label": labels})}
    )
    TRAIN_CURVE.parent.mkdir(parents=True)
    TRAIN_CURVE.write_text(
        to_tsv([{"step": 10, "epoch": 1, "train_loss": 0.3, "lr": 1e-4}], ["step", "epoch", "train_loss", "lr"])
    )
    EVAL_CURVE.write_text("step\tepoch\tval_loss\tval_accuracy\tval_f1\n")
    weighted = write_diagnosis(data, logits, ["ham", "spam"], "balanced", 0.0, 1e-4)
    assert not weighted["near_baseline"], weighted["evidence"]
    plain = write_diagnosis(data, logits, ["ham", "spam"], "none", 0.0, 1e-4)
    assert plain["near_baseline"] and "val accuracy 0.880 is below the 0.900" in plain["evidence"]["near_baseline"]
