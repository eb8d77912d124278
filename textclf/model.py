"""Model set-up: the pretrained checkpoint with a fresh classification head for the task's labels,
its dropout rates, the layers left frozen, and the loss (with class weights when asked for)."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from textclf.console import describe_load, without_load_report
from textclf.errors import InputError, first_few
from textclf.frozen import attach as attach_frozen_cache
from textclf.heads import classifier_class, family_config
from textclf.params import Params, check_lora_targets, freeze_layers_refused, lora_layers_refused
from textclf.paths import PRETRAINED


def check_labels(pretrained: Path, label_names: list[str], trust_remote_code: bool = False) -> None:
    """A checkpoint that already has a classification head must agree with the data's label count."""
    config = AutoConfig.from_pretrained(pretrained, trust_remote_code=trust_remote_code)
    heads = [a for a in (config.architectures or []) if a.endswith("ForSequenceClassification")]
    if heads and config.num_labels != len(label_names):
        raise InputError(
            f"model {pretrained} is a classifier with {config.num_labels} labels, but the data has "
            f"{len(label_names)} ({label_names}). Use a base checkpoint or one trained on these labels."
        )


def dropout_overrides(config, dropout: float | None) -> dict[str, float]:
    """Every dropout rate the architecture's config has (BERT: hidden, attention; DistilBERT: dropout,
    attention_dropout, seq_classif_dropout; ...) set to `dropout`; none when it is null."""
    if dropout is None:
        return {}
    rates = {k: v for k, v in config.to_dict().items() if "dropout" in k and isinstance(v, float)}
    return dict.fromkeys(rates, dropout)


def load_model(
    p: Params, label_names: list[str], pretrained: Path = PRETRAINED, say: Callable[[str], None] | None = None
) -> torch.nn.Module:
    """The checkpoint under a new classification head; `say` (the main process's print) gets one line
    on what was new, instead of transformers' table of "missing" head weights."""
    config = AutoConfig.from_pretrained(pretrained, trust_remote_code=p.trust_remote_code)
    builder = classifier_class(p.pooling, config.model_type)
    settings = dropout_overrides(config, p.dropout) | {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {n: i for i, n in enumerate(label_names)},
    }
    # The checkpoint's config, as the head's type: the mean-pooled family's, or for pooling: cls on a
    # model this pipeline trained with the mean head (textclf_mpnet, ...), its family's own.
    config_class = builder.config_class if builder is not AutoModelForSequenceClassification else family_config(config)
    if config_class is not None:
        base = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "architectures")}
        settings = {"config": config_class(**(base | settings))}
    with without_load_report():
        model, info = builder.from_pretrained(
            pretrained,
            **settings,
            use_safetensors=True,
            attn_implementation="eager",  # measured faster than SDPA for training on CPU
            trust_remote_code=p.trust_remote_code,
            output_loading_info=True,
        )
    for line in describe_load(info, len(label_names)) if say else []:
        say(line)
    # transformers 5 sees **kwargs in forward() and assumes the loss is normalised by num_items_in_batch.
    # Sequence classifiers take a plain mean, so the Trainer would then sum gradients over accumulation
    # steps (lr x grad_accum) and scale the loss by the process count under DDP (lr x world size).
    model.accepts_loss_kwargs = False
    if p.freeze_embeddings:
        # The word-embedding matrix is half of MiniLM's parameters and dominates the optimizer step.
        model.get_input_embeddings().weight.requires_grad_(False)
    if p.freeze_layers:
        freeze_bottom_layers(model, p.freeze_layers, freeze_embeddings=p.freeze_embeddings)
    if p.gradient_checkpointing and not model.supports_gradient_checkpointing:
        raise InputError(
            f"gradient_checkpointing: {config.model_type} models do not support it in transformers; set it to false."
        )
    if p.gradient_checkpointing:
        # Non-reentrant: it also works when the layers below carry no gradient (frozen embeddings).
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.24 renamed it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if p.peft == "lora":
        model = with_lora(model, p)
    attach_frozen_cache(model, p.frozen_cache_gb)  # filled by the train stage (textclf.frozen.fill)
    return model


