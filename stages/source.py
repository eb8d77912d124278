"""Fingerprint where the data comes from: params dataset, subset -> data/dataset.json.

`dataset` is a Hub id or a local folder. DVC can only watch a path, and a Hub id is none, so the
download stage cannot list the folder as a dependency. This stage stands in for it: it runs on every
`dvc repro` (always_changed in dvc.yaml; it imports nothing heavy) and writes the content hash of
every file in a local dataset folder. That file changes only when the data does, and download depends
on it: editing a file in the folder reruns download; an unchanged folder lets everything stay cached.
"""

import time

from stages import run_stage
from textclf.files import write_json
from textclf.params import ensure_unchanged, load_params
from textclf.paths import FINGERPRINT
from textclf.sources import fingerprint


def main() -> None:
    p = load_params()
    start = time.perf_counter()
    found = fingerprint(p.dataset, p.subset)
    ensure_unchanged("source")
    write_json(FINGERPRINT, found)
    files = found["files_sha256"]
    what = f"{len(files)} file(s) hashed" if files is not None else "a Hub dataset"
    print(f"source: {p.dataset}: {what} in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    run_stage(main)
