"""CSV text as the manifest formats read and write it: records with their row numbers, the input's line
endings and byte order mark, cells that cannot run as spreadsheet formulas, and one clear message for a
file that is not UTF-8 CSV text at all.

CSV injection: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is run as a formula by
Excel, LibreOffice and Google Sheets (`=HYPERLINK(...)`, `+cmd|...`). Every CSV the project writes passes its
cells through `safe_cell`, which prefixes such a cell with an apostrophe (OWASP's advice); numbers such as
`-1.5` are left alone. The readers undo that prefix (`unescape`), so a fixed manifest reads back as written.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMULA_LEAD = ("=", "+", "-", "@", "\t", "\r")
_FIELD_LIMIT = 1 << 30  # the csv module's default (128 KiB) would end the whole read at one overlong cell


def is_formula(value: Any) -> bool:
    """Whether a spreadsheet would run this cell as a formula: text led by = + - @ tab or CR, not a number."""
    if not isinstance(value, str) or not value.startswith(FORMULA_LEAD):
        return False
    try:
        float(value)
    except ValueError:
        return True
    return False


def safe_cell(value: Any) -> Any:
    """The cell as a spreadsheet shows it as text: a formula gets a leading apostrophe; anything else is kept."""
    return f"'{value}" if is_formula(value) else value


def unescape(cell: str) -> str:
    """Inverse of safe_cell for cells read back from a CSV."""
    return cell[1:] if cell.startswith("'") and is_formula(cell[1:]) else cell


def first_csv_row(path: Path) -> list[str] | None:
    """The first CSV record of a text file; None for a folder or a file that is not UTF-8 text."""
    if path.is_dir():
        return None
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error):
        return None


def csv_records(path: Path) -> Iterator[tuple[list[str], str]]:
    """Each non-blank CSV record, cells as written, with the exact text it was parsed from (a quoted cell
    may span lines). Blank lines are not records, so row numbers agree with every other reader."""
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    with path.open(newline="", encoding="utf-8-sig") as handle:
        consumed: list[str] = []

        def lines() -> Iterable[str]:
            for line in handle:
                consumed.append(line)
                yield line

        for cells in csv.reader(lines()):
            raw = "".join(consumed)
            consumed.clear()
            if cells:
                yield cells, raw


def encode_row(cells: Sequence[Any], ending: str) -> str:
    """One CSV record, every cell made safe, ending as the input's lines do."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=ending).writerow([safe_cell(c) for c in cells])
    return buffer.getvalue()


def safe_line(cells: Sequence[str], raw: str) -> str:
    """An untouched record: its own bytes when no cell needs neutralising, else re-encoded safely."""
    if any(is_formula(c) for c in cells):
        return encode_row(cells, raw[len(raw.rstrip("\r\n")) :] or "\n")
    return raw


@dataclass(frozen=True)
class TextStyle:
    """How a text manifest ends its lines and whether it starts with a UTF-8 byte order mark."""

    newline: str = "\n"
    bom: bool = False

    @property
    def encoding(self) -> str:
        return "utf-8-sig" if self.bom else "utf-8"

    @classmethod
    def of(cls, path: Path, sample: int = 1 << 16) -> TextStyle:
        with open(path, "rb") as handle:
            head = handle.read(sample)
        bom = head.startswith(b"\xef\xbb\xbf")
        cut = next((i for i, byte in enumerate(head) if byte in b"\r\n"), None)
        if cut is None:
            return cls("\n", bom)
        if head[cut : cut + 2] == b"\r\n":
            return cls("\r\n", bom)
        return cls("\r" if head[cut : cut + 1] == b"\r" else "\n", bom)


def not_text_reason(path: Path, sample: int = 1 << 16) -> str | None:
    """Why `path` is not UTF-8 text, as one sentence naming the file and the fix; None when it is."""
    data = path.read_bytes()
    head = data[:sample]
    if head.startswith(b"PAR1"):
        return f"{path} is a Parquet file: give it a .parquet name, or pass --format parquet"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) and _decodes(data, "utf-16"):
        return f"{path} is UTF-16 text (Excel's 'Unicode Text'): save it as CSV UTF-8 and run again"
    if b"\x00" in head:
        return f"{path} is a binary file, not a manifest: give a CSV, JSONL or Parquet file, or a folder of videos"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        return (
            f"{path} is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}; Latin-1 or Windows-1252?): "
            "save it as UTF-8 (Excel: 'CSV UTF-8'; or `iconv -f latin1 -t utf-8`) and run again"
        )
    return None


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True
