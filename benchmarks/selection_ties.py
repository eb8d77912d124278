"""Which evaluation becomes the model when validation saturates: a run on easy data, per checkout.

On easy data (here: 3-class support tickets written from templates, 300 train / 60 validation / 200
test rows) validation F1 reaches 1.000 within the first epoch and stays there. A selection that keeps
the first evaluation reaching the best F1 outputs that early model; one that breaks ties by the lower
validation loss keeps a later, surer one. For each checkout given (`--code`, default this one) and
seed, this runs the download, tokenize, train and evaluate stages with that checkout's params.yaml
and prints the kept epoch, validation and test loss, test accuracy, and the share of test rows whose
predicted class has probability above 0.9 (what a user routing only confident predictions gets).

    git worktree add --detach /tmp/before <commit>
    python benchmarks/selection_ties.py --code /tmp/before . --seeds 1 2 3
"""

import argparse
import csv
import json
import random
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import levers  # noqa: E402  (the stage runner and params writer)

ROOT = levers.ROOT
TOPICS = {
    "billing": [
        "I was charged twice for my {p} subscription",
        "my invoice for {m} shows the wrong amount",
        "please refund the {p} payment from {m}",
        "why did my card get billed for {p} again",
        "the price on my {m} bill went up without notice",
    ],
    "technical": [
        "the {p} app crashes when I open settings",
        "I cannot connect {p} to my wifi since {m}",
        "the {p} screen freezes after the update",
        "sync fails with an error on {p}",
        "{p} keeps logging me out every few minutes",
    ],
    "account": [
        "how do I change the email on my {p} account",
        "I forgot my password and the reset link for {p} expired",
        "please delete my {p} account and data",
        "I want to add a second user to my {p} plan",
        "my username on {p} is shown wrong since {m}",
    ],
}
PRODUCTS = ["Pro", "Basic", "Family", "Business", "Mobile", "Desktop", "Cloud", "Studio"]
WHEN = ["January", "March", "May", "July", "September", "November", "last week", "yesterday"]
TAILS = ["", " thanks", " please help", " this is urgent", " any idea?", " again"]


def write_tickets(folder: Path, sizes: dict[str, int], seed: int = 7) -> None:
    rng = random.Random(seed)
    for split, n in sizes.items():
        with (folder / f"{split}.csv").open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["text", "label"])
            for _ in range(n):
                label = rng.choice(list(TOPICS))
                text = rng.choice(TOPICS[label]).format(p=rng.choice(PRODUCTS), m=rng.choice(WHEN))
                out.writerow([text + rng.choice(TAILS), label])


def run(code: Path, data: Path, work: Path, seed: int) -> dict:
    work.mkdir(parents=True)
    params = yaml.safe_load((code / "params.yaml").read_text())
    task = {"dataset": str(data), "text_columns": ["text"], "label_column": "label", "seed": seed}
    levers.write_params(work, params, task)
    for stage in ("download", "tokenize", "train", "evaluate"):
        levers.stage(work, stage, {"PYTHONPATH": str(code)})  # that checkout's stages
    read = lambda name: json.loads((work / "metrics" / name).read_text())  # noqa: E731
    rows = list(csv.DictReader((work / "data" / "predictions" / "test.tsv").open(), delimiter="\t"))
    top = [max(float(v) for k, v in r.items() if k.startswith("prob_")) for r in rows]
    val, test = read("eval.json"), read("test.json")
    return {
        "best_epoch": round(read("train.json")["best_epoch"], 2), "val_f1": val["f1"], "val_loss": val["loss"],
        "test_accuracy": test["accuracy"], "test_loss": test["loss"], "sure": sum(p > 0.9 for p in top) / len(top),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", nargs="+", default=[str(ROOT)], help="checkouts whose stages and params run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = ap.parse_args()
    print("| code | seed | kept epoch | val F1 | val loss | test acc | test loss | test rows with p > 0.9 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="bench-ties-") as tmp:
        data = Path(tmp) / "tickets"
        data.mkdir()
        write_tickets(data, {"train": 300, "validation": 60, "test": 200})
        for seed in args.seeds:
            for i, code in enumerate(map(Path, args.code)):
                r = run(code.resolve(), data, Path(tmp) / f"work-{i}-{seed}", seed)
                print(
                    f"| {code} | {seed} | {r['best_epoch']} | {r['val_f1']:.3f} | {r['val_loss']:.4f} | "
                    f"{r['test_accuracy']:.3f} | {r['test_loss']:.4f} | {100 * r['sure']:.0f}% |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
