"""Classify new text with a trained model folder: `textclf predict`.

The folder describes itself (textclf.json: text columns, label names, max_length), so no params.yaml
is needed. Input is read and output written a chunk of rows at a time, so memory stays flat however
long the input; within a chunk rows are predicted in order of length (little padding) and written
back in input order. Output goes to a temporary file that replaces the target only when complete.
"""

import csv
import itertools
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textclf.columns import is_blank
from textclf.errors import InputError, short_repr
from textclf.files import read_json, read_json_object, weights_sha256
from textclf.inference import softmax
from textclf.paths import EXPORT, MODEL, TASK_FILE
from textclf.pretrained import check_model_files, classifier_labels
from textclf.sources import decode_utf8, is_mrpc_tsv, separator_hint
from textclf.tables import open_delimited

CHUNK = 4096  # rows read, predicted and written at a time
MRPC_TEXTS = {"#1 String": "sentence1", "#2 String": "sentence2"}
INPUT_FORMATS = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
COPY_AGAIN = "copy the model folder again"


@dataclass
class Task:
    """What a model folder says about itself."""

    text_columns: list[str]
    label_names: list[str]
    max_length: int
    warnings: dict[str, str] = field(default_factory=dict)  # the training diagnosis's, by finding


def read_task(folder: Path, text_columns: list[str] | None = None) -> Task:
    """The model folder's textclf.json; a plain Hugging Face classifier folder works too, given the
    text columns."""
    if not folder.is_dir():
        raise InputError(f"model folder {folder} does not exist. Give --model a trained model folder (data/model).")
    check_model_files(folder, weights=False)  # an ONNX export has no weights; the torch backend checks them
    names = classifier_labels(folder, COPY_AGAIN)
    task_file = folder / TASK_FILE
    if task_file.exists():
        saved = read_json_object(task_file, COPY_AGAIN)
        trained = saved["text_columns"]
        if text_columns and len(text_columns) != len(trained):
            kind = "sentence pairs" if len(trained) == 2 else "single texts"
            raise InputError(
                f"--text-columns {' '.join(text_columns)}: the model in {folder} reads {kind} "
                f"({len(trained)} text column(s), trained on {trained}); give {len(trained)} column(s)."
            )
        return Task(text_columns or trained, names, saved["max_length"], saved.get("warnings", {}))
    if not text_columns:
        raise InputError(f"{folder} has no {TASK_FILE} to say which columns to read: pass --text-columns.")
    return Task(text_columns, names, 512)


# --- reading ---------------------------------------------------------------------------------------


def read_chunks(source: str, columns: list[str]) -> Iterator[list[tuple[str, ...]]]:
    """Rows of the text columns, CHUNK at a time. `-` reads stdin: one text per line, or for a pair
    model one tab-separated pair per line."""
    if source == "-":
        yield from stdin_chunks(len(columns))
        return
    path = Path(source)
    if path.exists() and not path.is_file():  # a folder, or /dev/stdin
        raise InputError(f"input {source} is not a file (give a csv, tsv, json, jsonl or parquet file; stdin: -).")
    if not path.is_file():
        raise InputError(f"input {source} does not exist (give a csv, tsv, json, jsonl or parquet file, or -).")
    suffix = path.suffix.lower()
    if suffix not in INPUT_FORMATS:
        stdin = "; for stdin, give -" if not path.suffix else ""  # e.g. /dev/stdin from a redirect
        raise InputError(
            f"input {source}: unknown format {path.suffix!r}; use one of {', '.join(INPUT_FORMATS)}{stdin}."
        )
    if path.stat().st_size == 0:
        raise InputError(f"input {source} is empty.")
    with path.open("rb") as f:
        magic = f.read(4)
    if suffix != ".parquet" and magic == b"PAR1":
        raise InputError(f"input {source} is a parquet file: name it {path.stem}.parquet.")
    if suffix == ".parquet":
        yield from parquet_chunks(path, columns)
    elif suffix in (".json", ".jsonl"):
        yield from json_chunks(path, columns)
    else:
        yield from table_chunks(path, columns)


def missing(found: list[str], columns: list[str], source: str) -> None:
    absent = [c for c in columns if c not in found]
    if absent:
        raise InputError(
            f"{source}: no column {absent[0]!r}, which the model reads; its columns are {found}. "
            f"Rename the column, or pass --text-columns." + separator_hint(found)
        )


def table_chunks(path: Path, columns: list[str]) -> Iterator[list[tuple[str, ...]]]:
    schema, batches = open_delimited(path)  # every column as text, as training reads it
    names = schema.names
    if is_mrpc_tsv(path):  # GLUE's MRPC layout: its texts under the names training reads them by
        names = [MRPC_TEXTS.get(n, n) for n in names]
    missing(names, columns, str(path))
    where = [names.index(c) for c in columns]
    for batch in batches:
        yield from slices(list(zip(*(batch.column(i).to_pylist() for i in where), strict=True)))


