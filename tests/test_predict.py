"""Using the trained model: `textclf predict` on files and stdin, its errors, the model card, the ONNX
export and its agreement with PyTorch. A tiny model trained by the real stages."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import copy_work, read, stage_run, tool_env

PAIRS = [
    ("The bank cut rates .", "Rates were cut by the bank ."),
    ('He said " yes .', "He agreed ."),
    ("Shares fell 5 % on Monday in a long and slow session of trading .", "Shares rose ."),
    ("It rained .", "Sales grew in Tokyo after a strong quarter for the company ."),
    ("A", "B"),
]
NAMES = ["not_equivalent", "equivalent"]


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory) -> Path:
    """A work folder after train and evaluate: data/model holds the model and its card."""
    work = copy_work(prepared, tmp_path_factory.mktemp("predict") / "work")
    stage_run(work, "train")
    stage_run(work, "evaluate")
    return work


def textclf(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "textclf.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=tool_env(), input=stdin, capture_output=True, text=True)


def pairs_csv(path: Path, rows=PAIRS, columns=("sentence1", "sentence2")) -> Path:
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_predict_a_csv_with_label_names_and_probabilities(trained, tmp_path):
    out = textclf("predict", str(pairs_csv(tmp_path / "new.csv")), "--output", str(tmp_path / "p.csv"), cwd=trained)
    assert out.returncode == 0, out.stderr
    assert "predict: 5 rows" in out.stderr and "rows/s" in out.stderr
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table.columns) == ["row", "prediction", "prediction_id", *(f"prob_{n}" for n in NAMES)]
    assert table["row"].tolist() == [0, 1, 2, 3, 4]
    assert set(table["prediction"]) <= set(NAMES)
    assert (table["prediction"] == [NAMES[i] for i in table["prediction_id"]]).all()
    assert ((table["prob_not_equivalent"] + table["prob_equivalent"] - 1).abs() < 1e-5).all()


def test_texts_spelled_na_or_none_are_texts(trained, tmp_path):
    """Training reads csv cells as written (textclf.tables); so does predict: NA and None are texts."""
    source = pairs_csv(tmp_path / "new.csv", rows=[("NA", "None"), ("007", "null")])
    out = textclf("predict", str(source), cwd=trained)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 3


def test_an_mrpc_layout_tsv_is_read_as_training_reads_it(trained, tmp_path):
    from tests.conftest import LABELED_HEADER, ROWS, tsv

    (tmp_path / "dev.tsv").write_text(tsv(LABELED_HEADER, ROWS, bom=True))
    out = textclf("predict", str(tmp_path / "dev.tsv"), cwd=trained)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == len(ROWS) + 1


def test_rows_come_back_in_input_order_whatever_the_batching(trained, tmp_path):
    source = pairs_csv(tmp_path / "new.csv")
    one = textclf("predict", str(source), "--batch-size", "1", "--output", str(tmp_path / "1.tsv"), cwd=trained)
    two = textclf("predict", str(source), "--batch-size", "2", "--output", str(tmp_path / "2.tsv"), cwd=trained)
    assert one.returncode == two.returncode == 0
    a, b = (pd.read_csv(tmp_path / f, sep="\t") for f in ("1.tsv", "2.tsv"))
    assert (a["prediction"] == b["prediction"]).all()
    assert (a["prob_equivalent"] - b["prob_equivalent"]).abs().max() < 0.02  # bf16: padding moves the last digits


def test_predict_reads_stdin_pairs_and_writes_tsv(trained):
    lines = "".join(f"{a}\t{b}\n" for a, b in PAIRS[:3])
    out = textclf("predict", "-", cwd=trained, stdin=lines)
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0].split("\t")[:3] == ["row", "prediction", "prediction_id"] and len(rows) == 4


@pytest.mark.parametrize("fmt", ["jsonl", "json", "parquet", "tsv"])
def test_other_formats_in_and_out(trained, tmp_path, fmt):
    frame = pd.DataFrame(PAIRS, columns=["sentence1", "sentence2"]).assign(extra=1)
    source = tmp_path / f"in.{fmt}"
    if fmt == "jsonl":
        frame.to_json(source, orient="records", lines=True)
    elif fmt == "json":
        frame.to_json(source, orient="records")
    elif fmt == "parquet":
        frame.to_parquet(source)
    else:
        frame.to_csv(source, sep="\t", index=False, quoting=3)
    target = tmp_path / f"out.{fmt}"
    out = textclf("predict", str(source), "--output", str(target), cwd=trained)
    assert out.returncode == 0, out.stderr
    if fmt == "parquet":
        result = pd.read_parquet(target)
    elif fmt in ("json", "jsonl"):
        result = pd.read_json(target, lines=fmt == "jsonl")
    else:
        result = pd.read_csv(target, sep="\t")
    assert len(result) == 5 and result["row"].tolist() == list(range(5))


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda d: pairs_csv(d / "x.csv", columns=("a", "b")),
            "no column 'sentence1', which the model reads",
        ),
        (lambda d: (d / "x.csv").write_text("") and d / "x.csv" or d / "x.csv", "is empty"),
        (lambda d: pairs_csv(d / "x.csv", rows=[*PAIRS[:2], ("", "b")]), "x.csv: row 3 has an empty 'sentence1'"),
        (lambda d: pairs_csv(d / "x.csv", rows=[("a", "\u200b")]), "x.csv: row 1 has an empty 'sentence2'"),
        (lambda d: d / "missing.csv", "does not exist"),
        (lambda d: d, "is not a file (give a csv, tsv, json, jsonl or parquet file; stdin: -)"),
        (lambda d: (d / "x").write_text("a,b\n") and d / "x", "unknown format ''; use one of .csv"),
        (
            lambda d: (
                (d / "x.jsonl").write_text('{"sentence1": "a", "sentence2": "b"}\n{"sentence1": "c"}\n')
                and d / "x.jsonl"
            ),
            "x.jsonl: row 2 has no 'sentence2' field",
        ),
        (  # a number where a text should be: it was a traceback
            lambda d: (d / "x.jsonl").write_text('{"sentence1": "a", "sentence2": 5}\n') and d / "x.jsonl",
            "row 1: 'sentence2' holds 5 (int), not a text",
        ),
        (
            lambda d: (d / "x.tsv").write_text("sentence1\tsentence2\na\tb\nc\td\te\n") and d / "x.tsv",
            "line 3 has 3 fields where the header has 2",
        ),
        # JSON that is not rows of objects, and bytes that are not UTF-8: each was a traceback
        (
            lambda d: put(d / "x.jsonl", b'{"sentence1": "a", "sentence2": "b"}\n{"sentence1": "c\n'),
            "x.jsonl: line 2 is not valid JSON",
        ),
        (
            lambda d: put(d / "x.json", b'{\n "sentence1": "a",\n "sentence2": "b"\n}\n'),
            "line 1 is not valid JSON (Expecting property name",
        ),
        (
            lambda d: put(d / "x.jsonl", b'{"sentence1": "caf\xe9", "sentence2": "b"}\n'),
            "x.jsonl: line 1 is not UTF-8 (byte 0xe9)",
        ),
        (lambda d: put(d / "x.json", b"[1, 2]"), "x.json: row 1 is 1, not an object"),
        (lambda d: put(d / "x.json", b'["a", "b"]'), "x.json: row 1 is 'a', not an object"),
        (lambda d: put(d / "x.json", b'[{"sentence1": "a",'), "x.json is not valid JSON"),
        # a quote that never closes: the rows after it had merged into one, with no error
        (
            lambda d: put(d / "x.csv", b'sentence1,sentence2\na,b\nc,"d\ne,f\ng,h\n'),
            "x.csv: line 3 opens a quoted text",
        ),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_output(trained, tmp_path, make, message):
    source = make(tmp_path)
    out = textclf("predict", str(source), "--output", str(tmp_path / "p.csv"), cwd=trained)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")
    assert not list(tmp_path.glob("*p.csv*"))


@pytest.mark.parametrize(
    "options, message",
    [
        (["--batch-size", "0"], "--batch-size 0: give at least 1"),
        (["--output", "no/such/folder/p.csv"], "which does not exist: give a file in an existing folder"),
        (["--output", "{tmp}/out.csv"], "out.csv is a folder"),
        (["--text-columns", "sentence1"], "reads sentence pairs (2 text column(s), trained on"),
    ],
)
def test_bad_options_are_one_line(trained, tmp_path, options, message):
    (tmp_path / "out.csv").mkdir()
    options = [o.format(tmp=tmp_path) for o in options]
    out = textclf("predict", str(pairs_csv(tmp_path / "x.csv")), *options, cwd=trained)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")


def test_what_users_write_that_was_misread(trained, tmp_path):
    """INPUT after --text-columns (the order --help showed) was taken as a column; upper-case suffixes
    were unknown formats; a parquet file named .csv got a binary dump as an error; a --model that names
    a file in the folder said the folder does not exist."""
    source = pairs_csv(tmp_path / "X.CSV")
    out = textclf("predict", "--text-columns", "sentence1", "sentence2", str(source), "--output", "P.TSV", cwd=trained)
    assert out.returncode == 0 and len((trained / "P.TSV").read_text().splitlines()) == 1 + len(PAIRS), out.stderr
    out = textclf("predict", "--text-columns", "sentence1", "sentence2", cwd=trained)
    assert out.returncode == 1 and out.stderr.startswith("error: predict: INPUT is missing"), out.stderr
    pd.DataFrame(PAIRS, columns=["sentence1", "sentence2"]).to_parquet(tmp_path / "p.csv")
    out = textclf("predict", str(tmp_path / "p.csv"), cwd=trained)
    assert out.returncode == 1 and "is a parquet file: name it p.parquet" in out.stderr, out.stderr
    out = textclf("predict", str(source), "--model", "data/model/config.json", cwd=trained)
    assert "error: --model data/model/config.json is a file: give the folder that holds it (data/model)" in out.stderr


def test_a_bom_at_the_start_of_json_lines_is_read(trained, tmp_path):
    source = put(tmp_path / "x.jsonl", b'\xef\xbb\xbf{"sentence1": "a", "sentence2": "b"}\n')
    out = textclf("predict", str(source), cwd=trained)
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 2, out.stderr
    # an array after much white space (the first 64 bytes only were looked at: read as JSON lines)
    rows = b'[{"sentence1": "a", "sentence2": "b"},\n {"sentence1": "c", "sentence2": "d"}]'
    source = put(tmp_path / "y.json", b"\n" * 100 + rows)
    out = textclf("predict", str(source), cwd=trained)
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 3, out.stderr


def test_stdin_that_is_not_utf8_is_one_line(trained):
    cmd = [sys.executable, "-m", "textclf.cli", "predict", "-"]
    out = subprocess.run(cmd, cwd=trained, env=tool_env(), input=b"a\tb\ncaf\xe9\tx\n", capture_output=True)
    assert out.returncode == 1, out.stderr
    assert out.stderr.decode().startswith("error: stdin: line 2 is not UTF-8 (byte 0xe9): convert it on the way")


def test_the_input_file_is_never_the_output(trained, tmp_path):
    source = pairs_csv(tmp_path / "x.csv")
    before = source.read_bytes()
    out = textclf("predict", str(source), "--output", str(tmp_path / "." / "x.csv"), cwd=trained)
    assert out.returncode == 1 and "is the input file: give another file" in out.stderr, out.stderr
    assert source.read_bytes() == before
    config = trained / "data/model/config.json"
    before = config.read_bytes()  # nor a file of the model folder (it predicted, then broke the model)
    out = textclf("predict", str(source), "--output", str(config), cwd=trained)
    assert out.returncode == 1 and "is inside the model folder data/model: give a file outside" in out.stderr
    assert config.read_bytes() == before


@pytest.mark.parametrize(
    "keep, message",
    [
        (["config.json", "textclf.json", "model.safetensors"], "has no tokenizer vocabulary (none of tokenizer.json"),
        # tokenizer_config.json alone: transformers built a tokenizer of the 5 special tokens, with no error
        (["config.json", "textclf.json", "model.safetensors", "tokenizer_config.json"], "has no tokenizer vocabulary"),
        (
            ["config.json", "textclf.json", "tokenizer.json", "tokenizer_config.json"],
            "has no weights (model.safetensors)",
        ),
        (["textclf.json", "tokenizer.json"], "is not a model folder: it has no config.json"),
    ],
)
def test_a_model_folder_missing_files_is_refused(trained, tmp_path, keep, message):
    """Without its tokenizer files transformers built an empty vocabulary (every word [UNK]) and predict
    gave other probabilities with no error; without weights it was an OSError traceback."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in keep:
        shutil.copy(trained / "data/model" / name, folder / name)
    out = textclf("predict", str(pairs_csv(tmp_path / "x.csv")), "--model", str(folder), cwd=trained)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_model_folder_with_a_broken_config_is_one_line(trained, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(trained / "data/model", folder)
    (folder / "config.json").write_text("{")
    out = textclf("predict", str(pairs_csv(tmp_path / "x.csv")), "--model", str(folder), cwd=trained)
    assert out.returncode == 1 and "config.json is not valid JSON" in out.stderr, out.stderr


def test_sigterm_leaves_no_temporary_output(trained, tmp_path, monkeypatch):
    """kill (SIGTERM) mid-run ends predict as Ctrl-C does: exit 143, no hidden .out.csv.tmp left."""
    import os
    import signal

    from textclf import cli
    from textclf.predict import Predictor

    def killed(self, rows):
        os.kill(os.getpid(), signal.SIGTERM)
        return np.full((len(rows), 2), 0.5)

    monkeypatch.setattr(Predictor, "__call__", killed)
    monkeypatch.chdir(trained)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as stopped:
            cli.main(["predict", str(pairs_csv(tmp_path / "x.csv")), "--output", str(tmp_path / "out.csv")])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 143
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]


