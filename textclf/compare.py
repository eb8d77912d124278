"""`textclf compare`: experiments grouped by their params except the seed; each group's mean and spread
of validation accuracy, F1 and loss over its seeds; and, group against group, a paired bootstrap over
the validation rows (and the seeds) that says how likely the F1 difference is real rather than noise.

MRPC validation has 408 rows: two single runs a point of F1 apart tell nothing. Each experiment's
validation predictions (data/predictions/validation.tsv, a DVC output) make the comparison paired:
every bootstrap draw scores all experiments on the same resampled rows.
"""

import csv
import io
import json
import math
import subprocess
from collections import Counter
from dataclasses import dataclass

import numpy as np

from textclf.errors import InputError

PREDICTIONS = "data/predictions/validation.tsv"
IGNORED = {"seed"}  # params that do not define a group


@dataclass
class Experiment:
    name: str
    rev: str
    params: dict
    metrics: dict
    predicted: np.ndarray | None = None  # label id per validation row
    labels: np.ndarray | None = None
    num_labels: int = 2


def experiments(names: list[str] | None = None, cwd: str = ".") -> list[Experiment]:
    """The experiments `dvc exp show` lists (of the current commit), or just the named ones."""
    out = subprocess.run(["dvc", "exp", "show", "--json"], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise InputError(f"dvc exp show failed: {out.stderr.strip()[-300:]}")
    return from_show(json.loads(out.stdout or "[]"), names)


def from_show(commits: list[dict], names: list[str] | None = None) -> list[Experiment]:
    """Experiments from `dvc exp show --json`. The commit itself (its committed results, the baseline)
    joins only when named: HEAD, its branch or its sha."""
    entries = []  # (name, dvc exp show entry)
    for commit in commits:
        baseline = commit["rev"] != "workspace"
        aliases = {"HEAD", commit.get("name")} if baseline else set()
        entries += [
            (n, commit) for n in sorted(set(names or [])) if baseline and (n in aliases or by_sha(n, commit["rev"]))
        ]
        for exp in commit.get("experiments") or []:
            rev = exp["revs"][0]
            name = rev.get("name") or exp.get("name") or rev["rev"][:7]
            if not names or name in names or any(by_sha(n, rev["rev"]) for n in names):
                entries.append((name, rev))
    found = [e for e in (experiment(name, entry) for name, entry in entries) if e is not None]
    for n in names or []:
        matched = sorted({e.name for e in found if by_sha(n, e.rev)})
        if len(matched) > 1:
            raise InputError(f"{n} is the start of the sha of {', '.join(matched)}: give more of it, or a name")
    if names:
        shas = {n for n in names if any(by_sha(n, e.rev) for e in found)}
        missing = sorted(set(names) - {e.name for e in found} - shas)
        if missing:
            raise InputError(
                f"no finished experiment named {', '.join(missing)} on this commit (nor its committed results: "
                "HEAD); see: dvc exp show (experiments run on an earlier commit: dvc exp show -A)"
            )
    if not found:
        raise InputError(
            "no finished experiments on this commit to compare (those run on an earlier commit: dvc exp show "
            "-A); queue some: dvc exp run --queue -S seed=1,2,3"
        )
    if names:  # in the order named: the first named leads where groups have as many seeds
        found.sort(key=lambda e: min(i for i, n in enumerate(names) if n == e.name or by_sha(n, e.rev)))
    return found


def by_sha(name: str, sha: str) -> bool:
    """Whether `name` is the sha, or its start as dvc exp show prints it (7 characters) or longer."""
    return len(name) >= 7 and sha.startswith(name)


def experiment(name: str, rev: dict) -> Experiment | None:
    """One entry of `dvc exp show --json` (an experiment or a commit), if it has params and metrics."""
    data = rev.get("data") or {}
    params = (data.get("params") or {}).get("params.yaml", {}).get("data")
    metrics = (data.get("metrics") or {}).get("metrics/eval.json", {}).get("data")
    return Experiment(name, rev["rev"], params, metrics) if params and metrics else None


def load_predictions(exp: Experiment, cwd: str = ".") -> None:
    """Fill in the experiment's validation predictions from its DVC-cached predictions file."""
    import dvc.api

    try:
        text = dvc.api.read(PREDICTIONS, repo=cwd, rev=exp.rev)
    except Exception as e:
        raise InputError(f"{exp.name}: its {PREDICTIONS} is not in the DVC cache here ({type(e).__name__})") from None
    rows = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
    names = [c.removeprefix("prob_") for c in rows[0] if c.startswith("prob_")]
    exp.num_labels = len(names)
    exp.predicted = np.array([int(r["prediction_id"]) for r in rows])
    exp.labels = np.array([names.index(r["label"]) for r in rows])


def group_key(params: dict) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in params.items() if k not in IGNORED))


