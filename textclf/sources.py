"""Where the data and the model come from, told apart without importing anything heavy: the source
stage runs on every `dvc repro` and must stay light. Local paths, the split files of a dataset folder
and their column names, and whether the Hugging Face Hub can be reached."""

import csv
import difflib
import itertools
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from textclf.errors import InputError
from textclf.files import sha256_file

SPLIT_NAMES = {"train": ["train"], "validation": ["validation", "dev"], "test": ["test"]}
FORMATS = {".tsv": "csv", ".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
MRPC_LABELED_HEADER = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
MRPC_TEST_HEADER = ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"]
MRPC_COLUMNS = ["sentence1", "sentence2", "label", "idx"]  # GLUE's names, as the MRPC reader gives them


def user_path(value: str) -> Path:
    """A path from params.yaml, relative to the repository the user runs DVC in. A queued experiment
    runs in a copy of the repository under .dvc/tmp/exps, and DVC tells it where the original is
    (DVC_ROOT), so `../shared/mrpc` names the same folder in a queued run as in a plain one."""
    path = Path(value).expanduser()
    root = os.environ.get("DVC_ROOT")
    return path if path.is_absolute() or not root else Path(root) / path


def looks_like_path(value: str) -> bool:
    return value.startswith((".", "/", "~")) or value.count("/") > 1


def local_folder(dataset: str) -> Path | None:
    """The local folder that `dataset` names, or None for a Hub id."""
    path = user_path(dataset)
    return path if path.exists() or looks_like_path(dataset) else None


def require_folder(folder: Path) -> None:
    if folder.is_file():
        raise InputError(
            f"dataset {folder} is a file, not a folder. Set `dataset` to the folder that holds it "
            f"(train.csv, validation.csv, test.csv, ...), e.g. -S dataset={folder.parent}"
        )
    if not folder.is_dir():
        raise InputError(f"dataset folder {folder} does not exist. Set `dataset` to a folder or a Hub id.")


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under the folder by relative path; hidden files and folders are skipped."""
    require_folder(folder)
    files = [
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(files)}


def fingerprint(dataset: str, subset: str | None) -> dict:
    folder = local_folder(dataset)
    if folder is None:  # a Hub dataset: its id is all there is to watch without a network call
        return {"dataset": dataset, "subset": subset, "files_sha256": None}
    return {"dataset": dataset, "subset": None, "files_sha256": folder_hashes(folder)}


def find_split_files(folder: Path) -> dict[str, Path]:
    """train (required), validation (or dev) and test files by name; the extension gives the format."""
    found = {}
    for split, stems in SPLIT_NAMES.items():
        matches = [p for stem in stems for ext in FORMATS for p in [folder / f"{stem}{ext}"] if p.exists()]
        if len(matches) > 1:
            raise InputError(f"{folder}: several files for split '{split}': {[m.name for m in matches]}.")
        if matches:
            found[split] = matches[0]
    if "train" not in found:
        present = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))[:10]
        raise InputError(
            f"{folder}: no train file. Name it train.csv, train.tsv, train.json, train.jsonl or "
            f"train.parquet (validation/dev and test files are optional); the folder holds {present}."
        )
    return found


def lines(path: Path) -> Iterator[str]:
    """A text file's non-empty lines, lazily (files may be huge), ending in \\n, \\r\\n or a lone \\r (old Mac
    spreadsheets) alike, as pyarrow's reader takes them; a UTF-16 file is refused (it would read as
    NUL-riddled names)."""
    refuse_utf16(path)
    with path.open(encoding="utf-8-sig", errors="replace", newline=None) as text:
        for line in text:
            if line.strip("\r\n"):
                yield line.rstrip("\r\n")


def refuse_utf16(path: Path) -> None:
    """One error line for a UTF-16 file (or one with NUL bytes at its start), which is read as UTF-8."""
    with path.open("rb") as f:
        start = f.read(4)
    if start[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in start:
        raise InputError(
            f"{path} is UTF-16 (or holds NUL bytes), not UTF-8: re-save it as UTF-8, e.g. "
            f"iconv -f utf-16 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}"
        )


def not_utf8_message(path: Path, line: int, byte: int) -> str:
    """The one error line for a file (or stdin) that stops being UTF-8 at `line` (1-based), with the fix."""
    if str(path) == "stdin":
        fix = "convert it on the way, e.g. ... | iconv -f latin1 -t utf-8 | textclf predict -"
        return f"stdin: line {line} is not UTF-8 (byte {byte:#04x}): {fix}"
    return (
        f"{path}: line {line} is not UTF-8 (byte {byte:#04x}): re-save the file as UTF-8, "
        f"e.g. iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}"
    )


def decode_utf8(data: bytes, name: str, start_line: int = 1) -> str:
    """Bytes of a file as text, a BOM dropped; an error naming the line (counted from `start_line`,
    where `data` is a part of the file) that is not UTF-8."""
    data = data.removeprefix(b"\xef\xbb\xbf")  # MRPC's train.tsv starts with a BOM
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = start_line + data.count(b"\n", 0, e.start)
        raise InputError(not_utf8_message(Path(name), line, data[e.start])) from None


def first_line(path: Path) -> str:
    return next(lines(path), "")


def is_mrpc_tsv(path: Path) -> bool:
    return path.suffix.lower() == ".tsv" and first_line(path).split("\t") in (MRPC_LABELED_HEADER, MRPC_TEST_HEADER)


def has_rows(path: Path) -> bool | None:
    """Whether a split file holds any row beyond its header, told cheaply (the first two non-blank lines,
    or parquet's metadata); None where it can't be (a JSON array)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_metadata(path).num_rows > 0
        except Exception:
            return None  # unreadable: the download stage says so, naming the file
    if path.suffix == ".json" and first_line(path).lstrip().startswith("["):
        return None
    header_lines = 1 if path.suffix in (".csv", ".tsv") else 0
    return next(itertools.islice(lines(path), header_lines, None), None) is not None


def peek_columns(path: Path) -> list[str] | None:
    """A file's column names from its first line or schema, without reading its rows; None where that
    can't be told cheaply (a JSON array). MRPC TSV files answer with GLUE's names, as they are read."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception:
            return None  # unreadable: the download stage says so, naming the file
    if path.suffix == ".tsv":
        header = delimited_header(path)
        if header == MRPC_LABELED_HEADER:
            return MRPC_COLUMNS
        return ["sentence1", "sentence2", "idx"] if header == MRPC_TEST_HEADER else header
    if path.suffix == ".csv":
        return delimited_header(path)
    line = first_line(path)
    if line.startswith("{"):  # JSON lines
        try:
            return list(json.loads(line))
        except ValueError:
            return None
    return None


def delimited_header(path: Path) -> list[str]:
    """A csv or tsv file's column names, as its first non-blank line gives them (a tsv's quotes are
    plain characters)."""
    line = first_line(path)
    return line.split("\t") if path.suffix == ".tsv" else next(csv.reader([line]), [])


def missing_column(columns: list[str], text_columns: list[str], label_column: str, split: str) -> str | None:
    """The first of the configured columns a split lacks (test may go without labels), or None."""
    for column in text_columns:
        if column not in columns:
            return column
    return label_column if label_column not in columns and split != "test" else None


def missing_column_message(
    origin: str,
    columns: list[str],
    missing: str,
    text_columns: list[str],
    split: str,
    example: str | None = None,
) -> str:
    """The one error line for a configured column a split lacks (from missing_column): what is there,
    which param to set, and an example value where the caller could guess one."""
    padded = [c for c in columns if c != missing and c.strip().strip("\"'").strip() == missing]
    if padded:  # a name -S can't give: YAML drops the spaces and quotes of `[text ]` or `["text"]`
        quoted = '"' in padded[0] or "'" in padded[0]
        return (
            f"{origin}: the header spells column {missing!r} as {padded[0]!r}: remove the "
            f"{'quotes' if quoted else 'spaces'} around the names in its first line"
            + (
                " (a tsv is read with quoting off, so quotes stay in names and texts: save it as csv)."
                if quoted
                else "."
            )
        )
    close = close_name(missing, columns)
    if close is not None:  # a misspelt name: suggest it rather than a guess from the contents
        example = ", ".join(close if c == missing else c for c in text_columns) if missing in text_columns else close
    if missing in text_columns:
        fix = "Set text_columns to the column(s) holding the text" + (
            f", e.g. dvc exp run -S 'text_columns=[{example}]'" if example else "."
        )
        return f"{origin}: no text column {missing!r}; its columns are {columns}. {fix}" + separator_hint(columns)
    return (
        f"{origin}: no label column {missing!r}; its columns are {columns}. Set label_column"
        + (f", e.g. dvc exp run -S label_column={example}" if example else "")
        + f" ({split} needs labels; only test may go without)."
        + separator_hint(columns)
    )


def close_name(name: str, columns: list[str]) -> str | None:
    """The column a misspelt name most likely meant: the same name in other case, or a near spelling."""
    same = [c for c in columns if c.casefold() == name.casefold()]
    return same[0] if same else next(iter(difflib.get_close_matches(name, columns, n=1, cutoff=0.8)), None)


SEPARATORS = {"\t": "tabs", ";": "';'s", "|": "'|'s", ",": "commas"}


def separator_hint(columns: list[str]) -> str:
    """A sentence to add where a file read as a single column has another separator in that column's name
    (a ';'-separated .csv, as a spreadsheet writes in many locales), or ''."""
    found = [name for sep, name in SEPARATORS.items() if len(columns) == 1 and sep in columns[0]]
    if not found:
        return ""
    return (
        f" It read as one column whose name holds {found[0]}: a .csv file must be comma-separated (a .tsv"
        " file tab-separated); save it that way."
    )


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hugging Face Hub can't be reached (offline mode, no DNS, refused), or None if it can.
    Asked once, in seconds, instead of letting the libraries retry for half a minute."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or 443
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return None
    except OSError as e:
        return f"{host}: {e.strerror or e}"
