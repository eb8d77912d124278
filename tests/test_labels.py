"""Any text-classification dataset into the pipeline's shape: single texts or pairs, any column names,
integer, ClassLabel or string labels, with or without a validation split. Small hand-written files."""

import json
import unicodedata

import numpy as np
import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from tests.conftest import LABELED_HEADER, ROWS, TEST_HEADER, tsv
from tests.test_params import defaults
from textclf.columns import label_counts
from textclf.data import Split, load_hub, load_local
from textclf.errors import InputError
from textclf.labels import SPLIT_SEED, carve_validation, data_warnings, missing_from_validation, prepare
from textclf.params import parse_params
from textclf.preflight import check_columns
from textclf.sources import separator_hint

SMS = [("ham", "See you at 6?"), ("spam", "WIN a FREE prize now!!!"), ("ham", "Ok, on my way")] * 6 + [
    ("spam", "Claim your cash reward"),
    ("ham", "Call me later"),
]  # 13 ham, 7 spam


def write_sms(folder, rows=SMS, test=True, test_labels=True):
    folder.mkdir(exist_ok=True)
    pd.DataFrame(rows, columns=["category", "message"]).to_csv(folder / "train.csv", index=False)
    if test:
        frame = pd.DataFrame([("ham", "Lunch?"), ("spam", "Free ringtones")], columns=["category", "message"])
        frame[["category", "message"] if test_labels else ["message"]].to_csv(folder / "test.csv", index=False)
    return folder


def run(folder, text_columns=("sentence1", "sentence2"), label_column="label", labels=None, split=0.1):
    return prepare(load_local(folder, folder / ".scratch"), list(text_columns), label_column, labels, split)


def test_single_text_csv_with_string_labels_and_no_validation_file(tmp_path):
    data, task = run(write_sms(tmp_path / "sms"), ["message"], "category")
    assert task.label_names == ["ham", "spam"]  # sorted: spam (id 1) is the positive class
    assert set(data["train"].column_names) == {"text", "label", "idx"}
    assert data["train"].features["label"] == ClassLabel(names=["ham", "spam"])
    # 10% of each class held out, stratified: round(1.3) ham + round(0.7) spam.
    assert label_counts(data)["validation"] == {"ham": 1, "spam": 1}
    assert len(data["train"]) == 18 and task.validation.startswith("0.1 of train, stratified")
    held = set(data["validation"]["idx"])
    assert held.isdisjoint(data["train"]["idx"]) and held | set(data["train"]["idx"]) == set(range(20))
    assert data["test"]["label"] == [0, 1] and data["test"]["text"] == ["Lunch?", "Free ringtones"]


def test_test_split_without_labels_is_kept_for_prediction(tmp_path):
    data, _ = run(write_sms(tmp_path / "sms", test_labels=False), ["message"], "category")
    assert set(data["test"].column_names) == {"text", "idx"} and len(data["test"]) == 2


def test_three_class_pairs_with_string_labels_in_jsonl(tmp_path):
    folder = tmp_path / "nli"
    folder.mkdir()
    pairs = [
        ("A man sleeps.", "A person rests.", "ENTAILMENT"),
        ("A man sleeps.", "A man runs.", "CONTRADICTION"),
        ("A dog barks.", "A dog is hungry.", "NEUTRAL"),
    ]
    for split, rows in (("train", pairs * 3), ("validation", pairs)):
        frame = pd.DataFrame(rows, columns=["sentence1", "sentence2", "label"])
        frame.to_json(folder / f"{split}.jsonl", orient="records", lines=True)
    data, task = run(folder)
    assert task.label_names == ["CONTRADICTION", "ENTAILMENT", "NEUTRAL"]
    assert data["validation"]["label"] == [1, 0, 2] and task.validation == "file"
    assert data["train"]["text_pair"][:2] == ["A person rests.", "A man runs."]


