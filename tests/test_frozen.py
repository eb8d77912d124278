"""frozen_cache_gb: the frozen bottom of the encoder runs once per row, and training is unchanged by it."""

import pytest
import torch
from datasets import Dataset

from tests.test_params import defaults
from textclf.frozen import attach, detach, fill
from textclf.model import load_model
from textclf.params import parse_params

TEXTS = [
    [101, 2023, 2003, 102, 2307, 102],
    [101, 2307, 3185, 102, 2003, 2307, 3185, 102],
    [101, 2154, 102, 2023, 102],
    [101, 2023, 2003, 1037, 2204, 3185, 102, 2307, 102],
    [101, 3185, 102, 2154, 2003, 102],
]
# Each row appears in several batches, padded to different lengths: the layers above the cache must get
# the vectors the plain forward pass computes for the row where it is now.
BATCHES = [[0, 1], [2, 3, 4], [1, 4], [0, 3], [2, 0, 1, 4], [3, 2]] * 3


def types_of(ids: list[int]) -> list[int]:
    return [int(i > ids.index(102)) for i in range(len(ids))]  # the second segment after the first [SEP]


def batch(rows: list[int]) -> dict:
    length = max(len(TEXTS[i]) for i in rows)
    pad = [length - len(TEXTS[i]) for i in rows]
    return {
        "input_ids": torch.tensor([TEXTS[i] + [0] * n for i, n in zip(rows, pad, strict=True)]),
        "attention_mask": torch.tensor([[1] * len(TEXTS[i]) + [0] * n for i, n in zip(rows, pad, strict=True)]),
        "token_type_ids": torch.tensor([types_of(TEXTS[i]) + [0] * n for i, n in zip(rows, pad, strict=True)]),
        "labels": torch.tensor([i % 2 for i in rows]),
    }


def tokenized(rows=TEXTS) -> Dataset:
    return Dataset.from_list([{"input_ids": t, "token_type_ids": types_of(t), "label": 0} for t in rows])


def model_for(checkpoint, autocast: bool = False, **params):
    p = parse_params(defaults() | {"freeze_layers": 1, "dropout": 0.0} | params)
    torch.manual_seed(0)
    model = load_model(p, ["neg", "pos"], pretrained=checkpoint)
    fill(model, [tokenized()], torch.bfloat16 if autocast else None, None)
    return model


def train(model, autocast: bool = False) -> list[float]:
    """A few AdamW steps over BATCHES; the losses."""
    model.train()
    opt = torch.optim.AdamW([w for w in model.parameters() if w.requires_grad], lr=1e-2)
    losses = []
    for rows in BATCHES:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch(rows)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_training_with_the_cache_gives_the_same_losses(tiny_model, autocast):
    cached = model_for(tiny_model, autocast)
    assert cached.frozen_bottom.layers == 1 and len(cached.frozen_bottom.rows) == len(TEXTS)
    plain = model_for(tiny_model, autocast, frozen_cache_gb=0)
    assert plain.frozen_bottom is None
    with_cache, without = train(cached, autocast), train(plain, autocast)
    assert cached.frozen_bottom.served == sum(map(len, BATCHES)) and cached.frozen_bottom.missed == 0
    # Equal up to rounding: fp32 rounding where a product's shape differs; bf16 rounds to 3 digits.
    assert with_cache == pytest.approx(without, rel=1e-5 if not autocast else 1e-2)
    for (name, a), b in zip(cached.named_parameters(), plain.parameters(), strict=True):
        if name.endswith("attention.self.key.bias"):
            # Its gradient is zero in exact arithmetic (softmax ignores a constant added to every score
            # of a query), so what AdamW steps on is rounding noise, scaled up to about lr a step: its
            # values differ between any two batchings on CPUs whose rounding depends on the batch.
            continue
        assert torch.allclose(a, b, atol=1e-5 if not autocast else 1e-2), name
    cached.eval()  # evaluation reads the same cache (dropout is 0 in both modes)
    with torch.no_grad():
        assert torch.allclose(cached(**batch([0, 3])).logits, plain.eval()(**batch([0, 3])).logits, atol=1e-5)


def test_the_kept_vectors_depend_only_on_the_data(tiny_model):
    """What a resumed run relies on: filling again, in another order, with rows repeated, keeps the same
    bits (on CPUs whose rounding depends on a row's place in the batch too)."""
    a = model_for(tiny_model).frozen_bottom.rows
    b = model_for(tiny_model, frozen_cache_gb=1)
    b.frozen_bottom.rows.clear()
    fill(b, [tokenized(TEXTS[::-1]), tokenized(TEXTS[:2])], None, None)
    assert a.keys() == b.frozen_bottom.rows.keys()
    assert all(torch.equal(a[k], b.frozen_bottom.rows[k]) for k in a)


def test_a_row_not_kept_runs_the_whole_model(tiny_model):
    cached = model_for(tiny_model, frozen_cache_gb=1e-9)  # room for no row
    assert cached.frozen_bottom.rows == {}
    losses = train(cached)
    assert cached.frozen_bottom.missed == sum(map(len, BATCHES))
    assert losses == pytest.approx(train(model_for(tiny_model, frozen_cache_gb=0)), rel=1e-6)


def test_bf16_vectors_are_not_served_to_an_fp32_pass(tiny_model):
    model = model_for(tiny_model, autocast=True).eval()
    with torch.no_grad():
        model(**batch([0, 1]))
    assert model.frozen_bottom.missed == 2 and model.frozen_bottom.served == 0


def test_left_padded_batches_run_the_whole_model(tiny_model):
    model = model_for(tiny_model).eval()
    inputs = batch([0, 3])
    flipped = {k: v.flip(1) if v.dim() == 2 else v for k, v in inputs.items()}  # padding on the left
    with torch.no_grad():
        model(**flipped)
    assert model.frozen_bottom.missed == 2


@pytest.mark.parametrize(
    "params",
    [{"dropout": 0.1}, {"freeze_layers": 0}, {"freeze_embeddings": False}, {"pooling": "cls"}],
    ids=["dropout", "nothing-frozen", "embeddings-trained", "cls-pooling"],
)
def test_no_cache_where_it_would_not_be_exact(tiny_model, params):
    model = model_for(tiny_model, **params)
    assert getattr(model, "frozen_bottom", None) is None
    assert attach(model, 1.0) is False  # not even when asked again


def test_detach_frees_the_cache_and_counts_what_it_served(tiny_model):
    model = model_for(tiny_model)
    train(model)
    assert detach(model) == (sum(map(len, BATCHES)), 0)
    assert model.frozen_bottom is None


def test_a_full_cache_keeps_the_shortest_rows_and_stops(tiny_model):
    cached = model_for(tiny_model, frozen_cache_gb=1500 / 1024**3)  # two short rows: 5 and 6 tokens x 32 x 4 bytes
    assert cached.frozen_bottom.full and len(cached.frozen_bottom.rows) == 2
    losses = train(cached)  # every batch has a longer row: the whole model runs
    assert cached.frozen_bottom.served == 0 and cached.frozen_bottom.missed == sum(map(len, BATCHES))
    assert losses == pytest.approx(train(model_for(tiny_model, frozen_cache_gb=0)), rel=1e-5)
    with torch.no_grad():
        cached.eval()(**batch([2, 0]))
    assert cached.frozen_bottom.served == 2