def test_stdin_ignores_blank_lines_at_the_end_but_not_between_texts(trained):
    lines = "".join(f"{a}\t{b}\n" for a, b in PAIRS[:2])
    out = textclf("predict", "-", cwd=trained, stdin=lines + "\n \n")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 3, out.stderr
    out = textclf("predict", "-", cwd=trained, stdin="\n" + lines)
    assert out.returncode == 1 and "stdin line 1 is blank" in out.stderr, out.stderr


def test_a_folder_that_is_not_a_classifier_is_refused(trained, tmp_path):
    out = textclf("predict", str(pairs_csv(tmp_path / "x.csv")), "--model", "data/pretrained", cwd=trained)
    assert out.returncode == 1 and "is not a text classifier" in out.stderr, out.stderr


def test_the_model_card_matches_the_metrics(trained):
    card = (trained / "data/model/README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["pipeline_tag"] == "text-classification" and meta["library_name"] == "transformers"
    results = {r["dataset"]["split"]: r for r in meta["model-index"][0]["results"]}
    validation = {m["type"]: m["value"] for m in results["validation"]["metrics"]}
    scores = read(trained, "metrics/eval.json")
    assert validation == {k: round(scores[k], 4) for k in ("accuracy", "f1", "precision", "recall")}
    assert "test" not in results  # the test split has no labels
    body = card.split("---", 2)[2]
    assert f"| validation | {scores['accuracy']:.4f} | {scores['f1']:.4f} |" in body
    diagnosis = read(trained, "metrics/diagnosis.json")
    assert f"Learning-curve diagnosis: **{diagnosis['verdict']}**" in body
    evidence = read(trained, "metrics/diagnosis_details.json")["evidence"]
    for k, v in evidence.items():  # a finding that is not flagged reads as a note, not as a problem
        assert (f"- {k}: {v}" if diagnosis[k] else f"- note ({k}, not flagged): {v}") in body
    assert all(f"| {i} | {n} |" in body for i, n in enumerate(NAMES))
    source = json.loads((trained / "data/source.json").read_text())
    assert source["content_sha256"] in body and "textclf predict" in body
    # The folder is the trained model plus the card, and describes itself for predict.
    files = {p.name for p in (trained / "data/model").iterdir()}
    assert {"model.safetensors", "config.json", "textclf.json", "README.md"} <= files


def test_the_model_folder_carries_the_diagnosis_warnings(trained):
    diagnosis = read(trained, "metrics/diagnosis.json")
    evidence = read(trained, "metrics/diagnosis_details.json")["evidence"]
    task = read(trained, "data/model/textclf.json")
    assert task["warnings"] == {p: evidence[p] for p in ("collapsed", "near_baseline") if diagnosis[p]}
    assert task["warnings"]  # a tiny random model on a few rows: no better than the majority class
    assert {"text_columns", "max_length"} <= set(task)
    card = (trained / "data/model/README.md").read_text()
    for finding, said in task["warnings"].items():  # the card opens with them too
        assert f"> **Warning: {finding.replace('_', ' ')}.** {said[0].upper()}{said[1:]}; its predictions" in card


@pytest.mark.parametrize("warned", [True, False])
def test_predict_repeats_a_near_baseline_warning_at_every_use(trained, tmp_path, warned):
    model = tmp_path / "model"
    shutil.copytree(trained / "data/model", model)
    task = json.loads((model / "textclf.json").read_text())
    evidence = "val accuracy 0.690 is not clearly above the 0.684 of always predicting the majority class"
    task["warnings"] = {"near_baseline": evidence} if warned else {}
    (model / "textclf.json").write_text(json.dumps(task))
    out = textclf("predict", "-", "--model", str(model), cwd=trained, stdin="It rained .\tIt poured .\n")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 2, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("predict: warning:")]
    if warned:
        assert warnings == [
            f"predict: warning: this model was diagnosed near baseline when it was trained ({evidence}); its "
            f"predictions are no better, or little better, than the label balance ({model}/README.md)"
        ]
    else:
        assert warnings == []


