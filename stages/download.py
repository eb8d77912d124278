"""Bring in the dataset and the pretrained checkpoint: -> data/raw, data/pretrained, data/source.json.

`dataset` is a Hub dataset id (with `subset`) or a local folder: either the GLUE MRPC layout
(train.tsv, dev.tsv, test.tsv in the original MRPC TSV format) or train/validation(dev)/test files
in csv, tsv, json, jsonl or parquet with sentence1, sentence2 and label columns.
`model` is a Hub id or a local folder; it is copied (safetensors only) so that the exact checkpoint
is a DVC output, hashed in dvc.lock and in data/source.json.
"""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_dataset

from stages.common import (
    OFFLINE_MODELS,
    PRETRAINED,
    RAW,
    SOURCE,
    StageError,
    atomic_dir,
    run_stage,
    scratch_dir,
    sha256_file,
    warn_remote_code,
    write_json,
)
from stages.params import load_params
from stages.source import local_folder, require_folder

MRPC_LABELS = ["not_equivalent", "equivalent"]  # GLUE's order: label 1 means paraphrase
MRPC_LABELED_HEADER = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
MRPC_TEST_HEADER = ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"]
SPLIT_NAMES = {"train": ["train"], "validation": ["validation", "dev"], "test": ["test"]}
FORMATS = {".tsv": "csv", ".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
MODEL_FILES = [  # config and tokenizer; weights are found by safetensors_files()
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
]


def decode_utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")  # MRPC's train.tsv starts with a BOM
    except UnicodeDecodeError as e:
        raise StageError(
            f"{name} is not UTF-8 (byte {data[e.start]:#04x} at offset {e.start}). "
            "Re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8."
        ) from None


def parse_mrpc_tsv(text: str, name: str) -> dict[str, list]:
    """Parse one MRPC TSV file by splitting on tabs: quotes are plain characters in MRPC, so a
    CSV reader with quoting on merges rows silently. Every line must have exactly 5 fields."""
    lines = text.removeprefix("\ufeff").split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise StageError(f"{name} is empty: expected a header and at least one row.")
    header = lines[0].split("\t")
    if header not in (MRPC_LABELED_HEADER, MRPC_TEST_HEADER):
        raise StageError(
            f"{name}: header {header} is not MRPC's; expected "
            f"{MRPC_LABELED_HEADER} (train/dev) or {MRPC_TEST_HEADER} (test)."
        )
    labeled = header == MRPC_LABELED_HEADER
    rows = [line.split("\t") for line in lines[1:]]
    for n, row in enumerate(rows, start=2):
        if len(row) != 5:
            raise StageError(f"{name}:{n}: {len(row)} tab-separated fields, expected 5 (a missing column?).")
    if not rows:
        raise StageError(f"{name} has a header but no rows.")
    out = {
        "sentence1": [r[3] for r in rows],
        "sentence2": [r[4] for r in rows],
        "idx": [int(r[0]) if not labeled else i for i, r in enumerate(rows)],
    }
    if labeled:
        bad = [(n, r[0]) for n, r in enumerate(rows, start=2) if r[0] not in ("0", "1")]
        if bad:
            n, value = bad[0]
            raise StageError(f"{name}:{n}: label {value!r} is not 0 or 1 ({len(bad)} bad row(s)).")
        out["label"] = [int(r[0]) for r in rows]
    check_pairs(out, name, ids=[(r[1], r[2]) for r in rows])
    return out


def check_pairs(columns: dict[str, list], name: str, ids: list | None = None) -> None:
    """Reject empty sentences and duplicate pair IDs: both mean a broken export."""
    for col in ("sentence1", "sentence2"):
        empty = [i for i, s in enumerate(columns[col]) if s is None or not str(s).strip()]
        if empty:
            raise StageError(f"{name}: {len(empty)} empty {col} value(s), first at row {empty[0] + 1}.")
    if ids is not None and len(set(ids)) != len(ids):
        seen, dup = set(), None
        for pair in ids:
            if pair in seen:
                dup = pair
                break
            seen.add(pair)
        raise StageError(f"{name}: duplicate sentence-pair ID {dup}; each pair must appear once.")


def mrpc_split(columns: dict[str, list]) -> Dataset:
    features = {"sentence1": Value("string"), "sentence2": Value("string")}
    if "label" in columns:
        features["label"] = ClassLabel(names=MRPC_LABELS)
    features["idx"] = Value("int64")
    return Dataset.from_dict({k: columns[k] for k in features}, features=Features(features))


def find_split_files(folder: Path) -> dict[str, Path]:
    found = {}
    for split, stems in SPLIT_NAMES.items():
        matches = [p for stem in stems for ext in FORMATS for p in [folder / f"{stem}{ext}"] if p.exists()]
        if len(matches) > 1:
            raise StageError(f"{folder}: several files for split '{split}': {[m.name for m in matches]}.")
        if matches:
            found[split] = matches[0]
    for split in ("train", "validation"):
        if split not in found:
            raise StageError(
                f"{folder}: no {split} file. Expected {' or '.join(SPLIT_NAMES[split])} with an "
                f"extension in {sorted(FORMATS)} (GLUE MRPC layout: train.tsv, dev.tsv, test.tsv)."
            )
    return found


def is_mrpc_tsv(path: Path) -> bool:
    if path.suffix != ".tsv":
        return False
    with path.open("rb") as f:
        first = f.readline().decode("utf-8-sig", errors="replace").rstrip("\r\n")
    return first.split("\t") in (MRPC_LABELED_HEADER, MRPC_TEST_HEADER)


def load_table(path: Path, scratch: Path) -> Dataset:
    """A csv/tsv/json/parquet file with sentence1, sentence2 and (except test) label columns.

    Its rows are converted to an Arrow file under `scratch` and memory-mapped from there (not
    datasets' cache in the home folder, which would keep a hidden copy of every dataset version).
    """
    fmt = FORMATS[path.suffix]
    kwargs = {"delimiter": "\t", "quoting": 3} if path.suffix == ".tsv" else {}  # 3: QUOTE_NONE
    try:
        if fmt == "parquet":
            ds = parquet_to_arrow(path, scratch / f"{path.stem}.arrow")
        else:
            ds = load_dataset(fmt, data_files=str(path), split="train", cache_dir=str(scratch), **kwargs)
    except Exception as e:
        raise StageError(f"{path}: could not be read as {fmt}: {e}") from None
    missing = {"sentence1", "sentence2"} - set(ds.column_names)
    if missing:
        raise StageError(f"{path}: missing column(s) {sorted(missing)}; found {ds.column_names}.")
    keep = [c for c in ("sentence1", "sentence2", "label", "idx") if c in ds.column_names]
    ds = ds.select_columns(keep)
    check_empty_sentences(ds, str(path))
    if "idx" not in ds.column_names:
        ds = ds.add_column("idx", np.arange(len(ds)))  # not a Python list: 1M ints would be ~60 MB
    return ds


def parquet_to_arrow(path: Path, out: Path) -> Dataset:
    """Stream a parquet file into an Arrow file 10,000 rows at a time, and memory-map that.

    datasets' own parquet loader pre-buffers whole row groups: the stage's memory grew with the file
    (+194 MB at 1M synthetic pairs, +254 MB at 3M); streaming stays near one batch (+68, +74 MB).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(path, pre_buffer=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_stream(sink, source.schema_arrow) as writer:
        for batch in source.iter_batches(batch_size=10_000, use_threads=False):
            writer.write_batch(batch)
    return Dataset.from_file(str(out))


def check_empty_sentences(ds: Dataset, name: str) -> None:
    """Arrow-side check (no Python copy of the column), so it stays cheap on millions of rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for col in ("sentence1", "sentence2"):
        values = ds.data.column(col)
        if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
            raise StageError(f"{name}: column {col} holds {values.type}, not text.")
        count = 0
        for chunk in values.chunks:  # chunk by chunk: trimming copies the strings
            blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(chunk)), 0)
            count += pc.sum(pc.or_kleene(pc.is_null(chunk), blank)).as_py() or 0
        if count:
            raise StageError(f"{name}: {count} empty {col} value(s); every pair needs two sentences.")


