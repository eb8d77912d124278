"""A classification head on the mean of the token vectors, for BERT-style encoders (`pooling: mean`).

AutoModelForSequenceClassification puts its head on BERT's pooler: a dense layer over the [CLS]
vector. Sentence-embedding checkpoints such as all-MiniLM-L6-v2 were trained with mean pooling and
their pooler never was (its bias is exactly 0). This head reads the mean of the last layer's token
vectors instead (padding excluded), the representation the checkpoint was trained to produce.

The model saves with its own `model_type` (textclf_bert), registered with transformers' Auto classes
when this module is imported: `import textclf.heads` and then AutoModelForSequenceClassification
.from_pretrained(folder) loads it, head included. Without that import transformers refuses the
folder with an unknown model type, rather than loading it with the wrong head.
"""

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertModel,
    BertPreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

from textclf.errors import InputError

MEAN_POOLED_TYPES = {"bert": "textclf_bert"}  # base model_type -> the mean-pooled model's


class MeanPooledBertConfig(BertConfig):
    model_type = "textclf_bert"


class MeanPooledBertForSequenceClassification(BertPreTrainedModel):
    config_class = MeanPooledBertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        rate = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(rate)
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
        return self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state


def register() -> None:
    """Make the Auto classes know the textclf_bert model type (done once, at import; calling this only
    documents why a module imports heads)."""


AutoConfig.register(MeanPooledBertConfig.model_type, MeanPooledBertConfig)
AutoModelForSequenceClassification.register(MeanPooledBertConfig, MeanPooledBertForSequenceClassification)


def classifier_class(pooling: str, model_type: str):
    """The class that builds a classifier with this pooling on a checkpoint of this model_type."""
    if pooling == "cls":
        return AutoModelForSequenceClassification
    if model_type in MEAN_POOLED_TYPES or model_type == MeanPooledBertConfig.model_type:
        return MeanPooledBertForSequenceClassification
    raise InputError(
        f"pooling: mean is built for BERT-style encoders; this checkpoint is a {model_type!r}. "
        "Set pooling: cls, or use a BERT-style checkpoint."
    )
