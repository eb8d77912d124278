"""glibc's malloc, told to keep the memory PyTorch frees, for the processes that run the model.

PyTorch on CPU allocates and frees activations of a few MiB at every layer, in sizes that change with
each batch's length. glibc serves a block at or above its mmap threshold (dynamic, from 128 KiB) with
a fresh mmap, and gives the free top of its heap back to the kernel above its trim threshold, so the
same memory is unmapped, mapped again and zero-filled page by page at every step: 4.3 to 4.8 million
page faults in one default MRPC train stage. With the mmap threshold at its ceiling (32 MiB) and the
trim threshold at 1 GiB, freed blocks stay in the process for the next batch: 0.6 million faults,
2.2 s less train() on 3,267 MRPC pairs (5 seeds, every one faster) for about 100 MB more peak memory,
the same scores to the last digit (benchmarks/README.md, round 4).

The user's own settings win: with any MALLOC_* variable or GLIBC_TUNABLES in the environment (an
empty `GLIBC_TUNABLES=` keeps glibc's defaults), nothing is changed.
"""

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 * 1024**2  # the most glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1024**3


def user_tunes_malloc(environ: dict[str, str]) -> bool:
    return "GLIBC_TUNABLES" in environ or any(k.startswith("MALLOC_") for k in environ)


def keep_freed_memory() -> bool:
    """Apply the two thresholds to this process; False (nothing changed) where the C library is not
    glibc or the environment tunes malloc itself."""
    if not sys.platform.startswith("linux") or user_tunes_malloc(dict(os.environ)):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl's mallopt does nothing)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
