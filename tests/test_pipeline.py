"""End-to-end: the real dvc CLI in a temporary git repo, on tiny data with a tiny random BERT."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TINY_TRAIN, make_repo, run, write_mrpc
from textclf.diagnose import baseline_margin

STAGES = {"download", "tokenize", "train", "evaluate"}
ALWAYS = {"source"}  # always_changed: hashes a local dataset folder on every repro, in well under a second
SECRET = "hf_NotARealTokenButSecret123"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NAMES = ["not_equivalent", "equivalent"]


def stages_ran(output: str) -> set[str]:
    """The stages that did work: the always-run source stage must run every time and is left out."""
    ran = set(re.findall(r"Running stage '(\w+)'", output))
    assert ALWAYS <= ran, output
    return ran - ALWAYS


@pytest.fixture(scope="module")
def repo(tmp_path_factory, tiny_model) -> Path:
    """A repo whose baseline pipeline ran once and was committed; tests below run experiments on it."""
    base = tmp_path_factory.mktemp("pipeline")
    data = write_mrpc(base / "mrpc")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_TOKEN", SECRET)  # must never reach params, metrics, logs or DVC-tracked files
        repo = make_repo(base / "repo", {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN})
        out = run(["dvc", "repro"], repo)
    assert stages_ran(out.stdout) == STAGES
    assert SECRET not in out.stdout + out.stderr
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline run"], repo)
    return repo


def test_outputs_of_a_full_run(repo):
    source = json.loads((repo / "data/source.json").read_text())
    assert source["splits"] == {"train": 48, "validation": 16, "test": 12}
    assert source["labeled"]["test"] is False
    assert "model.safetensors" in source["model"]["files_sha256"]
    assert (repo / "data/model/model.safetensors").exists()
    assert not list((repo / "data/model").glob("*.bin"))

    diagnosis = json.loads((repo / "metrics/diagnosis.json").read_text())
    flags = {"overfitting", "underfitting", "unstable", "collapsed", "near_baseline", "small_data"}
    assert set(diagnosis) == {"verdict", *flags}
    metrics = json.loads((repo / "metrics/eval.json").read_text())
    # The majority-baseline check saw this run's own validation labels and accuracy.
    labels = [line.split("\t")[-1] for line in (repo / "data/predictions/validation.tsv").read_text().splitlines()[1:]]
    majority = max(labels.count(name) for name in set(labels)) / len(labels)
    learned = metrics["accuracy"] >= majority + baseline_margin(majority, len(labels))
    assert diagnosis["near_baseline"] == (not learned and not diagnosis["collapsed"])
    assert set(metrics) == {"accuracy", "f1", "precision", "recall", "loss"}
    assert all(0 <= metrics[k] <= 1 for k in ("accuracy", "f1", "precision", "recall"))
    assert json.loads((repo / "metrics/test.json").read_text()) == {"rows": 12}

    train_curve = (repo / "metrics/curves/train.tsv").read_text().splitlines()
    assert train_curve[0] == "step\tepoch\ttrain_loss\tlr" and len(train_curve) > 2
    eval_curve = (repo / "metrics/curves/eval.tsv").read_text().splitlines()
    assert eval_curve[0] == "step\tepoch\tval_loss\tval_accuracy\tval_f1\ttrain_sample_loss\ttrain_sample_accuracy"
    assert [line.split("\t")[0] for line in eval_curve[1:]] == ["2", "4", "6", "8", "10", "12"]  # a tenth of 12 steps
    assert json.loads((repo / "metrics/progress.json").read_text())["done"] is True
    predictions = (repo / "metrics/test_predictions.tsv").read_text().splitlines()
    assert predictions[0] == "index\tprediction" and len(predictions) == 13
    confusion = (repo / "metrics/confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 17
    assert set(confusion[1:]) <= {f"{a},{b}" for a in NAMES for b in NAMES}
    per_class = json.loads((repo / "metrics/per_class.json").read_text())
    assert set(per_class) == {"validation"} and set(per_class["validation"]) == set(NAMES)
    assert sum(c["support"] for c in per_class["validation"].values()) == 16
    rows = (repo / "data/predictions/validation.tsv").read_text().splitlines()
    assert rows[0].split("\t") == [
        "idx",
        "prediction",
        "prediction_id",
        *(f"prob_{n}" for n in NAMES),
        "label",
    ]
    assert len(rows) == 17 and (repo / "data/predictions/test.tsv").exists()
    task = json.loads((repo / "data/model/textclf.json").read_text())
    assert task["text_columns"] == ["sentence1", "sentence2"] and task["label_names"] == NAMES
    assert task["data_sha256"] == json.loads((repo / "data/source.json").read_text())["content_sha256"]

    leaked = [p for p in repo.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []


def test_nothing_changed_nothing_runs(repo):
    assert stages_ran(run(["dvc", "repro"], repo).stdout) == set()


def test_param_changes_rerun_only_what_they_touch(repo):
    # A train-only param reruns train and evaluate, with the value DVC writes as the string 3e-05.
    out = run(["dvc", "exp", "run", "-n", "lr-3e-5", "-S", "lr=3e-5"], repo)
    assert stages_ran(out.stdout) == {"train", "evaluate"}
    assert "3e-05" in (repo / "params.yaml").read_text()

    diff = json.loads(run(["dvc", "metrics", "diff", "--all", "--json"], repo).stdout)
    assert {"accuracy", "f1", "loss"} <= set(diff["metrics/eval.json"])
    params_diff = json.loads(run(["dvc", "params", "diff", "--json"], repo).stdout)
    assert set(params_diff["params.yaml"]) == {"lr"}

    # max_length reruns tokenize and what follows; download stays cached.
    out = run(["dvc", "exp", "run", "-n", "len-24", "-S", "max_length=24"], repo)
    assert stages_ran(out.stdout) == {"tokenize", "train", "evaluate"}
    run(["git", "checkout", "--", "params.yaml"], repo)


def plots_page(repo: Path, out: Path) -> Path:
    exps = [e for e in ("lr-3e-5", "len-24") if e in run(["dvc", "exp", "list", "--name-only"], repo).stdout]
    run(["dvc", "plots", "diff", "-o", str(out), "HEAD", *exps], repo)
    return out / "index.html"


def test_plots_diff_page_has_the_curated_plots(repo, tmp_path):
    html = plots_page(repo, tmp_path / "plots").read_text()
    for title in ("Loss (train", "Accuracy, train sample and validation", "Validation F1", "Confusion matrix"):
        assert title in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_plots_page_renders_in_a_headless_browser(repo, tmp_path):
    template = ROOT / ".dvc" / "offline_plots.html"
    if not template.exists():
        pytest.skip("no offline plot template: run ./setup.sh (needs npm)")
    shutil.copy(template, repo / ".dvc" / "offline_plots.html")
    run(["dvc", "config", "--local", "plots.html_template", "offline_plots.html"], repo)
    page = plots_page(repo, tmp_path / "plots")
    browser = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(browser, capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="render-report">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    report = json.loads(found.group(1))
    assert {"#loss", "#accuracy", "#validation_f1", "#confusion"} <= set(report), report
    for chart, drawn in report.items():
        assert "error" not in drawn and drawn["data_marks"] > 0, (chart, drawn)
    assert "accuracy" in report["#accuracy"]["axis_titles"] and "y" not in report["#accuracy"]["axis_titles"]
    assert "optimizer step" in report["#accuracy"]["axis_titles"]
    confusion = report["#confusion"]
    assert confusion["text_marks"] > 0, confusion  # the counts are drawn, no checkbox to tick
    assert confusion["width"] < 1000, confusion  # three revisions wrap two a row instead of running off


def test_another_directory_fetches_the_model_by_its_registry_name(repo, tmp_path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "shared", str(remote)], repo)
    run(["dvc", "push"], repo)
    run(["git", "commit", "-qam", "a shared DVC remote"], repo)
    run(["gto", "register", "text-classifier", "--version", "v1.0.0"], repo)  # a git tag: text-classifier@v1.0.0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run(["dvc", "artifacts", "get", str(repo), "text-classifier", "-o", "model"], elsewhere)
    fetched = {p.name for p in (elsewhere / "model").iterdir()}
    assert {"model.safetensors", "config.json", "textclf.json", "README.md"} <= fetched
    same = (elsewhere / "model/model.safetensors").read_bytes() == (repo / "data/model/model.safetensors").read_bytes()
    assert same


def test_bad_param_fails_before_any_work(tmp_path, mrpc_dir, tiny_model):
    repo = make_repo(tmp_path / "repo", {"dataset": str(mrpc_dir), "model": str(tiny_model), **TINY_TRAIN})
    values = yaml.safe_load((repo / "params.yaml").read_text())
    values["lerning_rate"] = 1e-4
    (repo / "params.yaml").write_text(yaml.safe_dump(values))
    out = run(["dvc", "repro"], repo, check=False)
    assert out.returncode != 0
    assert "unknown key 'lerning_rate'" in out.stdout + out.stderr
    assert not (repo / "data/raw").exists()


def test_editing_a_local_dataset_file_reruns_download(tmp_path, tiny_model):
    data = write_mrpc(tmp_path / "mrpc")
    repo = make_repo(tmp_path / "repo", {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN})
    assert stages_ran(run(["dvc", "repro", "tokenize"], repo).stdout) == {"download", "tokenize"}
    assert stages_ran(run(["dvc", "repro", "tokenize"], repo).stdout) == set()  # unchanged: cached
    source = json.loads((repo / "data/source.json").read_text())
    assert source["files"] == {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}

    # A file that is not a split: download reruns and reads the same rows, so nothing after it reruns
    # (datasets gave the same rows a fresh fingerprint per save: data/raw changed, and so all after it).
    def outputs() -> dict:
        stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
        return {s: [(o["path"], o["md5"]) for o in stages[s]["outs"]] for s in ("download", "tokenize")}

    before = outputs()
    (data / "NOTES.txt").write_text("where the data came from\n")
    assert stages_ran(run(["dvc", "repro", "tokenize"], repo).stdout) == {"download"}
    forced = run(["dvc", "repro", "-f", "-s", "tokenize"], repo).stdout  # this stage alone, run again
    assert set(re.findall(r"Running stage '(\w+)'", forced)) == {"tokenize"}
    assert outputs() == before  # the same rows, tokenized again: the same outputs

    dev = data / "dev.tsv"
    dev.write_text(dev.read_text() + "1\t9001\t9002\tA new pair .\tA fresh pair .\n")
    assert stages_ran(run(["dvc", "repro", "download"], repo).stdout) == {"download"}
    assert json.loads((repo / "data/source.json").read_text())["splits"]["validation"] == 17


def write_sms(folder: Path, n_train: int = 60, n_test: int = 10) -> Path:
    """Single texts under the user's own column names, string labels, and no validation file."""
    import random

    rng = random.Random(0)
    spam = "win free prize cash claim now urgent offer".split()
    ham = "see you later lunch call home meeting tomorrow".split()
    folder.mkdir(parents=True)
    rows = ["category,message"]
    for i in range(n_train):
        label = "spam" if i % 3 == 0 else "ham"
        rows.append(f"{label},{' '.join(rng.sample(spam if label == 'spam' else ham, 4))}")
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    test = ["message", *(" ".join(rng.sample(spam + ham, 4)) for _ in range(n_test))]
    (folder / "test.csv").write_text("\n".join(test) + "\n")
    return folder