def normalise_labels(splits: dict[str, Dataset], source: str) -> DatasetDict:
    """One ClassLabel for all splits; a split whose labels are all missing (-1) loses its label column."""
    for split, ds in list(splits.items()):
        if len(ds) == 0:
            raise StageError(f"{source}: split '{split}' is empty.")
        if "label" in ds.column_names and ds.unique("label") in ([-1], [None], [-1, None], [None, -1]):
            splits[split] = ds.remove_columns("label")
    for split in ("train", "validation"):
        if "label" not in splits[split].column_names:
            raise StageError(
                f"{source}: split '{split}' has no label column; train and validation need labels."
            )
    feature = splits["train"].features["label"]
    if isinstance(feature, ClassLabel):
        names = feature.names
    else:
        # The label set is train's: a validation label train never shows is a data error.
        values = sorted(splits["train"].unique("label"))
        if not all(isinstance(v, int) and v >= 0 for v in values):
            raise StageError(
                f"{source}: labels must be integers 0..N-1 or a ClassLabel; found {values[:10]}."
            )
        names = [str(i) for i in range(max(values) + 1)]
    for split, ds in splits.items():
        if "label" not in ds.column_names:
            continue
        bad = [v for v in ds.unique("label") if not (isinstance(v, int) and 0 <= v < len(names))]
        if bad:
            raise StageError(f"{source}: split '{split}' has label(s) {bad} outside the label set {names}.")
        splits[split] = ds.cast_column("label", ClassLabel(names=names))
    return DatasetDict(splits)