def test_onnx_export_agrees_with_pytorch(trained, tmp_path):
    model = shutil.copytree(trained / "data/model", tmp_path / "model")  # retrained below
    out = textclf("export", "--model", str(model), "--output", str(tmp_path / "onnx"), cwd=trained)
    assert out.returncode == 0, out.stderr
    check = json.loads((tmp_path / "onnx/check.json").read_text())
    assert check["rows"] == 41 and check["onnx_fp32"]["agreement_with_torch"] == 1.0
    assert 0 <= check["onnx_int8"]["agreement_with_torch"] <= 1 and "f1" in check["onnx_int8"]
    assert "onnx_int8: agrees with PyTorch on" in out.stdout
    for noise in ("TracerWarning", "pre-processing before quantization", "Loading weights"):  # libraries' chatter
        assert noise not in out.stdout + out.stderr, out.stderr
    source = pairs_csv(tmp_path / "new.csv")
    for backend in ("onnx", "onnx-int8"):
        done = textclf("predict", str(source), "--model", str(tmp_path / "onnx"), "--backend", backend, cwd=trained)
        assert done.returncode == 0 and len(done.stdout.splitlines()) == 6, done.stderr
        assert "You are using a model of type" not in done.stderr  # the mean-pooled type is known to transformers
    # Without --model, the onnx backends read data/onnx, where a plain `textclf export` writes.
    missing = textclf("predict", str(source), "--backend", "onnx", cwd=trained)
    assert missing.returncode == 1 and "data/onnx has no model.onnx" in missing.stderr, missing.stderr
    shutil.copytree(tmp_path / "onnx", trained / "data" / "onnx")
    try:
        done = textclf("predict", str(source), "--backend", "onnx", cwd=trained)
        assert done.returncode == 0 and len(done.stdout.splitlines()) == 6, done.stderr
    finally:
        shutil.rmtree(trained / "data" / "onnx")
    # The PyTorch model folder is not an export: the hint says where to export it.
    torch_folder = textclf("predict", str(source), "--model", "data/model", "--backend", "onnx", cwd=trained)
    assert "data/model is a PyTorch model folder, not an ONNX export" in torch_folder.stderr, torch_folder.stderr
    # Once the model it was exported from changes (retrained), the export is refused, not used stale.
    with (model / "model.safetensors").open("ab") as f:
        f.write(b"retrained")
    stale = textclf("predict", str(source), "--model", str(tmp_path / "onnx"), "--backend", "onnx", cwd=trained)
    assert stale.returncode == 1 and "was exported from an earlier version of" in stale.stderr, stale.stderr
    assert f"textclf export --model {model.resolve()} --output {tmp_path / 'onnx'}" in stale.stderr
    # An export kept elsewhere (a release) is a copy kept on purpose: used, with a warning, and the hint
    # never says to export the changed model over it.
    release = shutil.copytree(tmp_path / "onnx", tmp_path / "releases" / "v1")
    kept = textclf("predict", str(source), "--model", str(release), "--backend", "onnx", cwd=trained)
    assert kept.returncode == 0 and len(kept.stdout.splitlines()) == 6, kept.stderr
    assert "predict: warning: " in kept.stderr and "these are the earlier model's predictions" in kept.stderr
    assert f"--output {release}" not in kept.stderr


