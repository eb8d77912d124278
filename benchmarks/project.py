"""The project's own train stage, timed on this machine with the default params.yaml.

In a temporary working directory holding a copy of params.yaml (dataset set to --data; seed from
--seed; max_train_samples, max_eval_samples and epochs overridden only when their flags are given),
`python -m stages.download` and `python -m stages.tokenize` run untimed, then `python -m stages.train`
runs as a timed child process.

Measures: wall time of the whole train stage process (interpreter start, imports, model load,
training with per-epoch evaluation, saving the model), train samples/s (= epochs * n_train / wall),
the child's peak RSS (os.wait4 rusage of that one process), validation accuracy/F1 of the stage's
output model (the evaluate stage's metrics/eval.json, run untimed afterwards), and the Trainer's own
train_runtime_s from metrics/train.json.

    python benchmarks/project.py [--data ../shared/mrpc] [--max-train 64 --max-eval 32 --epochs 1]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from datasets import load_from_disk

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "mrpc"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="GLUE-layout MRPC folder")
    ap.add_argument("--max-train", type=int, default=None, help="override max_train_samples")
    ap.add_argument("--max-eval", type=int, default=None, help="override max_eval_samples")
    ap.add_argument("--epochs", type=int, default=None, help="override epochs")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="also write the result as JSON here")
    return ap.parse_args(argv)


def write_params(workdir: Path, args: argparse.Namespace, data_dir: Path) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(dataset=str(data_dir), seed=args.seed)
    overrides = {"max_train_samples": args.max_train, "max_eval_samples": args.max_eval}
    overrides["epochs"] = args.epochs
    params.update({k: v for k, v in overrides.items() if v is not None})
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def run_stage(stage: str, workdir: Path, env: dict) -> tuple[float, float]:
    """Run `python -m stages.<stage>` in workdir; return (wall seconds, peak RSS MB of that process)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=workdir, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen
    if child.returncode != 0:
        sys.exit(f"project: stages.{stage} failed with exit code {child.returncode}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    args = parse_args()
    data_dir = Path(args.data).expanduser().resolve()
    if not data_dir.is_dir():
        sys.exit(f"project: data folder {data_dir} not found; pass --data /path/to/mrpc (GLUE layout).")
    pythonpath = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, pythonpath))}

    with tempfile.TemporaryDirectory(prefix="bench-project-") as tmp:
        workdir = Path(tmp)
        params = write_params(workdir, args, data_dir)
        run_stage("download", workdir, env)
        run_stage("tokenize", workdir, env)
        wall, rss = run_stage("train", workdir, env)
        run_stage("evaluate", workdir, env)
        val = json.loads((workdir / "metrics" / "eval.json").read_text())
        train = json.loads((workdir / "metrics" / "train.json").read_text())
        sizes = {s: len(ds) for s, ds in load_from_disk(str(workdir / "data" / "tokenized")).items()}

    result = {
        "side": "project",
        "timed": "whole `python -m stages.train` process (start-up, imports, model load, train, save)",
        "seed": args.seed,
        "epochs": params["epochs"],
        "n_train": sizes["train"],
        "n_eval": sizes["validation"],
        "precision": train["precision"],
        "wall_s": round(wall, 2),
        "trainer_runtime_s": train["train_runtime_s"],
        "samples_per_s": round(params["epochs"] * sizes["train"] / wall, 2),
        "peak_rss_mb": round(rss, 1),
        "val_accuracy": val["accuracy"],
        "val_f1": val["f1"],
        "best_epoch": train["best_epoch"],
    }
    line = json.dumps(result)
    print(f"RESULT {line}", flush=True)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