def load_local(folder: Path, scratch: Path) -> DatasetDict:
    """The splits of a local folder; files other than MRPC TSV are converted to Arrow under `scratch`,
    which must outlive the returned datasets (they are memory-mapped from there)."""
    require_folder(folder)
    splits = {}
    for split, path in find_split_files(folder).items():
        if is_mrpc_tsv(path):
            splits[split] = mrpc_split(parse_mrpc_tsv(decode_utf8(path.read_bytes(), str(path)), str(path)))
        else:
            splits[split] = load_table(path, scratch)
    return normalise_labels(splits, str(folder))


def load_hub(dataset: str, subset: str | None) -> DatasetDict:
    try:
        dd = load_dataset(dataset, subset)
    except Exception as e:
        raise StageError(
            f"could not load dataset '{dataset}' ({subset}) from the Hugging Face Hub: "
            f"{type(e).__name__}: {e}\n"
            "Offline? Point `dataset` at a local copy, e.g.: dvc exp run -S dataset=../shared/mrpc"
        ) from None
    splits = {}
    for split, names in SPLIT_NAMES.items():
        name = next((n for n in names if n in dd), None)
        if name is not None:
            splits[split] = dd[name]
    for split in ("train", "validation"):
        if split not in splits:
            raise StageError(f"Hub dataset '{dataset}' has no {split} split; it has {list(dd)}.")
    for split, ds in splits.items():
        missing = {"sentence1", "sentence2"} - set(ds.column_names)
        if missing:
            raise StageError(f"Hub dataset '{dataset}' split {split} lacks column(s) {sorted(missing)}.")
        keep = [c for c in ("sentence1", "sentence2", "label", "idx") if c in ds.column_names]
        splits[split] = ds.select_columns(keep)
    return normalise_labels(splits, dataset)


def model_source(model: str) -> Path:
    """A local folder holding the checkpoint: the given folder, the offline package, or a Hub snapshot."""
    path = Path(model).expanduser()
    if path.exists():
        return path
    if model in OFFLINE_MODELS:
        try:
            package = __import__(OFFLINE_MODELS[model])
            return Path(package.get_model_path())
        except ImportError:
            pass  # not installed: fall back to the Hub
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise StageError(
            f"model folder {model} does not exist. Set `model` to a checkpoint folder or a Hub id."
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                model, allow_patterns=[*MODEL_FILES, "*.safetensors", "*.safetensors.index.json"]
            )
        )
    except Exception as e:
        raise StageError(
            f"could not fetch model '{model}' from the Hugging Face Hub: {type(e).__name__}: {e}\n"
            "Offline? Point `model` at a local checkpoint folder: dvc exp run -S model=/path/to/checkpoint"
        ) from None


