"""The files predictions are written to: per-row label names and probabilities, the GLUE submission
format, and the validation confusion pairs for `dvc plots`."""

import csv
import io
from collections.abc import Sequence

import numpy as np

from textclf.inference import softmax


def predictions_tsv(
    indices: Sequence[int], logits: np.ndarray, names: list[str], labels: np.ndarray | None = None
) -> str:
    """One row per input, in input order: idx, the predicted label name and id, the probability of every
    class (prob_<name>), and the true label name when known."""
    probs = softmax(logits.astype(np.float64))
    predicted = logits.argmax(-1)
    header = ["idx", "prediction", "prediction_id", *(f"prob_{n}" for n in names)]
    header += ["label"] if labels is not None else []
    lines = ["\t".join(header)]
    for row, (i, c) in enumerate(zip(indices, predicted, strict=True)):
        fields = [str(i), names[c], str(c), *(f"{x:.6f}" for x in probs[row])]
        fields += [names[labels[row]]] if labels is not None else []
        lines.append("\t".join(fields))
    return "\n".join(lines) + "\n"


def submission_tsv(indices: Sequence[int], logits: np.ndarray) -> str:
    """GLUE's submission format: index and predicted label id."""
    rows = (f"{i}\t{p}" for i, p in zip(indices, logits.argmax(-1), strict=True))
    return "\n".join(["index\tprediction", *rows]) + "\n"


def confusion_csv(predictions: np.ndarray, labels: np.ndarray, names: list[str]) -> str:
    """actual,predicted label names per validation row (quoted where a name holds a comma)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    writer.writerows((names[r], names[p]) for p, r in zip(predictions, labels, strict=True))
    return out.getvalue()
