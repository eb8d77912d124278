"""Load params.yaml into a typed, checked object.

DVC writes `-S lr=3e-5` as `3e-05`, which YAML 1.1 (PyYAML) reads as a string, so every value is
converted to its declared type here, and every bad value fails at once with the key's name.
"""

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from textclf.errors import InputError
from textclf.launcher import launcher_argv

PARAMS_FILE = Path("params.yaml")

SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENGINES = ("trainer", "accelerate")
BEST_METRICS = ("f1", "accuracy", "loss")
CLASS_WEIGHTS = ("none", "balanced")
POOLINGS = ("cls", "mean")
# The encoders (config model_type) `pooling: mean` builds its head on (textclf.heads): each returns the
# token vectors of its last layer, and transformers has a base model class for it.
# (ALBERT is not: its layers share one set of weights, so there are no bottom layers to freeze.)
MEAN_POOLED_PREFIX = "textclf_"  # a mean-pooled model's model_type: this + its encoder's (textclf_bert)
MEAN_POOLED_BASES = (
    "bert", "roberta", "xlm-roberta", "camembert", "distilbert", "mpnet", "electra", "deberta", "deberta-v2",
    "modernbert",
)  # fmt: skip
PEFTS = ("none", "lora")
REPORTERS = ("none", "dvclive", "mlflow", "tensorboard", "wandb", "comet_ml", "clearml", "neptune", "trackio")


# The names users bring from the HF Trainer and the run_glue examples, for a did-you-mean.
FAMILIAR_NAMES = {
    "learning_rate": "lr",
    "num_train_epochs": "epochs",
    "num_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "warmup_ratio": "warmup",
    "warmup_steps": "warmup",
    "lr_scheduler_type": "lr_scheduler",
    "gradient_accumulation_steps": "grad_accum",
    "fp16": "precision",
    "bf16": "precision",
    "model_name_or_path": "model",
    "model_name": "model",
    "dataset_name": "dataset",
    "dataset_config_name": "subset",
    "max_seq_length": "max_length",
    "text_column": "text_columns",
    "text_column_name": "text_columns",
    "label_column_name": "label_column",
    "label_names": "labels",
    "hidden_dropout_prob": "dropout",
    "validation_split_percentage": "validation_split",
    "label_smoothing_factor": "label_smoothing",
}


class ParamsError(InputError):
    """A value in params.yaml is missing, unknown or out of range."""

    def __init__(self, message: str, key: str | None = None, line: str | None = None) -> None:
        super().__init__(message)
        self.key, self.line = key, line  # the offending key, and its line as params.yaml now holds it


def did_you_mean(name: str, choices: list[str] | tuple[str, ...], aliases: dict[str, str] | None = None) -> str:
    """' Did you mean X?' for the closest choice (or a familiar name's equivalent), else ''."""
    aliases = aliases or {}
    if name in aliases:
        return f" Did you mean '{aliases[name]}' (this pipeline's name for {name})?"
    close = difflib.get_close_matches(name, [*choices, *aliases], n=1, cutoff=0.6)
    if not close:
        return ""
    return f" Did you mean '{aliases.get(close[0], close[0])}'?"


@dataclass(frozen=True)
class Params:
    dataset: str
    subset: str | None
    text_columns: list[str]
    label_column: str
    labels: list[str] | None
    validation_split: float
    model: str
    max_length: int
    max_train_samples: int | None
    max_eval_samples: int | None
    lr: float
    epochs: int
    batch_size: int
    eval_batch_size: int
    weight_decay: float
    warmup: float
    lr_scheduler: str
    grad_accum: int
    max_grad_norm: float
    seed: int
    precision: str
    logging_steps: int
    eval_steps: float | None
    train_eval_rows: int
    report_to: str
    group_by_length: bool
    freeze_embeddings: bool
    freeze_layers: int
    dropout: float | None
    pooling: str
    peft: str
    lora_r: int
    lora_alpha: float
    lora_dropout: float
    lora_targets: list[str]
    gradient_checkpointing: bool
    frozen_cache_gb: float
    ema: float
    head_lr_scale: float
    layer_lr_decay: float
    engine: str
    early_stopping_patience: int
    metric_for_best_model: str
    class_weights: str
    label_smoothing: float
    launcher: str
    trust_remote_code: bool
    allow_pickle: bool