def exportable(trained: Path, dest: Path) -> Path:
    """A copy of the trained model folder, to export, break or overwrite."""
    return shutil.copytree(trained / "data/model", dest)


@pytest.mark.parametrize(
    "output, message",
    [
        ("{model}", "is the model folder"),
        ("{model}/onnx", "is inside the model folder"),
        ("{tmp}", "holds the model folder"),
        ("{tmp}/mine", "holds files and is not an earlier export"),
        ("{tmp}/mine/notes.txt", "is a file"),
    ],
)
def test_export_refuses_an_output_it_would_destroy(trained, tmp_path, output, message):
    """The export replaces its output folder whole: never the model, its parent, or a folder of other files."""
    model = exportable(trained, tmp_path / "model")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/notes.txt").write_text("important\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    output = output.format(model=model, tmp=tmp_path)
    out = textclf("export", "--model", str(model), "--output", output, "--no-check", cwd=trained)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing removed or left
    assert (tmp_path / "mine/notes.txt").read_text() == "important\n"


def test_export_replaces_an_earlier_export(trained, tmp_path):
    """An empty folder, or an earlier export (model.onnx and check.json), is a fine --output. The export
    says why it was not checked: here the split exists, --no-check skipped it."""
    model = exportable(trained, tmp_path / "model")
    (tmp_path / "onnx").mkdir()
    for _ in range(2):
        out = textclf("export", "--model", str(model), "--output", str(tmp_path / "onnx"), "--no-check", cwd=trained)
        assert out.returncode == 0, out.stderr
        assert "export: not checked: skipped with --no-check" in out.stdout, out.stdout  # not "no split here"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "onnx"]  # no temporary folder left