def copy_checkpoint(
    src: Path, dst: Path, allow_pickle: bool = False, remote_code: bool = False
) -> dict[str, str]:
    """Copy config, safetensors weights and tokenizer files (and the checkpoint's *.py files only with
    trust_remote_code); return {file: sha256}. Downstream stages only ever load safetensors."""
    if not (src / "config.json").exists():
        raise StageError(f"model folder {src} has no config.json: it is not a Hugging Face checkpoint.")
    weights = safetensors_files(src)
    if not weights:
        pickled = sorted(p.name for p in src.glob("*.bin")) + sorted(p.name for p in src.glob("*.pt"))
        if not pickled:
            raise StageError(
                f"model folder {src} has no weights (model.safetensors): a config alone can't train."
            )
        if not allow_pickle:
            raise StageError(
                f"model folder {src} has no model.safetensors, only {pickled}: pickle files, which can run "
                "code when loaded. Convert it (model.save_pretrained(dir) saves safetensors), or if you "
                "trust the file set allow_pickle: true to convert it here with torch's weights-only loader."
            )
        if not (src / "pytorch_model.bin").exists():  # sharded or oddly named: no guessing
            raise StageError(
                f"allow_pickle converts a single pytorch_model.bin; {src} has {pickled}. Load it with "
                "transformers and save_pretrained() it (safetensors), then point `model` at that folder."
            )
        convert_pickled(src / "pytorch_model.bin", dst / "model.safetensors")
        weights = ["model.safetensors"]
    names = MODEL_FILES + weights + (sorted(p.name for p in src.glob("*.py")) if remote_code else [])
    hashes = {}
    for name in names:
        if (src / name).exists() and not (dst / name).exists():
            shutil.copyfile(src / name, dst / name)
        if (dst / name).exists():
            hashes[name] = sha256_file(dst / name)
    return hashes


def safetensors_files(src: Path) -> list[str]:
    """model.safetensors, or a sharded checkpoint's index and shards."""
    if (src / "model.safetensors").exists():
        return ["model.safetensors"]
    index = src / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (src / s).exists()]
        if missing:
            raise StageError(f"model folder {src}: shards {missing} named in {index.name} are missing.")
        return [index.name, *shards]
    return []


def convert_pickled(weights: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    print(f"WARNING: allow_pickle is on: converting {weights} to safetensors (weights-only unpickler).")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)  # refuses arbitrary objects
    except Exception as e:
        raise StageError(f"{weights} could not be loaded as plain weights: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StageError(f"{weights} is not a flat state dict of tensors (an optimizer or training state?).")
    save_file({k: v.contiguous().clone() for k, v in state.items()}, out)  # clone: no shared storage


def sha256_arrow(folder: Path) -> str:
    """Hash of the saved rows only: state.json holds a random fingerprint that would change it."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.arrow")):
        h.update(f"{path.relative_to(folder)}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()


def main() -> None:
    p = load_params()
    warn_remote_code(p.trust_remote_code)
    local = local_folder(p.dataset)
    is_local = local is not None
    with scratch_dir(RAW.with_name(".download.tmp")) as scratch:  # converted files, until saved
        data = load_local(local, scratch) if is_local else load_hub(p.dataset, p.subset)
        src = model_source(p.model)
        with atomic_dir(PRETRAINED) as tmp:
            model_hashes = copy_checkpoint(src, tmp, p.allow_pickle, p.trust_remote_code)
        with atomic_dir(RAW) as tmp:
            data.save_to_disk(str(tmp))
    write_json(
        SOURCE,
        {
            "dataset": str(local.resolve()) if is_local else p.dataset,
            "subset": None if is_local else p.subset,
            "splits": {split: len(ds) for split, ds in data.items()},
            "labeled": {split: "label" in ds.column_names for split, ds in data.items()},
            "label_names": data["train"].features["label"].names,
            "content_sha256": sha256_arrow(RAW),
            "model": {"name": p.model, "loaded_from": str(src), "files_sha256": model_hashes},
        },
    )
    print(
        f"download: {dict((s, len(d)) for s, d in data.items())} from {p.dataset}; model {p.model} from {src}"
    )


if __name__ == "__main__":
    run_stage(main)
