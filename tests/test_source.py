"""The source stage's fingerprint: what makes download rerun when a local dataset folder changes."""

import pytest

from textclf.errors import InputError
from textclf.sources import fingerprint, local_folder


def test_hub_id_is_not_a_local_folder(tmp_path):
    assert local_folder("nyu-mll/glue") is None
    assert local_folder("./not-there") is not None  # looks like a path: download says it is missing
    assert local_folder(str(tmp_path)) == tmp_path


def test_fingerprint_follows_file_contents_only(mrpc_dir):
    before = fingerprint(str(mrpc_dir), "mrpc")
    assert sorted(before["files_sha256"]) == ["dev.tsv", "test.tsv", "train.tsv"]
    assert before["subset"] is None  # a local folder has no Hub config
    (mrpc_dir / ".DS_Store").write_text("noise")  # hidden files are not data
    (mrpc_dir / "train.tsv").touch()  # a new mtime with the same bytes is no change
    assert fingerprint(str(mrpc_dir), "mrpc") == before
    with (mrpc_dir / "train.tsv").open("a") as f:
        f.write("1\t1\t2\tA .\tB .\n")
    after = fingerprint(str(mrpc_dir), "mrpc")
    assert after["files_sha256"]["train.tsv"] != before["files_sha256"]["train.tsv"]
    assert after["files_sha256"]["dev.tsv"] == before["files_sha256"]["dev.tsv"]


def test_hub_dataset_is_fingerprinted_by_id():
    assert fingerprint("nyu-mll/glue", "mrpc") == {
        "dataset": "nyu-mll/glue",
        "subset": "mrpc",
        "files_sha256": None,
    }


def test_missing_local_folder_is_named():
    with pytest.raises(InputError, match="dataset folder .*nope does not exist"):
        fingerprint("./nope", None)


def test_a_misspelt_column_gets_its_close_match_as_the_example():
    from textclf.sources import missing_column_message

    text = missing_column_message("f.csv", ["Review Text", "Rating"], "Review text", ["Review text"], "train", "x")
    assert "-S 'text_columns=[Review Text]'" in text  # names are case-sensitive: the guess was "x"
    label = missing_column_message("f.csv", ["text", "labels"], "label", ["text"], "train", "text")
    assert "-S label_column=labels" in label
    far = missing_column_message("f.csv", ["body", "stars"], "label", ["body"], "train", "stars")
    assert "-S label_column=stars" in far


def test_header_names_with_spaces_or_quotes_get_a_fix_that_works():
    """-S 'text_columns=[text ]' can't name 'text ' (YAML drops the space), so the fix is the header."""
    from textclf.sources import missing_column_message

    padded = missing_column_message("f.csv", ["text ", " label"], "text", ["text"], "train", "x")
    assert "spells column 'text' as 'text ': remove the spaces" in padded and "-S" not in padded
    quoted = missing_column_message("f.tsv", ['"text"', '"label"'], "text", ["text"], "train", "x")
    assert "remove the quotes" in quoted and "save it as csv" in quoted
