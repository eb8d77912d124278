"""Pipeline overhead: what DVC and the stages spend outside training and evaluation compute.

In a fresh clone of this repo (its committed state) in a temporary folder: one full
`dvc exp run -S dataset=<data>` (untimed set-up), then a no-op `dvc repro` (timed, 3 times), then
`dvc exp run -S lr=3e-5` (timed). For the latter it subtracts the Trainer's own train() time
(`train_runtime_s` in metrics/train.json, per-epoch validation included) and the evaluate stage's
prediction time (its "predictions took" line) from the wall time: the rest is overhead (process
start-up and imports, model loads and saves, checkpoints, DVC hashing and git work).

    python benchmarks/overhead.py [--data ../shared/mrpc]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "mrpc"))
    data = Path(ap.parse_args().data).expanduser().resolve()
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        print(f"set-up: full run on {data} ...", file=sys.stderr, flush=True)
        dvc(["exp", "run", "-S", f"dataset={data}"], repo)  # leaves its results in the workspace

        noop = [dvc(["repro"], repo)[0] for _ in range(3)]
        wall, log = dvc(["exp", "run", "-S", "lr=3e-5"], repo)
        ran = sorted(set(re.findall(r"Running stage '(\w+)'", log)))
        train_s = json.loads((repo / "metrics" / "train.json").read_text())["train_runtime_s"]
        predict_s = float(re.search(r"predictions took ([\d.]+) s", log).group(1))

    each = ", ".join(f"{t:.2f}" for t in noop)
    print(f"no-op `dvc repro`: {statistics.mean(noop):.2f} s (mean of 3: {each})")
    print(f"`dvc exp run -S lr=3e-5`: {wall:.1f} s wall; stages run: {', '.join(ran)}")
    overhead = wall - train_s - predict_s
    print(f"  train() {train_s:.1f} s + predictions {predict_s:.1f} s; overhead {overhead:.1f} s")


if __name__ == "__main__":
    main()
