"""How far above the majority baseline did benchmark runs land? The evidence for the diagnosis's
`near_baseline` threshold (textclf/diagnose.py, BASELINE_Z).

For every row of the given result files (levers.py's JSONL: one trained model per row, its
validation accuracy), the distance of that accuracy above the validation set's majority rate m, in
standard errors of an accuracy at m on the validation rows, sqrt(m (1 - m) / n); then, per file, the
range and how many rows the diagnosis would flag.

    python benchmarks/baseline_margin.py --data ../shared/mrpc benchmarks/results/mrpc-*.jsonl
"""

import argparse
import json
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textclf.data import load_local  # noqa: E402
from textclf.diagnose import BASELINE_Z, baseline_margin, check_near_baseline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the folder whose validation split the runs scored")
    ap.add_argument("--label-column", default="label")
    ap.add_argument("results", type=Path, nargs="+", help="levers.py result files (JSONL)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        labels = load_local(args.data, Path(scratch))["validation"].rows[args.label_column]
    n = len(labels)
    m = max(Counter(labels).values()) / n
    se = baseline_margin(m, n) / BASELINE_Z
    print(f"{args.data}: validation {n} rows, majority rate {m:.4f}, one standard error {se:.4f}")
    print(f"{'file':52s} {'runs':>5s} {'min z':>6s} {'median':>6s} {'max z':>6s}  flagged (z < {BASELINE_Z:g})")
    for path in args.results:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        accuracies = [r["val_accuracy"] for r in rows if "val_accuracy" in r]
        z = [(a - m) / se for a in accuracies]
        if z:  # the diagnosis's own check decides what is flagged
            flagged = sum(check_near_baseline([], {"accuracy": a}, m, n).flagged for a in accuracies)
            print(f"{path.name:52s} {len(z):5d} {min(z):6.2f} {statistics.median(z):6.2f} {max(z):6.2f}  {flagged}")


if __name__ == "__main__":
    main()
