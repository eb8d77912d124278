"""Bad models, failed writes and security defaults: one clear message, no partial output."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import BertConfig, BertForSequenceClassification

from stages import run_stage
from stages.tokenize import check_max_length
from tests.conftest import ROOT, tool_env, write_mrpc
from textclf.data import load_hub
from textclf.errors import InputError
from textclf.files import atomic_dir
from textclf.model import check_labels
from textclf.params import load_params
from textclf.pretrained import copy_checkpoint, model_source
from textclf.security import warn_remote_code


def tiny_config() -> BertConfig:
    return BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)


def test_model_path_that_does_not_exist():
    with pytest.raises(InputError, match="model folder ./nope does not exist"):
        model_source("./nope")


def test_a_vocabulary_is_a_file_or_a_byte_level_tokenizer(tmp_path):
    """tokenizer_config.json alone is no tokenizer (transformers built one of the special tokens only);
    ByT5 names its byte-level tokenizer in config.json, CANINE by its model type; RemBERT's vocabulary
    is sentencepiece.model."""
    from textclf.pretrained import has_vocabulary

    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    assert not has_vocabulary(tmp_path)
    for config in ('{"tokenizer_class": "ByT5Tokenizer"}', '{"model_type": "canine"}'):
        (tmp_path / "config.json").write_text(config)
        assert has_vocabulary(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "rembert"}')
    assert not has_vocabulary(tmp_path)
    (tmp_path / "sentencepiece.model").write_bytes(b"")
    assert has_vocabulary(tmp_path)


def test_model_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(InputError, match="has no weights"):
        copy_checkpoint(tmp_path, tmp_path / "out")


def test_model_folder_without_a_tokenizer(tmp_path):
    # transformers would build an empty vocabulary that reads every word as [UNK], with no error
    BertForSequenceClassification(tiny_config()).save_pretrained(tmp_path)
    with pytest.raises(InputError, match=r"has no tokenizer vocabulary \(none of tokenizer.json, vocab.txt"):
        copy_checkpoint(tmp_path, tmp_path / "out")
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (tmp_path / "out").mkdir()
    assert "model.safetensors" in copy_checkpoint(tmp_path, tmp_path / "out")


def test_hub_model_offline_says_how_to_point_at_a_local_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match=r"Hub can't be reached .*no local folder .* either. Point `model` at"):
        model_source("someone/not-a-cached-model")


def test_hub_dataset_offline_says_how_to_point_at_a_local_copy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(InputError, match=r"no local folder .*shared/mrpc either.*-S dataset=\.\./shared/mrpc"):
        load_hub("shared/mrpc", None)  # a local path typed without its ../


def test_an_unreachable_hub_fails_at_once_instead_of_retrying(monkeypatch):
    # No offline flag: the one connection attempt fails (a closed port here), and nothing retries.
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    from textclf.sources import hub_unreachable

    assert hub_unreachable().startswith("127.0.0.1:")
    with pytest.raises(InputError, match=r"the Hub can't be reached \(127.0.0.1"):
        model_source("someone/not-a-cached-model")


def test_classifier_checkpoint_with_other_label_count(tmp_path):
    config = tiny_config()
    config.num_labels = 3
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    with pytest.raises(InputError, match="classifier with 3 labels, but the data has 2"):
        check_labels(tmp_path, ["not_equivalent", "equivalent"])
    check_labels(tmp_path, ["a", "b", "c"])  # agreeing counts pass


def test_max_length_beyond_the_model():
    class Tok:
        model_max_length = 512

    # The value stays in params.yaml after DVC wrote it there: the error says how to undo it.
    with pytest.raises(InputError, match="max_length: 1000 exceeds this model's limit of 512.*params.yaml now "
                       "holds 'max_length: 1000'"):  # fmt: skip
        check_max_length(1000, Tok())
    check_max_length(512, Tok())


def test_pickle_only_checkpoint_converts_with_allow_pickle(tmp_path):
    src = tmp_path / "src"
    model = BertForSequenceClassification(tiny_config())
    model.save_pretrained(src)
    torch.save(model.state_dict(), src / "pytorch_model.bin")
    (src / "model.safetensors").unlink()
    (src / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    dst = tmp_path / "dst"
    dst.mkdir()
    hashes = copy_checkpoint(src, dst, allow_pickle=True)
    assert "model.safetensors" in hashes
    loaded = BertForSequenceClassification.from_pretrained(dst, use_safetensors=True)
    assert torch.equal(loaded.classifier.weight, model.classifier.weight)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pwned-by-pickle",))


def test_malicious_pickle_is_refused_even_with_allow_pickle(tmp_path):
    Path("/tmp/pwned-by-pickle").unlink(missing_ok=True)
    (tmp_path / "config.json").write_text("{}")
    torch.save({"w": Exploit()}, tmp_path / "pytorch_model.bin")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="could not be loaded as plain weights"):
        copy_checkpoint(tmp_path, out, allow_pickle=True)
    assert not Path("/tmp/pwned-by-pickle").exists()


def test_security_defaults_are_off():
    p = load_params(ROOT / "params.yaml")
    assert p.trust_remote_code is False and p.allow_pickle is False


def test_remote_code_is_announced(capsys):
    warn_remote_code(True)
    assert "trust_remote_code is ON" in capsys.readouterr().err
    warn_remote_code(False)
    assert capsys.readouterr().err == ""


def test_full_disk_gives_one_line_and_no_partial_output(tmp_path):
    target = tmp_path / "raw"

    def stage():
        with atomic_dir(target) as tmp:
            (tmp / "part-0").write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "part-1"))

    with pytest.raises(SystemExit, match="No space left on device; the disk is full"):
        run_stage(stage)
    assert list(tmp_path.iterdir()) == []  # neither the output nor its temporary folder


def test_failed_swap_keeps_the_old_output_and_no_temporary_folder(tmp_path, monkeypatch):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    real_rename = Path.rename

    def rename(self, dest):
        if self.name == ".model.tmp":
            raise OSError(errno.EACCES, "Permission denied", str(dest))
        return real_rename(self, dest)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="Permission denied"):
        with atomic_dir(target) as tmp:
            (tmp / "weights").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert (target / "weights").read_text() == "old"
    monkeypatch.undo()
    with atomic_dir(target) as tmp:
        (tmp / "weights").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (target / "weights").read_text() == "new"
    # A kill between setting the old output aside and the swap: the next run puts it back first.
    target.rename(tmp_path / ".model.old.tmp")
    with pytest.raises(InputError):
        with atomic_dir(target):
            raise InputError("bad input")
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and (target / "weights").read_text() == "new"


def test_output_folder_blocked_by_a_file(tmp_path, tiny_model):
    work = tmp_path / "work"
    work.mkdir()
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    values.update({"dataset": str(write_mrpc(tmp_path / "mrpc")), "model": str(tiny_model)})
    (work / "params.yaml").write_text(yaml.safe_dump(values))
    (work / "data").write_text("not a folder")
    env = tool_env() | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "stages.download"], cwd=work, env=env, capture_output=True, text=True)
    assert out.returncode == 1
    assert "error: cannot write" in out.stderr and "a file stands where a folder is needed" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_params_exit_with_one_line(tmp_path):
    values = yaml.safe_load((ROOT / "params.yaml").read_text()) | {"epochs": "three"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(values))
    env = tool_env() | {"PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "stages.train"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("error: params.yaml: 'epochs: three' is not a number; expected int. ")
    assert "params.yaml now holds 'epochs: three': set a good value with the next run" in out.stderr


@pytest.mark.parametrize(
    "stage, missing",
    [
        ("tokenize", "data/raw and data/pretrained not found: earlier stages write them"),
        ("train", "data/tokenized and data/pretrained and data/source.json not found"),
        ("evaluate", "data/trained and data/tokenized and data/source.json not found"),
    ],
)
def test_a_stage_run_before_the_stages_it_needs_is_one_line(tmp_path, stage, missing):
    """Was a traceback (train, evaluate), or for tokenize a minute of retries fetching a Hub model named
    data/pretrained, then a traceback."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    env = tool_env() | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"error: {missing}") and out.stderr.strip().endswith(f"dvc repro {stage}")


