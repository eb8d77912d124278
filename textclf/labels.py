"""Labels and splits: from the columns a user's data happens to have to the pipeline's own shape.

Every split leaves here with the columns `text` (and `text_pair` for sentence pairs), `label` (one
ClassLabel shared by all splits) and `idx`, whatever the source called them, and there is always a
validation split: when the data has none, one is carved from train, stratified by label.

Label names, in id order: the `labels` param when given; else a ClassLabel's own names (Hub data,
MRPC); else integer labels (or texts that all spell integers) in numeric order, or strings in sorted
order. For a binary task the positive class (whose precision/recall/F1 are reported) is id 1: the
second name.

All checks run on Arrow arrays, not Python lists, so that millions of rows cost seconds and little
memory.
"""

import json
import unicodedata
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict

from textclf.columns import BLANK_REGEX, IDX, LABEL, TEXT, TEXT_PAIR, label_ids
from textclf.data import Split
from textclf.errors import InputError, first_few, short_repr
from textclf.sources import missing_column, missing_column_message

# The validation rows carved from train are the same in every experiment, whatever its `seed`, so
# that runs are judged on the same rows and compared pair by pair.
SPLIT_SEED = 0
CHECK_ROWS = 100_000  # rows checked at a time: memory stays near a slice's texts, not the whole column's


class Task(NamedTuple):
    """What the data says the model is for: recorded in data/source.json and in the trained model."""

    text_columns: list[str]
    label_column: str
    label_names: list[str]
    validation: str  # "file", or how it was carved from train


def text_fields(columns: list[str]) -> list[str]:
    return [TEXT, TEXT_PAIR][: len(columns)]


def is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def guess_text_columns(ds: Dataset, wanted: int) -> list[str]:
    """For an error message: the string columns with the longest texts (labels are short), at most
    `wanted` of them, leaving out any far shorter than the longest."""
    head = ds.select(range(min(len(ds), 200)))
    strings = [c for c in ds.column_names if is_text(ds.data.column(c).type)]
    lengths = {c: float(np.mean([len(x or "") for x in head[c]])) for c in strings}
    ranked = sorted(lengths, key=lengths.get, reverse=True)[:wanted]
    return [c for c in ranked if lengths[c] >= lengths[ranked[0]] / 3] or ds.column_names[:wanted]


def guess_label_column(ds: Dataset, exclude: list[str]) -> str | None:
    """For an error message: the other column with the fewest distinct values."""
    head = ds.select(range(min(len(ds), 1000)))
    others = [c for c in ds.column_names if c not in exclude and c != IDX]
    return min(others, key=lambda c: len({str(v) for v in head[c]}), default=None)


def check_columns(split: str, s: Split, text_columns: list[str], label_column: str) -> None:
    columns = s.rows.column_names
    missing = missing_column(columns, text_columns, label_column, split)
    if missing is None:
        return
    if missing in text_columns:
        example = ", ".join(guess_text_columns(s.rows, len(text_columns)))
    else:
        example = guess_label_column(s.rows, text_columns)
    raise InputError(missing_column_message(s.origin, columns, missing, text_columns, split, example))


def canonical(s: Split, text_columns: list[str], label_column: str) -> Dataset:
    """Only the text, label and idx columns, under the pipeline's own names; text checked non-empty."""
    ds = s.rows
    keep = [*text_columns] + ([label_column] if label_column in ds.column_names else [])
    if IDX in ds.column_names and IDX not in keep and is_text(ds.data.column(IDX).type):
        ds = integer_ids(ds)  # a csv file's idx column comes as text
    has_idx = IDX in ds.column_names and IDX not in keep and pa.types.is_integer(ds.data.column(IDX).type)
    ds = ds.select_columns(keep + ([IDX] if has_idx else []))
    renames = dict(zip(text_columns, text_fields(text_columns), strict=True)) | {label_column: LABEL}
    ds = ds.rename_columns({old: new for old, new in renames.items() if old in keep and old != new})
    for column, name in zip(text_fields(text_columns), text_columns, strict=True):
        check_texts(ds, column, f"{s.origin}: text column {name!r}")
    if not has_idx:
        ds = ds.add_column(IDX, np.arange(len(ds)))  # numpy, not a list: 1M ints as a list is ~60 MB
    return ds


