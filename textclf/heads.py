"""A classification head on the mean of the token vectors, for encoders (`pooling: mean`).

AutoModelForSequenceClassification puts its head on the [CLS] vector (BERT: through its pooler, a
dense layer). Sentence-embedding checkpoints such as all-MiniLM-L6-v2 or all-mpnet-base-v2 were
trained with mean pooling and their pooler never was (its bias is exactly 0). This head reads the mean
of the last layer's token vectors instead (padding excluded), the representation such a checkpoint was
trained to produce.

One class per encoder family (params.MEAN_POOLED_BASES: BERT, RoBERTa, DistilBERT, MPNet, ...), built
on that family's own base model, saved with a model_type of its own (textclf_bert, textclf_mpnet, ...).
Those types are registered with transformers' Auto classes when this module is imported: `import
textclf.heads` and then AutoModelForSequenceClassification.from_pretrained(folder) loads it, head
included. Without that import transformers refuses the folder with an unknown model type, rather than
loading it with the wrong head.
"""

import functools
import inspect

import torch
from torch import nn
from transformers import CONFIG_MAPPING, MODEL_MAPPING, AutoConfig, AutoModelForSequenceClassification, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

from textclf.params import MEAN_POOLED_BASES, check_pooling
from textclf.params import MEAN_POOLED_PREFIX as PREFIX


class MeanPooled:
    """The head, mixed into a class of the encoder's family (see mean_pooled_class)."""

    encoder_class: type  # the family's base model (BertModel, MPNetModel, ...)
    takes_token_types: bool

    def __init__(self, config) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        no_pooler = {"add_pooling_layer": False}
        if "add_pooling_layer" not in inspect.signature(self.encoder_class.__init__).parameters:
            no_pooler = {}  # a family without a pooler (DistilBERT, ModernBERT, ...)
        # Named as the family names its base model (bert, roberta, mpnet, ...): the checkpoint's weights load.
        setattr(self, self.base_model_prefix, self.encoder_class(config, **no_pooler))
        self.dropout = nn.Dropout(head_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.frozen_bottom = None  # set for training by textclf.frozen.attach: the frozen layers, cached
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        encode = self.frozen_bottom.encode if self.frozen_bottom is not None else self.encode
        hidden = encode(input_ids, attention_mask, token_type_ids)
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        logits = self.classifier(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def encode(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        encoder = getattr(self, self.base_model_prefix)
        types = {"token_type_ids": token_type_ids} if self.takes_token_types and token_type_ids is not None else {}
        return encoder(input_ids, attention_mask=attention_mask, **types).last_hidden_state


def head_dropout(config) -> float:
    """The dropout before the classifier, as the family's own classifier head takes it."""
    for name in ("classifier_dropout", "seq_classif_dropout", "hidden_dropout_prob", "dropout", "hidden_dropout"):
        rate = getattr(config, name, None)
        if isinstance(rate, float | int):
            return float(rate)
    return 0.0


@functools.cache
def mean_pooled_config(base: str) -> type:
    """The config class of the mean-pooled model on encoder family `base` (its own config, renamed)."""
    config = CONFIG_MAPPING[base]
    return published(type(f"MeanPooled{config.__name__}", (config,), {"model_type": PREFIX + base}))


def class_name(base: str) -> str:
    """bert -> MeanPooledBertForSequenceClassification (from transformers' table of names: no import)."""
    return f"MeanPooled{MODEL_MAPPING_NAMES[base].removesuffix('Model')}ForSequenceClassification"


@functools.cache
def mean_pooled_class(base: str) -> type:
    """The mean-pooled classifier on encoder family `base`, built on the family's own base model."""
    encoder = MODEL_MAPPING[CONFIG_MAPPING[base]]
    family = next(c for c in encoder.__mro__[1:] if issubclass(c, PreTrainedModel) and c is not PreTrainedModel)
    attrs = {
        "config_class": mean_pooled_config(base),
        "encoder_class": encoder,
        "takes_token_types": "token_type_ids" in inspect.signature(encoder.forward).parameters,
    }
    return published(type(class_name(base), (MeanPooled, family), attrs))


def published(cls: type) -> type:
    """A built class, reachable as textclf.heads.<its name>, as pickle looks it up."""
    cls.__module__ = __name__
    globals()[cls.__name__] = cls
    return cls


def __getattr__(name: str) -> type:
    """A family's classifier class not built yet (pickle asks for it by name): built now."""
    for base in MEAN_POOLED_BASES:
        if name == class_name(base):
            return mean_pooled_class(base)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def lazy_class(base: str) -> type:
    """What AutoModelForSequenceClassification holds for a mean-pooled type until a model of it is
    loaded: building the class imports the family's modelling code, which `import textclf.heads`
    should not pay for every family. It bears the class's name (pipeline() checks models by name)."""

    class Lazy:
        config_class = mean_pooled_config(base)

        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            return mean_pooled_class(base).from_pretrained(*args, **kwargs)

        @classmethod
        def _from_config(cls, *args, **kwargs):
            return mean_pooled_class(base)._from_config(*args, **kwargs)

    Lazy.__name__ = Lazy.__qualname__ = class_name(base)
    return Lazy


def family_config(config) -> type | None:
    """For a model this pipeline trained with the mean head (textclf_mpnet, ...): its family's own config
    class, on which transformers builds the [CLS] head (pooling: cls). None for any other model."""
    base = config.model_type.removeprefix(PREFIX)
    return CONFIG_MAPPING[base] if config.model_type.startswith(PREFIX) and base in MEAN_POOLED_BASES else None


def register() -> None:
    """Make the Auto classes know the textclf_* model types (done once, at import; calling this only
    documents why a module imports heads)."""


for _base in MEAN_POOLED_BASES:
    AutoConfig.register(PREFIX + _base, mean_pooled_config(_base))
    AutoModelForSequenceClassification.register(mean_pooled_config(_base), lazy_class(_base))

MeanPooledBertConfig = mean_pooled_config("bert")
MeanPooledBertForSequenceClassification = mean_pooled_class("bert")


def classifier_class(pooling: str, model_type: str):
    """The class that builds a classifier with this pooling on a checkpoint of this model_type."""
    check_pooling(pooling, model_type)
    if pooling == "mean":
        return mean_pooled_class(model_type.removeprefix(PREFIX))
    return AutoModelForSequenceClassification
