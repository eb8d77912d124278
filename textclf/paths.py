"""Every path the pipeline reads or writes, relative to the repository root; mirrored in dvc.yaml."""

from pathlib import Path

DATA = Path("data")
FINGERPRINT = DATA / "dataset.json"  # source: content hashes of a local dataset folder
RAW = DATA / "raw"  # download: the splits, with text, text_pair (pairs only), label, idx columns
SOURCE = DATA / "source.json"  # download: where data and model came from, split sizes, label names
PRETRAINED = DATA / "pretrained"  # download: the checkpoint's config, tokenizer, safetensors weights
TOKENIZED = DATA / "tokenized"  # tokenize
TRAINED = DATA / "trained"  # train: the fine-tuned model, save_pretrained layout, plus TASK_FILE
MODEL = DATA / "model"  # evaluate: TRAINED's files plus the model card (README.md): the model to use
TASK_FILE = "textclf.json"  # in both: columns, labels, max_length (what prediction needs), base model, data hash
CARD_FILE = "README.md"  # in MODEL: the model card
CHECKPOINTS = DATA / "checkpoints"  # train: scratch space to resume from; never a DVC output
PREDICTIONS = DATA / "predictions"  # evaluate: label names and class probabilities per row
EXPORT = DATA / "onnx"  # textclf export: model.onnx and model.int8.onnx (not a DVC output); predict's onnx default

METRICS = Path("metrics")
TRAIN_CURVE = METRICS / "curves" / "train.tsv"  # train: loss and lr per logging step
EVAL_CURVE = METRICS / "curves" / "eval.tsv"  # train: validation and train-sample scores per evaluation
PROGRESS = METRICS / "progress.json"  # train: the latest evaluation, rewritten while training runs
TRAIN_METRICS = METRICS / "train.json"
EVAL_METRICS = METRICS / "eval.json"
TEST_METRICS = METRICS / "test.json"
PER_CLASS = METRICS / "per_class.json"
CONFUSION = METRICS / "confusion.csv"
SUBMISSION = METRICS / "test_predictions.tsv"  # GLUE submission format: index, predicted label id
DIAGNOSIS = METRICS / "diagnosis.json"
DIAGNOSIS_DETAILS = METRICS / "diagnosis_details.json"
