"""CSV and Excel (.xlsx) files in and out: uploads read as a stream of rows, exports safe to open.

Reading (contact imports)
    read_rows(name, content) -> Iterator[list]      rows as they are read, header first; the caller
        stops when it has enough, so a file of millions of rows costs no more than its first ones.
        Unreadable files raise UnreadableFile with a plain message in the user's language.
    CSV: encoding detected (UTF-8, UTF-8 with BOM, UTF-16 with BOM or recognisable without, cp1252),
    delimiter sniffed (",", ";" or tab). XLSX: the first sheet, parsed as a stream; every other part
    of the package is read only when its unpacked size is within bounds.
    Text cells go through whago.text.clean_text (no NUL, no lone surrogates).
Writing (exports)
    safe_cell(value) -> str          OWASP's rule against formula injection
    csv_delimiter(language) -> str   ";" for Portuguese (Excel pt-BR), "," otherwise
    csv_stream(header, rows, language) -> Iterator[str]   lines of a UTF-8 CSV (with BOM, for Excel)
"""
from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import cache
from typing import Any

from defusedxml.ElementTree import ParseError, iterparse
from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from whago.text import clean_text

# Columns read from a spreadsheet row, and XML elements a row may have at all (a larger row is
# refused: it is held whole while it is read).
MAX_COLUMNS = 64
MAX_ELEMENTS_PER_ROW = 4000
# XML elements read per row of the limit, on average (a cell is two: <c><v>): bounds the time a
# sheet of many huge rows can take.
ELEMENTS_PER_ROW = 80


class UnreadableFile(ValueError):
    """The upload cannot be read; .message says why, in the user's language."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def unreadable() -> UnreadableFile:
    return UnreadableFile(_("The file could not be read as CSV or Excel (.xlsx). Save it from your spreadsheet "
                            "program as “CSV UTF-8” or as an Excel workbook (.xlsx) and send it again."))


def read_rows(name: str, content: bytes) -> Iterator[list[Any]]:
    """The rows of an uploaded .csv or .xlsx file, lazily; UnreadableFile when it cannot be read."""
    lowered = (name or "").lower()
    if lowered.endswith(".xlsx") or content[:4] == b"PK\x03\x04":
        rows = _xlsx_rows(content)
    elif lowered.endswith((".csv", ".txt")) or not lowered:
        rows = _csv_rows(content)
    else:
        raise UnreadableFile(_("Send a .csv or .xlsx file."))
    return _guarded(rows)


def _guarded(rows: Iterator[list[Any]]) -> Iterator[list[Any]]:
    """Any parser failure, at any row, becomes UnreadableFile (never a raw Python error)."""
    try:
        yield from rows
    except UnreadableFile:
        raise
    except (csv.Error, ParseError, zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, IndexError, ValueError,
            OverflowError, EOFError, UnicodeError, NotImplementedError, RuntimeError) as exc:
        raise unreadable() from exc


# --- CSV --------------------------------------------------------------------------------------


def detect_encoding(content: bytes) -> str:
    """The encoding of a CSV file: by its BOM, by the shape of UTF-16, else UTF-8, else cp1252."""
    if content.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    head = content[:4096]
    if len(head) >= 4:
        # UTF-16 without BOM: plain-ASCII text has a zero byte in every other position.
        even, odd = head[0::2], head[1::2]
        if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
            return "utf-16-le"
        if even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
            return "utf-16-be"
    for encoding in ("utf-8", "cp1252"):
        if _decodes(content, encoding):
            return encoding
    raise UnreadableFile(_("The file's text encoding was not recognised. Save it as “CSV UTF-8” in your "
                           "spreadsheet program and send it again."))


def _decodes(content: bytes, encoding: str, chunk: int = 1 << 20) -> bool:
    """Whether the whole content decodes, checked piece by piece (no decoded copy is kept)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        for start in range(0, len(content), chunk):
            decoder.decode(content[start:start + chunk])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _csv_rows(content: bytes) -> Iterator[list[Any]]:
    encoding = detect_encoding(content)
    if not _decodes(content, encoding):
        raise UnreadableFile(_("The file's text encoding was not recognised. Save it as “CSV UTF-8” in your "
                               "spreadsheet program and send it again."))
    sample = content[:16384].decode(encoding, errors="ignore")[:4096]
    try:
        form: dict[str, Any] = {"dialect": csv.Sniffer().sniff(sample, delimiters=",;\t")}
    except csv.Error:
        # One column, or too irregular to sniff: Brazilian spreadsheets export with ";".
        form = {"delimiter": ";" if sample.count(";") > sample.count(",") else ","}
    text = io.TextIOWrapper(io.BytesIO(content), encoding=encoding, newline="")
    yield from csv.reader((clean_text(line) for line in text), **form)


