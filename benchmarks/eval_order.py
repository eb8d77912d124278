"""Prediction time of a fine-tuned model over validation + test: eval batch 8 and 64, each in file order
and sorted by length (what the evaluate stage does), best of 2 runs each.

Run from a workspace where the pipeline has run (it reads data/tokenized and data/model):

    python benchmarks/eval_order.py [--workdir .]
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `textclf` from this checkout

from datasets import load_from_disk  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from textclf.inference import length_order  # noqa: E402
from textclf.precision import precision_args, resolve_precision  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=".")
    os.chdir(ap.parse_args().workdir)
    data = load_from_disk("data/tokenized")
    splits = [s for s in ("validation", "test") if s in data]
    model = AutoModelForSequenceClassification.from_pretrained("data/model", use_safetensors=True)
    collator = DataCollatorWithPadding(AutoTokenizer.from_pretrained("data/model"))
    pairs = sum(len(data[s]) for s in splits)
    precision = precision_args(resolve_precision("auto"))
    for batch in (8, 64):
        args = TrainingArguments(
            output_dir="data/checkpoints",
            per_device_eval_batch_size=batch,
            **precision,
            disable_tqdm=True,
            report_to="none",
        )
        trainer = Trainer(model=model, args=args, data_collator=collator)
        for ordered in (False, True):
            times = []
            for _ in range(2):
                start = time.perf_counter()
                for split in splits:
                    ds = data[split].remove_columns([c for c in ("idx", "label") if c in data[split].column_names])
                    trainer.predict(ds.select(length_order(ds)) if ordered else ds)
                times.append(time.perf_counter() - start)
            order = "sorted by length" if ordered else "file order"
            print(f"eval batch {batch}, {order}: {min(times):.2f} s ({pairs} pairs, best of 2)", flush=True)


if __name__ == "__main__":
    main()
