"""Where the data comes from, told apart without importing anything heavy: the source stage runs on
every `dvc repro` and must stay light."""

from pathlib import Path

from textclf.errors import InputError
from textclf.files import sha256_file


def local_folder(dataset: str) -> Path | None:
    """The local folder that `dataset` names, or None for a Hub id."""
    path = Path(dataset).expanduser()
    return path if path.exists() or dataset.startswith((".", "/", "~")) else None


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
