"""Which training levers win, judged honestly: several seeds per setting, and a held-out slice of train.

Validation is where the best epoch is picked (and where defaults were tuned), so it flatters. This
script carves a fixed, stratified slice of train (400 rows by default) that no setting trains on, and
passes it to the pipeline as a labeled test split, which the evaluate stage scores but never uses for
selection. Each setting runs the real train and evaluate stages once per seed; the report gives each
setting's mean and spread on validation and on the held-out slice, and its paired difference from
the first setting (same seeds) with the spread of that difference.

    python benchmarks/levers.py --seeds 1 2 3 4 5 --setting base= --setting mean=pooling=mean \\
        --setting mean-head10=pooling=mean,head_lr_scale=10 [--data ../shared/mrpc] [--out runs.jsonl]
    python benchmarks/levers.py --data ../shared/sst2 --text-columns sentence --max-train 4000 ...
    python benchmarks/levers.py --setting recipe= ...   # `recipe`: the plain HF course recipe (reference.py)
    python benchmarks/levers.py --setting glibc=env.GLIBC_TUNABLES= ...  # env.VAR=value: the stages' env

Runs are appended to --out as they finish, and a rerun skips the (setting, seed) pairs already
there, so a long sweep can be stopped and continued. Runs go seed by seed, each setting in turn, one
after the other, never at once.
"""

import argparse
import functools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT_SEED = 20261126  # fixed: every sweep holds out the same rows


def probe_parser(description: str) -> argparse.ArgumentParser:
    """The options of a probe that trains the defaults per seed on the carved data (--data, --holdout,
    --seeds), as this script takes them."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "mrpc"))
    ap.add_argument("--holdout", type=int, default=400, help="train rows held out as the judge")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    return ap


def parse_args() -> argparse.Namespace:
    ap = probe_parser(__doc__.splitlines()[0])
    ap.add_argument("--text-columns", nargs="+", default=None, help="default: params.yaml's")
    ap.add_argument("--max-train", type=int, default=None, help="max_train_samples (after the holdout)")
    ap.add_argument(
        "--setting",
        action="append",
        default=[],
        help="NAME=key=value,key=value (params overrides; env.VAR=value: an environment variable of the stages)",
    )
    ap.add_argument("--out", default="levers.jsonl")
    ap.add_argument(
        "--keep-predictions",
        metavar="DIR",
        help="copy each run's per-row predictions (validation, held-out) to DIR/<setting>-<seed>-<split>.tsv",
    )
    return ap.parse_args()


def settings(specs: list[str]) -> dict[str, dict]:
    found = {}
    for spec in specs or ["base="]:
        name, _, pairs = spec.partition("=")
        found[name] = {
            k: v if k.startswith("env.") else yaml.safe_load(v)
            for k, v in (p.split("=", 1) for p in pairs.split(",") if p)
        }
    return found


def split_env(overrides: dict) -> tuple[dict, dict[str, str]]:
    """(params overrides, environment variables) of a setting."""
    params = {k: v for k, v in overrides.items() if not k.startswith("env.")}
    return params, {k.removeprefix("env."): v for k, v in overrides.items() if k.startswith("env.")}


def label_of(header: list[str], row: list[str]) -> str:
    column = "Quality" if "Quality" in header else "label"
    return row[header.index(column)]


def carve(data: Path, out: Path, holdout: int) -> dict:
    """out/ = data/ with `holdout` rows of train (stratified by label, seeded) moved to a labeled test
    file in the same format; validation copied. Lines are split on tabs, as MRPC's must be."""
    train = next(p for p in (data / "train.tsv", data / "train.csv") if p.exists())
    sep = "\t" if train.suffix == ".tsv" else ","
    lines = train.read_text(encoding="utf-8-sig").splitlines()
    header, rows = lines[0], [line for line in lines[1:] if line]
    columns = header.split(sep)
    by_label: dict[str, list[int]] = {}
    for i, line in enumerate(rows):
        by_label.setdefault(label_of(columns, line.split(sep)), []).append(i)
    rng = random.Random(HOLDOUT_SEED)
    held = set()
    for members in by_label.values():
        held |= set(rng.sample(members, round(holdout * len(members) / len(rows))))
    out.mkdir(parents=True)
    (out / train.name).write_text("\n".join([header, *(r for i, r in enumerate(rows) if i not in held)]) + "\n")
    (out / f"test{train.suffix}").write_text("\n".join([header, *(rows[i] for i in sorted(held))]) + "\n")
    for name in ("dev.tsv", "validation.tsv", "dev.csv", "validation.csv"):
        if (data / name).exists():
            shutil.copy(data / name, out / name)
    return {"train": len(rows) - len(held), "holdout": len(held)}