def parquet_chunks(path: Path, columns: list[str]) -> Iterator[list[tuple[str, ...]]]:
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
    except Exception as e:
        raise InputError(f"{path}: could not be read as parquet: {e}") from None
    missing(source.schema_arrow.names, columns, str(path))
    for batch in source.iter_batches(batch_size=CHUNK, columns=columns):
        yield list(zip(*(batch.column(c).to_pylist() for c in columns), strict=True))


def json_chunks(path: Path, columns: list[str]) -> Iterator[list[tuple[str, ...]]]:
    """JSON lines, or one JSON array of objects (read whole: use JSON lines for large inputs)."""
    chunk = []
    for n, record in enumerate(json_records(path), start=1):
        if not isinstance(record, dict):
            raise InputError(
                f"{path}: row {n} is {short_repr(record)}, not an object; each row is an object with the "
                f"text field(s) {columns}."
            )
        if n == 1:
            missing(list(record), columns, str(path))
        absent = [c for c in columns if c not in record]
        if absent:  # a later row without the field (None would read as an empty text)
            raise InputError(f"{path}: row {n} has no {absent[0]!r} field; every row needs its text.")
        chunk.append(tuple(record[c] for c in columns))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def json_records(path: Path) -> Iterator:
    """The values of a JSON array, or of JSON lines (one value per line), as the file's first character
    says; a line that is not JSON, or a file that is one object, is an error naming it."""
    layouts = "a JSON array of objects, or JSON lines (one object per line)"
    with path.open("rb") as f:
        if f.read(3) != b"\xef\xbb\xbf":
            f.seek(0)
        while (first := f.read(1)).isspace():  # the first character that is not white space tells
            pass
        f.seek(0)
        if first == b"[":
            try:
                records = json.loads(decode_utf8(f.read(), str(path)))
            except ValueError as e:
                raise InputError(f"{path} is not valid JSON ({e}); give {layouts}.") from None
            if not isinstance(records, list):
                raise InputError(f"{path} is not a JSON array; give {layouts}.")
            yield from records
            return
        for number, raw in enumerate(f, start=1):
            line = decode_utf8(raw, str(path), start_line=number)
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except ValueError as e:
                spread = number == 1 and line.strip() == "{"
                whole = "; write each row's object on one line" if spread else ""
                raise InputError(f"{path}: line {number} is not valid JSON ({e}){whole}; give {layouts}.") from None


def stdin_chunks(n_texts: int) -> Iterator[list[tuple[str, ...]]]:
    """Blank lines at the end are ignored (a trailing newline too many); one before a text is an error."""
    chunk, blank = [], None  # the first of the blank lines since the last text
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        line = decode_utf8(raw, "stdin", start_line=number).rstrip("\n").rstrip("\r")
        if not line.strip():
            blank = blank or number
            continue
        if blank:
            raise InputError(f"stdin line {blank} is blank; give one text per line (no blank lines between texts).")
        fields = tuple(line.split("\t")) if n_texts == 2 else (line,)
        if len(fields) != n_texts:
            raise InputError(
                f"stdin line {number}: expected a tab-separated pair of texts, got {len(fields)} field(s)."
            )
        chunk.append(fields)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def slices(rows: list) -> Iterator[list]:
    for start in range(0, len(rows), CHUNK):
        yield rows[start : start + CHUNK]


def check_texts(rows: list[tuple], offset: int, columns: list[str], source: str) -> None:
    where = "stdin" if source == "-" else source
    for n, row in enumerate(rows, start=offset + 1):
        for column, text in zip(columns, row, strict=True):
            if text is None or (isinstance(text, str) and is_blank(text)):
                raise InputError(f"{where}: row {n} has an empty {column!r}; every row needs its text.")
            if not isinstance(text, str):
                raise InputError(
                    f"{where}: row {n}: {column!r} holds {short_repr(text)} ({type(text).__name__}), not a text; "
                    "every row needs its text as a string."
                )


# --- writing ---------------------------------------------------------------------------------------


