"""Does the checkpoint's own sentence similarity add anything to the fine-tuned classifier? A probe.

all-MiniLM-L6-v2 was trained as a bi-encoder: the cosine of the mean-pooled embeddings of two
sentences, each encoded alone, scores how alike they are. The train stage fine-tunes it as a
cross-encoder (both sentences in one sequence), which may lose some of that. This probe asks whether
the pretrained cosine carries information the fine-tuned model lacks, before anyone builds it into a
head: on MRPC carved as in levers.py (the same fixed held-out slice of train), it trains the defaults
for each seed, then fits two logistic regressions on one labeled split and scores them on the other
(validation -> held-out slice and back):

- `recal`: on the classifier's logit alone (a recalibrated threshold: what fitting alone changes);
- `stack`: on the logit and the pretrained cosine.

`stack - recal` is what the cosine adds. The zero-shot cosine alone, with its threshold fitted on train,
is printed for scale.

    python benchmarks/similarity_probe.py [--data ../shared/mrpc] [--seeds 1 2 3 4 5]
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from datasets import load_from_disk
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import levers  # noqa: E402  (the carve and the stage runner)

from textclf.pretrained import model_source  # noqa: E402


def parse_args() -> argparse.Namespace:
    ap = levers.probe_parser(__doc__.splitlines()[0])
    return ap.parse_args()


@torch.no_grad()
def cosines(model: str, first: list[str], second: list[str]) -> np.ndarray:
    """Cosine of the mean-pooled embeddings of each pair's sentences, encoded one by one, as the
    checkpoint was trained to compare them."""
    folder = model_source(model)
    tok, enc = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), 128):
            batch = tok(texts[i : i + 128], padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = enc(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1))
        return torch.cat(out)

    return (embed(first) * embed(second)).sum(-1).numpy()


def positive_logits(predictions: Path) -> np.ndarray:
    """log(p / (1 - p)) of the second label, per row in input order, from a predictions TSV."""
    rows = [line.split("\t") for line in predictions.read_text().splitlines()[1:]]
    p = np.array([float(r[4]) for r in sorted(rows, key=lambda r: int(r[0]))]).clip(1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_score(x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return f1_score(y, LogisticRegression().fit(x_fit, y_fit).predict(x))


def main() -> None:
    args = parse_args()
    base = yaml.safe_load((levers.ROOT / "params.yaml").read_text())
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-similarity-") as tmp:
        work, _ = levers.carved_workspace(Path(tmp), Path(args.data), args.holdout, base, {})
        raw = load_from_disk(str(work / "data" / "raw"))
        split = {"val": "validation", "held": "test"}
        y = {k: np.array(raw[s]["label"]) for k, s in split.items()}
        cos = {k: cosines(base["model"], raw[s]["text"], raw[s]["text_pair"]) for k, s in split.items()}
        train_cos = cosines(base["model"], raw["train"]["text"], raw["train"]["text_pair"])
        grid = np.linspace(0, 1, 201)
        best = max(grid, key=lambda t: f1_score(raw["train"]["label"], train_cos > t))
        zero_shot = {k: f1_score(y[k], cos[k] > best) for k in split}
        print(f"zero-shot cosine > {best:.3f} (fitted on train): val F1 {zero_shot['val']:.4f}, "
              f"held-out F1 {zero_shot['held']:.4f}", flush=True)  # fmt: skip
        for seed in args.seeds:
            levers.write_params(work, base, {"seed": seed})
            levers.stage(work, "train")
            levers.stage(work, "evaluate")
            logit = {k: positive_logits(work / "data" / "predictions" / f"{s}.tsv") for k, s in split.items()}
            alone = {k: v[:, None] for k, v in logit.items()}
            both = {k: np.c_[logit[k], cos[k]] for k in split}
            row = {"seed": seed}
            for target, source in (("held", "val"), ("val", "held")):
                row[f"{target}_model"] = f1_score(y[target], logit[target] > 0)
                row[f"{target}_recal"] = fit_score(alone[source], y[source], alone[target], y[target])
                row[f"{target}_stack"] = fit_score(both[source], y[source], both[target], y[target])
            rows.append(row)
            print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)

    def spread(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):+.2f} ± {100 * sd:.2f}"

    print("\n| F1 on | model | stack - recal (what the cosine adds) | stack - model |")
    print("|---|---:|---:|---:|")
    for target, name in (
        ("val", "validation (fitted on the held-out slice)"),
        ("held", "held-out (fitted on validation)"),
    ):
        model = [r[f"{target}_model"] for r in rows]
        adds = [r[f"{target}_stack"] - r[f"{target}_recal"] for r in rows]
        total = [r[f"{target}_stack"] - r[f"{target}_model"] for r in rows]
        print(f"| {name} | {spread(model).lstrip('+')} | {spread(adds)} | {spread(total)} |")


if __name__ == "__main__":
    main()