def test_parquet_single_text_with_other_columns_ignored(tmp_path):
    frame = pd.DataFrame({"id": [7, 8, 9, 10], "body": ["good", "bad", "fine", "awful"], "y": [1, 0, 1, 0]})
    frame.assign(note="x").to_parquet(tmp_path / "train.parquet")
    frame.to_parquet(tmp_path / "dev.parquet")
    data, task = run(tmp_path, ["body"], "y")
    assert task.label_names == ["0", "1"] and data["train"]["label"] == [1, 0, 1, 0]
    assert set(data["train"].column_names) == {"text", "label", "idx"}


def test_labels_param_sets_the_order(tmp_path):
    data, task = run(write_sms(tmp_path / "sms"), ["message"], "category", labels=["spam", "ham"])
    assert task.label_names == ["spam", "ham"]
    assert data["test"]["label"] == [1, 0]  # ham is now id 1, the positive class


def test_labels_param_must_cover_train_and_only_train(tmp_path):
    folder = write_sms(tmp_path / "sms")
    with pytest.raises(InputError, match=r"train.csv: label\(s\) 'spam' are not in the labels param"):
        run(folder, ["message"], "category", labels=["ham", "other"])
    with pytest.raises(InputError, match=r"labels: \['maybe'\] never appear in train"):
        run(folder, ["message"], "category", labels=["ham", "spam", "maybe"])
    # The param's names are trimmed as the data's labels are; a case variant is pointed out.
    data, task = run(folder, ["message"], "category", labels=[" spam ", "ham"])
    assert task.label_names == ["spam", "ham"]
    with pytest.raises(InputError, match=r"label\(s\) 'spam' are not in the labels param \['ham', 'Spam'\] "
                       r"\('spam' is spelled 'Spam' there: spell it one way\)"):  # fmt: skip
        run(folder, ["message"], "category", labels=["ham", "Spam"])


def test_a_label_train_never_shows_is_named_with_its_split(tmp_path):
    folder = write_sms(tmp_path / "sms", test=False)
    pd.DataFrame([("ham", "hi"), ("eggs", "bye")], columns=["category", "message"]).to_csv(
        folder / "validation.csv", index=False
    )
    with pytest.raises(InputError, match=r"validation.csv: validation has label\(s\) 'eggs' that train never"):
        run(folder, ["message"], "category")


def test_a_blank_or_missing_label_names_the_row(tmp_path):
    rows = [*SMS[:2], (" \u200b", "no label here"), *SMS[2:]]  # a zero-width space is blank too
    with pytest.raises(InputError, match=r"train.csv: row 3 has no label \(1 row\(s\) without one\)"):
        run(write_sms(tmp_path / "blank", rows), ["message"], "category")
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [1, 0, None, 1]})  # pandas: 1.0, 0.0, NaN
    (tmp_path / "gap").mkdir()
    frame.to_csv(tmp_path / "gap" / "train.csv", index=False)
    with pytest.raises(InputError, match="row 3 has no label"):
        run(tmp_path / "gap", ["text"])


def test_a_partly_labeled_test_split_is_refused(tmp_path):
    folder = write_sms(tmp_path / "sms")
    pd.DataFrame([("ham", "a"), (None, "b")], columns=["category", "message"]).to_csv(folder / "test.csv", index=False)
    with pytest.raises(InputError, match="test.csv: row 2 has no label.*fully labeled"):
        run(folder, ["message"], "category")


def test_integer_labels_keep_numeric_order(tmp_path):
    stars = pd.DataFrame({"review": [f"r{i}" for i in range(12)], "stars": [1, 2, 3, 4, 5, 10] * 2})
    stars.to_csv(tmp_path / "train.csv", index=False)
    stars.to_csv(tmp_path / "validation.csv", index=False)
    data, task = run(tmp_path, ["review"], "stars")
    assert task.label_names == ["1", "2", "3", "4", "5", "10"]  # not "1", "10", "2", ...
    assert data["train"]["label"][:6] == [0, 1, 2, 3, 4, 5]


