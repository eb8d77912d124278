"""`textclf export`: the trained model as ONNX, fp32 and dynamically quantized int8, for CPU serving
with onnxruntime (`textclf predict --backend onnx | onnx-int8`).

The export folder is self-describing like the model folder (config, tokenizer, textclf.json, the
card), and the export is checked, not assumed: on a tokenized validation split (the pipeline's own,
when run in its repository) the fp32 ONNX model must predict the same labels as PyTorch, and the int8
model's agreement and scores are reported beside PyTorch's (check.json).
"""

import logging
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from textclf.console import DropRecords, quiet_libraries
from textclf.errors import InputError
from textclf.files import atomic_dir, read_json, read_json_object, weights_sha256, write_json
from textclf.inference import length_order
from textclf.paths import CARD_FILE, EXPORT, MODEL, SOURCE, TASK_FILE, TOKENIZED
from textclf.pretrained import MODEL_FILES

if TYPE_CHECKING:
    from datasets import Dataset

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
COPIED = [*MODEL_FILES, TASK_FILE, CARD_FILE]  # what describes the model and reads its input
INT8_AGREEMENT = 0.99  # the least share of rows on which int8 must predict what PyTorch does
EXPORT_FILES = ["model.onnx", "check.json"]  # what makes a folder an earlier export, safe to replace


class Logits(torch.nn.Module):
    """The classifier with plain tensors in and the logits out, as ONNX wants it."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def refuse_output(model_dir: Path, out: Path) -> None:
    """The export replaces `out` whole: refuse an `out` that is or holds anything but an earlier export."""
    model, target = model_dir.resolve(), out.resolve()
    inside, holds = model in target.parents, target in model.parents
    overlap = "is" if target == model else "is inside" if inside else "holds" if holds else None
    if overlap:
        raise InputError(
            f"--output {out} {overlap} the model folder {model_dir}: the export replaces its output folder "
            f"whole and must leave the model alone. Give another folder (default: {EXPORT})."
        )
    if out.exists() and not out.is_dir():
        raise InputError(f"--output {out} is a file: give a folder to write the export to (default: {EXPORT}).")
    if out.is_dir() and any(out.iterdir()) and not all((out / name).exists() for name in EXPORT_FILES):
        raise InputError(
            f"--output {out} holds files and is not an earlier export (no {' and '.join(EXPORT_FILES)}): the "
            "export replaces its output folder whole. Give a new or empty folder, or move those files first."
        )


def check_model_folder(model_dir: Path) -> None:
    """A trained model folder, whole and readable: else one error line, before anything is loaded."""
    from textclf.pretrained import check_model_files, classifier_labels, safetensors_files

    if not (model_dir / "config.json").exists():
        raise InputError(f"{model_dir} is not a model folder (no config.json); train one first: dvc exp run")
    if (model_dir / "model.onnx").exists() and not safetensors_files(model_dir):
        raise InputError(
            f"{model_dir} is an ONNX export, not a trained model: export the model folder it was made from "
            f"(default: {MODEL})."
        )
    check_model_files(model_dir)
    again = "copy the model folder again, or train it again (dvc exp run)"
    classifier_labels(model_dir, again)  # a base model would be exported with an untrained head
    if (model_dir / TASK_FILE).exists():  # transformers would raise an OSError, with a traceback
        read_json_object(model_dir / TASK_FILE, again)


def load(model_dir: Path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textclf.heads import register

    quiet_libraries()  # no "Loading weights" bar
    register()
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def another_task(task: dict, labels: list[str], source: dict) -> str | None:
    """How the workspace's data (source.json) differs from the model's task (its textclf.json, and its
    label names in id order), or None where its tokenized validation split is the model's to check on."""
    base = source["model"]["name"]
    if task["text_columns"] != source["text_columns"]:
        return f"text columns {source['text_columns']}; the model reads {task['text_columns']}"
    if labels != source["label_names"]:
        return f"labels {source['label_names']}; the model's are {labels}"
    if task.get("base_model", base) != base:  # the split's token ids are in the base model's vocabulary
        return f"tokenized for base model {base}; the model was fine-tuned from {task['base_model']}"
    data = source.get("content_sha256")
    # Same columns and labels, other rows (a model trained before textclf.json held the hash: not told).
    if data and task.get("data_sha256", data) != data:
        return f"data of content {data[:12]}; the model was trained on data of content {task['data_sha256'][:12]}"
    return None


def own_split(model_dir: Path, labels: list[str]) -> tuple["Dataset | None", str | None]:
    """The workspace's tokenized validation split, where it is of the model's task; else None and why not."""
    here = TOKENIZED / "validation"
    if not here.exists() or not SOURCE.exists():
        return None, f"no {here if not here.exists() else SOURCE} here; run it in the pipeline's repository"
    if not (model_dir / TASK_FILE).exists():
        return None, f"{model_dir} has no {TASK_FILE} to say which task it was trained for"
    task = read_json(model_dir / TASK_FILE)  # readable: load() checked it
    why = another_task(task, labels, read_json_object(SOURCE, "restore it: dvc checkout"))
    if why:
        return None, f"{here} is another task's ({why}); run export in the repository that trained this model"
    from datasets import load_from_disk

    return load_from_disk(str(TOKENIZED))["validation"], None