# (check, what a good value looks like: a text, or the tuple of allowed names) per key; keys not listed
# take any value of their type.
RULES = {
    "dataset": (lambda v: v.strip() != "", "a Hub dataset id or a local folder"),
    "model": (lambda v: v.strip() != "", "a Hub model id or a local folder"),
    "text_columns": (
        lambda v: len(v) in (1, 2) and len(set(v)) == len(v) and all(c.strip() for c in v),
        "a list of one column name (single texts) or two (sentence pairs), e.g. [sentence1, sentence2]",
    ),
    "label_column": (lambda v: v.strip() != "", "the name of the column that holds the labels"),
    "labels": (
        lambda v: v is None or (len(v) >= 2 and len({x.strip() for x in v}) == len(v) and all(x.strip() for x in v)),
        "null (labels in sorted order) or a list of at least two distinct label names (spaces around a name do "
        "not count, as in the data), e.g. [ham, spam]",
    ),
    "validation_split": (
        lambda v: 0 < v <= 0.5,
        "a fraction in (0, 0.5]: the share of train held out when the data has no validation split",
    ),
    "max_length": (lambda v: 8 <= v <= 8192, "an integer from 8 to 8192"),
    "max_train_samples": (lambda v: v is None or v > 0, "null or a positive integer"),
    "max_eval_samples": (lambda v: v is None or v > 0, "null or a positive integer"),
    "lr": (lambda v: 0 < v < 1, "a float in (0, 1), e.g. 5e-5"),
    "epochs": (lambda v: v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "eval_batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "weight_decay": (lambda v: 0 <= v < 1, "a float in [0, 1)"),
    "warmup": (lambda v: v >= 0, "a fraction of steps below 1, or a step count >= 1"),
    "lr_scheduler": (lambda v: v in SCHEDULERS, SCHEDULERS),
    "grad_accum": (lambda v: v >= 1, "an integer >= 1"),
    "max_grad_norm": (lambda v: v >= 0, "a float >= 0 (0 turns clipping off)"),
    "precision": (lambda v: v in PRECISIONS, PRECISIONS),
    "logging_steps": (lambda v: v >= 1, "an integer >= 1"),
    "eval_steps": (
        lambda v: v is None or v >= 0,
        "empty or 0 (evaluate once per epoch), a fraction of the run below 1, or a step count >= 1",
    ),
    "train_eval_rows": (lambda v: v >= 0, "an integer >= 0 (0: no training-accuracy curve)"),
    "report_to": (
        lambda v: all(t in REPORTERS for t in v.replace(" ", "").split(",")),
        f"none, or a comma list of {', '.join(REPORTERS[1:])}",
    ),
    "freeze_layers": (lambda v: 0 <= v <= 48, "an integer >= 0: how many bottom encoder layers to freeze"),
    "dropout": (lambda v: v is None or 0 <= v < 1, "null (the checkpoint's own) or a float in [0, 1)"),
    "seed": (lambda v: 0 <= v < 2**32, "an integer from 0 to 2**32 - 1"),
    "engine": (lambda v: v in ENGINES, ENGINES),
    "early_stopping_patience": (lambda v: v >= 0, "an integer >= 0 (0 turns early stopping off)"),
    "metric_for_best_model": (lambda v: v in BEST_METRICS, BEST_METRICS),
    "class_weights": (lambda v: v in CLASS_WEIGHTS, CLASS_WEIGHTS),
    "label_smoothing": (lambda v: 0 <= v < 1, "a float in [0, 1), e.g. 0.1 (0: off)"),
    "pooling": (lambda v: v in POOLINGS, POOLINGS),
    "peft": (lambda v: v in PEFTS, PEFTS),
    "lora_r": (lambda v: 1 <= v <= 1024, "an integer from 1 to 1024: the rank of the LoRA matrices"),
    "lora_alpha": (lambda v: v > 0, "a number > 0: LoRA's scale is lora_alpha / lora_r"),
    "lora_dropout": (lambda v: 0 <= v < 1, "a float in [0, 1)"),
    "lora_targets": (lambda v: len(v) >= 1, "a list of module names to adapt, e.g. [query, value]"),
    "ema": (lambda v: 0 <= v < 1, "a decay in [0, 1), e.g. 0.99 (0 turns weight averaging off)"),
    "frozen_cache_gb": (lambda v: v >= 0, "a number of GiB >= 0 (0 turns the frozen-layer cache off)"),
    "head_lr_scale": (lambda v: 0 < v <= 1000, "a factor in (0, 1000]: the new head's lr is lr times this"),
    "layer_lr_decay": (
        lambda v: 0 < v <= 1,
        "a factor in (0, 1]: each encoder layer's lr is the one above's times this",
    ),
}


def _convert(key: str, value: Any, kind: Any) -> Any:
    optional = kind in (int | None, str | None, float | None, list[str] | None)
    if value is None:
        if optional:
            return None
        raise ParamsError(f"params.yaml: '{key}' is empty; set it to a value.")
    base = {int | None: int, str | None: str, float | None: float, list[str] | None: list[str]}.get(kind, kind)
    if base == list[str]:
        # A single name is a list of one: `-S text_columns=sentence` means [sentence].
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(x, str | int | float) and not isinstance(x, bool) for x in items):
            raise ParamsError(f"params.yaml: '{key}: {value}' must be a list of names, e.g. [a, b].")
        return [str(x) for x in items]
    if isinstance(value, list | dict):
        raise ParamsError(f"params.yaml: '{key}: {value}' must be a single value, not a list or mapping.")
    if base is str:
        return str(value)
    if base is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):  # `-S group_by_length=false` as written by DVC
            return str(value).lower() == "true"
        raise ParamsError(f"params.yaml: '{key}: {value}' must be true or false.")
    if isinstance(value, bool):  # YAML `yes`/`true`: never a number here
        raise ParamsError(f"params.yaml: '{key}: {value}' is a boolean; expected {base.__name__}.")
    try:
        number = float(value)  # accepts '3e-05', '1e-4', '.5', 5
    except (TypeError, ValueError):
        raise ParamsError(f"params.yaml: '{key}: {value}' is not a number; expected {base.__name__}.") from None
    if not math.isfinite(number):
        raise ParamsError(f"params.yaml: '{key}: {value}' is not a finite number.")
    if base is int:
        if number != int(number):
            raise ParamsError(f"params.yaml: '{key}: {value}' must be a whole number.")
        return int(number)
    return number


