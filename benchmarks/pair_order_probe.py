"""Does reading each pair in both orders at prediction time help a paraphrase classifier? A probe.

Whether two sentences are paraphrases does not depend on which comes first, but a cross-encoder reads
"A [SEP] B" and "B [SEP] A" as different inputs and scores them differently. Training on both orders
scored lower (benchmarks/README.md, round 6); this probe asks whether averaging the two orders' class
probabilities at prediction time does better, for free at training time. On MRPC carved as in
levers.py (the same fixed held-out slice of train), it trains the defaults for each seed, then scores
validation and the held-out slice with the trained model in the given order, in the swapped order,
and with the two orders' probabilities averaged (all three by `textclf predict`'s Predictor, in fp32).

    python benchmarks/pair_order_probe.py [--data ../shared/mrpc] [--seeds 1 2 3 4 5] [--out rows.jsonl]
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import yaml
from datasets import load_from_disk

sys.path.insert(0, str(Path(__file__).resolve().parent))
import levers  # noqa: E402  (the carve and the stage runner)

from textclf.metrics import classification_metrics  # noqa: E402
from textclf.predict import Predictor, read_task  # noqa: E402


def parse_args() -> argparse.Namespace:
    ap = levers.probe_parser(__doc__.splitlines()[0])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="params to train with (YAML values)")
    ap.add_argument("--out", default=None, help="append one JSON line per seed")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    base = yaml.safe_load((levers.ROOT / "params.yaml").read_text())
    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    base |= overrides  # before the data is made: a tokenize param needs its own tokenized data
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-pair-order-") as tmp:
        work, _ = levers.carved_workspace(Path(tmp), Path(args.data), args.holdout, base, {})
        raw = load_from_disk(str(work / "data" / "raw"))
        splits = {"val": "validation", "held": "test"}
        for seed in args.seeds:
            levers.write_params(work, base, {"seed": seed})
            levers.stage(work, "train")
            row = {"seed": seed, "params": overrides}
            model = work / "data" / "trained"
            predict = Predictor(model, read_task(model), "torch", base["eval_batch_size"], fp32=True)
            for key, split in splits.items():
                pairs = list(zip(raw[split]["text"], raw[split]["text_pair"], strict=True))
                given = predict(pairs)
                swapped = predict([(b, a) for a, b in pairs])
                for name, probs in (("given", given), ("swapped", swapped), ("both", (given + swapped) / 2)):
                    scores = classification_metrics(probs.argmax(-1), raw[split]["label"])
                    row[f"{key}_{name}_f1"], row[f"{key}_{name}_acc"] = scores["f1"], scores["accuracy"]
                row[f"{key}_flips"] = int((given.argmax(-1) != swapped.argmax(-1)).sum())
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")

    def spread(values: list[float], sign: str = "") -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * statistics.mean(values):{sign}.2f} ± {100 * sd:.2f}"

    print(
        "\n| scored on | given order F1 | swapped F1 | both orders F1 | both - given F1 (paired) "
        "| both - given acc (paired) | pairs whose label flips with the order |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, name in (("val", "validation"), ("held", "held-out slice")):
        f1 = {n: spread([r[f"{key}_{n}_f1"] for r in rows]) for n in ("given", "swapped", "both")}
        gain = spread([r[f"{key}_both_f1"] - r[f"{key}_given_f1"] for r in rows], "+")
        gain_acc = spread([r[f"{key}_both_acc"] - r[f"{key}_given_acc"] for r in rows], "+")
        flips = statistics.mean(r[f"{key}_flips"] for r in rows)
        print(f"| {name} | {f1['given']} | {f1['swapped']} | {f1['both']} | {gain} | {gain_acc} | {flips:.1f} |")


if __name__ == "__main__":
    main()