class Writer:
    """Rows out in the format the file name says (tsv on stdout): row number, predicted label name and
    id, and the probability of every class. A file is written under a temporary name and renamed
    when complete, so a failure leaves no half-written output."""

    def __init__(self, target: str | None, names: list[str]) -> None:
        self.names = names
        self.header = ["row", "prediction", "prediction_id", *(f"prob_{n}" for n in names)]
        self.target = Path(target) if target else None
        self.kind = self.check(target)
        self.tmp = self.target.with_name(f".{self.target.name}.tmp") if self.target else None
        self.rows, self.parquet = 0, None
        self.out = sys.stdout if self.tmp is None else open(self.tmp, "w", newline="")  # noqa: SIM115
        if self.kind in (".csv", ".tsv"):
            # tsv with quoting off, as this project reads tsv (and writes data/predictions): a label name
            # holds no tab or line break (the download stage refuses them), so a quote in one is text
            tsv = {"delimiter": "\t", "quoting": csv.QUOTE_NONE, "quotechar": None} if self.kind == ".tsv" else {}
            self.csv = csv.writer(self.out, lineterminator="\n", **tsv)
            self.csv.writerow(self.header)

    @staticmethod
    def check(target: str | None) -> str:
        """The output format; an error for an unknown one or a folder that does not exist."""
        if target is None:
            return ".tsv"
        path = Path(target)
        if path.suffix.lower() not in INPUT_FORMATS:  # the same formats out as in
            formats = "csv, tsv, json, jsonl or parquet"
            raise InputError(f"--output {target}: unknown format {path.suffix!r}; use {formats}.")
        if path.is_dir() or not path.parent.is_dir():
            where = "is a folder" if path.is_dir() else f"is in {path.parent}, which does not exist"
            raise InputError(f"--output {target} {where}: give a file in an existing folder.")
        return path.suffix.lower()

    def write(self, probs: np.ndarray) -> None:
        rows = [
            [self.rows + i, self.names[c], int(c), *(round(float(x), 6) for x in p)]
            for i, (c, p) in enumerate(zip(probs.argmax(-1), probs, strict=True))
        ]
        if self.kind in (".csv", ".tsv"):
            self.csv.writerows(rows)
        elif self.kind == ".parquet":
            self.write_parquet(rows)
        else:  # JSON lines, or for .json one array written an element at a time
            for n, row in enumerate(rows, start=self.rows):
                text = json.dumps(dict(zip(self.header, row, strict=True)))
                self.out.write(f"{'[' if n == 0 else ','}\n{text}" if self.kind == ".json" else text + "\n")
        self.rows += len(rows)

    def write_parquet(self, rows: list[list]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({name: [r[i] for r in rows] for i, name in enumerate(self.header)})
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(self.tmp, table.schema)
        self.parquet.write_table(table)

    def close(self, ok: bool) -> None:
        if self.kind == ".json" and ok:
            self.out.write("\n]\n" if self.rows else "[]\n")
        if self.parquet is not None:
            self.parquet.close()
        if self.out is not sys.stdout:
            self.out.close()
        if self.tmp is not None:
            if ok:
                self.tmp.replace(self.target)
            else:
                self.tmp.unlink(missing_ok=True)


# --- predicting -------------------------------------------------------------------------------------


class Predictor:
    """Probabilities for rows of texts, with the PyTorch model (bf16 where the CPU or GPU has it) or an
    ONNX export (fp32 or int8) under onnxruntime."""

    def __init__(self, folder: Path, task: Task, backend: str, batch_size: int, fp32: bool = False) -> None:
        from transformers import AutoTokenizer

        from textclf.console import quiet_libraries
        from textclf.heads import register

        quiet_libraries()  # no "Loading weights" bar
        register()  # the tokenizer reads config.json: a mean-pooled model's type must be known (else a warning)
        self.task, self.batch_size, self.backend = task, batch_size, backend
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if backend == "torch":
            self.model, self.precision = load_torch(folder)
            self.precision = "fp32" if fp32 else self.precision
        else:
            self.session = load_onnx(folder, backend)
            self.precision = "int8" if backend == "onnx-int8" else "fp32"

    def __call__(self, rows: list[tuple]) -> np.ndarray:
        columns = [list(c) for c in zip(*rows, strict=True)]
        pair = columns[1] if len(columns) == 2 else None
        encoded = self.tokenizer(columns[0], pair, truncation=True, max_length=self.task.max_length)
        order = np.argsort([len(x) for x in encoded["input_ids"]], kind="stable")
        out = np.empty((len(order), len(self.task.label_names)), dtype=np.float64)
        for start in range(0, len(order), self.batch_size):
            picked = order[start : start + self.batch_size]
            batch = self.tokenizer.pad({k: [v[i] for i in picked] for k, v in encoded.items()}, return_tensors="np")
            out[picked] = softmax(self.logits(dict(batch)).astype(np.float64))
        return out

    def logits(self, batch: dict) -> np.ndarray:
        if self.backend != "torch":
            names = {i.name for i in self.session.get_inputs()}
            return self.session.run(["logits"], {k: v.astype(np.int64) for k, v in batch.items() if k in names})[0]
        import torch

        device = next(self.model.parameters()).device
        inputs = {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
        bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return self.model(**inputs).logits.float().cpu().numpy()


def load_torch(folder: Path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from textclf.heads import register
    from textclf.precision import bf16_supported

    register()
    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
    if torch.cuda.is_available():
        model = model.cuda()
    return model, "bf16" if bf16_supported() else "fp32"


def onnx_file(folder: Path, backend: str) -> Path:
    """The backend's model file in `folder`; an error naming the export command when it is absent."""
    name = "model.int8.onnx" if backend == "onnx-int8" else "model.onnx"
    if not (folder / name).exists():
        if any(folder.glob("*.safetensors")):  # a trained model folder, not an export
            raise InputError(
                f"{folder} is a PyTorch model folder, not an ONNX export: export it with: textclf export "
                f"--model {folder} --output {EXPORT}, then predict with --model {EXPORT} (or use --backend torch)."
            )
        raise InputError(f"{folder} has no {name}: make it with: textclf export --model {MODEL} --output {folder}")
    return folder / name


def check_export_current(folder: Path) -> None:
    """An export whose model folder has changed since (retrained) is refused where export wrote it: it
    would predict with the old model. A copy of it kept elsewhere (a release folder) is kept on purpose:
    used, with a warning. One whose model folder is not here (copied to a server) is used."""
    check = folder / "check.json"
    source = read_json(check).get("source") if check.exists() else None
    model = Path(source["model"]) if source else None
    if model is None or not model.is_dir() or weights_sha256(model) == source["weights_sha256"]:
        return
    earlier = f"{folder} was exported from an earlier version of {model} (its weights changed since)"
    # (exports made before the folder was recorded: refused beside their model, as data/onnx is)
    written_at = Path(source["export"]) if "export" in source else model.parent / folder.resolve().name
    if folder.resolve() == written_at:
        raise InputError(f"{earlier}: export it again: textclf export --model {model} --output {folder}")
    print(
        f"predict: warning: {earlier}: these are the earlier model's predictions (to export the new one: "
        f"textclf export --model {model} --output <another folder>)",
        file=sys.stderr,
    )


def load_onnx(folder: Path, backend: str):
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_file(folder, backend)), providers=["CPUExecutionProvider"])


def predict_file(
    source: str, folder: Path, output: str | None, backend: str, batch_size: int, text_columns=None
) -> int:
    """Predict every row of `source` into `output` (stdout when None); returns the row count."""
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: give at least 1 (default 64).")
    Writer.check(output)
    if output and source != "-" and Path(output).resolve() == Path(source).resolve():
        raise InputError(f"--output {output} is the input file: give another file (the input would be replaced).")
    if output and Path(output).resolve().is_relative_to(folder.resolve()):
        raise InputError(f"--output {output} is inside the model folder {folder}: give a file outside it.")
    if folder.is_file():
        raise InputError(f"--model {folder} is a file: give the folder that holds it ({folder.parent}).")
    if backend != "torch":
        onnx_file(folder, backend)  # before read_task: a missing export folder gets the export hint
        check_export_current(folder)
    task = read_task(folder, text_columns)
    if backend == "torch":
        check_model_files(folder)  # weights too
    chunks = read_chunks(source, task.text_columns)
    first = next(chunks, None)  # read before the model loads: a bad input fails at once
    if first is None:
        raise InputError(f"input {source} has no rows.")
    check_texts(first, 0, task.text_columns, source)
    predictor = Predictor(folder, task, backend, batch_size)
    writer = Writer(output, task.label_names)
    start, done, ok, bar = time.perf_counter(), 0, False, progress_bar()
    try:
        for chunk in itertools.chain([first], chunks):
            check_texts(chunk, done, task.text_columns, source)
            writer.write(predictor(chunk))
            done += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
        ok = True
    finally:
        if bar is not None:
            bar.close()
        writer.close(ok)
    seconds = time.perf_counter() - start
    rate = f"{done / seconds:.0f} rows/s" if seconds > 0 else "instant"
    where = f" to {output}" if output else ""
    print(
        f"predict: {done} rows{where} in {seconds:.1f} s ({rate}; {backend}, {predictor.precision})",
        file=sys.stderr,
    )
    for finding, evidence in task.warnings.items():
        print(
            f"predict: warning: this model was diagnosed {finding.replace('_', ' ')} when it was trained "
            f"({evidence}); its predictions are no better, or little better, than the label balance "
            f"({folder}/README.md)",
            file=sys.stderr,
        )
    return done


def progress_bar():
    """A bar on stderr when a terminal watches (long inputs); nothing otherwise."""
    from textclf.console import interactive

    if not interactive():
        return None
    from tqdm.auto import tqdm

    return tqdm(unit=" rows", desc="predict", file=sys.stderr)
