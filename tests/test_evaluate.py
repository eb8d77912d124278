"""The evaluate stage's pure parts."""

from types import SimpleNamespace

import numpy as np
from datasets import Dataset

from textclf.inference import predict_logits as predict


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