def with_lora(model: torch.nn.Module, p: Params) -> torch.nn.Module:
    """Low-rank adapters (peft) on the `lora_targets` modules of the layers above `freeze_layers`; the
    new head trains in full. Everything else stays as pretrained."""
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError:
        raise InputError("peft: lora needs the peft package: pip install -e '.[lora]'") from None
    layers = len(encoder_layers(model.base_model) or [])
    if layers and p.freeze_layers >= layers:  # a Hub model (preflight checks a local one)
        raise lora_layers_refused(p.freeze_layers, layers)
    modules = dict(model.named_modules())  # a Hub model's names (preflight checks a local one's)
    check_lora_targets(p, set(modules), [n for n, m in modules.items() if isinstance(m, torch.nn.Linear)])
    # The new head's modules (ModernBERT's cls head: head and classifier), trained in full.
    new = ("classifier", "score", "pre_classifier", "pooler", "head")
    head = [name for name in new if find_module(model, name)]
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=p.lora_r,
        lora_alpha=p.lora_alpha,
        lora_dropout=p.lora_dropout,
        target_modules=p.lora_targets,
        layers_to_transform=list(range(p.freeze_layers, layers)) if layers and p.freeze_layers else None,
        modules_to_save=head,
    )
    try:
        adapted = get_peft_model(model, config)
    except ValueError as e:  # no module of that name
        raise InputError(f"lora_targets: {e}") from None
    adapted.accepts_loss_kwargs = False  # as for the plain model (see load_model)
    return adapted


def find_module(model: torch.nn.Module, name: str) -> bool:
    return any(n == name or n.endswith(f".{name}") for n, _ in model.named_modules())


def plain(model: torch.nn.Module) -> torch.nn.Module:
    """The model to save: LoRA adapters merged into the weights, so that evaluate, predict and a plain
    from_pretrained load it as an ordinary classifier."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


ADAPTER_README = """# LoRA adapter

The low-rank adapters and the classifier head of a model trained by the textclf pipeline on {base}.
The folder above holds the same model with the adapters merged: use that one unless you want the
adapter alone. To load the adapter, start from the base checkpoint with the classifier's config (its
labels and head), then add the adapter:

