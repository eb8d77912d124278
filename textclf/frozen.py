"""The frozen bottom of the encoder, run once per row before training and reused (`frozen_cache_gb`).

With dropout 0 and the embeddings and the n lowest encoder layers frozen, those layers compute the same
vectors for a row in every epoch and at every evaluation: only the layers above them change. `fill`
runs the bottom once over the training and validation rows (sorted by length, in fixed batches) and
keeps each row's vectors; the forward pass of the mean-pooled head (`pooling: mean`, textclf.heads) then
runs only the layers above them for a batch whose rows are all kept, and the whole model otherwise.

It is exact arithmetic, not an approximation: the same layers on the same inputs. Floating point adds
one difference: a matrix product's rounding can depend on its shape and on a row's place in the batch
(on some CPUs; on others not), so a row's vectors match the plain forward pass's to rounding (fp32:
about 1e-7), not bit for bit, just as the plain pass's own vectors for a row differ between two
batchings. So that the kept vectors depend only on the data (which distinct rows there are), never on
their order, a param or the machine's batch sizes, the rows are de-duplicated, put in one canonical
order (by length, then tokens) and run in batches of FILL_BATCH: a run and its resumed run agree
exactly. Rows are told apart by their token ids and token types (and the autocast state, so bf16 and
fp32 vectors never mix); memory is capped.
"""

import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers.masking_utils import create_bidirectional_mask

GIB = 1024**3
FILL_BATCH = 64  # rows per batch of the fill: a constant, so that no param changes the kept bits


class FrozenBottom:
    """Embeddings + the `layers` lowest encoder layers of `bert`, kept per row by `fill`."""

    def __init__(self, bert: torch.nn.Module, layers: int, max_bytes: int) -> None:
        self.bert, self.layers, self.max_bytes = bert, layers, max_bytes
        self.rows: dict[bytes, torch.Tensor] = {}
        self.bytes = 0
        self.full = False
        self.served = self.missed = 0  # rows of forward passes that did / did not find their vectors

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """The last layer's token vectors for the batch, as `bert(...).last_hidden_state` gives them."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        keys = row_keys(input_ids, attention_mask, token_type_ids)
        if keys is None or any(k not in self.rows for k in keys):
            self.missed += len(input_ids)
            return self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        self.served += len(input_ids)
        hidden = pad_sequence([self.rows[k] for k in keys], batch_first=True)
        if hidden.shape[1] < input_ids.shape[1]:  # padded beyond its longest row
            hidden = torch.nn.functional.pad(hidden, (0, 0, 0, input_ids.shape[1] - hidden.shape[1]))
        return run_layers(self.bert, hidden, attention_mask, self.bert.encoder.layer[self.layers :])

    def fill(self, rows: list[dict], autocast: torch.dtype | None) -> int:
        """Run the bottom over these tokenized rows (input_ids, token_type_ids), each distinct row once,
        shortest first (ties by tokens), FILL_BATCH at a time, under the autocast the training runs in;
        keep each new row until the cap is reached, and stop there. Returns how many rows are kept."""
        device = next(self.bert.parameters()).device
        pad = self.bert.config.pad_token_id or 0
        ordered = sorted({canonical_key(r) for r in rows})
        for start in range(0, len(ordered), FILL_BATCH):
            if self.full:
                break  # full: the longer rows left run the whole model
            picked = ordered[start : start + FILL_BATCH]
            ids = pad_sequence([torch.tensor(i) for _, i, _ in picked], batch_first=True, padding_value=pad)
            types = pad_sequence([torch.tensor(t) for _, _, t in picked], batch_first=True)
            mask = pad_sequence([torch.ones(n, dtype=torch.long) for n, _, _ in picked], batch_first=True)
            ids, types, mask = ids.to(device), types.to(device), mask.to(device)
            with torch.no_grad(), torch.autocast(device.type, dtype=autocast) if autocast else nullcontext():
                keys = row_keys(ids, mask, types)
                hidden = self.bert.embeddings(input_ids=ids, token_type_ids=types)
                hidden = run_layers(self.bert, hidden, mask, self.bert.encoder.layer[: self.layers])
            for j, key in enumerate(keys):
                vectors = hidden[j, : picked[j][0]]
                size = vectors.numel() * vectors.element_size()
                if key in self.rows:
                    continue
                if self.bytes + size > self.max_bytes:
                    self.full = True
                    break
                self.rows[key] = vectors.clone()
                self.bytes += size
        return len(self.rows)


def canonical_key(row: dict) -> tuple:
    """A tokenized row's place in the fill, and all the fill needs of it: (length, token ids, token types)."""
    ids = tuple(row["input_ids"])
    return len(ids), ids, tuple(row.get("token_type_ids") or (0,) * len(ids))