def groups(found: list[Experiment]) -> dict[str, list[Experiment]]:
    """Experiments by their params except the seed, each group named by the params that tell it apart."""
    by_key: dict[tuple, list[Experiment]] = {}
    for exp in found:
        by_key.setdefault(group_key(exp.params), []).append(exp)
    keys = list(by_key)
    differing = sorted({k for key in keys for k, v in key if any(dict(other).get(k) != v for other in keys)})
    for digits in (3, 4, 6, 17):  # floats as short as they can be while every group keeps its own name
        named = {}
        for key, members in by_key.items():
            values = dict(key)
            shown = [f"{k}={short(json.loads(values[k]), digits)}" for k in differing if k in values]
            named[", ".join(shown) or "all"] = members
        if len(named) == len(by_key):
            break
    return named


def one_per_seed(named: dict[str, list[Experiment]]) -> tuple[dict[str, list[Experiment]], list[str]]:
    """Each group with one experiment per seed (the first listed), and the names of the others: a rerun
    of the same params and seed is not another seed, and counting it would narrow the spread and make
    the bootstrap surer than the data allow."""
    kept, repeats = {}, []
    for label, members in named.items():
        by_seed: dict[str, Experiment] = {}
        for e in members:
            seed = json.dumps(e.params.get("seed"))
            if seed in by_seed:
                repeats.append(e.name)
            else:
                by_seed[seed] = e
        kept[label] = list(by_seed.values())
    return kept, repeats


def short(value, digits: int):
    """A float to `digits` significant digits (a search's lr=0.00027188506067054577: 0.000272)."""
    return f"{value:.{digits}g}" if isinstance(value, float) else value


def f1_scores(predicted: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
    """F1 per row of `predicted`/`labels` (2-D: draws x rows): of class 1 for a binary task (GLUE's F1),
    macro over classes otherwise, as metrics.py reports it."""
    classes = [1] if num_labels == 2 else range(num_labels)
    per_class, present = [], []
    for c in classes:
        tp = np.sum((predicted == c) & (labels == c), axis=-1)
        fp = np.sum((predicted == c) & (labels != c), axis=-1)
        fn = np.sum((predicted != c) & (labels == c), axis=-1)
        per_class.append(np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0))
        present.append(2 * tp + fp + fn > 0)
    if num_labels == 2:
        return per_class[0]
    # macro: over the classes in a draw's labels or predictions, as metrics.py averages
    return np.sum(per_class, axis=0) / np.maximum(np.sum(present, axis=0), 1)