def test_export_checks_only_on_the_split_of_the_models_task(trained, tmp_path):
    """A model of another task (here: of single texts) is exported unchecked, saying why."""
    model = exportable(trained, tmp_path / "model")
    task = json.loads((model / "textclf.json").read_text())
    (model / "textclf.json").write_text(json.dumps(task | {"text_columns": ["sentence"]}))
    out = textclf("export", "--model", str(model), "--output", str(tmp_path / "onnx"), cwd=trained)
    assert out.returncode == 0, out.stderr
    assert "export: not checked: data/tokenized/validation is another task's (" in out.stdout, out.stdout
    assert "run export in the repository that trained this model" in out.stdout
    check = json.loads((tmp_path / "onnx/check.json").read_text())
    assert "rows" not in check and "is another task's" in check["not_checked"]


def test_the_split_belongs_to_a_model_of_the_same_columns_labels_and_base_model():
    from textclf.export import another_task

    source = {"text_columns": ["s1", "s2"], "label_names": ["no", "yes"], "model": {"name": "bert"}}
    task = {"text_columns": ["s1", "s2"], "base_model": "bert"}
    assert another_task(task, ["no", "yes"], source) is None
    assert "text columns" in another_task(task | {"text_columns": ["s1"]}, ["no", "yes"], source)
    assert "labels" in another_task(task, ["neg", "neu", "pos"], source)  # ids beyond the split's: IndexError
    assert "labels" in another_task(task, ["yes", "no"], source)  # the same names in another order
    assert "base model" in another_task(task | {"base_model": "roberta"}, ["no", "yes"], source)  # another vocabulary
    source["content_sha256"] = "a" * 64  # two datasets of the same columns and labels: told apart by content
    assert another_task(task | {"data_sha256": "a" * 64}, ["no", "yes"], source) is None
    assert "data of content aaaaaaaaaaaa; the model was trained on data of content bbbbbbbbbbbb" in another_task(
        task | {"data_sha256": "b" * 64}, ["no", "yes"], source
    )


