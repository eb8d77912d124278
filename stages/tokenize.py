"""Tokenize single texts or sentence pairs: data/raw + data/pretrained tokenizer -> data/tokenized."""

import pyarrow.compute as pc
from datasets import DatasetDict, load_from_disk
from transformers import AutoTokenizer

from stages import require_inputs, run_stage
from textclf.columns import TEXT, TEXT_PAIR
from textclf.console import library_bars
from textclf.files import atomic_dir, save_dataset
from textclf.params import ensure_unchanged, load_params, max_length_refused
from textclf.paths import PRETRAINED, RAW, TOKENIZED
from textclf.security import warn_remote_code


def cut(data: DatasetDict, max_train: int | None, max_eval: int | None) -> DatasetDict:
    """Keep the first N rows of each split (train: max_train; validation and test: max_eval)."""
    limits = {"train": max_train, "validation": max_eval, "test": max_eval}
    return DatasetDict(
        {s: ds.select(range(min(len(ds), limits[s]))) if limits.get(s) else ds for s, ds in data.items()}
    )


def tokenize(data: DatasetDict, tokenizer, max_length: int) -> DatasetDict:
    texts = [c for c in (TEXT, TEXT_PAIR) if c in data["train"].column_names]

    def encode(batch: dict) -> dict:
        # A pair is encoded as one: [CLS] a [SEP] b [SEP], with token types. No padding here: batches
        # are padded to their own longest row at train time.
        pair = batch[TEXT_PAIR] if TEXT_PAIR in texts else None
        return tokenizer(batch[TEXT], pair, truncation=True, max_length=max_length)

    with library_bars(enabled=sum(len(ds) for ds in data.values()) > 100_000):
        return data.map(encode, batched=True, remove_columns=texts, desc="tokenize")


def at_limit(data: DatasetDict, max_length: int) -> dict[str, int]:
    """Rows per split whose tokens fill max_length: truncated, or (rarely) exactly that long."""
    lengths = {s: pc.list_value_length(d.data.column("input_ids")) for s, d in data.items()}
    return {s: pc.sum(pc.greater_equal(n, max_length)).as_py() or 0 for s, n in lengths.items()}


def check_max_length(max_length: int, tokenizer) -> None:
    limit = tokenizer.model_max_length
    if limit and limit < 10**6 and max_length > limit:
        raise max_length_refused(max_length, limit)


def main() -> None:
    p = load_params()
    require_inputs("tokenize", RAW, PRETRAINED)
    warn_remote_code(p.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(PRETRAINED, trust_remote_code=p.trust_remote_code)
    check_max_length(p.max_length, tokenizer)
    data = cut(load_from_disk(str(RAW)), p.max_train_samples, p.max_eval_samples)
    with atomic_dir(TOKENIZED) as tmp:
        tokenized = tokenize(data, tokenizer, p.max_length)
        save_dataset(tokenized, tmp)
        ensure_unchanged("tokenize")  # before the rename that makes the output appear
    print(f"tokenize: {dict((s, len(d)) for s, d in data.items())}, max_length {p.max_length}")
    cut_rows = {s: n for s, n in at_limit(tokenized, p.max_length).items() if n}
    if cut_rows:
        shares = ", ".join(f"{s} {n} of {len(tokenized[s])} ({n / len(tokenized[s]):.0%})" for s, n in cut_rows.items())
        print(f"tokenize: rows that reach max_length {p.max_length} (cut there, unless exactly that long): {shares}")


if __name__ == "__main__":
    run_stage(main)
