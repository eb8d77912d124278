"""Shared fixtures: hand-written MRPC files with the real traps, a tiny random BERT, a temp DVC repo."""

import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_MRPC = ROOT.parent / "shared" / "mrpc"

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach for the Hub
os.environ["HF_DATASETS_OFFLINE"] = "1"

BOM = "\ufeff"
LABELED_HEADER = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
TEST_HEADER = "index\t#1 ID\t#2 ID\t#1 String\t#2 String"

# Six rows in the MRPC style, with the traps: unbalanced quotes, a quote at a field's start.
ROWS = [
    ("1", "702876", "702977", 'He called him " the witness .', 'He referred to him as " the witness .'),
    (
        "0",
        "2108705",
        "2108831",
        "Yucaipa owned Dominick 's in 1998 .",
        "Yucaipa bought Dominick 's in 1995 .",
    ),
    ("1", "1330381", "1330521", '" We are pleased , " he said .', "He said they were pleased ."),
    ("0", "3344667", "3344648", "Shares fell 5 % on Monday .", 'Shares rose " sharply on Tuesday .'),
    ("1", "1236820", "1236712", "The bank cut rates .", "Rates were cut by the bank ."),
    ("0", "738533", "737951", "It rained in Paris .", "Sales grew in Tokyo ."),
]


def tsv(header: str, rows: list[tuple], bom: bool = False) -> str:
    return (BOM if bom else "") + "\n".join([header, *("\t".join(r) for r in rows)]) + "\n"


def synthetic_rows(n: int, seed: int) -> list[tuple]:
    """Paraphrase-like pairs a tiny model can learn a little from: label 1 pairs share words."""
    rng = random.Random(seed)
    words = "bank rates cut shares fell rose market company said year profit sales city team".split()
    rows = []
    for i in range(n):
        a = rng.sample(words, 6)
        label = i % 2
        b = a[:4] + rng.sample(words, 2) if label else rng.sample(words, 6)
        quote = ' "' if i % 5 == 0 else ""  # unbalanced quotes, as in MRPC
        rows.append((str(label), str(1000 + i), str(5000 + i), " ".join(a) + quote + " .", " ".join(b) + " ."))
    return rows


def write_mrpc(folder: Path, n_train: int = 48, n_dev: int = 16, n_test: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.tsv").write_text(tsv(LABELED_HEADER, synthetic_rows(n_train, 1), bom=True))
    (folder / "dev.tsv").write_text(tsv(LABELED_HEADER, synthetic_rows(n_dev, 2)))
    test_rows = [(str(i), *r[1:]) for i, r in enumerate(synthetic_rows(n_test, 3))]
    (folder / "test.tsv").write_text(tsv(TEST_HEADER, test_rows))
    return folder


@pytest.fixture
def mrpc_dir(tmp_path: Path) -> Path:
    return write_mrpc(tmp_path / "mrpc")


SMALL = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
TINY_FAMILIES = {  # model_type: its config's size settings for a tiny random model
    "bert": {"hidden_size": 32, **SMALL, "max_position_embeddings": 128},
    "roberta": {"hidden_size": 32, **SMALL, "max_position_embeddings": 130, "pad_token_id": 0},
    "distilbert": {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64, "max_position_embeddings": 130},
    "mpnet": {"hidden_size": 32, **SMALL, "max_position_embeddings": 130, "pad_token_id": 0},
    "electra": {"hidden_size": 32, "embedding_size": 32, **SMALL, "max_position_embeddings": 130},
    "deberta-v2": {"hidden_size": 32, **SMALL, "max_position_embeddings": 130},
    "modernbert": {
        "hidden_size": 32, **SMALL, "max_position_embeddings": 130, "pad_token_id": 0, "bos_token_id": 101,
        "eos_token_id": 102, "cls_token_id": 101, "sep_token_id": 102,
    },
}  # fmt: skip


def build_tiny_model(folder: Path, model_type: str = "bert") -> Path:
    """A randomly initialised 2-layer encoder of this family (BERT by default) with the default model's
    (BERT) tokenizer, saved as safetensors: the same weights in every session (seeded), so a run's curves
    are the same from one test session to the next. The tokenizer's ids fit every family's vocabulary,
    which is all the tests ask of it; for a family without token types it leaves them out, as that
    family's own tokenizers do."""
    import inspect

    import torch
    from transformers import CONFIG_MAPPING, MODEL_MAPPING, AutoTokenizer

    from textclf.pretrained import model_source

    tokenizer = AutoTokenizer.from_pretrained(model_source("sentence-transformers/all-MiniLM-L6-v2"))
    config = CONFIG_MAPPING[model_type](vocab_size=tokenizer.vocab_size, **TINY_FAMILIES[model_type])
    torch.manual_seed(0)
    encoder = MODEL_MAPPING[type(config)](config)
    encoder.save_pretrained(folder)
    if "token_type_ids" not in inspect.signature(encoder.forward).parameters:
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-bert")


def tool_env() -> dict:
    """Environment for the dvc CLI: this venv's python first on PATH, so stages run with it."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


CODE = ("stages", "textclf")  # what a stage runs: the stage scripts and the package they call


def copy_code(dest: Path) -> None:
    """The pipeline's code, as a clone has it. A stage run in `dest` imports this copy, not the checkout's
    (the current folder comes first on sys.path), just as a DVC queue's temporary workspace does."""
    for folder in CODE:
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))


