"""The one error type a user sees as a single `error: ...` line instead of a traceback."""


class InputError(RuntimeError):
    """Bad input (params, data, paths, models) found before expensive work: the message names the fix."""


def first_few(items: list, show=repr, n: int = 5) -> str:
    """The first n items for a message, shown by `show`, and how many more there are."""
    return ", ".join(show(x) for x in items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def short_repr(value: object, width: int = 40) -> str:
    """repr(value), cut to `width` characters for a message."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