def parse_params(raw: dict[str, Any]) -> Params:
    """Check and convert a dict read from params.yaml; raise ParamsError naming the bad key."""
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml must be a mapping of key: value lines.")
    known = {f.name: f.type for f in fields(Params)}
    for key in raw:
        if key not in known:
            hint = did_you_mean(str(key), list(known), FAMILIAR_NAMES)
            raise ParamsError(f"params.yaml: unknown key '{key}'.{hint}", key, yaml_line(key, raw[key]))
    missing = [k for k in known if k not in raw]
    if missing:
        raise ParamsError(f"params.yaml: missing key(s) {', '.join(missing)}.")
    values = {}
    for key, kind in known.items():
        try:
            values[key] = _convert(key, raw[key], kind)
        except ParamsError as e:
            raise ParamsError(str(e), key, yaml_line(key, raw[key])) from None
    for key, (ok, expected) in RULES.items():
        if not ok(values[key]):
            if isinstance(expected, tuple):
                why = f"is not one of {', '.join(expected)}.{did_you_mean(str(values[key]), expected)}"
            else:
                why = f"is out of range; expected {expected}."
            raise ParamsError(f"params.yaml: '{key}: {raw[key]}' {why}", key, yaml_line(key, raw[key]))
    try:
        launcher_argv(values["launcher"])
    except InputError as e:
        raise ParamsError(f"params.yaml: {e}", "launcher", yaml_line("launcher", raw["launcher"])) from None
    return Params(**values)


