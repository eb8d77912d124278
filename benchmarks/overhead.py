"""Pipeline overhead: what DVC and the stages spend outside training and evaluation compute.

In a fresh clone of this repo in a temporary folder, checked out at each revision given (default:
HEAD; give a baseline first, e.g. `--revs HEAD~1 HEAD`, to compare two in one invocation): one full
`dvc exp run -S dataset=<data>`, then a no-op `dvc repro` (3 times), then `dvc exp run -S lr=3e-5`,
each timed, with the validation scores of both runs. For each run it subtracts the Trainer's own
train() time (`train_runtime_s` in metrics/train.json, per-epoch validation included) and the
evaluate stage's prediction time (its "predictions took" line) from the wall time: the rest is
overhead (process start-up and imports, model loads and saves, checkpoints, DVC hashing, git work;
for the full run also download and tokenize).

    python benchmarks/overhead.py [--data ../shared/mrpc] [--revs REV ...]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dvc(args: list[str], cwd: Path) -> tuple[float, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # this venv's python and dvc
    env["DVC_NO_ANALYTICS"] = "1"
    start = time.perf_counter()
    out = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"overhead: dvc {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return wall, out.stdout + out.stderr


def timed_exp_run(repo: Path, setting: str) -> dict:
    """`dvc exp run -S setting`: wall time, stages run, train() and prediction time, validation scores."""
    wall, log = dvc(["exp", "run", "-S", setting], repo)
    scores = json.loads((repo / "metrics" / "eval.json").read_text())
    return {
        "setting": setting,
        "wall": wall,
        "ran": sorted(set(re.findall(r"Running stage '(\w+)'", log))),
        "train": json.loads((repo / "metrics" / "train.json").read_text())["train_runtime_s"],
        "predict": float(re.search(r"predictions took ([\d.]+) s", log).group(1)),
        "verdict": json.loads((repo / "metrics" / "diagnosis.json").read_text())["verdict"],
        "accuracy": scores["accuracy"],
        "f1": scores["f1"],
    }


def measure(rev: str, data: Path) -> tuple[list[dict], list[float]]:
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        subprocess.run(["git", "checkout", "-q", rev], cwd=repo, check=True)
        print(f"{rev}: full run on {data} ...", file=sys.stderr, flush=True)
        runs = [timed_exp_run(repo, f"dataset={data}")]  # leaves its results in the workspace
        noop = [dvc(["repro"], repo)[0] for _ in range(3)]
        runs.append(timed_exp_run(repo, "lr=3e-5"))
    return runs, noop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "mrpc"))
    ap.add_argument("--revs", nargs="+", default=["HEAD"], help="git revisions, measured in turn")
    args = ap.parse_args()
    data = Path(args.data).expanduser().resolve()
    revs = {}
    for rev in args.revs:  # resolved here: the clone's HEAD is not this checkout's
        out = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"overhead: {rev!r} is not a revision of {ROOT}")
        revs[rev] = out.stdout.strip()
    results = {rev: measure(sha, data) for rev, sha in revs.items()}  # one after the other, never at once

    for rev, (runs, noop) in results.items():
        print(f"== {rev} ({revs[rev]})")
        for r in runs:
            overhead = r["wall"] - r["train"] - r["predict"]
            print(
                f"`dvc exp run -S {r['setting']}`: {r['wall']:.1f} s wall; "
                f"stages run: {', '.join(r['ran'])}; "
                f"validation accuracy {r['accuracy']:.4f}, F1 {r['f1']:.4f}; diagnosis {r['verdict']}\n"
                f"  train() {r['train']:.1f} s + predictions {r['predict']:.1f} s; the rest {overhead:.1f} s"
            )
        each = ", ".join(f"{t:.2f}" for t in noop)
        print(f"no-op `dvc repro` after the first: {statistics.mean(noop):.2f} s (mean of 3: {each})")


if __name__ == "__main__":
    main()
