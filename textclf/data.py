"""Read a dataset's splits, as they are: a local folder (the GLUE MRPC TSV layout, or csv, tsv, json,
jsonl or parquet files with any columns) or a Hub dataset. Choosing the text and label columns and
making the splits agree is textclf.labels' job.

Every split comes back as a `Split`: its rows and where they came from (a file path or a Hub split),
so that an error can name the file.
"""

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from datasets import ClassLabel, Dataset, Features, Value, load_dataset

from textclf.errors import InputError
from textclf.sources import (
    FORMATS,
    MRPC_LABELED_HEADER,
    MRPC_TEST_HEADER,
    SPLIT_NAMES,
    decode_utf8,
    find_split_files,
    has_rows,
    hub_unreachable,
    is_mrpc_tsv,
    require_folder,
    user_path,
)
from textclf.tables import open_delimited

MRPC_LABELS = ["not_equivalent", "equivalent"]  # GLUE's order: label 1 means paraphrase


class Split(NamedTuple):
    rows: Dataset
    origin: str  # a file path or "Hub dataset X split Y": what an error message names


def parse_mrpc_tsv(text: str, name: str) -> dict[str, list]:
    """Parse one MRPC TSV file by splitting on tabs: quotes are plain characters in MRPC, so a
    CSV reader with quoting on merges rows silently. Every line must have exactly 5 fields."""
    lines = text.removeprefix("\ufeff").split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise InputError(f"{name} is empty: expected a header and at least one row.")
    header = lines[0].split("\t")
    if header not in (MRPC_LABELED_HEADER, MRPC_TEST_HEADER):
        raise InputError(
            f"{name}: header {header} is not MRPC's; expected "
            f"{MRPC_LABELED_HEADER} (train/dev) or {MRPC_TEST_HEADER} (test)."
        )
    labeled = header == MRPC_LABELED_HEADER
    rows = [line.split("\t") for line in lines[1:]]
    for n, row in enumerate(rows, start=2):
        if len(row) != 5:
            raise InputError(f"{name}:{n}: {len(row)} tab-separated fields, expected 5 (a missing column?).")
    if not rows:
        raise InputError(f"{name} has a header but no rows.")
    out = {
        "sentence1": [r[3] for r in rows],
        "sentence2": [r[4] for r in rows],
        "idx": [int(r[0]) if not labeled else i for i, r in enumerate(rows)],
    }
    if labeled:
        bad = [(n, r[0]) for n, r in enumerate(rows, start=2) if r[0] not in ("0", "1")]
        if bad:
            n, value = bad[0]
            raise InputError(f"{name}:{n}: label {value!r} is not 0 or 1 ({len(bad)} bad row(s)).")
        out["label"] = [int(r[0]) for r in rows]
    check_unique_ids([(r[1], r[2]) for r in rows], name)
    return out


def check_unique_ids(ids: list, name: str) -> None:
    """A sentence-pair ID seen twice means a broken export."""
    seen = set()
    for pair in ids:
        if pair in seen:
            raise InputError(f"{name}: duplicate sentence-pair ID {pair}; each pair must appear once.")
        seen.add(pair)


def mrpc_split(columns: dict[str, list]) -> Dataset:
    """GLUE's own column names and label names, as the Hub's nyu-mll/glue mrpc has them."""
    features = {"sentence1": Value("string"), "sentence2": Value("string")}
    if "label" in columns:
        features["label"] = ClassLabel(names=MRPC_LABELS)
    features["idx"] = Value("int64")
    return Dataset.from_dict({k: columns[k] for k in features}, features=Features(features))


def load_table(path: Path, scratch: Path) -> Dataset:
    """A csv/tsv/json/jsonl/parquet file, every column as the file has it (csv and tsv: as text,
    textclf.tables).

    Its rows are converted to an Arrow file under `scratch` and memory-mapped from there (not
    datasets' cache in the home folder, which would keep a hidden copy of every dataset version).
    """
    fmt = FORMATS[path.suffix]
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty: expected a header and at least one row.")
    if fmt == "csv" and not has_rows(path):
        raise InputError(f"{path} has no rows: only a header.")
    out = scratch / f"{path.stem}.arrow"
    if fmt == "csv":
        ds = batches_to_arrow(*open_delimited(path), out)
    else:
        try:
            if fmt == "parquet":
                ds = parquet_to_arrow(path, out)
            else:
                ds = load_dataset(fmt, data_files=str(path), split="train", cache_dir=str(scratch))
        except Exception as e:
            raise InputError(f"{path}: could not be read as {fmt}: {e}") from None
    if len(ds) == 0:
        raise InputError(f"{path} has no rows.")
    return ds


def parquet_to_arrow(path: Path, out: Path) -> Dataset:
    """Stream a parquet file into an Arrow file 10,000 rows at a time, and memory-map that.

    datasets' own parquet loader pre-buffers whole row groups: the stage's memory grew with the file
    (+194 MB at 1M synthetic pairs, +254 MB at 3M); streaming stays near one batch (+68, +74 MB).
    """
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path, pre_buffer=False)
    return batches_to_arrow(source.schema_arrow, source.iter_batches(batch_size=10_000, use_threads=False), out)


def batches_to_arrow(schema, batches: Iterable, out: Path) -> Dataset:
    """Write Arrow record batches to an Arrow file as they come, and memory-map it."""
    import pyarrow as pa

    out.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(batch)
    return Dataset.from_file(str(out))


def load_local(folder: Path, scratch: Path) -> dict[str, Split]:
    """The splits of a local folder; files other than MRPC TSV are converted to Arrow under `scratch`,
    which must outlive the returned datasets (they are memory-mapped from there)."""
    require_folder(folder)
    splits = {}
    for split, path in find_split_files(folder).items():
        if is_mrpc_tsv(path):
            rows = mrpc_split(parse_mrpc_tsv(decode_utf8(path.read_bytes(), str(path)), str(path)))
        else:
            rows = load_table(path, scratch)
        splits[split] = Split(rows, str(path))
    return splits


def load_hub(dataset: str, subset: str | None) -> dict[str, Split]:
    offline = hub_unreachable()
    try:
        if offline:  # only a copy in the local Hub cache can serve; no half minute of retries
            import datasets

            datasets.config.HF_HUB_OFFLINE = True
        dd = load_dataset(dataset, subset)
    except Exception as e:
        why = f"the Hub can't be reached ({offline})" if offline else f"{type(e).__name__}: {e}"
        raise InputError(
            f"could not load dataset '{dataset}' ({subset}) from the Hugging Face Hub: {why}. "
            f"There is no local folder {user_path(dataset)} either. Point `dataset` at a local folder, "
            "e.g.: dvc exp run -S dataset=../shared/mrpc"
        ) from None
    splits = {}
    for split, names in SPLIT_NAMES.items():
        name = next((n for n in names if n in dd), None)
        if name is not None:
            splits[split] = Split(dd[name], f"Hub dataset {dataset} ({subset}) split {name}")
    if "train" not in splits:
        raise InputError(f"Hub dataset '{dataset}' ({subset}) has no train split; it has {list(dd)}.")
    return splits
