"""Prediction speed of a trained model on this machine, side by side in one invocation: PyTorch fp32,
PyTorch bf16 (autocast, where the CPU has it), ONNX Runtime fp32 and int8 (`textclf export`).

Throughput: every pair of MRPC validation + test (2,133), batch 64, rows sorted by length as
`textclf predict` does. Latency: single rows, one call each (the first 200 pairs), median and 90th
percentile. Accuracy/F1 on validation for each, to show what int8 costs.

    dvc exp run ... && textclf export        # data/model and data/onnx
    python benchmarks/inference.py [--model data/model] [--onnx data/onnx] [--data ../shared/mrpc]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `textclf` from this checkout

from textclf.data import load_local  # noqa: E402
from textclf.labels import prepare  # noqa: E402
from textclf.metrics import classification_metrics  # noqa: E402
from textclf.predict import Predictor, read_task  # noqa: E402


def rows(data: Path) -> tuple[list[tuple], np.ndarray, int]:
    with tempfile.TemporaryDirectory() as scratch:
        splits, _ = prepare(load_local(data, Path(scratch)), ["sentence1", "sentence2"], "label", None, 0.1)
        val, test = splits["validation"], splits["test"]
        pairs = list(zip(val["text"], val["text_pair"], strict=True))
        pairs += list(zip(test["text"], test["text_pair"], strict=True))
        return pairs, np.array(val["label"]), len(val)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="data/model")
    ap.add_argument("--onnx", default="data/onnx")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "mrpc"))
    ap.add_argument("--latency-rows", type=int, default=200)
    args = ap.parse_args()
    pairs, labels, n_val = rows(Path(args.data))
    task = read_task(Path(args.model))
    sides = {
        "PyTorch eager fp32": Predictor(Path(args.model), task, "torch", 64, fp32=True),
        "PyTorch bf16 autocast": Predictor(Path(args.model), task, "torch", 64),
        "ONNX Runtime fp32": Predictor(Path(args.onnx), task, "onnx", 64),
        "ONNX Runtime int8": Predictor(Path(args.onnx), task, "onnx-int8", 64),
    }
    print(f"| backend | rows/s (batch 64, {len(pairs)} pairs) | latency median ms | p90 ms | val acc | val F1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, predictor in sides.items():
        predictor(pairs[:64])  # warm-up
        start = time.perf_counter()
        probs = predictor(pairs)
        throughput = len(pairs) / (time.perf_counter() - start)
        times = []
        for pair in pairs[: args.latency_rows]:
            t = time.perf_counter()
            predictor([pair])
            times.append(1000 * (time.perf_counter() - t))
        p90 = statistics.quantiles(times, n=10)[-1]
        scores = classification_metrics(probs[:n_val].argmax(-1), labels)
        print(
            f"| {name} | {throughput:.0f} | {statistics.median(times):.1f} | {p90:.1f} | "
            f"{scores['accuracy']:.4f} | {scores['f1']:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
