"""Running code that came with a checkpoint is off by default; when a user turns it on, every stage
says so loudly."""

import sys


def warn_remote_code(enabled: bool) -> None:
    if enabled:
        print(
            "WARNING: trust_remote_code is ON: Python code shipped with the checkpoint will run on this "
            "machine. Turn it off (trust_remote_code: false) unless you have read that code.",
            file=sys.stderr,
            flush=True,
        )
