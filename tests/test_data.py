"""Reading data as it is: MRPC TSV parsing with the real traps, split files in every format, parquet
streamed through scratch. (Choosing columns and labels: test_labels.py.)"""

import pytest

from tests.conftest import LABELED_HEADER, ROWS, SHARED_MRPC, TEST_HEADER, tsv
from textclf.data import load_local, parse_mrpc_tsv
from textclf.errors import InputError
from textclf.pretrained import copy_checkpoint
from textclf.sources import decode_utf8, find_split_files


def test_bom_and_unbalanced_quotes_keep_every_row():
    text = tsv(LABELED_HEADER, ROWS, bom=True)
    cols = parse_mrpc_tsv(decode_utf8(text.encode(), "train.tsv"), "train.tsv")
    assert len(cols["sentence1"]) == len(ROWS)  # a quoting CSV reader merges rows here
    assert cols["sentence1"][0] == 'He called him " the witness .'
    assert cols["sentence1"][2].startswith('" We are pleased')
    assert cols["label"] == [1, 0, 1, 0, 1, 0]


def test_test_split_keeps_its_index_and_has_no_label():
    rows = [("7", *r[1:]) for r in ROWS[:2]]
    cols = parse_mrpc_tsv(tsv(TEST_HEADER, rows), "test.tsv")
    assert cols["idx"] == [7, 7] and "label" not in cols


def test_windows_line_endings():
    text = tsv(LABELED_HEADER, ROWS).replace("\n", "\r\n")
    assert parse_mrpc_tsv(text, "t")["sentence2"][5] == "Sales grew in Tokyo ."


def test_missing_column_names_the_line():
    rows = [*ROWS[:3], ROWS[3][:4]]
    with pytest.raises(InputError, match=r"t.tsv:5: 4 tab-separated fields, expected 5"):
        parse_mrpc_tsv(tsv(LABELED_HEADER, rows), "t.tsv")


def test_bad_label():
    rows = [("2", *ROWS[0][1:]), *ROWS[1:]]
    with pytest.raises(InputError, match=r"label '2' is not 0 or 1"):
        parse_mrpc_tsv(tsv(LABELED_HEADER, rows), "t.tsv")


def test_wrong_header():
    with pytest.raises(InputError, match="not MRPC's"):
        parse_mrpc_tsv(tsv("a\tb\tc\td\te", ROWS), "t.tsv")


def test_empty_file_and_header_only():
    with pytest.raises(InputError, match="empty"):
        parse_mrpc_tsv("", "t.tsv")
    with pytest.raises(InputError, match="no rows"):
        parse_mrpc_tsv(LABELED_HEADER + "\n", "t.tsv")


def test_duplicate_ids():
    with pytest.raises(InputError, match="duplicate sentence-pair ID"):
        parse_mrpc_tsv(tsv(LABELED_HEADER, [*ROWS, ROWS[0]]), "t.tsv")


def test_other_encoding_is_named_with_its_line():
    with pytest.raises(InputError, match="train.tsv: line 1 is not UTF-8 .byte 0xe9.*iconv -f latin1"):
        decode_utf8("Café".encode("latin-1"), "train.tsv")
    bom_then_latin1 = b"\xef\xbb\xbfQuality\n" + "a\nCafé\n".encode("latin-1")  # the BOM is not counted
    with pytest.raises(InputError, match="line 3 is not UTF-8 .byte 0xe9"):
        decode_utf8(bom_then_latin1, "train.tsv")


def test_local_folder_in_glue_layout(tmp_path):
    (tmp_path / "train.tsv").write_text(tsv(LABELED_HEADER, ROWS, bom=True))
    (tmp_path / "dev.tsv").write_text(tsv(LABELED_HEADER, ROWS[:4]))
    (tmp_path / "test.tsv").write_text(tsv(TEST_HEADER, [(str(i), *r[1:]) for i, r in enumerate(ROWS)]))
    data = load_local(tmp_path, tmp_path / "scratch")
    assert {s: len(d.rows) for s, d in data.items()} == {"train": 6, "validation": 4, "test": 6}
    assert data["train"].rows.features["label"].names == ["not_equivalent", "equivalent"]
    assert "label" not in data["test"].rows.column_names
    assert data["validation"].origin == str(tmp_path / "dev.tsv")