def yaml_line(key: str, value: Any) -> str:
    return yaml.safe_dump({key: value}, default_flow_style=True, width=1000).strip().strip("{}")


# Not `git checkout params.yaml`: after DVC rewrote the file, git's index can hold the new file's size
# and mtime second against the old content (a value of the same length written in the same second), and
# checkout then sees nothing to restore (seen in 1 of 3 refused runs of `dvc exp run -S epochs=0`).
RESTORE = "git show HEAD:params.yaml > params.yaml"


def how_to_restore(e: ParamsError, committed: dict[str, Any] | None) -> str:
    """The fix for a refused value that is now in params.yaml. DVC writes -S values into params.yaml
    before any stage runs, so a refused value stays there and fails every later run until removed."""
    if e.key is None:
        return f"Fix params.yaml, or restore the committed one: {RESTORE}"
    if committed is not None and e.key in committed and yaml_line(e.key, committed[e.key]) != e.line:
        good = yaml_line(e.key, committed[e.key])
        return (
            f"params.yaml now holds '{e.line}': set it back with the next run (dvc exp run -S "
            f"'{good.replace(': ', '=', 1)}'), edit that line, or restore the committed file: {RESTORE}"
        )
    if e.key in {f.name for f in fields(Params)}:
        return (
            f"params.yaml now holds '{e.line}': set a good value with the next run (dvc exp run -S "
            f"{e.key}=...), edit that line, or restore the committed file: {RESTORE}"
        )
    return (
        f"params.yaml now holds '{e.line}' (DVC wrote it there): delete that line, or restore the committed "
        f"file: {RESTORE}"
    )


def with_restore_hint(e: ParamsError, path: Path = PARAMS_FILE) -> ParamsError:
    """`e` followed by how to undo the value DVC wrote into params.yaml (how_to_restore)."""
    return ParamsError(f"{e} {how_to_restore(e, committed_params(path))}", e.key, e.line)


def refused(message: str, key: str, value: Any, path: Path = PARAMS_FILE) -> ParamsError:
    """The error for a value that parsed but that the data or model rules out (max_length beyond the
    model's positions), with the restore hint every refused value gets."""
    return with_restore_hint(ParamsError(message, key, yaml_line(key, value)), path)


def max_length_refused(max_length: int, limit: int) -> ParamsError:
    """max_length beyond the model's positions (checked before work for a local model, and again by the
    tokenize stage for one from the Hub)."""
    return refused(
        f"max_length: {max_length} exceeds this model's limit of {limit} tokens; lower it.", "max_length", max_length
    )


def check_pooling(pooling: str, model_type: str) -> None:
    """pooling: mean needs an encoder family textclf.heads builds the mean-pooled head on (checked before
    work for a local model, and again by the train stage)."""
    if pooling != "mean" or model_type.removeprefix(MEAN_POOLED_PREFIX) in MEAN_POOLED_BASES:
        return
    raise refused(
        f"pooling: mean is built for these encoders: {', '.join(MEAN_POOLED_BASES)}; this checkpoint is a "
        f"{model_type!r}. Set pooling: cls (the head transformers builds for it), or use one of those.",
        "pooling",
        "mean",
    )


def freeze_layers_refused(n: int, layers: int) -> ParamsError:
    """freeze_layers beyond the model's layers (checked as max_length is)."""
    return refused(f"freeze_layers: {n} exceeds the model's {layers} layers.", "freeze_layers", n)