def test_labels_spelled_none_na_or_with_leading_zeros_are_classes_of_their_own(tmp_path):
    """Read through pandas, `None` and `NA` were missing labels and `01` merged with `1`."""
    rows = [("01", "first"), ("1", "second"), ("2", "third"), ("None", "fourth"), ("NA", "fifth")] * 4
    pd.DataFrame(rows, columns=["label", "text"]).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(rows[:5], columns=["label", "text"]).to_csv(tmp_path / "dev.csv", index=False)
    _, task = run(tmp_path, ["text"], "label")
    assert task.label_names == ["01", "1", "2", "NA", "None"]  # sorted as text: not all spell integers
    (tmp_path / "train.csv").write_text("label,text\n" + "".join(f"{n},t{n}\n" for n in [10, 2, -1, 2, 10, -1]))
    (tmp_path / "dev.csv").write_text("label,text\n10,a\n-1,b\n")
    data, task = run(tmp_path, ["text"], "label")
    assert task.label_names == ["-1", "2", "10"] and data["train"]["label"] == [2, 1, 0, 1, 2, 0]


def test_a_csv_idx_column_keeps_its_ids(tmp_path):
    (tmp_path / "train.csv").write_text("idx,text,label\n" + "".join(f"{70 + i},t{i},{i % 2}\n" for i in range(20)))
    data, _ = run(tmp_path, ["text"], "label")
    assert sorted([*data["train"]["idx"], *data["validation"]["idx"]]) == list(range(70, 90))


def test_a_semicolon_separated_csv_is_named_as_such(tmp_path):
    (tmp_path / "train.csv").write_text("review;stars\ngreat;5\nawful;1\n" * 3)
    expected = "It read as one column whose name holds ';'s: a .csv file must be comma-separated"
    with pytest.raises(InputError, match=r"no text column 'review'; its columns are \['review;stars'\]") as e:
        run(tmp_path, ["review"], "stars")
    assert expected in str(e.value)
    with pytest.raises(InputError) as e:  # the source stage's check, before anything is read
        check_columns(parse_params(defaults() | {"dataset": str(tmp_path), "text_columns": ["review"]}))
    assert expected in str(e.value)
    assert separator_hint(["a\tb"]).startswith(" It read as one column whose name holds tabs")
    assert separator_hint(["review", "stars"]) == separator_hint(["review"]) == ""


def test_a_missing_text_column_names_the_file_and_the_columns(tmp_path):
    folder = write_sms(tmp_path / "sms")
    with pytest.raises(InputError) as e:
        run(folder)  # the MRPC defaults on a single-text file
    message = str(e.value)
    assert "train.csv: no text column 'sentence1'" in message and "['category', 'message']" in message
    assert "-S 'text_columns=[category]'" in message or "-S 'text_columns=[message]'" in message
    with pytest.raises(InputError) as e:  # the source stage's check says the same, without an example
        check_columns(parse_params(defaults() | {"dataset": str(folder)}))
    assert (
        "no text column 'sentence1'; its columns are ['category', 'message']. Set text_columns to the column(s) "
        "holding the text." in str(e.value)
    )
    with pytest.raises(InputError, match="no label column 'label'.*-S label_column=category"):
        run(folder, ["message"])


def test_an_empty_text_names_column_and_row(tmp_path):
    rows = [*SMS[:4], ("ham", None), *SMS[4:]]
    with pytest.raises(InputError, match=r"text column 'message' is empty in 1 row\(s\), first at row 5"):
        run(write_sms(tmp_path / "sms", rows), ["message"], "category")


def test_empty_texts_are_counted_across_the_slices_they_are_checked_in(tmp_path, monkeypatch):
    monkeypatch.setattr("textclf.labels.CHECK_ROWS", 3)
    # a zero-width space and a no-break space are as empty to the model as a blank (its tokenizer drops them)
    rows = [*SMS[:7], ("ham", " "), *SMS[7:10], ("spam", "\u200b\u00a0"), ("ham", "ok\u200b"), *SMS[10:]]
    with pytest.raises(InputError, match=r"'message' is empty in 2 row\(s\), first at row 8"):
        run(write_sms(tmp_path / "sms", rows), ["message"], "category")