def stage(work: Path, name: str, extra_env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run one stage: its wall seconds and its peak resident memory in MB (the kernel's count for that
    process alone, through wait4)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **(extra_env or {}),
    }
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", f"stages.{name}"], cwd=work, env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            sys.exit(f"levers: stages.{name} failed:\n{log.read()[-4000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def write_params(work: Path, base: dict, overrides: dict) -> None:
    (work / "params.yaml").write_text(yaml.safe_dump(base | overrides, sort_keys=False))


def recipe_run(data: Path, name: str, seed: int, tmp: Path) -> dict:
    """The plain Hugging Face course recipe (benchmarks/reference.py) on the same carved data."""
    out = tmp / f"recipe-{seed}.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "reference.py"), "--data", str(data), "--seed", str(seed)]
    done = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"levers: reference.py failed:\n{done.stderr[-3000:]}")
    r = json.loads(out.read_text())
    return {
        "setting": name, "overrides": {"recipe": True}, "seed": seed,
        "val_f1": r["val_f1"], "val_accuracy": r["val_accuracy"], "val_loss": None,
        "holdout_f1": r["test_f1"], "holdout_accuracy": r["test_accuracy"],
        "train_runtime_s": r["trainer_runtime_s"], "train_process_s": r["wall_s"], "best_epoch": None,
    }  # fmt: skip


@functools.cache
def data_params() -> dict[str, list[str]]:
    """The params dvc.yaml's download and tokenize stages read: a setting that changes one of them needs
    its own data/raw or data/tokenized, not the base's."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stages[name].get("params", []) for name in ("download", "tokenize")}


def prepare_data(work: Path, values: dict, made_with: dict) -> None:
    """Rerun download and/or tokenize when `values` differ from those the workspace's data was made
    with, on the keys each stage reads (made_with: updated in place)."""
    rerun = False
    for name, keys in data_params().items():
        rerun = rerun or any(values.get(k) != made_with.get(k) for k in keys)
        if rerun:
            stage(work, name)
            made_with.update({k: values.get(k) for k in keys})


def carved_workspace(tmp: Path, data: Path, holdout: int, base: dict, made_with: dict) -> tuple[Path, dict]:
    """tmp/work, a pipeline workspace on `data` carved into tmp/data (see carve), its data downloaded
    and tokenized with `base` (its dataset set to the carved copy, in place); and carve's sizes."""
    work = tmp / "work"
    work.mkdir()
    sizes = carve(data.resolve(), tmp / "data", holdout)
    base["dataset"] = str(tmp / "data")
    write_params(work, base, {})
    prepare_data(work, base, made_with)
    return work, sizes


def one_run(work: Path, base: dict, name: str, overrides: dict, seed: int, made_with: dict) -> dict:
    params, env = split_env(overrides)
    write_params(work, base, params | {"seed": seed})
    prepare_data(work, base | params, made_with)
    wall, peak_mb = stage(work, "train", env)
    stage(work, "evaluate", env)
    read = lambda f: json.loads((work / "metrics" / f).read_text())  # noqa: E731
    val, test, train = read("eval.json"), read("test.json"), read("train.json")
    return {
        "setting": name, "overrides": overrides, "seed": seed,
        "val_f1": val["f1"], "val_accuracy": val["accuracy"], "val_loss": val["loss"],
        "holdout_f1": test["f1"], "holdout_accuracy": test["accuracy"],
        "train_runtime_s": train["train_runtime_s"], "train_process_s": round(wall, 1),
        "best_epoch": train["best_epoch"], "train_peak_rss_mb": round(peak_mb),
        "evaluation_s": train.get("evaluation_s"),
    }  # fmt: skip


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * sd:.2f}"


def report(runs: list[dict], names: list[str]) -> str:
    first = names[0]
    by = {(r["setting"], r["seed"]): r for r in runs}
    lines = [
        f"| setting | n | val F1 | held-out F1 | val acc | held-out acc | train() s | train peak MB | "
        f"val F1 - {first} (paired) | held-out F1 - {first} (paired) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        mine = [r for r in runs if r["setting"] == name]
        if not mine:
            continue
        pairs = [(r, by[(first, r["seed"])]) for r in mine if (first, r["seed"]) in by]
        cols = [spread([r[k] for r in mine]) for k in ("val_f1", "holdout_f1", "val_accuracy", "holdout_accuracy")]
        cols.append(f"{statistics.mean(r['train_runtime_s'] for r in mine):.1f}")
        peaks = [r["train_peak_rss_mb"] for r in mine if "train_peak_rss_mb" in r]
        cols.append(f"{statistics.mean(peaks):.0f}" if peaks else "")
        for k in ("val_f1", "holdout_f1"):
            cols.append(spread([a[k] - b[k] for a, b in pairs]) if name != first else "")
        lines.append(f"| {name} | {len(mine)} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    todo = settings(args.setting)
    out = Path(args.out)
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    seen = {(r["setting"], r["seed"]) for r in done}
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    base |= {"max_train_samples": args.max_train} if args.max_train else {}
    base |= {"text_columns": args.text_columns} if args.text_columns else {}
    with tempfile.TemporaryDirectory(prefix="bench-levers-") as tmp:
        made_with: dict = {}  # the params the workspace's data/raw and data/tokenized were made with
        work, sizes = carved_workspace(Path(tmp), Path(args.data), args.holdout, base, made_with)
        print(f"levers: {sizes['train']} train rows, {sizes['holdout']} held out", file=sys.stderr)
        # Seed by seed, every setting in turn: the machine's drift over the invocation falls on all alike.
        for seed in args.seeds:
            for name, overrides in todo.items():
                if (name, seed) in seen:
                    continue
                if name == "recipe":  # the plain recipe, not the pipeline
                    result = recipe_run(Path(tmp) / "data", name, seed, Path(tmp))
                else:
                    result = one_run(work, base, name, overrides, seed, made_with)
                    if args.keep_predictions:
                        keep = Path(args.keep_predictions)
                        keep.mkdir(parents=True, exist_ok=True)
                        for split in ("validation", "test"):
                            src = work / "data" / "predictions" / f"{split}.tsv"
                            shutil.copy(src, keep / f"{name}-{seed}-{split}.tsv")
                done.append(result)
                with out.open("a") as f:
                    f.write(json.dumps(result) + "\n")
                scores = f"val F1 {result['val_f1']:.4f}, held-out F1 {result['holdout_f1']:.4f}"
                print(f"levers: {name} seed {seed}: {scores}", file=sys.stderr, flush=True)
    print(report(done, list(todo)))


if __name__ == "__main__":
    main()
