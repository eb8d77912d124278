"""The one error type a user sees as a single `error: ...` line instead of a traceback."""


class InputError(RuntimeError):
    """Bad input (params, data, paths, models) found before expensive work: the message names the fix."""
