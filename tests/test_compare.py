"""textclf compare's statistics on hand-made predictions: groups by params except the seed, and a paired
bootstrap that finds no difference between identical predictions and a sure one between very
different ones."""

import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tests.conftest import tool_env
from textclf.compare import Experiment, f1_scores, groups, one_per_seed, paired_bootstrap, report
from textclf.metrics import classification_metrics

LABELS = np.array([0, 1] * 200)


def exp(name: str, lr: float, seed: int, accuracy: float, rng: np.random.Generator) -> Experiment:
    """An experiment whose predictions are right on about `accuracy` of the rows."""
    wrong = rng.random(len(LABELS)) > accuracy
    predicted = np.where(wrong, 1 - LABELS, LABELS)
    metrics = {"accuracy": float(np.mean(predicted == LABELS)), "f1": 0.0, "loss": 0.5}
    metrics["f1"] = float(f1_score(LABELS, predicted))
    return Experiment(name, name, {"lr": lr, "seed": seed, "epochs": 3}, metrics, predicted, LABELS, 2)


def test_f1_matches_sklearn_binary_and_macro():
    rng = np.random.default_rng(1)
    predicted, labels = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    assert f1_scores(predicted, labels, 3) == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert f1_scores(predicted % 2, labels % 2, 2) == pytest.approx(f1_score(labels % 2, predicted % 2))
    # classes 36-39 occur in neither: the macro mean skips them, as eval.json's does (metrics.py)
    refs, preds = np.arange(36), np.zeros(36, dtype=int)
    assert f1_scores(preds[None], refs[None], 40)[0] == pytest.approx(classification_metrics(preds, refs, 40)["f1"])


def test_groups_are_params_except_the_seed_named_by_what_differs():
    rng = np.random.default_rng(0)
    found = [exp(f"a{s}", 1e-4, s, 0.8, rng) for s in (1, 2)] + [exp(f"b{s}", 5e-5, s, 0.8, rng) for s in (1, 2, 3)]
    named = groups(found)
    assert {k: len(v) for k, v in named.items()} == {"lr=0.0001": 2, "lr=5e-05": 3}


def test_a_rerun_of_the_same_seed_counts_once():
    # Two runs of lr 1e-4 with seed 1 are one seed: counted twice they would halve the spread's honesty.
    rng = np.random.default_rng(0)
    found = [exp("a1", 1e-4, 1, 0.8, rng), exp("a1-again", 1e-4, 1, 0.8, rng), exp("a2", 1e-4, 2, 0.8, rng)]
    found += [exp("b1", 5e-5, 1, 0.8, rng)]
    named, repeats = one_per_seed(groups(found))
    assert {k: [e.name for e in v] for k, v in named.items()} == {"lr=0.0001": ["a1", "a2"], "lr=5e-05": ["b1"]}
    assert repeats == ["a1-again"]


def test_identical_predictions_show_no_difference():
    rng = np.random.default_rng(0)
    a = [exp(f"a{s}", 1e-4, s, 0.8, rng) for s in (1, 2, 3)]
    b = [Experiment(e.name + "'", e.rev, {**e.params, "lr": 5e-5}, e.metrics, e.predicted, e.labels, 2) for e in a]
    result = paired_bootstrap(a, b)
    assert result["difference"] == 0 and result["p_better"] == pytest.approx(0.5, abs=0.05)


def test_a_large_true_difference_is_near_certain():
    rng = np.random.default_rng(0)
    good = [exp(f"g{s}", 1e-4, s, 0.9, rng) for s in (1, 2, 3)]
    bad = [exp(f"b{s}", 5e-5, s, 0.6, rng) for s in (1, 2, 3)]
    result = paired_bootstrap(good, bad)
    assert result["p_better"] > 0.999 and result["interval"][0] > 0.1


def test_a_difference_of_two_rows_is_called_noise():
    rng = np.random.default_rng(3)
    a = [exp(f"a{s}", 1e-4, s, 0.80, rng) for s in (1, 2)]
    b = []
    for e in a:
        predicted = e.predicted.copy()
        predicted[np.flatnonzero(predicted == e.labels)[:2]] ^= 1  # two more rows wrong
        b.append(Experiment(e.name + "'", e.rev, {**e.params, "lr": 5e-5}, e.metrics, predicted, e.labels, 2))
    text = report(groups(a + b))
    assert "| lr=0.0001 | 2 |" in text and "could be noise" in text, text