def test_only_train_is_required(tmp_path):
    (tmp_path / "train.tsv").write_text(tsv(LABELED_HEADER, ROWS))
    assert find_split_files(tmp_path) == {"train": tmp_path / "train.tsv"}
    (tmp_path / "train.tsv").rename(tmp_path / "training.csv")
    with pytest.raises(InputError, match=r"no train file.*holds \['training.csv'\]"):
        find_split_files(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_local(tmp_path / "nope", tmp_path / "scratch")


@pytest.mark.parametrize("ext", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_every_format_keeps_its_columns(tmp_path, ext):
    import pandas as pd

    frame = pd.DataFrame({"review": ["a b", 'c " d'], "stars": [5, 1], "extra": [0.5, 0.25]})
    path = tmp_path / f"train.{ext}"
    if ext in ("csv", "tsv"):
        frame.to_csv(path, index=False, sep="," if ext == "csv" else "\t", quoting=3 if ext == "tsv" else 0)
    elif ext in ("json", "jsonl"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    rows = load_local(tmp_path, tmp_path / "scratch")["train"].rows
    stars = ["5", "1"] if ext in ("csv", "tsv") else [5, 1]  # csv and tsv cells are text, as written
    assert rows["review"] == ["a b", 'c " d'] and rows["stars"] == stars and "extra" in rows.column_names


def test_csv_and_tsv_cells_stay_the_text_they_are(tmp_path):
    """pandas' inference read NA/None/null as missing and 007 as 7; a cell is its text, '' when empty."""
    (tmp_path / "train.csv").write_text('\ufefftext,label\r\nNA,None\r\n007,01\r\n"a, ""b""\nc",null\r\n,N/A\r\n')
    rows = load_local(tmp_path, tmp_path / "scratch")["train"].rows
    assert rows["text"] == ["NA", "007", 'a, "b"\nc', ""] and rows["label"] == ["None", "01", "null", "N/A"]
    (tmp_path / "train.csv").unlink()
    (tmp_path / "train.tsv").write_text('text\tlabel\n"quoted" 7\t-1\nNULL\t2\n')
    rows = load_local(tmp_path, tmp_path / "scratch")["train"].rows
    assert rows["text"] == ['"quoted" 7', "NULL"] and rows["label"] == ["-1", "2"]


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("train.tsv", 'text\tlabel\n"a tab\tinside"\t0\nok\t1\n', "line 2 has 3 fields where the header has 2"),
        ("train.tsv", "text\tlabel\n" + "ok\t1\n" * 5 + "x\ty\tz\n", "line 7 has 3 fields where the header has 2"),
        ("train.csv", "text,label\nok,1\nan, unquoted comma,0\n", "line 3 has 3 fields where the header has 2"),
    ],
)
def test_a_row_with_a_field_too_many_is_named_not_shifted(tmp_path, name, text, line):
    """A first row with an extra field became pandas' index (every column shifted: 'no label'); later
    ones failed without a line number."""
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=line) as e:
        load_local(tmp_path, tmp_path / "scratch")
    assert ("quoting off" in str(e.value)) == name.endswith(".tsv") and "\n" not in str(e.value)


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    (tmp_path / "train.csv").write_text("text,text,label\na,b,1\n")
    with pytest.raises(InputError, match=r"names column\(s\) \['text'\] more than once"):
        load_local(tmp_path, tmp_path / "scratch")


def test_empty_file_is_named(tmp_path):
    (tmp_path / "train.csv").write_text("")
    with pytest.raises(InputError, match="train.csv is empty"):
        load_local(tmp_path, tmp_path / "scratch")
    (tmp_path / "train.csv").write_text("text,label\n")
    with pytest.raises(InputError, match="train.csv has no rows"):
        load_local(tmp_path, tmp_path / "scratch")


def test_checkpoint_without_safetensors_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(InputError, match="no model.safetensors, only .*pytorch_model.bin.*allow_pickle: true"):
        copy_checkpoint(tmp_path, tmp_path / "out")


@pytest.mark.skipif(not SHARED_MRPC.exists(), reason="../shared/mrpc is absent")
def test_real_mrpc_row_counts(tmp_path):
    data = load_local(SHARED_MRPC, tmp_path)
    assert {s: len(d.rows) for s, d in data.items()} == {"train": 3667, "validation": 408, "test": 1725}
    assert sum(data["train"].rows["label"]) == 2473 and sum(data["validation"].rows["label"]) == 279


