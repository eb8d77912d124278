"""The model card (README.md in the model folder, Hugging Face format), written by the evaluate stage
from what the pipeline recorded, so it can never disagree with the metrics files."""

from typing import Any

import yaml

from textclf.checkpoints import TRAIN_KEYS
from textclf.diagnose import model_warnings
from textclf.params import Params

# The params that made the model (those a checkpoint resumes under, less the logging of the train loss and
# the train sample's accuracy), and the data cut
TRAIN_PARAMS = [k for k in TRAIN_KEYS if k not in ("logging_steps", "train_eval_rows")] + [
    "max_length", "max_train_samples", "max_eval_samples",
]  # fmt: skip
METRIC_NAMES = {"accuracy": "Accuracy", "f1": "F1", "precision": "Precision", "recall": "Recall"}


def averaging(names: list[str]) -> str:
    return f"of the positive class '{names[1]}'" if len(names) == 2 else "macro-averaged over the classes present"


def model_index(name: str, source: dict, scores: dict, names: list[str]) -> list[dict]:
    results = []
    for split, values in scores.items():
        dataset = {"name": source["dataset"], "type": source["dataset"], "split": split}
        if source.get("subset"):
            dataset["config"] = source["subset"]
        metrics = [
            {"type": key, "value": round(values[key], 4), "name": f"{split} {METRIC_NAMES[key]}"}
            for key in ("accuracy", "f1", "precision", "recall")
        ]
        task = {"type": "text-classification", "name": "Text Classification"}
        results.append({"task": task, "dataset": dataset, "metrics": metrics})
    return [{"name": name, "results": results}]


def front_matter(source: dict, scores: dict, names: list[str]) -> str:
    local = source.get("local", str(source["dataset"]).startswith("/"))  # (source.json before "local": resolved)
    hub_data = source.get("subset") is not None or not local
    meta: dict[str, Any] = {
        "base_model": source["model"]["name"],
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["text-classification", "textclf", "dvc"],
    }
    if hub_data:
        meta["datasets"] = [source["dataset"]]
    meta["model-index"] = model_index(f"textclf {source['model']['name']}", source, scores, names)
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def score_table(scores: dict, names: list[str]) -> list[str]:
    rows = [f"| split | accuracy | F1 ({averaging(names)}) | precision | recall | loss |"]
    rows.append("|---|---:|---:|---:|---:|---:|")
    for split, s in scores.items():
        values = " | ".join(f"{s[k]:.4f}" for k in ("accuracy", "f1", "precision", "recall", "loss"))
        rows.append(f"| {split} | {values} |")
    return rows


def label_table(names: list[str], used: dict, per_class: dict) -> list[str]:
    counts = used.get("label_counts", {})
    rows = ["| id | label | train rows | validation F1 |", "|---:|---|---:|---:|"]
    for i, name in enumerate(names):
        f1 = per_class.get("validation", {}).get(name, {}).get("f1")
        shown = f"{f1:.4f}" if f1 is not None else ""
        cell = name.replace("\\", "\\\\").replace("|", "\\|")  # a | would end the cell
        rows.append(f"| {i} | {cell} | {counts.get('train', {}).get(name, '')} | {shown} |")
    return rows


def splits_line(source: dict, used: dict, scores: dict, test_rows: int) -> str:
    validation = f"Validation: {used['splits']['validation']} rows ({source.get('validation', 'file')}); "
    if not test_rows:
        return validation + "no test split."
    scored = "labeled and scored" if "test" in scores else "unlabeled: predicted, not scored"
    return validation + f"test: {test_rows} rows, {scored}."


def best_epoch(train: dict) -> str:
    epoch = train.get("best_epoch")
    return f"{epoch:.2f}".rstrip("0").rstrip(".") if isinstance(epoch, int | float) else str(epoch)


def weights_line(source: dict) -> str:
    files = source["model"]["files_sha256"]
    shown = ", ".join(f"`{f}` {h[:16]}..." for f, h in files.items() if f.endswith(".safetensors"))
    return f"Starting weights sha256: {shown}."