def integer_ids(ds: Dataset) -> Dataset:
    """The idx column as integers where every value is one (else left as it is, and not used as ids)."""
    try:
        ids = pc.cast(ds.data.column(IDX), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return ds
    return ds.remove_columns(IDX).add_column(IDX, ids.to_numpy())


def first_rows(mask: pa.ChunkedArray | pa.Array) -> tuple[int, int]:
    """(count of True, 1-based number of the first True row) of a boolean Arrow array."""
    flags = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
    hits = np.flatnonzero(flags)
    return len(hits), (int(hits[0]) + 1 if len(hits) else 0)


def check_texts(ds: Dataset, column: str, what: str) -> None:
    values = ds.data.column(column)
    if not is_text(values.type):
        found = first_non_text(values)
        if found is None:
            raise InputError(f"{what} holds {values.type}, not text. Is text_columns right?")
        row, value = found
        raise InputError(
            f"{what}: row {row} holds {short_repr(value)} ({type(value).__name__}), not a text; every row needs "
            "its text as a string (is text_columns right?)"
        )
    count = row = 0
    for start in range(0, len(values), CHECK_ROWS):  # in slices: bounded memory for the masks
        part = values.slice(start, CHECK_ROWS)
        blank = pc.or_kleene(pc.is_null(part), pc.match_substring_regex(part, BLANK_REGEX))
        n, first = first_rows(pc.fill_null(blank, True))
        count, row = count + n, row or (first and start + first)
    if count:
        raise InputError(f"{what} is empty in {count} row(s), first at row {row}; every row needs its text.")


def first_non_text(values: pa.ChunkedArray) -> tuple[int, object] | None:
    """(1-based row, value) of the first value in a column that is not a string: in a JSON column of
    mixed types (Arrow's JSON extension, each value its JSON text) the first that is not a JSON string;
    in a column of another type (numbers), its first value."""
    start = 0
    for chunk in values.chunks:
        storage = chunk.storage if isinstance(values.type, pa.BaseExtensionType) else chunk
        if is_text(storage.type) and isinstance(values.type, pa.BaseExtensionType):
            other = pc.invert(pc.starts_with(pc.fill_null(storage, '""'), '"'))
            n, first = first_rows(other)
            if n:
                return start + first, json.loads(storage[first - 1].as_py())
        elif not is_text(storage.type):
            valid = np.flatnonzero(np.asarray(chunk.is_valid()))
            if len(valid):
                return start + int(valid[0]) + 1, chunk[int(valid[0])].as_py()
        start += len(chunk)
    return None


def label_strings(ds: Dataset, origin: str) -> pa.ChunkedArray:
    """The label column as stripped strings, with null where a label is missing (null, blank, or a
    ClassLabel's -1, which the Hub uses for unlabeled test rows)."""
    feature, values = ds.features[LABEL], ds.data.column(LABEL)
    kind = values.type
    if isinstance(feature, ClassLabel):
        ids = pc.if_else(pc.less(values, 0), pa.scalar(None, kind), values)
        return pc.take(pa.array(feature.names), ids)
    if pa.types.is_floating(kind):  # pandas turns an int column with a gap into floats: 1.0, 0.0
        if pc.all(pc.equal(pc.floor(values), values)).as_py() is False:
            raise InputError(f"{origin}: labels are fractional numbers ({kind}); expected classes.")
        values = pc.cast(values, pa.int64())
    elif not (
        pa.types.is_integer(kind) or pa.types.is_boolean(kind) or is_text(kind) or pa.types.is_null(kind)
    ):  # fmt: skip
        raise InputError(f"{origin}: label column holds {kind}; expected strings or integers.")
    text = pc.utf8_trim_whitespace(pc.cast(values, pa.string()))
    return pc.if_else(pc.match_substring_regex(text, BLANK_REGEX), pa.scalar(None, pa.string()), text)


def label_order(train: Dataset, train_labels: pa.ChunkedArray, labels: list[str] | None) -> list[str]:
    if labels is not None:
        return [name.strip() for name in labels]  # as the data's labels are (a YAML ' ok ' keeps its spaces)
    if isinstance(train.features[LABEL], ClassLabel):
        return list(train.features[LABEL].names)
    found = [v for v in pc.unique(train_labels).to_pylist() if v is not None]
    if all(is_integer_text(v) for v in found):  # 2 before 10, also where a csv file gave them as text
        return sorted(found, key=lambda v: (int(v), v))
    return sorted(found)


def is_integer_text(value: str) -> bool:
    return value.removeprefix("-").isdigit() and value.isascii()


def counts(values: pa.ChunkedArray) -> dict[str, int]:
    pairs = pc.value_counts(pc.drop_null(values)).to_pylist()
    return {p["values"]: p["counts"] for p in pairs}


def encode_labels(
    splits: dict[str, Split], rows: dict[str, Dataset], labels: list[str] | None
) -> tuple[dict[str, Dataset], list[str]]:
    """One ClassLabel for every split. Missing labels are errors in train and validation; a test split
    with no labels at all loses its label column (kept for prediction only)."""
    strings = {split: label_strings(ds, splits[split].origin) for split, ds in rows.items()
               if LABEL in ds.column_names}  # fmt: skip
    for split, values in strings.items():
        count, row = first_rows(pc.is_null(values))
        if count == len(values) and split == "test":
            rows[split] = rows[split].remove_columns(LABEL)
        elif count:
            raise InputError(
                f"{splits[split].origin}: row {row} has no label ({count} row(s) without one). "
                f"Every {split} row needs a label"
                + (
                    "; drop those rows or fill them in."
                    if split != "test"
                    else ": a test split is either fully labeled (scored) or has no labels at all."
                )
            )
    strings = {split: v for split, v in strings.items() if LABEL in rows[split].column_names}
    names = label_order(rows["train"], strings["train"], labels)
    awkward = [n for n in names if any(ch in n for ch in "\t\n\r")]
    if awkward:  # they would break the TSV files predictions and curves are written to
        raise InputError(f"{splits['train'].origin}: label name {awkward[0]!r} holds a tab or line break.")
    for split, values in strings.items():
        unknown = sorted(set(counts(values)) - set(names))
        if unknown:
            raise InputError(unknown_label_message(split, splits[split].origin, unknown, names, labels))
    present = counts(strings["train"])
    if len(present) < 2:
        only = f"only {next(iter(present))!r} ({len(strings['train'])} rows)" if present else "no labels"
        raise InputError(
            f"{splits['train'].origin}: train has {only}: a classifier needs at least two classes. "
            "Check label_column, or add train rows of the other classes."
        )
    if labels is not None:
        absent = [n for n in names if n not in present]
        if absent:
            raise InputError(
                f"labels: {absent} never appear in train ({splits['train'].origin}), so the model could not "
                f"learn them. Remove them from `labels`, or add training rows for them."
            )
    feature = ClassLabel(names=names)
    for split, values in strings.items():
        ids = pc.index_in(values, value_set=pa.array(names)).to_numpy(zero_copy_only=False)
        rows[split] = rows[split].remove_columns(LABEL).add_column(LABEL, ids.astype(np.int64), feature=feature)
    return rows, names


def lookalike_labels(names: list[str]) -> list[list[str]]:
    """Groups of label names that differ only in case or spacing ('Pos', 'pos '), or spell the same
    number ('1', '1.0'): likely one class spelled two ways, which the model would learn as two."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(number_or_words(name), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def seen_in_train(data: DatasetDict, batch_rows: int = 100_000) -> dict[str, int]:
    """Rows of validation and test whose text (every text column, exactly) is also a train row's: a
    split copied from train, or overlapping it, scores what the model has seen.

    Arrow hash sets, with train streamed in batches against the (smaller) other splits' texts: memory
    stays near one batch whatever train's size (a Python set of train's texts took 1.5 GB at 3M pairs)."""
    fields = [c for c in data["train"].column_names if c not in (LABEL, IDX)]
    others = {split: row_texts(data[split].with_format("arrow")[:], fields)
              for split in ("validation", "test") if split in data}  # fmt: skip
    if not others:
        return {}
    wanted = pc.unique(pa.chunked_array(list(others.values())))
    found = []
    for batch in data["train"].with_format("arrow").iter(batch_size=batch_rows):
        texts = row_texts(batch, fields)
        found.append(pc.unique(texts.filter(pc.is_in(texts, value_set=wanted))))
    seen = pc.unique(pa.chunked_array(found, type=wanted.type))
    return {split: int(pc.sum(pc.is_in(texts, value_set=seen)).as_py() or 0) for split, texts in others.items()}


def row_texts(table: pa.Table, fields: list[str]) -> pa.Array:
    """One string per row: its text, or its texts joined by a separator no text is likely to hold."""
    columns = [table.column(c).combine_chunks() for c in fields]
    return columns[0] if len(columns) == 1 else pc.binary_join_element_wise(*columns, "\x1f")


def unknown_label_message(
    split: str, origin: str, unknown: list[str], names: list[str], labels: list[str] | None
) -> str:
    shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    spelled = {number_or_words(n): n for n in names}
    close = [(u, spelled[number_or_words(u)]) for u in unknown if number_or_words(u) in spelled]
    hint = f" ({repr(close[0][0])} is spelled {close[0][1]!r} there: spell it one way)" if close else ""
    listed = names if len(names) <= 10 else [*names[:10], f"... {len(names) - 10} more"]
    if split == "train":  # only possible with an explicit `labels` list
        return f"{origin}: label(s) {shown} are not in the labels param {labels}{hint}; add them to `labels`."
    return (
        f"{origin}: {split} has label(s) {shown} that train never shows{hint} (train's labels: {listed}). "
        f"A model cannot learn a class it never saw: fix the {split} labels, or add train rows for them."
    )


def carve_validation(train: Dataset, fraction: float, seed: int = SPLIT_SEED) -> tuple[Dataset, Dataset]:
    """Hold out `fraction` of each class of train (seeded); both parts keep train's row order.

    Each class gives its share rounded (half to even), never its last train row. Where that leaves
    classes of two or more rows out of validation (at 0.1, any class under 5 rows: 40 classes of 4 rows
    and one of 140 gave a validation split of that one class), they get a row each, those nearest a whole
    row first (ties in a seeded order), until the split holds its fraction of all rows. Elsewhere the rows
    are those the per class rounding always chose, so earlier runs are judged on the same rows."""
    labels = label_ids(train)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    sizes = np.array([len(m) for m in members])
    quota = sizes * fraction
    take = np.minimum(np.round(quota).astype(int), sizes - 1)
    room = int(np.floor(len(train) * fraction + 0.5)) - int(take.sum())
    left_out = np.flatnonzero((take == 0) & (sizes > 1))
    if room > 0 and len(left_out):
        tiebreak = np.random.default_rng(seed + 1).permutation(len(classes))[left_out]
        take[left_out[np.lexsort((tiebreak, -quota[left_out]))][:room]] = 1
    if take.sum() == 0:
        raise InputError(
            f"train has {len(train)} rows in {len(classes)} classes (the smallest {sizes.min()} rows): "
            f"validation_split {fraction:g} holds out no row. Add a validation file, or raise validation_split."
        )
    validation = np.sort(np.concatenate([m[:k] for m, k in zip(members, take, strict=True)]))
    keep = np.setdiff1d(np.arange(len(train)), validation, assume_unique=True)
    return train.select(keep), train.select(validation)


def repeated_ids(data: DatasetDict) -> dict[str, tuple[int, int]]:
    """Per split whose idx column (the source's own) holds a value more than once: how many values
    repeat, and the first of them in row order."""
    found = {}
    for split, ds in data.items():
        # The split's own rows: a carved split is a selection (an indices mapping) over train's table.
        ids = ds.data.column(IDX)
        if ds._indices is not None:  # a selection over a larger table (no Python list of its row numbers)
            ids = ids.take(ds._indices.column(0))
        ids = pc.drop_null(ids)
        if pc.count_distinct(ids).as_py() < len(ids):
            counts = pc.value_counts(ids)  # in order of first appearance
            many = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
            found[split] = (len(many), many[0].as_py())
    return found


def missing_from_validation(data: DatasetDict) -> list[str]:
    """Train's classes with no validation row: validation's scores say nothing about them."""
    names = data["train"].features[LABEL].names
    present = np.bincount(label_ids(data["validation"]), minlength=len(names))
    in_train = np.bincount(label_ids(data["train"]), minlength=len(names))
    return [n for n, v, t in zip(names, present, in_train, strict=True) if t and not v]


def prepare(
    splits: dict[str, Split],
    text_columns: list[str],
    label_column: str,
    labels: list[str] | None,
    validation_split: float,
) -> tuple[DatasetDict, Task]:
    """Check and reshape raw splits into train/validation(/test) with canonical columns."""
    for split, s in splits.items():
        check_columns(split, s, text_columns, label_column)
    rows = {split: canonical(s, text_columns, label_column) for split, s in splits.items()}
    rows, names = encode_labels(splits, rows, labels)
    if "validation" in rows:
        validation = "file"
    else:
        rows["train"], rows["validation"] = carve_validation(rows["train"], validation_split)
        validation = f"{validation_split:g} of train, stratified by label (seed {SPLIT_SEED})"
    order = [s for s in ("train", "validation", "test") if s in rows]
    return DatasetDict({s: rows[s] for s in order}), Task(text_columns, label_column, names, validation)


def number_or_words(name: str) -> str:
    """A label name's spelling-free identity: its number, or its words in one case, in Unicode's
    compatibility form (an accent typed as its own character) and without invisible characters
    (a zero-width space)."""
    visible = "".join(ch for ch in unicodedata.normalize("NFKC", name) if unicodedata.category(ch) != "Cf")
    try:
        return repr(float(visible))
    except ValueError:
        return " ".join(visible.split()).casefold()


def data_warnings(data: DatasetDict, task: Task) -> list[str]:
    """What looks wrong in data that passed the checks: validation or test rows copied from train,
    classes validation says nothing about, labels that may be one class spelled two ways."""
    found = []
    for split, seen in seen_in_train(data).items():
        if seen:
            found.append(
                f"{seen} of {len(data[split])} {split} rows have the text of a train row: {split} scores them "
                "as seen data (a split copied from train, or overlapping it?)"
            )
    for split, (repeated, first) in repeated_ids(data).items():
        found.append(
            f"{split}'s {IDX} column repeats {repeated} value{'s' if repeated > 1 else ''} (first: {first}): "
            f"data/predictions and the test submission name rows by {IDX}, so those rows can't be told apart "
            f"there; give each row its own {IDX}"
        )
    missing = missing_from_validation(data)
    if missing:
        shown = first_few(missing)
        fix = (
            "add rows of them to the validation split"
            if task.validation == "file"
            else "validation_split's share of train ran out before them (and a class's only train row is never "
            "held out): add a validation file, or raise validation_split"
        )
        found.append(
            f"validation has no row of {len(missing)} of {len(task.label_names)} classes ({shown}), so its "
            f"scores say nothing about them; {fix}"
        )
    for group in lookalike_labels(task.label_names):
        shown = [repr(n) for n in group]
        if len({unicodedata.normalize("NFC", r) for r in shown}) < len(shown):  # one look (an accent typed
            # as a character of its own): their code points tell them apart
            shown = [ascii(n) for n in group]
        found.append(
            f"labels {' and '.join(shown)} differ only in case, spacing, Unicode form, invisible "
            "characters or how a number is written, so they are separate classes; if they are one class, spell "
            "it one way in the data"
        )
    return found