def test_single_text_dataset_with_string_labels(tmp_path, tiny_model):
    data = write_sms(tmp_path / "sms")
    repo = make_repo(tmp_path / "repo", {"dataset": str(data), "model": str(tiny_model), **TINY_TRAIN})
    columns = ["-S", "text_columns=[message]", "-S", "label_column=category"]  # as a user types them
    out = run(["dvc", "exp", "run", "-n", "sms", *columns], repo)
    assert stages_ran(out.stdout) == STAGES
    source = json.loads((repo / "data/source.json").read_text())
    assert source["label_names"] == ["ham", "spam"] and source["splits"] == {
        "train": 54,
        "validation": 6,
        "test": 10,
    }
    assert source["label_counts"]["validation"] == {"ham": 4, "spam": 2}  # stratified: 10% of 40 and of 20
    assert set(json.loads((repo / "metrics/eval.json").read_text())) == {
        "accuracy",
        "f1",
        "precision",
        "recall",
        "loss",
    }
    assert json.loads((repo / "metrics/test.json").read_text()) == {"rows": 10}
    config = json.loads((repo / "data/model/config.json").read_text())
    assert config["id2label"] == {"0": "ham", "1": "spam"} and config["label2id"] == {"ham": 0, "spam": 1}
    predictions = (repo / "data/predictions/test.tsv").read_text().splitlines()
    assert predictions[0] == "idx\tprediction\tprediction_id\tprob_ham\tprob_spam" and len(predictions) == 11
    assert {row.split("\t")[1] for row in predictions[1:]} <= {"ham", "spam"}

    out = run(["dvc", "exp", "run", "-n", "sms-lr", "-S", "lr=3e-3"], repo)
    assert stages_ran(out.stdout) == {"train", "evaluate"}
    out = run(["dvc", "exp", "run", "-n", "sms-balanced", "-S", "class_weights=balanced"], repo)
    assert stages_ran(out.stdout) == {"train", "evaluate"}
    assert "train: class weights {'ham': 0.75, 'spam': 1.5}" in out.stdout  # 54 rows: 36 ham, 18 spam
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    names = {e["name"] for c in shown for e in c.get("experiments") or []}
    assert {"sms", "sms-lr", "sms-balanced"} <= names
