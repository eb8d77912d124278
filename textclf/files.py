"""Safe writes and small readers: outputs appear complete or not at all, never half-written."""

import csv
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textclf.errors import InputError


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces `target` only if the block completes.

    A crash or Ctrl-C leaves the old target (or none) and never a half-written one that DVC
    could cache as valid.
    """
    tmp = target.with_name(f".{target.name}.tmp")
    old = set_aside(target)
    restore_set_aside(target)
    for leftover in (tmp, old):  # from a killed run
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        usual_permissions(tmp)
        # Set the old output aside rather than delete it first: if the swap fails (a full disk
        # on another filesystem, permissions), the old output is put back and nothing is lost.
        if target.exists():
            target.rename(old)
        tmp.rename(target)
    except BaseException:
        restore_set_aside(target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def set_aside(target: Path) -> Path:
    """Where atomic_dir keeps the old output while it swaps in the new one."""
    return target.with_name(f".{target.name}.old.tmp")


def restore_set_aside(target: Path) -> None:
    """Put back an old output that a kill between atomic_dir's two renames left set aside (call before
    reading a folder that atomic_dir replaces)."""
    old = set_aside(target)
    if old.exists() and not target.exists():
        old.rename(target)


def usual_permissions(folder: Path) -> None:
    """The modes a plain write gives (umask applied) on everything in `folder`: some libraries write
    through a private temporary file (safetensors: model.safetensors came out 0600 beside 0644 files)."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


@contextmanager
def scratch_dir(path: Path) -> Iterator[Path]:
    """An empty working folder that is removed afterwards, whatever happens (a leftover from a killed
    run is cleared first). Name it `.<something>.tmp` under data/, so git ignores it."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# How libraries that write through their own code (torch's zip writer, safetensors' and tokenizers'
# Rust) report a full disk: not as an OSError, so not with a file name.
DISK_FULL_SIGNS = ("no space left on device", "os error 28", "disk quota exceeded", "unexpected pos")


@contextmanager
def writing(target: Path) -> Iterator[None]:
    """Turn a full-disk failure inside the block into an OSError(ENOSPC) naming `target`, whatever
    library raised it, so the stage ends with one `error: cannot write ...` line."""
    try:
        yield
    except OSError:
        raise
    except Exception as e:
        first = (str(e).splitlines() or [""])[0][:160]
        if not any(sign in first.lower() for sign in DISK_FULL_SIGNS):
            raise
        raise OSError(errno.ENOSPC, f"No space left on device ({type(e).__name__}: {first})", str(target)) from e


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_json_object(path: Path, fix: str) -> dict:
    """A JSON object from a file a user may have copied or edited (a model folder's config.json): one
    that is not valid JSON, or not an object, is an error naming it and `fix`."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON ({e}): {fix}.") from None
    if not isinstance(value, dict):
        raise InputError(f"{path} is not a JSON object: {fix}.")
    return value


def to_tsv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    lines = ["\t".join(columns)] + ["\t".join(str(r[c]) for c in columns) for r in rows]
    return "\n".join(lines) + "\n"


def read_tsv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha256(folder: Path) -> dict[str, str]:
    """A model folder's safetensors weights by file name: whether the model changed, whatever the mtimes."""
    return {path.name: sha256_file(path) for path in sorted(folder.glob("*.safetensors"))}


def sha256_arrow(folder: Path) -> str:
    """Hash of a saved dataset's rows only (its Arrow files)."""
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*.arrow")):
        h.update(f"{path.relative_to(folder)}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()


def save_dataset(data, folder: Path) -> None:
    """A DatasetDict's save_to_disk(folder), each split's fingerprint in state.json then set to the hash of
    its rows. datasets gives a fresh one per save (from the path of the file it was read from), so the
    same rows saved again changed the output's hash, and DVC reran every later stage."""
    data.save_to_disk(str(folder))
    for state_file in sorted(folder.glob("*/state.json")):
        state = json.loads(state_file.read_text())
        state["_fingerprint"] = sha256_arrow(state_file.parent)[:16]
        state_file.write_text(json.dumps(state, indent=2, sort_keys=True))