def row_keys(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> list[bytes] | None:
    """Each row's identity: its tokens and token types, after the autocast state. None for a batch padded
    on the left (its rows are not kept that way)."""
    lengths = attention_mask.sum(dim=1)
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    if not torch.equal(attention_mask.bool(), positions < lengths[:, None]):
        return None
    device = input_ids.device.type
    state = f"{torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else 'off'}:".encode()
    ids, types = input_ids.cpu().numpy(), token_type_ids.cpu().numpy()
    return [state + ids[i, :n].tobytes() + types[i, :n].tobytes() for i, n in enumerate(lengths.tolist())]


def run_layers(bert, hidden: torch.Tensor, attention_mask: torch.Tensor, layers) -> torch.Tensor:
    """These encoder layers over `hidden`, with the attention mask BertModel itself would build."""
    mask = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=attention_mask)
    for layer in layers:
        hidden = layer(hidden, mask)
    return hidden


def frozen_layers(bert: torch.nn.Module) -> int:
    """How many bottom encoder layers the cache may cover: 0 unless the embeddings are frozen and the
    dropout that runs below the top layers is 0."""
    config = bert.config
    if config.hidden_dropout_prob or config.attention_probs_dropout_prob:
        return 0
    if any(w.requires_grad for w in bert.embeddings.parameters()):
        return 0
    n = 0
    for layer in bert.encoder.layer:
        if any(w.requires_grad for w in layer.parameters()):
            break
        n += 1
    return n


def base_of(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)  # under DistributedDataParallel
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # under LoRA


def attach(model: torch.nn.Module, gib: float) -> bool:
    """Give the model's forward pass a (still empty) cache of its frozen bottom where that is exact: the
    mean-pooled head, dropout 0, frozen embeddings and at least one frozen layer. False (and nothing
    changed) else."""
    base = base_of(model)
    if not gib or not hasattr(base, "frozen_bottom") or base.config.model_type != "textclf_bert":
        return False  # the cache runs BERT's own embeddings and layers
    layers = frozen_layers(base.bert)
    if not layers:
        return False
    base.frozen_bottom = FrozenBottom(base.bert, layers, int(gib * GIB))
    return True


def fill(model: torch.nn.Module, datasets: list, autocast: torch.dtype | None, say: Callable | None) -> float:
    """Fill the model's cache (if it has one) from these tokenized datasets; the seconds it took."""
    cache = cache_of(model)
    if cache is None:
        return 0.0
    began = time.perf_counter()
    rows = [row for ds in datasets for row in ds.select_columns(tokens_of(ds)).to_list()]
    kept = cache.fill(rows, autocast)
    seconds = time.perf_counter() - began
    if say:
        dropped = "; full at frozen_cache_gb: the longer rows run in full" if cache.full else ""
        say(
            f"train: embeddings + {cache.layers} frozen layer(s) run once per row: {kept} rows, "
            f"{cache.bytes / 1024**2:.0f} MiB, {seconds:.1f} s{dropped}"
        )
    return seconds


def cache_of(model: torch.nn.Module) -> FrozenBottom | None:
    return getattr(base_of(model), "frozen_bottom", None)


def cached_layers(model: torch.nn.Module) -> int:
    """How many bottom layers the model's cache covers (0: no cache)."""
    cache = cache_of(model)
    return cache.layers if cache is not None else 0


def tokens_of(ds) -> list[str]:
    return [c for c in ("input_ids", "token_type_ids") if c in ds.column_names]


def detach(model: torch.nn.Module) -> tuple[int, int] | None:
    """Drop the cache (its memory); how many rows of forward passes it served and missed."""
    cache = cache_of(model)
    if cache is None:
        return None
    base_of(model).frozen_bottom = None
    return cache.served, cache.missed


def report_frozen_cache(model: torch.nn.Module, say: Callable | None) -> None:
    """Free the cache and say how much of the training and evaluation it served."""
    counts = detach(model)
    if counts and say and sum(counts):
        say(f"train: the frozen-layer cache served {counts[0] / sum(counts):.0%} of the rows run")