@pytest.mark.parametrize(
    "breaks, message",
    [
        (lambda m: (m / "model.safetensors").unlink(), "has no weights (model.safetensors)"),
        (lambda m: (m / "config.json").write_text("{\n"), "config.json is not valid JSON"),
        (lambda m: (m / "textclf.json").write_text("{\n"), "textclf.json is not valid JSON"),
        (  # a base model (data/pretrained): it was exported with a random, untrained head
            lambda m: (m / "config.json").write_text('{"architectures": ["BertModel"], "model_type": "bert"}'),
            "is not a text classifier (config.json names ['BertModel'])",
        ),
    ],
)
def test_export_of_a_folder_without_a_model_is_one_line(trained, tmp_path, breaks, message):
    """A folder without weights, a broken JSON file: one error line, at once."""
    model = exportable(trained, tmp_path / "model")
    breaks(model)
    out = textclf("export", "--model", str(model), "--output", str(tmp_path / "onnx"), cwd=trained)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")
    assert not (tmp_path / "onnx").exists() and not (tmp_path / ".onnx.tmp").exists()


def test_export_of_an_export_folder_says_to_export_the_model(trained, tmp_path):
    """`textclf export --model data/onnx`, whose default --output is that folder too: the model is the mistake."""
    folder = exportable(trained, tmp_path / "onnx")
    (folder / "model.safetensors").unlink()
    (folder / "model.onnx").touch()
    (folder / "check.json").write_text("{}")
    out = textclf("export", "--model", str(folder), "--output", str(folder), cwd=trained)
    assert out.returncode == 1 and "is an ONNX export, not a trained model: export the model folder" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")


