"""Side by side: the HF course recipe (reference.py) against the project's train stage (project.py).

Runs reference.py then project.py as child processes, one at a time (never concurrently: they would
share the cores), once per seed, averages each side over the seeds and prints a markdown table plus
the machine it ran on. Other flags pass through to both scripts.

Times differ in scope: reference times trainer.train() only; project times the whole train stage
process (start-up, imports, model load, save). The "Trainer train_runtime" column is the Trainer's
own train() time on both sides, the like-for-like number.

    python benchmarks/compare.py [--seeds 42 43] [--data ../shared/mrpc]
    python benchmarks/compare.py --max-train 64 --max-eval 32 --epochs 1   # smoke run
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
NUMBERS = ["wall_s", "trainer_runtime_s", "samples_per_s", "peak_rss_mb", "val_accuracy", "val_f1"]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--data", default=None)
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--max-eval", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None, help="default: each side's own (3 for both)")
    return ap.parse_args()


def pass_through(args: argparse.Namespace) -> list[str]:
    flags = {"--data": args.data, "--max-train": args.max_train, "--max-eval": args.max_eval}
    flags["--epochs"] = args.epochs
    return [str(x) for k, v in flags.items() if v is not None for x in (k, v)]


def run(script: str, seed: int, flags: list[str], tmp: Path) -> dict:
    out = tmp / f"{Path(script).stem}-{seed}.json"
    cmd = [sys.executable, str(HERE / script), "--seed", str(seed), "--out", str(out), *flags]
    print(f"+ {' '.join(cmd)}", file=sys.stderr, flush=True)
    # The child's stdout (Trainer logs) goes to stderr, so this script's stdout is just the report.
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    return json.loads(out.read_text())


def mean(runs: list[dict]) -> dict:
    return {k: statistics.mean(r[k] for r in runs) for k in NUMBERS}


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    model = names[0] if names else platform.processor()
    return (
        f"Machine: {model}; {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable); "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}"
    )


def table(sides: dict[str, dict], runs: dict[str, list[dict]]) -> str:
    rows = [
        "| side | wall time train (s) | Trainer train_runtime (s) | samples/s | peak RSS (MB) "
        "| val accuracy | val F1 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for side, m in sides.items():
        rows.append(
            f"| {side} ({runs[side][0]['precision']}, n={len(runs[side])}) | {m['wall_s']:.1f} | "
            f"{m['trainer_runtime_s']:.1f} | {m['samples_per_s']:.1f} | {m['peak_rss_mb']:.0f} | "
            f"{m['val_accuracy']:.4f} | {m['val_f1']:.4f} |"
        )
    return "\n".join(rows)


def main() -> None:
    args = parse_args()
    flags = pass_through(args)
    runs: dict[str, list[dict]] = {"reference": [], "project": []}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        for seed in args.seeds:
            runs["reference"].append(run("reference.py", seed, flags, Path(tmp)))
            runs["project"].append(run("project.py", seed, flags, Path(tmp)))
    sides = {side: mean(r) for side, r in runs.items()}
    ref, proj = sides["reference"], sides["project"]
    first = runs["reference"][0], runs["project"][0]
    print(machine())
    print(
        f"Seeds: {args.seeds}; train/val pairs: {first[0]['n_train']}/{first[0]['n_eval']}; "
        f"epochs: reference {first[0]['epochs']}, project {first[1]['epochs']}"
    )
    print(f"Wall time: reference = {first[0]['timed']}; project = {first[1]['timed']}.\n")
    print(table(sides, runs))
    print(
        f"\nreference_time / project_time: {ref['wall_s'] / proj['wall_s']:.2f} (wall time as timed above); "
        f"{ref['trainer_runtime_s'] / proj['trainer_runtime_s']:.2f} (Trainer train_runtime)"
    )


if __name__ == "__main__":
    main()