# --- XLSX -------------------------------------------------------------------------------------
# Parsed as a stream with ElementTree: every element is dropped from the tree once read, so memory
# holds one row at a time; rows, elements per row and elements in all are bounded, so a small
# file that unpacks into millions of rows or cells costs no more than the rows the import reads.

SMALL_PART = 2 * 1024 * 1024  # workbook, relationships and styles are read whole: they stay small


@cache
def _local(tag: str) -> str:
    """A tag without its namespace (the strict and transitional OOXML namespaces read alike)."""
    return tag.rsplit("}", 1)[-1]


def _too_large() -> UnreadableFile:
    return UnreadableFile(_("The spreadsheet is too large once unpacked: at most %(rows)s rows and "
                            "%(columns)s columns.") % {"rows": settings.CONTACTS_IMPORT_MAX_ROWS,
                                                       "columns": MAX_COLUMNS})


class _Workbook:
    """The parts of an .xlsx package that rows need: first sheet, shared strings, date styles."""

    def __init__(self, content: bytes):
        self.zip = zipfile.ZipFile(io.BytesIO(content))

    def open(self, name: str, limit: int | None):
        """A part of the package as a stream (None when missing); the zip header's size, which
        bounds what can be read, must be within the limit."""
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            return None
        if limit is not None and info.file_size > limit:
            raise _too_large()
        return self.zip.open(info)

    def small(self, name: str):
        stream = self.open(name, SMALL_PART)
        return iterparse(stream) if stream is not None else iter(())

    def first_sheet(self) -> tuple[str, bool]:
        """The path of the first worksheet, and whether its dates count from 1904."""
        first_id, date1904 = None, False
        for _event, element in self.small("xl/workbook.xml"):
            name = _local(element.tag)
            if name == "workbookPr":
                date1904 = element.get("date1904", "").lower() in ("1", "true")
            elif name == "sheet" and first_id is None:
                first_id = next((v for k, v in element.attrib.items() if _local(k) == "id"), None)
        for _event, element in self.small("xl/_rels/workbook.xml.rels"):
            if _local(element.tag) == "Relationship" and element.get("Id") == first_id:
                target = element.get("Target", "")
                return (target.lstrip("/") if target.startswith("/") else "xl/" + target), date1904
        raise unreadable()

    def shared_strings(self) -> list[str]:
        strings: list[str] = []
        stream = self.open("xl/sharedStrings.xml", settings.CONTACTS_IMPORT_MAX_BYTES)
        if stream is None:
            return strings
        root = None
        for event, element in iterparse(stream, events=("start", "end")):
            if root is None:
                root = element
            elif event == "end" and _local(element.tag) == "si":
                strings.append(_text_of(element))
                root.remove(element)
        return strings

    def date_styles(self) -> set[int]:
        """The cell style indexes whose number format shows a date."""
        from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format

        formats: dict[int, str] = {}
        styles: list[int] = []
        for _event, element in self.small("xl/styles.xml"):
            name = _local(element.tag)
            if name == "numFmt":
                formats[int(element.get("numFmtId", "0"))] = element.get("formatCode", "")
            elif name == "cellXfs":
                styles = [int(xf.get("numFmtId", "0")) for xf in element if _local(xf.tag) == "xf"]
        return {index for index, format_id in enumerate(styles)
                if is_date_format(formats.get(format_id) or BUILTIN_FORMATS.get(format_id, "General"))}


def _text_of(element) -> str:
    """The text of a shared or inline string: its runs, without phonetic guides."""
    parts = []
    for child in element:
        name = _local(child.tag)
        if name == "t":
            parts.append(child.text or "")
        elif name == "r":
            parts.extend(t.text or "" for t in child if _local(t.tag) == "t")
    return "".join(parts)


_CELL_REF = re.compile(r"[A-Z]{1,3}")


def _column(reference: str, previous: int) -> int:
    """The 1-based column of a cell reference ("AB12" -> 28); the next one when it has none."""
    match = _CELL_REF.match(reference or "")
    if not match:
        return previous + 1
    number = 0
    for letter in match.group(0):
        number = number * 26 + ord(letter) - 64
    return number


