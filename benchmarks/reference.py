"""Reference: the plain Hugging Face course recipe for MRPC, timed on this machine.

AutoTokenizer + AutoModelForSequenceClassification from the default checkpoint, truncation without
padding, DataCollatorWithPadding, and a Trainer whose TrainingArguments are the defaults except what
the course sets (eval each epoch; here also no checkpoints, no reporting, CPU when there is no GPU):
batch 8, fp32, lr 5e-5, 3 epochs, linear schedule, no warmup, SDPA attention.

Measures: wall time of trainer.train() only (it includes the per-epoch evaluation), train samples/s
(= epochs * n_train / wall), peak RSS of this process, and validation accuracy/F1 from
trainer.predict() scored by textclf.metrics.classification_metrics.

    python benchmarks/reference.py [--data ../shared/mrpc] [--max-train 64 --max-eval 32 --epochs 1]
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # so `stages` imports when run as `python benchmarks/reference.py`

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from stages.tokenize import cut  # noqa: E402
from textclf.data import load_local  # noqa: E402
from textclf.labels import prepare  # noqa: E402
from textclf.metrics import classification_metrics  # noqa: E402
from textclf.pretrained import model_source  # noqa: E402

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_DATA = ROOT.parent / "shared" / "mrpc"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="GLUE-layout MRPC folder")
    ap.add_argument("--max-train", type=int, default=None, help="first N train pairs")
    ap.add_argument("--max-eval", type=int, default=None, help="first N validation pairs")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="also write the result as JSON here")
    return ap.parse_args(argv)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    args = parse_args()
    data_dir = Path(args.data).expanduser().resolve()
    if not data_dir.is_dir():
        sys.exit(f"reference: data folder {data_dir} not found; pass --data /path/to/mrpc (GLUE layout).")
    scratch = tempfile.TemporaryDirectory(prefix="bench-reference-")  # removed at exit
    splits = load_local(data_dir, Path(scratch.name))
    pairs = prepare(splits, ["sentence1", "sentence2"], "label", None, 0.1)[0]
    raw = cut(pairs, args.max_train, args.max_eval)

    checkpoint = model_source(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def encode(batch: dict) -> dict:
        return tokenizer(batch["text"], batch["text_pair"], truncation=True)

    data = raw.map(encode, batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)

    with tempfile.TemporaryDirectory(prefix="bench-ref-") as out_dir:
        training_args = TrainingArguments(
            output_dir=out_dir,
            num_train_epochs=args.epochs,
            seed=args.seed,
            eval_strategy="epoch",
            save_strategy="no",
            report_to="none",
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=data["train"],
            eval_dataset=data["validation"],
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
        )
        start = time.perf_counter()
        train_result = trainer.train()
        wall = time.perf_counter() - start
        pred = trainer.predict(data["validation"])
        # A labeled test split (benchmarks/levers.py passes its held-out slice of train as one) is scored too.
        test = trainer.predict(data["test"]) if "test" in data and "label" in data["test"].column_names else None

    scores = classification_metrics(np.argmax(pred.predictions, axis=-1), pred.label_ids)
    result = {
        "side": "reference",
        "timed": "trainer.train() only (includes per-epoch evaluation)",
        "seed": args.seed,
        "epochs": args.epochs,
        "n_train": len(data["train"]),
        "n_eval": len(data["validation"]),
        "precision": "fp32",
        "wall_s": round(wall, 2),
        "trainer_runtime_s": round(train_result.metrics["train_runtime"], 2),
        "samples_per_s": round(args.epochs * len(data["train"]) / wall, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "val_accuracy": scores["accuracy"],
        "val_f1": scores["f1"],
    }
    if test is not None:
        held = classification_metrics(np.argmax(test.predictions, axis=-1), test.label_ids)
        result |= {"test_accuracy": held["accuracy"], "test_f1": held["f1"]}
    line = json.dumps(result)
    print(f"RESULT {line}", flush=True)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