def lora_layers_refused(n: int, layers: int) -> ParamsError:
    """peft: lora with every layer frozen: peft reads the empty list of layers to adapt as all of them."""
    return refused(
        f"freeze_layers: {n} freezes all {layers} layers of the model, so peft: lora has no layer left to adapt. "
        "Lower freeze_layers, or set peft: none to train the head alone.",
        "freeze_layers",
        n,
    )


# The name of a weight or module inside an encoder layer, as the common architectures number them
# (BERT: encoder.layer.3., Llama and ModernBERT: layers.3., GPT-2: h.3.): what lora_targets can name.
IN_A_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.\d+\.")


def check_lora_targets(p: "Params", modules: set[str], matrices: list[str]) -> None:
    """Refuse lora_targets naming no module of the model (peft adapts the names it finds and drops the
    rest without a word), matching as peft does: the module's name or a dotted suffix of it. `modules`:
    the model's module names; `matrices`: those of its weight matrices, named in the message."""
    absent = [t for t in p.lora_targets if not any(m == t or m.endswith(f".{t}") for m in modules)]
    if not absent:
        return
    shown = ", ".join(repr(t) for t in absent)
    in_layers = sorted({m.rpartition(".")[2] for m in matrices if IN_A_LAYER.search(m)})
    raise refused(
        f"lora_targets: {shown} name{'s' if len(absent) == 1 else ''} no module of model {p.model}; its layers' "
        f"matrices are {', '.join(in_layers)}. Set lora_targets to some of those, e.g. [query, value].",
        "lora_targets",
        p.lora_targets,
    )


def committed_params(path: Path = PARAMS_FILE) -> dict[str, Any] | None:
    """params.yaml as last committed to git, if there is a git repository here (for a restore hint)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "show", f"HEAD:./{path.name}"],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return yaml.safe_load(out.stdout) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, yaml.YAMLError):
        return None


def read_raw(path: Path = PARAMS_FILE) -> dict[str, Any]:
    if not path.exists():
        raise ParamsError(f"{path} not found: run the stages from the repository root.")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {e}") from None


# What load_params read, per file: the guard below compares params.yaml against it before a stage writes.
_loaded: dict[Path, Params] = {}


def load_params(path: Path = PARAMS_FILE) -> Params:
    try:
        p = parse_params(read_raw(path))
    except ParamsError as e:
        raise with_restore_hint(e, path) from None
    _loaded[path.resolve()] = p
    return p


def stage_keys(stage: str, pipeline: Path = Path("dvc.yaml")) -> list[str] | None:
    """The params a stage lists in dvc.yaml (None where there is no dvc.yaml: every key counts)."""
    try:
        return list(yaml.safe_load(pipeline.read_text())["stages"][stage]["params"])
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None


def ensure_unchanged(stage: str, path: Path = PARAMS_FILE) -> None:
    """Stop before a stage writes its outputs if params.yaml changed, in a key the stage depends on,
    since the stage read it.

    DVC records a stage's params as it finds them in params.yaml when the stage ends. A second
    `dvc exp run` in the same workspace writes its -S values there before it takes DVC's lock (and
    then fails on it), so without this check the first run's outputs would be recorded, and cached,
    under the second run's params: `dvc status` clean, and a later run with those params skipped.
    """
    before = as_dict(_loaded[path.resolve()])
    raw = read_raw(path)
    try:
        after = as_dict(parse_params(raw))
    except ParamsError:
        after = raw
    keys = stage_keys(stage) or list(before)
    changed = [f"{k}: {before[k]} -> {after.get(k)}" for k in keys if before.get(k) != after.get(k)]
    if changed:
        raise ParamsError(
            f"params.yaml changed while {stage} ran ({'; '.join(changed)}): another `dvc exp run` or an "
            "edit in this workspace? Nothing was written, so no result is recorded under params this run "
            "did not use. Run again when the other run is done; to run experiments side by side, queue "
            "them (dvc exp run --queue ..., then dvc queue start): each runs in its own workspace."
        )


def as_dict(p: Params) -> dict[str, Any]:
    return dataclasses.asdict(p)