def test_a_number_in_a_text_column_names_its_row(tmp_path):
    (tmp_path / "d").mkdir()
    rows = [{"text": "hello there", "label": "a"}, {"text": 12345, "label": "b"}, {"text": "ok", "label": "a"}]
    (tmp_path / "d" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 4))
    with pytest.raises(InputError, match=r"train.jsonl: text column 'text': row 2 holds 12345 \(int\), not a text"):
        run(tmp_path / "d", ["text"])
    pd.DataFrame({"text": [1, 2, 3, 4], "label": ["a", "b"] * 2}).to_parquet(tmp_path / "d" / "train.parquet")
    (tmp_path / "d" / "train.jsonl").unlink()
    with pytest.raises(InputError, match=r"train.parquet: text column 'text': row 1 holds 1 \(int\), not a text"):
        run(tmp_path / "d", ["text"])


def test_label_names_with_a_tab_are_refused(tmp_path):
    rows = [("a\tb", "x"), ("c", "y")] * 5
    with pytest.raises(InputError, match="holds a tab or line break"):
        run(write_sms(tmp_path / "sms", rows, test=False), ["message"], "category")


def test_mrpc_layout_keeps_glue_labels_and_can_be_read_as_single_text(tmp_path):
    (tmp_path / "train.tsv").write_text(tsv(LABELED_HEADER, ROWS, bom=True))
    (tmp_path / "dev.tsv").write_text(tsv(LABELED_HEADER, ROWS[:4]))
    (tmp_path / "test.tsv").write_text(tsv(TEST_HEADER, [(str(i + 10), *r[1:]) for i, r in enumerate(ROWS)]))
    data, task = run(tmp_path)
    assert task.label_names == ["not_equivalent", "equivalent"] and data["train"]["label"] == [
        1,
        0,
        1,
        0,
        1,
        0,
    ]
    assert data["train"]["text"][0] == 'He called him " the witness .'
    assert data["test"]["idx"] == list(range(10, 16)) and "label" not in data["test"].column_names
    single, _ = run(tmp_path, ["sentence2"])
    assert "text_pair" not in single["train"].column_names


def glue_like(config_labels: list[str], texts: dict) -> DatasetDict:
    """What load_dataset("nyu-mll/glue", ...) returns: ClassLabel labels, -1 on the unlabeled test split."""
    features = Features({**{c: Value("string") for c in texts}, "label": ClassLabel(names=config_labels)})
    features["idx"] = Value("int32")
    n = len(next(iter(texts.values())))
    split = {**texts, "label": [i % 2 for i in range(n)], "idx": list(range(n))}
    test = {**texts, "label": [-1] * n, "idx": list(range(n))}
    return DatasetDict(
        train=Dataset.from_dict(split, features=features),
        validation=Dataset.from_dict(split, features=features),
        test=Dataset.from_dict(test, features=features),
    )


def test_hub_glue_single_text_task(monkeypatch):
    fake = glue_like(["negative", "positive"], {"sentence": ["good film", "dull", "great", "bad"]})
    monkeypatch.setattr("textclf.data.load_dataset", lambda name, subset: fake)
    data, task = prepare(load_hub("nyu-mll/glue", "sst2"), ["sentence"], "label", None, 0.1)
    assert task.label_names == ["negative", "positive"] and data["validation"]["label"] == [0, 1, 0, 1]
    assert "label" not in data["test"].column_names and data["test"]["idx"] == [0, 1, 2, 3]
    with pytest.raises(InputError, match=r"Hub dataset nyu-mll/glue \(sst2\) split train: no text column 'text'"):
        prepare(load_hub("nyu-mll/glue", "sst2"), ["text"], "label", None, 0.1)


def test_carved_validation_is_stratified_seeded_and_keeps_train_order():
    labels = np.array([0] * 700 + [1] * 250 + [2] * 50)
    np.random.default_rng(1).shuffle(labels)
    ds = Dataset.from_dict({"label": labels, "idx": np.arange(1000)})
    train, validation = carve_validation(ds, 0.1)
    assert np.bincount(validation["label"]).tolist() == [70, 25, 5]
    assert list(train["idx"]) == sorted(train["idx"]) and len(train) == 900
    again = carve_validation(ds, 0.1)[1]
    assert list(again["idx"]) == list(validation["idx"])  # the same rows in every experiment


