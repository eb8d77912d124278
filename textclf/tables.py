"""csv and tsv files, read the same way for training (textclf.data) and prediction (textclf.predict):
every column as text, exactly as written.

pandas' type inference changed the data: `NA`, `None`, `null` and `N/A` became missing values (a class
named None was refused as unlabeled), `007` and `7` became one number (two classes merged), and a first
row with a field too many became the index, shifting every column. Here a cell is the text between its
separators ('' when empty), a tsv is read with quoting off (MRPC-style text has unbalanced quotes), and
a row with another number of fields than the header stops the reading with one line naming it.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from textclf.errors import InputError
from textclf.sources import not_utf8_message, refuse_utf16

if TYPE_CHECKING:
    import pyarrow as pa


def open_delimited(path: Path) -> tuple["pa.Schema", Iterator]:
    """A csv/tsv file's schema (its column names, every one a string), and its rows as Arrow record
    batches (streamed: memory stays near one block). A malformed row raises InputError when its batch is
    reached."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    invalid = []

    def note(row) -> str:
        invalid.append(row)
        return "error"

    tsv = path.suffix.lower() == ".tsv"
    parse = pacsv.ParseOptions(
        delimiter="\t" if tsv else ",",
        quote_char=False if tsv else '"',
        newlines_in_values=not tsv,
        invalid_row_handler=note,
    )
    refuse_utf16(path)
    try:
        with pacsv.open_csv(path, parse_options=parse) as sniff:  # the names as pyarrow reads the header
            names = sniff.schema.names
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(f"{path}: the header names column(s) {repeated} more than once; give each its own name.")
        convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False)
        reader = pacsv.open_csv(path, parse_options=parse, convert_options=convert)
    except InputError:
        raise
    except Exception as e:
        raise InputError(problem(path, e, invalid)) from None

    def batches() -> Iterator:
        held = None  # one batch behind: the last one is checked for a quote that never closes before it goes out
        try:
            for batch in reader:
                if held is not None:
                    yield held
                held = batch
        except Exception as e:  # pyarrow's ArrowInvalid: a malformed row, or bytes that are not UTF-8
            raise InputError(problem(path, e, invalid)) from None
        if held is not None:
            unclosed = None if tsv or not held.num_rows else unclosed_quote(path, held.slice(held.num_rows - 1))
            if unclosed:
                raise InputError(unclosed)
            yield held

    return reader.schema, batches()


def problem(path: Path, error: Exception, invalid: list) -> str:
    """The one error line for a file pyarrow could not read: the first malformed row, where it is and
    how to fix it; the first byte that is not UTF-8; or pyarrow's own reason."""
    tsv = path.suffix.lower() == ".tsv"
    if not invalid:
        if "invalid UTF8" in str(error):
            return not_utf8(path)
        return f"{path}: could not be read as {'tsv' if tsv else 'csv'}: {error}"
    row = invalid[0]
    where = line_of(path, row.text)
    text = row.text if len(row.text) <= 80 else row.text[:77] + "..."
    if tsv:
        fix = (
            "A tsv file is read with quoting off, so a tab inside a text separates fields: replace the tabs "
            "in texts (or save the file as csv); a tab at the end of the line is a field too."
        )
    elif row.text.count('"') % 2:
        fix = "It holds an unbalanced double quote: a quoted text runs on until the next quote. Balance it."
    else:
        fix = (
            'Put a text holding a comma, quote or line break in double quotes ("like, this"); a comma at '
            "the end of the line is a field too."
        )
    return (
        f"{path}: {where} has {row.actual_columns} fields where the header has {row.expected_columns}: {text!r}. {fix}"
    )


def unclosed_quote(path: Path, last_row) -> str | None:
    """The error for a csv whose quote never closes, or None. pyarrow reads such a quote as a text that
    runs to the end of the file, so with one text column every row after it silently became part of one
    text: that text is in the last row, holds a line break (besides any at its end), and is where the
    file ends, with no closing quote. Reads the file's end only, and where it fires, counts its lines."""
    for value in last_row.to_pylist()[0].values():
        text = value.rstrip("\r\n") if isinstance(value, str) else ""
        if "\n" not in text and "\r" not in text:
            continue
        written = text.replace('"', '""').encode()  # as the file has it
        with path.open("rb") as f:
            size = f.seek(0, 2)
            tail_size = min(size, len(written) + 4096)
            f.seek(size - tail_size)
            tail = f.read().rstrip(b"\r\n")
        start = len(tail) - len(written)  # where the text begins, in the tail
        if start >= 1 and tail.endswith(written) and tail[start - 1 : start] == b'"':
            opened = size - tail_size + start - 1  # the quote's offset in the file
            return (
                f'{path}: line {line_number(path, opened)} opens a quoted text (") that never closes, so the '
                f"{line_ends(text.encode())} line(s) after it were read as part of that text. Remove the quote, "
                'or close it (a quote inside a quoted text is written twice: "")'
            )
    return None


def line_ends(data: bytes) -> int:
    """Line ends in `data`, as the readers count them: \\n, \\r\\n or a lone \\r."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def line_number(path: Path, offset: int) -> int:
    """The line (1-based) of the file that holds byte `offset`, read a block at a time."""
    ends, done, last = 0, 0, b""
    with path.open("rb") as f:
        while done < offset:
            block = f.read(min(1 << 20, offset - done))
            ends += line_ends(last + block) - line_ends(last)  # a \\r\\n split across blocks counts once
            last, done = block[-1:], done + len(block)
    return ends + 1


def line_of(path: Path, text: str) -> str:
    """'line N' of the first line of the file that is exactly `text`, or 'a row' (a row spanning lines)."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if line.decode("utf-8-sig", errors="replace").rstrip("\r\n") == text:
                return f"line {number}"
    return "a row"


def not_utf8(path: Path) -> str:
    """Where a file stops being UTF-8, and the fix."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                return not_utf8_message(path, number, line[e.start])
    return f"{path} is not UTF-8: re-save it as UTF-8"