def test_one_seed_a_side_is_never_called_real():
    """With one seed a group, the bootstrap resamples rows only: the seed-to-seed spread (several points
    on small data) is left out, and a single lucky seed was called "likely real"."""
    rng = np.random.default_rng(0)
    text = report(groups([exp("good", 1e-4, 1, 0.9, rng), exp("bad", 5e-5, 1, 0.6, rng)]))
    assert "not known from one seed" in text and "likely real" not in text, text


def test_group_names_round_floats_but_never_merge_groups():
    rng = np.random.default_rng(0)
    found = [exp("a", 0.00027188506067054577, 1, 0.8, rng), exp("b", 0.00027211, 1, 0.8, rng)]
    found.append(exp("c", 5.421486078581555e-05, 1, 0.8, rng))
    assert list(groups(found)) == ["lr=0.0002719", "lr=0.0002721", "lr=5.421e-05"]  # 3 digits would merge a, b
    assert list(groups(found[1:])) == ["lr=0.000272", "lr=5.42e-05"]


def test_no_experiments_on_this_commit_says_where_older_ones_are(tmp_path):
    env = tool_env()
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True)
    out = subprocess.run(
        [sys.executable, "-m", "textclf.cli", "compare"],
        cwd=tmp_path,
        env=env | {"PATH": os.defpath},  # the environment not activated: its dvc is found beside its python
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == (
        "error: no finished experiments on this commit to compare (those run on an earlier commit: dvc exp show -A); "
        "queue some: dvc exp run --queue -S seed=1,2,3"
    )


def test_the_committed_baseline_joins_only_when_named():
    """`textclf compare exp-a HEAD`: the commit's own results (dvc exp show's commit row) are a member too,
    by HEAD, its branch or its sha; without a name, only the commit's experiments are compared."""
    from textclf.compare import from_show
    from textclf.errors import InputError

    def entry(rev: str, lr: float, f1: float) -> dict:
        params = {"params.yaml": {"data": {"lr": lr, "seed": 42}}}
        return {"rev": rev, "data": {"params": params, "metrics": {"metrics/eval.json": {"data": {"f1": f1}}}}}

    sha = "7feb0c013aa0d0d8bb89b462cd73f03581a3a5c5"
    experiment = {"revs": [{**entry("e1" * 20, 3e-5, 0.86), "name": "exp-a"}]}
    commits = [
        {**entry("workspace", 1e-4, 0.8), "name": None, "experiments": None},
        {**entry(sha, 1e-4, 0.85), "name": "main", "experiments": [experiment]},
    ]
    assert [e.name for e in from_show(commits)] == ["exp-a"]
    for alias in ("HEAD", "main", sha[:7], sha[:9], sha):
        found = from_show(commits, ["exp-a", alias])  # in the order named
        assert [(e.name, e.rev, e.metrics["f1"]) for e in found] == [("exp-a", "e1" * 20, 0.86), (alias, sha, 0.85)]
        assert [e.name for e in from_show(commits, [alias, "exp-a"])] == [alias, "exp-a"]
    with pytest.raises(InputError, match="no finished experiment named nope on this commit"):
        from_show(commits, ["exp-a", "nope"])
    # an experiment by the sha dvc exp show prints beside its name (it was "no finished experiment named")
    assert [e.name for e in from_show(commits, ["e1e1e1e"])] == ["exp-a"]
    with pytest.raises(InputError, match="no finished experiment named e1e1"):
        from_show(commits, ["e1e1"])  # shorter than dvc prints: too likely to name several
    twin = {"revs": [{**entry("e1e1e1e" + "0" * 33, 3e-5, 0.8), "name": "exp-b"}]}
    commits[1]["experiments"].append(twin)
    with pytest.raises(InputError, match="e1e1e1e is the start of the sha of exp-a, exp-b: give more of it"):
        from_show(commits, ["e1e1e1e"])


def test_experiments_of_different_data_none_shared_by_most_are_refused():
    """Two experiments of two datasets: one was kept and shown as a one-row table named 'all'."""
    from textclf.compare import same_rows
    from textclf.errors import InputError

    rng = np.random.default_rng(0)
    a, b = exp("mrpc1", 1e-4, 1, 0.8, rng), exp("sms1", 1e-4, 1, 0.8, rng)
    b.labels = b.labels[:100]
    with pytest.raises(InputError, match=r"mrpc1 \(400 rows\), sms1 \(100 rows\): scored on different validation rows"):
        same_rows([a, b])
    kept, other = same_rows([a, exp("mrpc2", 1e-4, 2, 0.8, rng), b])  # most share one dataset: the others left out
    assert [e.name for e in kept] == ["mrpc1", "mrpc2"] and [e.name for e in other] == ["sms1"]
