"""textclf.allocator: freed memory stays in the process (fewer page faults), unless the user tunes malloc."""

import os
import subprocess
import sys

import pytest

from textclf.allocator import user_tunes_malloc

# Tensors of 1 to 24 MiB, three times over: each new, larger size passes glibc's dynamic mmap threshold,
# so by default each is mapped and zero-filled afresh; kept memory is reused from the second pass on.
PROBE = """
import resource, sys
import torch
from textclf.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    for mib in range(1, 25):
        x = torch.ones(mib * 1024 * 256)
        del x
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe(arm: str, **env: str) -> tuple[bool, int]:
    environ = {k: v for k, v in os.environ.items() if not user_tunes_malloc({k: v})} | env
    out = subprocess.run([sys.executable, "-c", PROBE, arm], env=environ, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_kept_memory_means_far_fewer_page_faults():
    _, default = probe("default")
    applied, tuned = probe("tuned")
    assert applied
    assert tuned * 3 < default, (tuned, default)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_users_own_malloc_settings_win():
    applied, _ = probe("tuned", GLIBC_TUNABLES="")
    assert not applied
    applied, _ = probe("tuned", MALLOC_ARENA_MAX="2")
    assert not applied


def test_user_tunes_malloc():
    assert not user_tunes_malloc({"PATH": "/bin", "OMP_NUM_THREADS": "2"})
    assert user_tunes_malloc({"MALLOC_MMAP_THRESHOLD_": "65536"})
    assert user_tunes_malloc({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"})