def test_sharded_pickle_is_not_guessed_at(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    for i in (1, 2):
        torch.save({"w": torch.zeros(1)}, tmp_path / f"pytorch_model-0000{i}-of-00002.bin")
    with pytest.raises(InputError, match="converts a single pytorch_model.bin"):
        copy_checkpoint(tmp_path, tmp_path, allow_pickle=True)


def test_non_weights_pickle_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 3}, tmp_path / "pytorch_model.bin")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="not a flat state dict of tensors"):
        copy_checkpoint(tmp_path, out, allow_pickle=True)


def test_sharded_safetensors_are_copied(tmp_path):
    import json

    src = tmp_path / "src"
    BertForSequenceClassification(tiny_config()).save_pretrained(src, max_shard_size="20KB")
    (src / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    assert (src / "model.safetensors.index.json").exists()
    out = tmp_path / "out"
    out.mkdir()
    hashes = copy_checkpoint(src, out)
    shards = set(json.loads((src / "model.safetensors.index.json").read_text())["weight_map"].values())
    assert shards <= set(hashes) and len(shards) > 1
    BertForSequenceClassification.from_pretrained(out, use_safetensors=True)


def test_rows_cut_at_max_length_are_counted():
    from datasets import Dataset, DatasetDict

    from stages.tokenize import at_limit

    ids = {"train": [[1] * 8, [1] * 3, [1] * 8], "validation": [[1] * 2]}
    data = DatasetDict({s: Dataset.from_dict({"input_ids": rows}) for s, rows in ids.items()})
    assert at_limit(data, 8) == {"train": 2, "validation": 0}
