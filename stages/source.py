"""Fingerprint where the data comes from: params dataset, subset -> data/dataset.json.

`dataset` is a Hub id or a local folder. DVC can only watch a path, and a Hub id is none, so the
download stage cannot list the folder as a dependency. This stage stands in for it: it runs on every
`dvc repro` (always_changed in dvc.yaml; it imports nothing heavy) and writes the content hash of
every file in a local dataset folder. That file changes only when the data does, and download depends
on it: editing a file in the folder reruns download; an unchanged folder lets everything stay cached.
"""

import time
from pathlib import Path

from stages.common import StageError, run_stage, sha256_file, write_json
from stages.params import load_params

FINGERPRINT = Path("data/dataset.json")


def local_folder(dataset: str) -> Path | None:
    """The local folder that `dataset` names, or None for a Hub id."""
    path = Path(dataset).expanduser()
    return path if path.exists() or dataset.startswith((".", "/", "~")) else None


def require_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise StageError(f"dataset folder {folder} does not exist. Set `dataset` to a folder or a Hub id.")


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


def main() -> None:
    p = load_params()
    start = time.perf_counter()
    found = fingerprint(p.dataset, p.subset)
    write_json(FINGERPRINT, found)
    files = found["files_sha256"]
    what = f"{len(files)} file(s) hashed" if files is not None else "a Hub dataset"
    print(f"source: {p.dataset}: {what} in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    run_stage(main)