def model_card(
    p: Params, source: dict, train: dict, results: dict, diagnosis: dict, task: dict, test_rows: int, used: dict
) -> str:
    """`source`: the download stage's record (the whole data); `used`: the rows trained on and scored
    after max_train_samples / max_eval_samples ({"splits": rows per split, "label_counts": ...})."""
    names, scores, texts = task["label_names"], results["scores"], task["text_columns"]
    sizes = f"split sizes: {source['splits']}"
    if used["splits"] != source["splits"]:
        sizes += f", of which used (max_train_samples, max_eval_samples): {used['splits']}"
    kind = "sentence pairs" if len(texts) == 2 else "single texts"
    columns = " and ".join(f"`{c}`" for c in texts) + (" columns" if len(texts) == 2 else " column")
    data = f"`{source['dataset']}`" + (f" ({source['subset']})" if source.get("subset") else "")
    pair = f"; a pair is encoded as one sequence, `{texts[0]}` first" if len(texts) == 2 else ""
    run = f"Steps: {train.get('steps')}, epochs run: {train.get('epochs_run')}, train time: "
    run += f"{train.get('train_runtime_s')} s ({train.get('precision')}, engine {train.get('engine')})."
    lines = [
        f"# Text classifier: {', '.join(names)}",
        "",
        f"Fine-tuned from `{source['model']['name']}` by the textclf DVC pipeline to classify {kind} (the "
        f"{columns}) into {len(names)} labels. Data: {data}.",
        "",
        *(
            f"> **Warning: {finding.replace('_', ' ')}.** {evidence[0].upper()}{evidence[1:]}; its predictions are "
            "no better, or little better, than the label balance.\n"
            for finding, evidence in model_warnings(diagnosis).items()
        ),
        "## Labels",
        "",
        *label_table(names, used, results["per_class"]),
        "",
        "## Results",
        "",
        *score_table(scores, names),
        "",
        splits_line(source, used, scores, test_rows),
        f"The best epoch ({best_epoch(train)}) by validation `{p.metric_for_best_model}` is the model "
        "kept, so validation scores flatter it; a labeled test split is the fair judge.",
        "",
        f"Learning-curve diagnosis: **{diagnosis['verdict']}**.",
        *(
            f"- {k}: {v}" if diagnosis.get(k) else f"- note ({k}, not flagged): {v}"
            for k, v in diagnosis.get("evidence", {}).items()
        ),
        "",
        "## Training",
        "",
        "| param | value |",
        "|---|---|",
        *(f"| {k} | {getattr(p, k)} |" for k in TRAIN_PARAMS),
        "",
        run,
        f"Data content sha256: `{source['content_sha256']}`; {sizes}.",
        weights_line(source),
        "",
        "## Reproduce",
        "",
        "In the repository this model came from: `dvc exp apply <experiment>` (or check out its commit),",
        "then `dvc repro`. The params above, with the same data (same content hash) and starting weights,",
        "give the same model on CPU.",
        "",
        "## Use",
        "",
        "```bash",
        "textclf predict new.csv --model <this folder> --output predictions.csv",
        "```",
        "",
        "```python",
        "import textclf.heads  # registers this pipeline's model types with transformers",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "model = AutoModelForSequenceClassification.from_pretrained('<this folder>')",
        "tokenizer = AutoTokenizer.from_pretrained('<this folder>')",
        "```",
        "",
        f"Inputs are truncated to {task['max_length']} tokens{pair}.",
        "",
        "## Limitations",
        "",
        f"- Scores come from {used['splits']['validation']} validation rows: a difference of one point "
        "between two models is within the noise unless compared over several seeds.",
        "- The model knows only the labels above and the kind of text it was trained on; text from another "
        "domain, language or era can be classified confidently and wrongly.",
        "- Probabilities are not calibrated beyond what training gave them.",
    ]
    return front_matter(source, scores, names) + "\n" + "\n".join(lines) + "\n"
