"""CSV that a spreadsheet opens as text: no cell a user or a PACS supplied becomes a formula.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a
formula by Excel, LibreOffice and Google Sheets (``=HYPERLINK(...)`` in a file name becomes a
live link). OWASP's advice, followed here: prefix such a text cell with an apostrophe, and
quote every cell that needs it. Numbers stay numbers (a negative number is not text).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralised(value: object) -> object:
    """A text cell that would start a formula, with a leading apostrophe; anything else as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Header and rows as CSV text; None becomes an empty cell, text cells are neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL)
    writer.writerow([neutralised(name) for name in header])
    for row in rows:
        writer.writerow(["" if value is None else neutralised(value) for value in row])
    return buffer.getvalue()
