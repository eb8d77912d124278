"""Every param check that takes well under a second, run by the first stage (source) of every
`dvc repro` / `dvc exp run`.

DVC deletes a stage's outputs just before it runs the stage, so a param refused only when, say, the
train stage starts would already have cost the previous model, curves and train metrics, while the
old eval metrics stayed, pairing a score with params it does not belong to. Refused here, before any
stage after source runs, nothing is deleted. What needs the data's rows or a download (label values,
a Hub dataset's columns) is still checked by the later stages.
"""

import json
from pathlib import Path

from textclf.errors import InputError
from textclf.files import read_json
from textclf.params import (
    Params,
    check_lora_targets,
    check_pooling,
    freeze_layers_refused,
    lora_layers_refused,
    max_length_refused,
)
from textclf.pretrained import local_model, safetensors_files
from textclf.sources import (
    find_split_files,
    has_rows,
    local_folder,
    missing_column,
    missing_column_message,
    peek_columns,
    require_folder,
)


def preflight(p: Params) -> None:
    check_precision(p.precision)
    check_columns(p)
    check_model(p)


def check_precision(precision: str) -> None:
    if precision in ("fp16", "bf16"):  # `auto` always resolves; only these need to look at the machine
        from textclf.precision import resolve_precision

        resolve_precision(precision)


def check_columns(p: Params) -> None:
    """A local dataset folder has a train file, and its files have the configured columns."""
    folder = local_folder(p.dataset)
    if folder is None:
        return  # a Hub dataset: the download stage checks it
    require_folder(folder)
    for split, path in find_split_files(folder).items():
        if has_rows(path) is False:
            raise InputError(f"{path}: no rows (the file is empty, or a header only); give it rows, or remove it.")
        columns = peek_columns(path)
        missing = missing_column(columns, p.text_columns, p.label_column, split) if columns else None
        if missing is None:
            continue
        # Only the header has been read: no example guessed from the values (the download stage can).
        raise InputError(missing_column_message(str(path), columns, missing, p.text_columns, split))


def check_model(p: Params) -> None:
    """A local checkpoint (or the offline default) has a config, and max_length and freeze_layers fit it."""
    folder = local_model(p.model)
    if folder is None:
        return  # a Hub id: the download stage fetches it
    config_file = folder / "config.json"
    if not config_file.exists():
        raise InputError(f"model folder {folder} has no config.json: it is not a Hugging Face checkpoint.")
    config = read_json(config_file)
    check_pooling(p.pooling, str(config.get("model_type")))
    layers = config.get("num_hidden_layers") or config.get("n_layers")
    if layers is not None and p.freeze_layers > layers:
        raise freeze_layers_refused(p.freeze_layers, layers)
    if p.peft == "lora":
        check_lora(p, folder, layers)
    limit = model_max_length(folder, config)
    if limit is not None and p.max_length > limit:
        raise max_length_refused(p.max_length, limit)


def check_lora(p: Params, folder: Path, layers: int | None) -> None:
    """LoRA adapts the layers above freeze_layers, in the lora_targets modules: refuse settings that leave
    none (peft reads an empty layer list as every layer) or name a module the checkpoint lacks (peft
    adapts the names it finds and drops the rest without a word)."""
    if layers is not None and p.freeze_layers >= layers:
        raise lora_layers_refused(p.freeze_layers, layers)
    shapes = weight_shapes(folder)
    if not shapes:
        return  # a pickled-only checkpoint (allow_pickle): peft still refuses a name that matches nothing
    modules = {name.rpartition(".")[0] for name in shapes}
    matrices = [n.removesuffix(".weight") for n, shape in shapes.items() if len(shape) == 2 and n.endswith(".weight")]
    check_lora_targets(p, modules, matrices)


def weight_shapes(folder: Path) -> dict[str, list[int]]:
    """Every weight's name and shape, from the safetensors headers alone (no weight is read)."""
    shapes = {}
    for name in safetensors_files(folder):
        if name.endswith(".safetensors"):
            with (folder / name).open("rb") as f:
                size = int.from_bytes(f.read(8), "little")
                if size > 100_000_000:  # not a safetensors header (a Git LFS pointer): the download stage says so
                    return {}
                try:
                    header = json.loads(f.read(size))
                    shapes |= {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
                except (ValueError, TypeError, KeyError, AttributeError):
                    return {}
    return shapes


def model_max_length(folder: Path, config: dict) -> int | None:
    tokenizer_config = folder / "tokenizer_config.json"
    limit = read_json(tokenizer_config).get("model_max_length") if tokenizer_config.exists() else None
    if isinstance(limit, int | float) and limit < 10**6:
        return int(limit)
    return config.get("max_position_embeddings")
