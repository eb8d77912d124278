"""Whether a binary classifier's F1 gains from a decision threshold other than 0.5, judged on the held-out slice.

The binary F1 counts the positive class (id 1) only, so a threshold below 0.5 can raise it where a model is
calibrated (for a calibrated model the F1-optimal threshold is half the best F1 reachable: Lipton et al.,
2014, "Thresholding classifiers to maximize F1"). This script reads the per-row predictions that
`levers.py --keep-predictions DIR` kept (DIR/<setting>-<seed>-{validation,test}.tsv, the test split being
the held-out slice) and scores, per seed: the argmax (0.5); the threshold that maximises validation F1
(chosen where the model's epoch is chosen, so validation flatters it); half the best validation F1 (the
calibrated optimum); and fixed thresholds. Differences are paired by seed against 0.5.

    python benchmarks/levers.py --seeds 1 2 3 4 5 --setting base= --keep-predictions /tmp/preds
    python benchmarks/threshold_probe.py /tmp/preds [--setting base]
"""

import argparse
import csv
import statistics
from pathlib import Path

import numpy as np

GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(probability of the class with id 1, whether the true label is that class) per row."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    positive = [c for c in rows[0] if c.startswith("prob_")][1]
    name = positive.removeprefix("prob_")
    return np.array([float(r[positive]) for r in rows]), np.array([r["label"] == name for r in rows])


def f1(p: np.ndarray, y: np.ndarray, t: float) -> float:
    pred = p >= t
    tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
    return 2 * tp / (2 * tp + fp + fn)


def accuracy(p: np.ndarray, y: np.ndarray, t: float) -> float:
    return float(((p >= t) == y).mean())


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):+.2f} ± {100 * sd:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions", type=Path, help="the folder levers.py --keep-predictions wrote")
    ap.add_argument("--setting", default="base")
    args = ap.parse_args()
    found = sorted(args.predictions.glob(f"{args.setting}-*-validation.tsv"))
    seeds = sorted(int(f.name.removeprefix(f"{args.setting}-").split("-")[0]) for f in found)
    rules = {}  # rule name -> per seed (threshold, val F1, held-out F1, val acc, held-out acc)
    for seed in seeds:
        pv, yv = load(args.predictions / f"{args.setting}-{seed}-validation.tsv")
        ph, yh = load(args.predictions / f"{args.setting}-{seed}-test.tsv")
        val_f1 = [f1(pv, yv, t) for t in GRID]
        chosen = {
            "0.5 (argmax)": 0.5,
            "best on validation": float(GRID[int(np.argmax(val_f1))]),
            "half the best validation F1": max(val_f1) / 2,
            "0.4": 0.4,
            "0.6": 0.6,
        }
        for rule, t in chosen.items():
            rules.setdefault(rule, []).append(
                (t, f1(pv, yv, t), f1(ph, yh, t), accuracy(pv, yv, t), accuracy(ph, yh, t))
            )
        between = float(((pv > 0.3) & (pv < 0.7)).mean())
        print(f"seed {seed}: {100 * between:.1f}% of validation rows have a probability between 0.3 and 0.7")
    base = rules["0.5 (argmax)"]
    print(f"\n{len(seeds)} seeds ({', '.join(map(str, seeds))}); differences paired by seed against 0.5\n")
    columns = ["threshold", "mean t", "val F1", "held-out F1", "held-out acc", "held-out F1 - 0.5"]
    print("| " + " | ".join([*columns, "held-out acc - 0.5", "above"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for rule, runs in rules.items():

        def mean(i: int, runs: list = runs) -> str:
            return f"{100 * statistics.mean(r[i] for r in runs):.2f}"

        d_f1 = [r[2] - b[2] for r, b in zip(runs, base, strict=True)]
        d_acc = [r[4] - b[4] for r, b in zip(runs, base, strict=True)]
        above = "" if runs is base else f"{sum(d > 0 for d in d_f1)} of {len(runs)}"
        t = statistics.mean(r[0] for r in runs)
        cols = [f"{t:.2f}", mean(1), mean(2), mean(4), *(("", "") if runs is base else (spread(d_f1), spread(d_acc)))]
        print(f"| {rule} | " + " | ".join(cols) + f" | {above} |")


if __name__ == "__main__":
    main()
