"""The physical limit of this CPU for the model's work, and how close the train stage comes to it.

1. Matrix-multiply throughput, fp32 and bf16, at the shapes a BERT layer of the model multiplies
   (tokens x hidden @ hidden x hidden, hidden x intermediate, intermediate x hidden), timed on this
   machine with torch's own kernels: the most a training step could get from these cores.
2. The train stage's achieved FLOP/s: the floating-point work of the run it last did (counted from
   the tokenized rows actually trained on, the layers that ran forward and backward, the frozen-layer
   cache's fill, and the evaluations), divided by its train() time (metrics/train.json).

    python benchmarks/flops.py [--workdir .]      # after a run, in its workspace
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def matmul_rate(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 1.5) -> float:
    """FLOP/s of (m x k) @ (k x n) in `dtype`, best of repeated timed batches."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        best = max(best, 10 * 2 * m * k * n / (time.perf_counter() - start))
    return best


def layer_flops_per_token(hidden: int, intermediate: int, length: float) -> float:
    """Forward FLOPs of one BERT layer per token: the four attention projections, the two feed-forward
    matmuls, and attention scores and mixing over a sequence of `length` tokens."""
    return 2 * (4 * hidden * hidden + 2 * hidden * intermediate) + 2 * 2 * length * hidden


def run_flops(work: Path) -> tuple[float, float, dict]:
    """(FLOPs of the last train() in `work`, its seconds, details)."""
    from datasets import load_from_disk

    params = yaml.safe_load((work / "params.yaml").read_text())
    config = json.loads((work / "data/pretrained/config.json").read_text())
    train = json.loads((work / "metrics/train.json").read_text())
    data = load_from_disk(str(work / "data/tokenized"))
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    lengths = np.array([len(x) for x in data["train"]["input_ids"]])
    mean_len = float(lengths.mean())
    per_token = layer_flops_per_token(h, inter, mean_len)
    frozen = int(params["freeze_layers"])
    trained = layers - frozen
    # With the frozen-layer cache (textclf/frozen.py) the frozen layers run once per train and validation
    # row before training; every step and evaluation then runs only the layers above them.
    cached = bool(train.get("frozen_layers_cached"))  # as the train stage reports it (absent before 7a3ded1: off)
    forward = trained if cached else layers
    fill_tokens = (lengths.sum() + sum(len(x) for x in data["validation"]["input_ids"])) if cached else 0
    # Forward through `forward` layers; backward (twice the forward's work) through the trained ones only.
    step_tokens = lengths.sum() * float(train["epochs_run"])
    train_flops = step_tokens * per_token * (forward + 2 * trained) + fill_tokens * per_token * frozen
    evals = len((work / "metrics/curves/eval.tsv").read_text().splitlines()) - 1
    eval_rows = len(data["validation"]) + min(int(params.get("train_eval_rows") or 0), len(data["train"]))
    eval_tokens = evals * eval_rows * mean_len
    eval_flops = eval_tokens * per_token * forward
    details = {
        "train_tokens": int(step_tokens),
        "mean_length": round(mean_len, 1),
        "layers": layers,
        "trained_layers": trained,
        "frozen_layer_cache": cached,
        "evaluations": evals,
        "train_tflop": round(train_flops / 1e12, 2),
        "eval_tflop": round(eval_flops / 1e12, 2),
    }
    return train_flops + eval_flops, float(train["train_runtime_s"]), details


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--tokens", type=int, default=16 * 56, help="rows of a batch's matmul (batch x length)")
    args = ap.parse_args()
    work = Path(args.workdir)
    config = json.loads((work / "data/pretrained/config.json").read_text())
    h, inter = config["hidden_size"], config["intermediate_size"]
    shapes = {"attention projection": (h, h), "feed-forward in": (h, inter), "feed-forward out": (inter, h)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} logical cores")
    print(f"| matmul ({args.tokens} tokens) | fp32 GFLOP/s | bf16 GFLOP/s |")
    print("|---|---:|---:|")
    rates = {}
    for name, (k, n) in shapes.items():
        rates[name] = {
            d: matmul_rate(args.tokens, k, n, dt) for d, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))
        }
        print(f"| {name} {k}x{n} | {rates[name]['fp32'] / 1e9:.0f} | {rates[name]['bf16'] / 1e9:.0f} |")
    # A layer's matmul work is 4 projections, one feed-forward in, one out: weight the peak by that.
    weights = {"attention projection": 4 * h * h, "feed-forward in": h * inter, "feed-forward out": inter * h}
    peak = {d: sum(weights.values()) / sum(w / rates[s][d] for s, w in weights.items()) for d in ("fp32", "bf16")}
    print(f"layer-weighted peak: fp32 {peak['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s")
    if (work / "metrics/train.json").exists():
        flops, seconds, details = run_flops(work)
        precision = json.loads((work / "metrics/train.json").read_text())["precision"]
        achieved = flops / seconds
        limit = peak["bf16" if precision == "bf16" else "fp32"]
        print(f"train stage: {flops / 1e12:.1f} TFLOP in {seconds:.1f} s = {achieved / 1e9:.0f} GFLOP/s, "
              f"{100 * achieved / limit:.0f}% of the {precision} matmul peak; {details}")  # fmt: skip


if __name__ == "__main__":
    main()