def paired_bootstrap(a: list[Experiment], b: list[Experiment], draws: int = 2000, seed: int = 0) -> dict:
    """Mean F1 of group a minus group b, over draws that resample the validation rows (the same rows for
    every experiment) and, within each group, its seeds. Returns the observed difference, a 95% interval,
    and the probability that a's F1 is higher."""
    n = len(a[0].labels)
    if any(len(e.labels) != n or not np.array_equal(e.labels, a[0].labels) for e in a + b):
        raise InputError("the experiments were scored on different validation rows: compare runs on the same data")
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n, size=(draws, n))
    labels = a[0].labels[rows]
    k = a[0].num_labels

    def group_means(group: list[Experiment]) -> np.ndarray:
        scores = np.stack([f1_scores(e.predicted[rows], labels, k) for e in group])  # experiments x draws
        picks = rng.integers(0, len(group), size=(draws, len(group)))  # resample the seeds too
        return scores[picks, np.arange(draws)[:, None]].mean(axis=1)

    diff = group_means(a) - group_means(b)
    observed = float(
        np.mean([f1_scores(e.predicted, e.labels, k) for e in a])
        - np.mean([f1_scores(e.predicted, e.labels, k) for e in b])
    )
    return {
        "difference": observed,
        "interval": (float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))),
        "p_better": float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0)),
    }


def spread(values: list[float]) -> str:
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return f"{mean:.4f} ± {sd:.4f}" if len(values) > 1 else f"{mean:.4f}"


def report(named: dict[str, list[Experiment]], bootstrap: bool = True) -> str:
    lines = ["| group | seeds | accuracy | f1 | loss |", "|---|---:|---:|---:|---:|"]
    for label, members in named.items():
        cols = [spread([e.metrics[k] for e in members]) for k in ("accuracy", "f1", "loss")]
        lines.append(f"| {label} | {len(members)} | " + " | ".join(cols) + " |")
    labels = list(named)
    if bootstrap and len(labels) > 1:
        lines.append("")
        first = labels[0]
        for other in labels[1:]:
            result = paired_bootstrap(named[other], named[first])
            low, high = result["interval"]
            # Two-sided, like the 95% interval: "real" when the interval leaves zero out.
            verdict = "likely real" if max(result["p_better"], 1 - result["p_better"]) >= 0.975 else "could be noise"
            if min(len(named[other]), len(named[first])) < 2:  # no seeds to resample: rows only
                verdict = (
                    "not known from one seed (the interval leaves out the seed-to-seed spread, often several "
                    "points): run more seeds, e.g. dvc exp run --queue -S seed=1,2,3"
                )
            lines.append(
                f"{other} vs {first}: F1 {100 * result['difference']:+.2f} points (95% interval "
                f"{100 * low:+.2f} to {100 * high:+.2f}); P({other} better) = {result['p_better']:.2f}: {verdict}"
            )
    return "\n".join(lines)


def same_rows(found: list[Experiment]) -> tuple[list[Experiment], list[Experiment]]:
    """The experiments scored on the validation rows most of them share (the same data), and the rest:
    a paired comparison needs the same rows."""

    def key(e: Experiment) -> bytes:
        return e.labels.tobytes() + bytes([e.num_labels])

    counts = Counter(map(key, found)).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:  # no data most of them share
        by_rows = [f"{e.name} ({len(e.labels)} rows)" for e in found]
        raise InputError(
            f"{', '.join(by_rows)}: scored on different validation rows (other data), none shared by most of "
            "them; compare experiments of one dataset"
        )
    common = counts[0][0]
    return [e for e in found if key(e) == common], [e for e in found if key(e) != common]


def compare(names: list[str] | None = None, cwd: str = ".") -> str:
    found = experiments(names, cwd)
    for exp in found:
        load_predictions(exp, cwd)
    kept, other = same_rows(found)
    named, repeats = one_per_seed(groups(kept))
    first = max(named, key=lambda label: len(named[label]))  # the group with most seeds is the reference
    text = report({first: named[first]} | {k: v for k, v in named.items() if k != first})
    if other:
        text += f"\n\nLeft out, scored on other validation rows (other data): {', '.join(e.name for e in other)}"
    if repeats:
        text += f"\n\nLeft out, a rerun of a seed its group already has (same params and seed): {', '.join(repeats)}"
    return text
