"""CSV cells that a spreadsheet cannot run: every CSV the app writes goes through here.

Reader names, comments and label strings reach exported CSVs; a cell such as `=HYPERLINK("http://x","y")`
would run as a formula when the organiser opens the file in Excel or LibreOffice (CSV injection).

The rule (OWASP "CSV Injection"): a *text* cell whose first character is = + - @ TAB or CR gets a
leading single quote, which spreadsheets show as text and never evaluate. Numbers written as numbers
(int, float, numpy scalars) are not text and pass unchanged, so `-0.5` in a numeric column stays a
number; the same `-0.5` typed by a reader (a str) is quoted, because the writer cannot tell a number
from the start of `-0.5+cmd|...`. Line breaks inside text are written as LF: csv quotes only the line
terminator's characters, and a bare CR left unquoted would split the row in a spreadsheet. Readers of our own CSVs (labels.csv) undo the quote with
`restore_cell`/`dict_rows`, so a label such as `-1` round-trips.

Kept free of gan/ui imports: any layer may use it.
"""
from __future__ import annotations

import csv
import numbers
from typing import Any, Iterable, Iterator, TextIO

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def safe_cell(value: Any) -> Any:
    """`value` as it may go into a CSV cell: text starting with a formula character is quoted."""
    if isinstance(value, str):
        if value.startswith(TRIGGERS):
            value = QUOTE + value
        # a bare CR is not quoted by csv when lines end in "\n", yet spreadsheets break the row there
        return value.replace("\r\n", "\n").replace("\r", "\n") if "\r" in value else value
    if isinstance(value, (bool, numbers.Number)) or value is None:
        return value
    if isinstance(value, bytes):
        return safe_cell(value.decode("utf-8", "replace"))
    return safe_cell(str(value))  # anything else is written via str(): check that text


def safe_row(row: Iterable[Any]) -> list[Any]:
    return [safe_cell(v) for v in row]


def restore_cell(text: str) -> str:
    """Undo `safe_cell` when reading one of our own CSVs back."""
    if isinstance(text, str) and text.startswith(QUOTE) and text[1:2] and text[1:].startswith(TRIGGERS):
        return text[1:]
    return text


class SafeWriter:
    """csv.writer with every cell passed through `safe_cell` (same writerow/writerows)."""

    def __init__(self, fh: TextIO, **kwargs: Any) -> None:
        self._w = csv.writer(fh, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow(safe_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


class SafeDictWriter(csv.DictWriter):
    """csv.DictWriter with every value passed through `safe_cell` (the header too)."""

    def writeheader(self) -> Any:
        return self.writer.writerow(safe_row(self.fieldnames))

    def writerow(self, rowdict: dict[str, Any]) -> Any:
        return super().writerow({k: safe_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[dict[str, Any]]) -> None:
        for row in rowdicts:
            self.writerow(row)


def csv_writer(fh: TextIO, **kwargs: Any) -> SafeWriter:
    return SafeWriter(fh, **kwargs)


def dict_rows(fh: TextIO, **kwargs: Any) -> Iterator[dict[str, str]]:
    """csv.DictReader rows with `restore_cell` applied (for CSVs this app wrote)."""
    for row in csv.DictReader(fh, **kwargs):
        yield {k: restore_cell(v) if isinstance(v, str) else v for k, v in row.items()}