def test_every_command_has_help():
    for command in ([], ["predict"], ["export"], ["compare"], ["tune"]):
        out = subprocess.run([sys.executable, "-m", "textclf.cli", *command, "--help"], capture_output=True, text=True)
        assert out.returncode == 0 and "usage: textclf" in out.stdout
        assert "%%" not in out.stdout  # a literal % in a description is not escaped (only help= is %-formatted)


def test_the_card_counts_the_rows_used_not_the_rows_downloaded():
    """max_train_samples / max_eval_samples cut the data after download: the card names the rows the
    model was trained on and scored on (it once showed the whole splits), and both params."""
    from tests.test_params import defaults
    from textclf.card import model_card
    from textclf.params import parse_params

    p = parse_params(defaults() | {"max_train_samples": 300, "max_eval_samples": 200})
    source = {
        "dataset": "/data/mrpc", "subset": None, "validation": "file", "content_sha256": "c0ffee",
        "splits": {"train": 3667, "validation": 408}, "label_counts": {"train": {"no": 1194, "yes": 2473}},
        "model": {"name": "m", "files_sha256": {"model.safetensors": "0" * 64}},
    }  # fmt: skip
    used = {"splits": {"train": 300, "validation": 200}, "label_counts": {"train": {"no": 97, "yes": 203}}}
    scores = {"validation": {"accuracy": 0.8, "f1": 0.85, "precision": 0.8, "recall": 0.9, "loss": 0.5}}
    card = model_card(
        p, source, {"best_epoch": 0.8421052631578947, "steps": 19}, {"scores": scores, "per_class": {}},
        {"verdict": "ok", "evidence": {}}, {"label_names": ["no", "yes"], "text_columns": ["t"], "max_length": 128},
        test_rows=0, used=used,
    )  # fmt: skip
    assert "| 0 | no | 97 |" in card and "| 1 | yes | 203 |" in card and "1194" not in card
    assert "Validation: 200 rows (file)" in card and "Scores come from 200 validation rows" in card
    assert "of which used (max_train_samples, max_eval_samples): {'train': 300, 'validation': 200}" in card
    assert "| max_train_samples | 300 |" in card and "| max_eval_samples | 200 |" in card
    assert "The best epoch (0.84)" in card


def test_a_label_with_a_pipe_keeps_the_cards_table_whole():
    from textclf.card import label_table

    rows = label_table(["semi;colon|pipe", "b"], {"label_counts": {"train": {"semi;colon|pipe": 3}}}, {})
    assert rows[2] == "| 0 | semi;colon\\|pipe | 3 |  |"


def test_tsv_output_is_written_with_quoting_off_as_tsv_is_read(capsys):
    from textclf.predict import Writer

    writer = Writer(None, ['say "hi"', "b"])  # stdout, tsv
    writer.write(np.array([[0.75, 0.25]]))
    assert capsys.readouterr().out.splitlines() == [
        'row\tprediction\tprediction_id\tprob_say "hi"\tprob_b',
        '0\tsay "hi"\t0\t0.75\t0.25',
    ]