def edit_params(source: Path, dest: Path, params: dict) -> None:
    from ruamel.yaml import YAML  # DVC's own YAML library: a round trip keeps comments and layout

    rt = YAML()
    values = rt.load(source.read_text())
    for key, value in params.items():
        values[key] = value
    with dest.open("w") as f:
        rt.dump(values, f)


def make_repo(dest: Path, params: dict) -> Path:
    """A git + DVC repo holding this project's pipeline, with params overridden for tiny runs (edited
    the way DVC edits params.yaml, so the file keeps its layout and comments as a clone has them)."""
    dest.mkdir(parents=True)
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    copy_code(dest)
    shutil.copy(ROOT / ".gitignore", dest / ".gitignore")
    edit_params(ROOT / "params.yaml", dest / "params.yaml", params)
    run(["git", "init", "-q"], dest)
    run(["git", "config", "user.email", "ci@example.com"], dest)
    run(["git", "config", "user.name", "CI"], dest)
    run(["dvc", "init", "-q"], dest)
    shutil.copytree(ROOT / ".dvc" / "plots", dest / ".dvc" / "plots")  # the project's plot templates
    run(["dvc", "config", "core.analytics", "false"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "pipeline"], dest)
    return dest


TINY_TRAIN = {
    "epochs": 2,
    "batch_size": 8,
    "eval_batch_size": 16,
    "logging_steps": 2,
    "max_length": 32,
    "lr": 1e-3,
    "freeze_layers": 1,  # the tiny BERT has 2 layers: one frozen, one trained (the default freezes 2 of 6)
}


# --- stages run by hand in a work folder (no DVC) ------------------------------------------


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    """A work folder with params, code and data/raw, data/pretrained, data/tokenized in place (160
    synthetic MRPC train pairs, 41 validation, 9 test; the tiny model): copy it with copy_work."""
    base = tmp_path_factory.mktemp("train")
    data = write_mrpc(base / "mrpc", n_train=160, n_dev=41, n_test=9)  # 41: uneven across 2 processes
    model = build_tiny_model(base / "tiny")
    work = base / "work"
    work.mkdir()
    copy_code(work)
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    values.update({"dataset": str(data), "model": str(model), **TINY_TRAIN})
    (work / "params.yaml").write_text(yaml.safe_dump(values))
    for stage in ("download", "tokenize"):
        stage_run(work, stage)
    return work


def stage_cmd(stage: str) -> list[str]:
    """The command dvc.yaml runs for a stage (train and evaluate start through stages.launch)."""
    module = ["stages.launch", stage] if stage in ("train", "evaluate") else [f"stages.{stage}"]
    return [sys.executable, "-m", *module]


def stage_run(work: Path, stage: str, **params) -> subprocess.CompletedProcess:
    """Run one stage as dvc.yaml does (train and evaluate through stages.launch and the `launcher`
    param), after setting params; fail the test with the stage's output if it fails."""
    set_params(work, **params)
    args = ["stages.launch", stage] if stage in ("train", "evaluate") else [f"stages.{stage}"]
    out = subprocess.run([sys.executable, "-m", *args], cwd=work, env=tool_env(), capture_output=True, text=True)
    assert out.returncode == 0, f"{stage} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def set_params(work: Path, **params) -> None:
    path = work / "params.yaml"
    values = yaml.safe_load(path.read_text())
    values.update(params)
    path.write_text(yaml.safe_dump(values))


def copy_work(prepared: Path, dest: Path) -> Path:
    shutil.copytree(prepared, dest, ignore=shutil.ignore_patterns("checkpoints", "model", "metrics"))
    return dest


def read(work: Path, name: str):
    text = (work / name).read_text()
    return json.loads(text) if name.endswith(".json") else text.splitlines()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