def test_too_small_to_carve_says_what_to_do():
    with pytest.raises(InputError, match="2 rows in 2 classes .the smallest 1 rows.: validation_split 0.1 holds "
                       "out no row. Add a validation file"):  # fmt: skip
        carve_validation(Dataset.from_dict({"label": [0, 1], "idx": [0, 1]}), 0.1)


@pytest.mark.parametrize(
    ("sizes", "fraction", "held", "classes"),
    [
        ([4] * 40 + [140], 0.1, 30, 17),  # per class rounding held out only the 140-row class: one class
        ([5] * 60, 0.1, 30, 30),  # per class rounding held out nothing ("too few rows")
        ([5] * 60, 0.15, 60, 60),  # every class has a row: per class rounding as before (0.75 -> 1)
        ([1, 1, 1, 50], 0.5, 25, 1),  # one-row classes keep their row in train
    ],
)
def test_carved_validation_holds_the_fraction_across_small_classes(sizes, fraction, held, classes):
    labels = np.repeat(np.arange(len(sizes)), sizes)
    train, validation = carve_validation(Dataset.from_dict({"label": labels, "idx": np.arange(len(labels))}), fraction)
    per_class = np.bincount(validation["label"], minlength=len(sizes))
    assert len(validation) == held and len(train) + held == len(labels)
    assert (np.bincount(train["label"], minlength=len(sizes)) >= 1).all()  # no class loses its last train row
    assert (np.abs(per_class - np.array(sizes) * fraction) <= 1).all()  # each class within a row of its share
    assert (per_class > 0).sum() == classes


@pytest.mark.parametrize("sizes", [[2474, 1194], [16, 16], [700, 250, 50], [4825, 747], [9, 3, 2]])
def test_carved_validation_keeps_the_rows_per_class_rounding_chose(sizes):
    # Where per class rounding gives every class of 2+ rows a validation row, the rows are the ones it
    # always chose (the rule before the top-up), so runs before and after are judged on the same rows.
    labels = np.repeat(np.arange(len(sizes)), sizes)
    np.random.default_rng(7).shuffle(labels)
    rng = np.random.default_rng(SPLIT_SEED)
    before = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: round(np.sum(labels == c) * 0.1)]
                                     for c in np.unique(labels)]))  # fmt: skip
    validation = carve_validation(Dataset.from_dict({"label": labels, "idx": np.arange(len(labels))}), 0.1)[1]
    assert validation["idx"] == before.tolist()


def test_classes_missing_from_validation_are_named(tmp_path):
    rows = [(f"text {i}", f"c{i % 3}") for i in range(30)] + [("rare text", "rare")]
    data, task = prepare(
        {"train": Split(Dataset.from_dict({"t": [r[0] for r in rows], "y": [r[1] for r in rows]}), "train.csv")},
        ["t"], "y", None, 0.1,
    )  # fmt: skip
    assert missing_from_validation(data) == ["rare"]
    nfd = unicodedata.normalize("NFD", "négatif")
    assert data_warnings(data, task._replace(label_names=["négatif", nfd]))[-1].startswith(
        "labels 'n\\xe9gatif' and 'ne\\u0301gatif' differ only"  # the same look: their code points shown
    )
    assert data_warnings(data, task) == [
        "validation has no row of 1 of 4 classes ('rare'), so its scores say nothing about them; "
        "validation_split's share of train ran out before them (and a class's only train row is never held "
        "out): add a validation file, or raise validation_split"
    ]


