"""Check every param that can be checked at once, and fingerprint where the data comes from:
params -> data/dataset.json.

This is the first stage of every `dvc repro` / `dvc exp run`, so its checks (textclf/preflight.py)
refuse a bad param before DVC deletes any later stage's outputs.

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
from textclf.preflight import preflight
from textclf.sources import fingerprint


def main() -> None:
    p = load_params()
    preflight(p)
    start = time.perf_counter()
    found = fingerprint(p.dataset, p.subset)
    ensure_unchanged("source")
    write_json(FINGERPRINT, found)
    files = found["files_sha256"]
    what = f"{len(files)} file(s) hashed" if files is not None else "a Hub dataset"
    print(f"source: {p.dataset}: {what} in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    run_stage(main)