```python
import textclf.heads  # a `pooling: mean` classifier's head class (the pipeline's package)
from peft import PeftModel
from transformers import AutoConfig, AutoModelForSequenceClassification

textclf.heads.register()
config = AutoConfig.from_pretrained("data/trained")  # the merged model's folder
base = AutoModelForSequenceClassification.from_pretrained("{base}", config=config)
model = PeftModel.from_pretrained(base, "data/trained/adapter")
```
"""


def save_adapter(model: torch.nn.Module, folder: Path, base: str) -> None:
    """The LoRA adapter alone, naming its base checkpoint as params.yaml does (not the pipeline's copy
    in data/pretrained), with a README that says how to load it (not peft's blank template)."""
    model.save_pretrained(folder)
    config = folder / "adapter_config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"base_model_name_or_path": base}, indent=2))
    (folder / "README.md").write_text(ADAPTER_README.format(base=base))


LAYER_STACKS = ("encoder.layer", "transformer.layer", "layers", "h")  # where the common families keep them


def encoder_layers(base_model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The encoder's stack of layers, bottom first (BERT, RoBERTa, MPNet: encoder.layer; DistilBERT:
    transformer.layer; ModernBERT, Llama: layers; GPT-2: h); None for an architecture that keeps them
    elsewhere."""
    found = stack_of(base_model)
    return found[1] if found else None


def stack_of(base_model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList] | None:
    for path in LAYER_STACKS:
        found = base_model
        for name in path.split("."):
            found = getattr(found, name, None)
        if isinstance(found, torch.nn.ModuleList):
            return path, found
    return None


def weight_places(base_model: torch.nn.Module) -> dict[str, int | str]:
    """Where each weight of the base model acts: its layer's index in the stack; "below" for what feeds
    every layer (the embeddings, and what the stack's container shares among its layers: MPNet's relative
    attention bias, DeBERTa's relative embeddings); "above" for what comes after the last layer (a final
    norm: ModernBERT's, GPT-2's; BERT's pooler). Outside the container, the order the model registers its
    weights in tells below from above: it is the order its forward runs them."""
    found = stack_of(base_model)
    path, stack = found if found else ("", [])
    container = path.rpartition(".")[0]
    layer_of = {id(w): i for i, layer in enumerate(stack) for w in layer.parameters()}
    places: dict[str, int | str] = {}
    above = False
    for name, weight in base_model.named_parameters():
        if id(weight) in layer_of:
            places[name] = layer_of[id(weight)]
            above = True
        elif container and name.startswith(f"{container}."):
            places[name] = "below"
        else:
            places[name] = "above" if above else "below"
    return places


def freeze_bottom_layers(model: torch.nn.Module, n: int, freeze_embeddings: bool) -> None:
    """Freeze the n lowest encoder layers. With the embeddings (and whatever else feeds every layer)
    frozen too, nothing below layer n needs a gradient, so the backward pass stops there: the saving
    grows with n."""
    layers = encoder_layers(model.base_model)
    if layers is None:
        raise InputError(f"freeze_layers: {type(model).__name__} has no list of encoder layers found; set it to 0.")
    if n > len(layers):
        raise freeze_layers_refused(n, len(layers))
    for layer in layers[:n]:
        layer.requires_grad_(False)
    if freeze_embeddings:  # positions and token types too
        places = weight_places(model.base_model)
        for name, weight in model.base_model.named_parameters():
            if places[name] == "below":
                weight.requires_grad_(False)


def param_groups(model: torch.nn.Module, p: Params) -> list[dict]:
    """AdamW parameter groups. Weight decay on weights only (biases and LayerNorm weights are exempt,
    as in the Trainer). With `head_lr_scale` or `layer_lr_decay` set, each group also carries its lr:
    the new head (classifier, and BERT's pooler under it) at lr x head_lr_scale; encoder layer i of n
    at lr x layer_lr_decay^(n-1-i), so the top layer trains at lr and each one below a little slower;
    the embeddings at lr x layer_lr_decay^n."""
    from transformers.trainer_pt_utils import get_parameter_names

    # Under peft, names are the wrapper's (base_model.model.bert.encoder...): read names, prefix and
    # layer count from the transformers model inside (the same weights), or every adapter is "head".
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    decay = set(get_parameter_names(inner, [torch.nn.LayerNorm], ["bias", "layernorm", "rmsnorm"]))
    named = [(n, w) for n, w in inner.named_parameters() if w.requires_grad]
    if p.head_lr_scale == 1 and p.layer_lr_decay == 1:
        return [
            {"params": [w for n, w in named if n in decay], "weight_decay": p.weight_decay},
            {"params": [w for n, w in named if n not in decay], "weight_decay": 0.0},
        ]
    scales = lr_scales(inner, p.head_lr_scale, p.layer_lr_decay)
    groups: dict[tuple[float, float], list] = {}
    for name, weight in named:
        groups.setdefault((scales[name], p.weight_decay if name in decay else 0.0), []).append(weight)
    return [{"params": ws, "lr": p.lr * s, "weight_decay": wd} for (s, wd), ws in groups.items()]


def lr_scales(model: torch.nn.Module, head: float, decay: float) -> dict[str, float]:
    """Each weight's lr multiplier: the new head (outside the base model, or BERT's pooler) `head`; layer
    i of the encoder's n `decay`^(n-1-i); what feeds every layer (the embeddings) `decay`^n; what comes
    after the last layer (a final norm) as the top layer (see weight_places)."""
    prefix = getattr(model, "base_model_prefix", "")
    places = weight_places(model.base_model)
    layers = len(encoder_layers(model.base_model) or [])
    scales = {}
    for name, _ in model.named_parameters():
        place = places.get(name.removeprefix(f"{prefix}.")) if name.startswith(f"{prefix}.") else None
        if place is None or ".pooler." in name:
            scales[name] = head
        elif place == "below":
            scales[name] = decay**layers
        else:
            scales[name] = 1.0 if place == "above" else decay ** (layers - 1 - place)
    return scales


def class_weights(mode: str, label_ids: np.ndarray, names: list[str], cut: bool = False) -> torch.Tensor | None:
    """`balanced`: each class weighs n / (k * n_class), so every class adds the same total to the loss
    (scikit-learn's rule); `none`: None, the model's own unweighted loss. `cut`: train was cut to its
    first rows (max_train_samples), the likely reason for a class with no row."""
    if mode == "none":
        return None
    found = np.bincount(label_ids, minlength=len(names))
    if (found == 0).any():
        absent = [n for n, k in zip(names, found, strict=True) if not k]
        shown = first_few(absent)
        why = (
            "max_train_samples cut them out: raise it (or empty it for all rows), or set class_weights: none"
            if cut
            else "set class_weights: none"
        )
        raise InputError(f"class_weights: balanced needs a train row of every class; train has none of {shown}: {why}.")
    return torch.tensor(len(label_ids) / (len(names) * found), dtype=torch.float32)


def training_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, smoothing: float):
    """Cross-entropy as training computes it: class-weighted (a weighted mean over the batch, as torch's
    `weight=` defines it) and/or with label smoothing (each target keeps 1 - smoothing of its weight and
    spreads the rest evenly over all classes). Evaluation keeps the plain loss."""
    weights = weights.to(logits.device) if weights is not None else None
    return torch.nn.functional.cross_entropy(logits.float(), labels, weight=weights, label_smoothing=smoothing)
