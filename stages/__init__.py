"""The pipeline's stages, one module each, run as `python -m stages.<name>` (see dvc.yaml)."""

import gc
import sys

# A stage process imports torch, transformers and datasets: millions of Python objects that the cyclic
# garbage collector scans again and again while they load (0.9 s of a 3.5 s import, measured) and once
# more at exit (1.1 s). This runs while `python -m` is still locating the stage module (sys.argv[0] is
# "-m" until then), so collection pauses before those imports; run_stage freezes what was imported
# out of the collector's sight and turns collection back on. Importing `stages` from anywhere else
# (tests, notebooks) leaves the collector alone.
gc_paused = sys.argv[:1] == ["-m"] and gc.isenabled()
if gc_paused:
    gc.disable()
