"""Download + tokenize at scale: wall time and peak RSS for synthetic datasets of N sentence pairs.

Writes train/validation/test files of synthetic pairs (parquet, or TSV with a sentence1/sentence2/label
header), then runs the real download and tokenize stages on them as child processes (as DVC would)
and reports each stage's wall time and peak RSS. Memory should stay flat as N grows (Arrow
memory-maps; no whole-dataset pandas copy) and time should grow about linearly. `--code` runs the
stages of other checkouts too (e.g. a `git worktree` of an older commit), on the same files.

    python benchmarks/scale.py --sizes 100000 1000000 [--format tsv] [--code . /tmp/old-checkout]
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]
WORDS = (
    "the bank said on monday that its profit rose in the third quarter while shares fell after the "
    "company cut its forecast for sales of new cars in europe and asia amid weak demand"
).split()


def write_split(path: Path, n: int, seed: int, chunk: int = 100_000) -> None:
    """Parquet or TSV by the path's suffix; written in chunks so that the generator stays small."""
    rng = random.Random(seed)
    writer = None
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        s1 = [" ".join(rng.choices(WORDS, k=rng.randint(8, 30))) for _ in range(rows)]
        s2 = [" ".join(rng.choices(WORDS, k=rng.randint(8, 30))) for _ in range(rows)]
        table = pa.table({"sentence1": s1, "sentence2": s2, "label": [rng.randint(0, 1) for _ in range(rows)]})
        if path.suffix == ".tsv":
            if writer is None:  # pyarrow would quote the header's names
                writer = path.open("wb")
                writer.write("\t".join(table.column_names).encode() + b"\n")
            options = pacsv.WriteOptions(delimiter="\t", quoting_style="none", include_header=False)
            pacsv.write_csv(table, writer, options)
        else:
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    writer.close()


def rss_anon_mb(pid: int) -> float:
    """Anonymous resident memory: the process's own heap, not pages of memory-mapped Arrow files,
    which the kernel can drop at will (RSS counts both)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_stage(work: Path, stage: str, code: Path = REPO) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and peak anonymous RSS (MB, sampled every 20 ms) of one stage."""
    env = dict(os.environ, PYTHONPATH=str(code), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}"], cwd=work, env=env, stdout=subprocess.DEVNULL)
    peak_anon = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak_anon = max(peak_anon, rss_anon_mb(proc.pid))
        time.sleep(0.02)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{stage} failed with status {status}")
    return wall, usage.ru_maxrss / 1024, peak_anon


def bench(n: int, fmt: str, codes: list[Path], stages: list[str], tmp: Path) -> list[dict]:
    data = tmp / f"data-{n}"
    data.mkdir()
    write_split(data / f"train.{fmt}", n, 1)
    write_split(data / f"validation.{fmt}", max(n // 100, 10), 2)
    write_split(data / f"test.{fmt}", max(n // 100, 10), 3)
    results = []
    for code in codes:
        work = tmp / f"work-{n}"
        work.mkdir()
        params = yaml.safe_load((code / "params.yaml").read_text()) | {"dataset": str(data)}
        (work / "params.yaml").write_text(yaml.safe_dump(params))
        result = {"pairs": n, "code": code}
        for stage in stages:
            wall, rss, anon = run_stage(work, stage, code)
            result[f"{stage}_s"], result[f"{stage}_rss_mb"], result[f"{stage}_anon_mb"] = wall, rss, anon
        shutil.rmtree(work)
        results.append(result)
    shutil.rmtree(data)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--format", choices=["parquet", "tsv"], default="parquet")
    parser.add_argument("--code", type=Path, nargs="+", default=[REPO], help="checkouts whose stages run")
    both = ["download", "tokenize"]
    parser.add_argument("--stages", nargs="+", choices=both, default=both)
    args = parser.parse_args()
    codes = [c.resolve() for c in args.code]
    with tempfile.TemporaryDirectory() as tmp:
        results = [r for n in args.sizes for r in bench(n, args.format, codes, args.stages, Path(tmp))]
    print(f"{args.format} files; stages of: " + ", ".join(str(c) for c in codes))
    print("| train pairs | code | stage | wall s | peak RSS MB | peak anonymous RSS MB |")
    print("|---:|---|---|---:|---:|---:|")
    for r in results:
        for stage in args.stages:
            print(
                f"| {r['pairs']:,} | {r['code'].name} | {stage} | {r[stage + '_s']:.1f} | "
                f"{r[stage + '_rss_mb']:.0f} | {r[stage + '_anon_mb']:.0f} |"
            )


if __name__ == "__main__":
    main()
