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

    tsv = path.suffix == ".tsv"
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
        last = None
        try:
            for last in reader:
                yield last
        except Exception as e:  # pyarrow's ArrowInvalid: a malformed row, or bytes that are not UTF-8
            raise InputError(problem(path, e, invalid)) from None
        if not tsv and last is not None and last.num_rows:
            unclosed = unclosed_quote(path, last.slice(last.num_rows - 1).to_pylist()[0])
            if unclosed:
                raise InputError(unclosed)

    return reader.schema, batches()


def problem(path: Path, error: Exception, invalid: list) -> str:
    """The one error line for a file pyarrow could not read: the first malformed row, where it is and
    how to fix it; the first byte that is not UTF-8; or pyarrow's own reason."""
    tsv = path.suffix == ".tsv"
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


def unclosed_quote(path: Path, last_row: dict) -> str | None:
    """The error for a csv whose quote never closes, or None. pyarrow reads such a quote as a text that
    runs to the end of the file, so with one text column every row after it silently became part of one
    text: that text is in the last row, holds a line break, and is where the file ends."""
    data = None
    for value in last_row.values():
        if not isinstance(value, str) or "\n" not in value and "\r" not in value:
            continue
        data = data if data is not None else path.read_bytes()
        body, text = data.rstrip(b"\r\n"), value.rstrip("\r\n").replace('"', '""').encode()  # as written
        start = len(body) - len(text)
        if body.endswith(text) and data[start - 1 : start] == b'"':  # no closing quote after the text
            line = data.count(b"\n", 0, start) + 1
            merged = len(value.rstrip("\r\n").splitlines()) - 1
            return (
                f'{path}: line {line} opens a quoted text (") that never closes, so the {merged} line(s) after '
                "it were read as part of that text. Remove the quote, or close it (a quote inside a quoted "
                'text is written twice: "")'
            )
    return None


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