def test_an_idx_column_that_repeats_values_is_warned_of():
    """A source's own idx names rows in the predictions and the submission: repeats make rows ambiguous."""

    def split(ids, name):
        texts = [f"{name} text {i}" for i in range(len(ids))]
        return Split(Dataset.from_dict({"t": texts, "y": ["a", "b"] * (len(ids) // 2), "idx": ids}), name)

    train, validation = split([0, 1, 2, 9, 3, 9, 1, 4], "train.csv"), split([0, 1, 2, 3], "dev.csv")
    data, task = prepare({"train": train, "validation": validation}, ["t"], "y", None, 0.1)
    assert data["train"]["idx"] == [0, 1, 2, 9, 3, 9, 1, 4]  # kept as the source gave them
    assert [w for w in data_warnings(data, task) if "idx" in w] == [
        "train's idx column repeats 2 values (first: 1): data/predictions and the test submission name rows by "
        "idx, so those rows can't be told apart there; give each row its own idx"
    ]
    data, task = prepare({"train": split(list(range(8)), "train.csv"), "validation": validation}, ["t"], "y", None, 0.1)
    assert [w for w in data_warnings(data, task) if "idx" in w] == []
    # Validation carved from train (a selection over train's table): each split's own rows are read (the
    # whole table warned both splits of 0); two missing ids (empty csv cells) are no repeat.
    ids = [0, 1, 2, 3, 4, 0, 6, 7, 8, 9] * 2
    ids = [None if i == 9 else i + 100 * (n >= 10) for n, i in enumerate(ids)]
    data, task = prepare({"train": split(ids, "train.csv")}, ["t"], "y", None, 0.5)
    assert [w.split("):")[0] + ")" for w in data_warnings(data, task) if "idx" in w] == [
        "train's idx column repeats 1 value (first: 100)"  # validation took one of the two 0s: none repeats there
    ]


def test_source_json_shape_is_serialisable(tmp_path):
    data, task = run(write_sms(tmp_path / "sms"), ["message"], "category")
    json.dumps({"counts": label_counts(data), "task": task._asdict()})


def test_a_train_split_with_one_class_is_refused(tmp_path):
    """One class trains a 1-output head that scores 1.0 on anything: refused before any download."""
    rows = [("spam", f"message {i}") for i in range(30)]
    with pytest.raises(
        InputError, match=r"train.csv: train has only 'spam' \(30 rows\): a classifier needs at least two"
    ):
        run(write_sms(tmp_path / "sms", rows, test=False), ["message"], "category")


def test_labels_that_differ_only_in_case_are_found():
    from textclf.labels import lookalike_labels

    assert lookalike_labels(["neg", "Pos", "pos", "pos  x", "Pos X"]) == [["Pos", "pos"], ["pos  x", "Pos X"]]
    assert lookalike_labels(["ham", "spam"]) == []
    assert lookalike_labels(["0", "1", "1.0", "01", "2"]) == [["1", "1.0", "01"]]  # one number, three spellings
    nfd = unicodedata.normalize("NFD", "négatif")  # the accent typed as a character of its own
    assert lookalike_labels(["négatif", nfd, "positif"]) == [["négatif", nfd]]
    assert lookalike_labels(["spam", "spam\u200b", "ham"]) == [["spam", "spam\u200b"]]  # a zero-width space


def test_validation_rows_copied_from_train_are_counted(tmp_path):
    from textclf.labels import seen_in_train

    folder = write_sms(tmp_path / "sms")  # its test rows are new texts
    pd.DataFrame(SMS[:3] + [("ham", "a new text")], columns=["category", "message"]).to_csv(
        folder / "validation.csv", index=False
    )
    data, _ = run(folder, ["message"], "category")
    assert seen_in_train(data) == {"validation": 3, "test": 0}
    (folder / "validation.csv").unlink()  # carved from train: a selection of the same table, no overlap
    rows = [("ham", f"text {i}") for i in range(30)] + [("spam", f"offer {i}") for i in range(10)]
    write_sms(folder, rows)
    data, _ = run(folder, ["message"], "category")
    assert len(data["validation"]) == 4 and seen_in_train(data) == {"validation": 0, "test": 0}


def test_a_pair_counts_as_seen_only_with_both_texts():
    from textclf.labels import seen_in_train

    train = Dataset.from_dict({"text": ["a", "b", "c"], "text_pair": ["x", "y", "z"], "label": [0, 1, 0]})
    validation = Dataset.from_dict({"text": ["a", "b", "q"], "text_pair": ["x", "x", "z"], "label": [0, 1, 0]})
    data = DatasetDict(train=train, validation=validation, test=validation.select([0]))
    assert seen_in_train(data) == {"validation": 1, "test": 1}
    assert seen_in_train(data, batch_rows=1) == {"validation": 1, "test": 1}  # train streamed a row at a time