def export_onnx(model: torch.nn.Module, tokenizer, path: Path) -> list[str]:
    """Write `path` with dynamic batch and sequence axes; return the input names it takes."""
    sample = tokenizer(["a short example"], ["and its pair"], return_tensors="pt")
    names = [n for n in INPUTS if n in sample]
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    # The tracer warns of every Python-level shape check in the model's code, and the exporter of indexing
    # that negative indices would break (the graph is checked against PyTorch afterwards: agreement()).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # "negative indices give wrong results": the exported graph's agreement is measured instead.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(
            Logits(model).eval(), tuple(sample[n] for n in names), str(path), input_names=names,
            output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    import onnx

    # The graph keeps only the inputs the model reads: a tokenizer's token types, which an MPNet or
    # DistilBERT ignores, are not among them.
    kept = {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}
    return [n for n in names if n in kept]


def quantize(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime advises its shape-inference pre-processing on the root logger at every call; the int8
    # model's agreement with PyTorch is measured instead (agreement()).
    root = logging.getLogger()
    quiet = DropRecords("pre-processing before quantization")
    root.addFilter(quiet)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(quiet)


def batches(split, tokenizer, names: list[str], size: int = 64):
    """Padded numpy batches of a tokenized split, in row order."""
    for start in range(0, len(split), size):
        rows = split[start : start + size]
        yield tokenizer.pad({n: rows[n] for n in names if n in rows}, return_tensors="np")


def agreement(model, tokenizer, folder: Path, split, names: list[str]) -> dict:
    import onnxruntime as ort

    from textclf.metrics import classification_metrics  # here, not above: it takes seconds to import

    sessions = {
        kind: ort.InferenceSession(str(folder / f), providers=["CPUExecutionProvider"])
        for kind, f in (("onnx_fp32", "model.onnx"), ("onnx_int8", "model.int8.onnx"))
    }
    # Batched as `textclf predict` batches (rows of similar length together): dynamic int8 quantization
    # scales each batch's activations by their range, padding included, so its predictions depend on it.
    split = split.select(length_order(split))
    predicted: dict[str, list] = {"torch_fp32": [], **{k: [] for k in sessions}}
    for batch in batches(split, tokenizer, names):
        with torch.no_grad():
            logits = model(**{k: torch.as_tensor(v) for k, v in batch.items()}).logits
        predicted["torch_fp32"] += logits.argmax(-1).tolist()
        for kind, session in sessions.items():
            inputs = {k: v.astype(np.int64) for k, v in batch.items()}
            predicted[kind] += session.run(["logits"], inputs)[0].argmax(-1).tolist()
    reference = np.array(predicted["torch_fp32"])
    report = {"rows": len(reference)}
    labels = np.array(split["label"]) if "label" in split.column_names else None
    for kind, values in predicted.items():
        entry = {"agreement_with_torch": float(np.mean(np.array(values) == reference))}
        if labels is not None:
            entry |= classification_metrics(values, labels, num_labels=model.config.num_labels)
        report[kind] = entry
    return report


def export(model_dir: Path, out: Path, check: bool = True) -> dict:
    """Export model_dir to out/ (model.onnx, model.int8.onnx and the files that describe them), checked on
    the workspace's validation split where it is the model's; else report["not_checked"] says why not."""
    check_model_folder(model_dir)  # first: `--model data/onnx` is a wrong model, not a wrong output
    refuse_output(model_dir, out)
    model, tokenizer = load(model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    split, why = own_split(model_dir, labels) if check else (None, "skipped with --no-check")
    with atomic_dir(out) as tmp:
        names = export_onnx(model, tokenizer, tmp / "model.onnx")
        quantize(tmp / "model.onnx", tmp / "model.int8.onnx")
        for name in COPIED:
            if (model_dir / name).exists():
                shutil.copy2(model_dir / name, tmp / name)
        # Which model this is an export of, so that predict can refuse it once that model is retrained.
        # Its own folder too: the export made there is refused once stale, a copy kept elsewhere is warned of.
        source = {"model": str(model_dir.resolve()), "weights_sha256": weights_sha256(model_dir)}
        source["export"] = str(out.resolve())
        report = {"inputs": names, "source": source}
        if split is None:
            report["not_checked"] = why
        else:
            report |= agreement(model, tokenizer, tmp, split, names)
            if report["onnx_fp32"]["agreement_with_torch"] < 1:
                raise InputError(
                    f"the fp32 ONNX export predicts differently from PyTorch on "
                    f"{1 - report['onnx_fp32']['agreement_with_torch']:.2%} of the check rows: not written."
                )
        write_json(tmp / "check.json", report)
    return report
