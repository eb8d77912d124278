"""Bring in the dataset and the pretrained checkpoint: -> data/raw, data/pretrained, data/source.json.

`dataset` is a Hub dataset id (with `subset`) or a local folder: the GLUE MRPC TSV layout, or
train/validation(dev)/test files in csv, tsv, json, jsonl or parquet with any column names
(`text_columns`, `label_column`). Only train is required: without a validation file,
`validation_split` of train is held out. `model` is a Hub id or a local folder; it is copied
(safetensors only) so that the exact checkpoint is a DVC output, hashed in dvc.lock and source.json.
"""

from pathlib import Path

from stages import run_stage
from textclf.columns import label_counts
from textclf.data import load_hub, load_local
from textclf.files import atomic_dir, save_dataset, scratch_dir, sha256_arrow, write_json
from textclf.labels import data_warnings, prepare
from textclf.params import ensure_unchanged, load_params
from textclf.paths import PRETRAINED, RAW, SOURCE
from textclf.pretrained import copy_checkpoint, model_source
from textclf.security import warn_remote_code
from textclf.sources import local_folder


def main() -> None:
    p = load_params()
    warn_remote_code(p.trust_remote_code)
    local = local_folder(p.dataset)
    with scratch_dir(RAW.with_name(".download.tmp")) as scratch:  # converted files, until saved
        splits = load_local(local, scratch) if local is not None else load_hub(p.dataset, p.subset)
        data, task = prepare(splits, p.text_columns, p.label_column, p.labels, p.validation_split)
        src = model_source(p.model)
        ensure_unchanged("download")
        with atomic_dir(PRETRAINED) as tmp:
            model_hashes = copy_checkpoint(src, tmp, p.allow_pickle, p.trust_remote_code)
        with atomic_dir(RAW) as tmp:
            save_dataset(data, tmp)
        sizes, counts = {split: len(ds) for split, ds in data.items()}, label_counts(data)
        labeled = {split: "label" in ds.column_names for split, ds in data.items()}
    write_json(
        SOURCE,
        {
            # As params.yaml gives them, not resolved: a clone elsewhere writes the same file for the same data
            # (train and evaluate depend on it), and no absolute path of this machine reaches the model card.
            "dataset": p.dataset,
            "local": local is not None,
            "subset": None if local is not None else p.subset,
            "files": {split: origin(s.origin, local) for split, s in splits.items()},
            "text_columns": task.text_columns,
            "label_column": task.label_column,
            "label_names": task.label_names,
            "validation": task.validation,
            "splits": sizes,
            "labeled": labeled,
            "label_counts": counts,
            "content_sha256": sha256_arrow(RAW),
            "model": {"name": p.model, "files_sha256": model_hashes},
        },
    )
    kind = "sentence pairs" if len(task.text_columns) == 2 else "single texts"
    print(f"download: {sizes} {kind} from {p.dataset}; labels {task.label_names}; validation: {task.validation}")
    print(f"download: model {p.model} from {src}")
    for warning in data_warnings(data, task):
        print(f"download: warning: {warning}")


def origin(where: str, folder: Path | None) -> str:
    """A split's file by its path in the dataset folder (a Hub split: as the Hub names it)."""
    path = Path(where)
    return str(path.relative_to(folder)) if folder is not None and path.is_relative_to(folder) else where


if __name__ == "__main__":
    run_stage(main)