def _cell_reader(book: _Workbook, date1904: bool):
    """A function from a cell element to its value (text, number, bool, datetime or None)."""
    from openpyxl.utils.datetime import CALENDAR_MAC_1904, CALENDAR_WINDOWS_1900, from_excel, from_ISO8601

    strings = book.shared_strings()
    dates = book.date_styles()
    epoch = CALENDAR_MAC_1904 if date1904 else CALENDAR_WINDOWS_1900

    def value(cell) -> Any:
        kind = cell.get("t", "n")
        if kind == "inlineStr":
            found = next((child for child in cell if _local(child.tag) == "is"), None)
            return clean_text(_text_of(found)) if found is not None else None
        raw = next((child.text for child in cell if _local(child.tag) == "v"), None)
        if raw is None:
            return None
        if kind == "s":
            return clean_text(strings[int(raw)])
        if kind in ("str", "e"):
            return clean_text(raw)
        if kind == "b":
            return raw.strip() == "1"
        if kind == "d":
            return from_ISO8601(raw)
        number = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
        if int(cell.get("s") or 0) in dates:
            return from_excel(number, epoch)
        return int(number) if isinstance(number, float) and number.is_integer() else number

    return value


def _xlsx_rows(content: bytes) -> Iterator[list[Any]]:
    book = _Workbook(content)
    path, date1904 = book.first_sheet()
    value = _cell_reader(book, date1904)
    stream = book.open(path, None)  # a sheet is never held whole: no size limit of its own
    if stream is None:
        raise unreadable()
    budget = (settings.CONTACTS_IMPORT_MAX_ROWS + 1) * ELEMENTS_PER_ROW  # elements read in all
    line = 0
    row = None
    row_size = column = 0
    cells: dict[int, Any] = {}
    parents: list[Any] = []
    for event, element in iterparse(stream, events=("start", "end")):
        name = _local(element.tag)
        if event == "start":
            parents.append(element)
            if name == "row" and row is None and len(parents) == 3:  # worksheet > sheetData > row
                row, row_size, column, cells = element, 0, 0, {}
                number = element.get("r", "")
                target = int(number) if number.isdigit() else line + 1
                while line + 1 < target:  # rows the sheet skips are blank lines, numbered as in the sheet
                    line += 1
                    yield []
            continue
        parents.pop()
        budget -= 1
        if budget < 0:
            raise _too_large()
        if element is row:
            line += 1
            yield [cells.get(index) for index in range(1, max(cells, default=0) + 1)]
            row = None
        elif row is not None:
            # Inside a row everything stays until the row is read: bounded per row.
            row_size += 1
            if row_size > MAX_ELEMENTS_PER_ROW:
                raise _too_large()
            if name == "c" and len(parents) == 3:
                column = _column(element.get("r", ""), column)
                if column <= MAX_COLUMNS:
                    cells[column] = value(element)
                element.clear()
            continue
        elif name == "sheetData":
            return  # what follows the rows (merged cells, links...) is of no use here
        if parents:
            parents[-1].remove(element)  # read: dropped from the tree


# --- exports ----------------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """A cell's text, with a leading single quote when a spreadsheet would read it as a formula (OWASP)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_delimiter(language: str | None) -> str:
    """Excel in Portuguese expects ";" (the comma is the decimal separator), in English ","."""
    return ";" if (language or "").lower().startswith("pt") else ","


class _Echo:
    def write(self, value: str) -> str:
        return value


def csv_stream(header: Iterable[Any], rows: Iterable[Iterable[Any]], language: str | None) -> Iterator[str]:
    """The lines of a CSV file for a spreadsheet program: BOM, header, rows; every cell made safe."""
    writer = csv.writer(_Echo(), delimiter=csv_delimiter(language))
    yield "\ufeff"  # Excel opens UTF-8 CSV files correctly with a BOM
    yield writer.writerow([safe_cell(cell) for cell in header])
    for row in rows:
        yield writer.writerow([safe_cell(cell) for cell in row])


def sample_rows() -> list[list[str]]:
    """The sample import file, in the active language: column names the import recognises and two
    example contacts (dates as DD/MM/YYYY, which the import reads in either language)."""
    today = datetime.now().strftime("%d/%m/%Y")  # noqa: DTZ005 - a date shown as an example
    return [
        [pgettext("sample import column", "name"), pgettext("sample import column", "phone"),
         pgettext("sample import column", "consent_source"), pgettext("sample import column", "consent_date"),
         pgettext("sample import column", "city")],
        ["Ana Souza", "(11) 98765-4321", _("website form"), today, "Campinas"],
        ["Bruno Lima", "+55 21 99876-5432", _("store counter"), today, "Rio de Janeiro"],
    ]
