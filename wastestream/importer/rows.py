"""Numbered rows of an export: CSV (UTF-8 with or without BOM, else GB18030) or .xlsx."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path


class ExportError(ValueError):
    pass


def read_rows(path: Path | str) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number as a spreadsheet shows it: header = 1, first data row = 2, header -> text)."""
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        yield from _xlsx(path)
        return
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise ExportError(f"{path}: neither UTF-8 nor GB18030")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for n, row in enumerate(reader, start=2):
        yield n, {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}


def _xlsx(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        import openpyxl  # type: ignore[import-untyped]
    except ImportError:
        raise ExportError(f"{path}: reading Excel needs openpyxl (pip install 'openpyxl>=3.1'); "
                          "or save the sheet as CSV") from None
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    sheet = book.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = [str(h or "").strip() for h in next(rows, ())]
    for n, values in enumerate(rows, start=2):
        yield n, {h: ("" if v is None else str(v)).strip() for h, v in zip(header, values, strict=False)}
    book.close()