def test_parquet_streams_through_scratch_in_order_and_leaves_no_cache(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    n = 25_000  # several 10,000-row batches, from row groups of another size
    table = pa.table(
        {"sentence1": [f"a {i}" for i in range(n)], "sentence2": [f"b {i}" for i in range(n)]}
        | {"label": [i % 2 for i in range(n)]}
    )
    pq.write_table(table, tmp_path / "train.parquet", row_group_size=7_000)
    pq.write_table(table.slice(0, 10), tmp_path / "validation.parquet")
    train = load_local(tmp_path, tmp_path / "scratch")["train"].rows
    assert len(train) == n and train[n - 1]["sentence1"] == f"a {n - 1}" and train["label"][:4] == [0, 1, 0, 1]
    assert {"train.arrow", "validation.arrow"} <= {p.name for p in (tmp_path / "scratch").iterdir()}
    assert not (tmp_path / "hf-cache").exists()


def test_unreadable_parquet_is_named(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "validation.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="train.parquet: could not be read as parquet"):
        load_local(tmp_path, tmp_path / "scratch")


@pytest.mark.parametrize(
    "name, text, rows",
    [
        ("train.csv", "", False),
        ("train.csv", "text,label\n\n", False),
        ("train.tsv", "text\tlabel\nhi\t1\n", True),
        ("train.csv", "text,label\rhi,1\r", True),  # lines ending in a lone \r (old Mac spreadsheets)
        ("train.jsonl", "\n", False),
        ("train.jsonl", '{"text": "hi", "label": 1}\n', True),
        ("train.json", '[{"text": "hi", "label": 1}]', None),
    ],
)
def test_a_file_without_rows_is_told_from_its_first_lines(tmp_path, name, text, rows):
    """So that the first stage refuses it before DVC deletes any output (the download stage, which reads
    the rows, runs only after DVC has deleted its previous outputs)."""
    from tests.test_params import defaults
    from textclf.params import parse_params
    from textclf.preflight import check_columns
    from textclf.sources import has_rows

    (tmp_path / name).write_text(text)
    assert has_rows(tmp_path / name) is rows
    p = parse_params(defaults() | {"dataset": str(tmp_path), "text_columns": ["text"], "label_column": "label"})
    if rows is False:
        with pytest.raises(InputError, match=rf"{name}: no rows \(the file is empty, or a header only\)"):
            check_columns(p)
    else:
        check_columns(p)


def test_lines_ending_in_a_lone_carriage_return_are_read(tmp_path):
    (tmp_path / "train.csv").write_bytes(b"text,label\rgood film,pos\rbad film,neg\r")
    rows = load_local(tmp_path, tmp_path / "scratch")["train"].rows
    assert rows["text"] == ["good film", "bad film"] and rows["label"] == ["pos", "neg"]


@pytest.mark.parametrize(
    "data, message",
    [
        (
            "text,label\ngood,pos\n".encode("utf-16"),
            r"train.csv is UTF-16 \(or holds NUL bytes\), not UTF-8.*iconv -f utf-16",
        ),
        (b"text,label\ngood,pos\ncaf\xe9,neg\n", r"train.csv: line 3 is not UTF-8 \(byte 0xe9\).*iconv -f latin1"),
        (b'text,label\ngood,pos\n"unbalanced,neg\nok,pos\n', r"unbalanced double quote"),
    ],
)
def test_a_file_in_another_encoding_or_with_a_stray_quote_gets_the_fix(tmp_path, data, message):
    (tmp_path / "train.csv").write_bytes(data)
    with pytest.raises(InputError, match=message):
        load_local(tmp_path, tmp_path / "scratch")


@pytest.mark.parametrize(
    "data, line, merged",
    [
        (b'text\ngreat film\n"Best movie ever\nterrible acting\nboring plot\n', 3, 2),  # one column: no field count
        (b'text,label\ngood,pos\nok,"neg\nbad,neg\nfine,pos\n', 3, 2),  # the last column runs on
        (b'text\nfine\n"she said ""no""\nlast\r\n', 3, 1),  # doubled quotes inside, CRLF
        (b'label,text\rpos,good\rneg,"two\rlines\rmore\r', 3, 2),  # lines ending in a lone \r
    ],
)
def test_a_quote_that_never_closes_is_refused_not_merged(tmp_path, data, line, merged):
    """pyarrow reads an unclosed quote as a text running to the end of the file: the rows after it merged
    into one with no error, whenever the row still had the header's field count."""
    (tmp_path / "train.csv").write_bytes(data)
    with pytest.raises(InputError, match=rf"train.csv: line {line} opens a quoted text .* never closes, so the "
                       rf"{merged} line\(s\) after it were read as part of that text"):  # fmt: skip
        load_local(tmp_path, tmp_path / "scratch")


def test_a_quoted_text_with_line_breaks_at_the_end_of_the_file_is_read(tmp_path):
    (tmp_path / "train.csv").write_bytes(b'text\ngood\n"two\nlines ""q"""\n')
    assert load_local(tmp_path, tmp_path / "scratch")["train"].rows["text"] == ["good", 'two\nlines "q"']
    # a closed last cell of line breaks only (was refused: its text, stripped, is empty)
    (tmp_path / "train.csv").write_bytes(b'text,label,note\ngood,pos,x\nfine,neg,"\r\n"')
    assert load_local(tmp_path, tmp_path / "scratch")["train"].rows["note"] == ["x", "\r\n"]
