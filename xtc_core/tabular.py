"""Readers for task data: official GLUE TSVs and user TSV/CSV/JSONL files. Torch-free.

The HTTP API imports this module to validate uploads, so it must stay light: stdlib only.
Every unusable file raises one ``DataError`` naming the file, the 1-based line and the problem;
no KeyError, UnicodeDecodeError or csv.Error ever escapes.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError
from .tasks import Column, LabelSchema, TaskSpec

FORMATS = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


@dataclass
class Example:
    text: str
    text_pair: str | None
    label: int | float  # class index into the task's label list, or the regression target


@dataclass
class TaskData(LabelSchema):
    name: str
    labels: tuple[str, ...] | None  # None: regression
    metrics: tuple[str, ...]  # official metrics, main one first
    train: list[Example]
    dev: dict[str, list[Example]]  # split name -> rows: "dev"; MNLI: "dev_matched", "dev_mismatched"


# --------------------------------------------------------------------------- low-level reading


def _lines(path: Path) -> Iterator[str]:
    """The file's lines, line ends kept (csv needs them to see quoted newlines).

    Decoding line by line (a newline byte never occurs inside a UTF-8 sequence) lets a bad byte be
    reported with its line and offset, and keeps big uploads out of memory.
    """
    try:
        handle = open(path, "rb")  # closed by the `with` below
    except FileNotFoundError:
        raise DataError(str(path), "file not found") from None
    except IsADirectoryError:
        raise DataError(str(path), "is a folder, not a file") from None
    except OSError as exc:
        raise DataError(str(path), f"cannot be read: {exc.strerror or exc}") from None
    offset = 0
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    str(path),
                    f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at byte offset {offset + exc.start} "
                    "(save the file as UTF-8)",
                    line=number,
                ) from None
            if number == 1:
                line = line.removeprefix("\ufeff")  # Excel and the GLUE MRPC files start with a BOM
            offset += len(raw)
            yield line


def _is_blank(row: Sequence[str]) -> bool:
    return len(row) <= 1 and not "".join(row).strip()


def _delimited_rows(path: Path, delimiter: str, quoting: int) -> Iterator[tuple[int, list[str]]]:
    """(first line of the record, fields) for each non-blank record."""
    reader = csv.reader(_lines(path), delimiter=delimiter, quoting=quoting, strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(str(path), f"malformed row: {exc}", line=reader.line_num) from None
        if not _is_blank(row):
            yield start, row
        start = reader.line_num + 1


def _check_width(path: Path, line: int, row: Sequence[str], width: int) -> None:
    if len(row) != width:
        raise DataError(
            str(path),
            f"ragged row: expected {width} fields, got {len(row)}",
            line=line,
        )


def _empty_file(path: Path) -> DataError:
    return DataError(str(path), "file is empty", line=1)


def _no_rows(path: Path) -> DataError:
    return DataError(str(path), "no data rows after the header", line=2)


def _missing_column(path: Path, line: int, name: str, available: Iterable[str]) -> DataError:
    shown = ", ".join(repr(c) for c in available) or "none"
    return DataError(str(path), f"missing column {name!r}; available columns: {shown}", line=line)


def _text(path: Path, line: int, value: Any, column: str) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise DataError(
            str(path), f"column {column!r} must be text, got {type(value).__name__}: {value!r}", line=line
        )
    text = value.strip()
    if not text:
        raise DataError(str(path), f"empty text in column {column!r}", line=line)
    return text


def _label_string(path: Path, line: int, value: Any, column: str) -> str:
    """A class label as the string the label set is keyed by (JSON 1 and TSV "1" agree)."""
    if isinstance(value, str):
        label = value.strip()
    elif isinstance(value, (bool, int, float)):
        label = json.dumps(value)
    elif value is None:
        label = ""
    else:
        raise DataError(
            str(path), f"label in column {column!r} must be a string or number, got {value!r}", line=line
        )
    if not label:
        raise DataError(str(path), f"empty label in column {column!r}", line=line)
    return label


def _target(path: Path, line: int, value: Any, column: str) -> float:
    """A regression target: a finite number (bool is rejected even though Python treats it as int)."""
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise DataError(
            str(path), f"regression target {value!r} in column {column!r} is not a number", line=line
        )
    return number


def _class_index(path: Path, line: int, label: str, labels: tuple[str, ...], column: str, where: str) -> int:
    try:
        return labels.index(label)
    except ValueError:
        raise DataError(
            str(path),
            f"unknown label {label!r} in column {column!r}; {where}: {', '.join(labels)}",
            line=line,
        ) from None


# --------------------------------------------------------------------------- GLUE files


def _glue_positions(path: Path, spec: TaskSpec, header: list[str], line: int) -> dict[str, int]:
    """Field position of text, pair and label: by header name, or by index for header-less CoLA."""
    wanted: dict[str, Column] = {"text": spec.text, "label": spec.label}
    if spec.text_pair is not None:
        wanted["text_pair"] = spec.text_pair
    names = [h.strip() for h in header]
    positions = {}
    for role, column in wanted.items():
        if column.index is not None:
            if column.index >= len(header):
                raise DataError(
                    str(path),
                    f"ragged row: expected at least {column.index + 1} fields for {spec.folder}, "
                    f"got {len(header)}",
                    line=line,
                )
            positions[role] = column.index
        elif column.name in names:
            positions[role] = names.index(column.name)
        else:
            raise _missing_column(path, line, str(column.name), names)
    return positions


def _glue_column_name(spec: TaskSpec, column: Column) -> str:
    return column.name if column.name is not None else f"{spec.folder} column {column.index}"


def read_glue_file(spec: TaskSpec, path: str | Path) -> list[Example]:
    """One split of a GLUE task in the official TSV layout (tab-separated, never quoted)."""
    path = Path(path)
    # QUOTE_NONE: GLUE text holds unbalanced quotes (MRPC: `"The foodservice pie ...`) that must stay text.
    rows = _delimited_rows(path, "\t", csv.QUOTE_NONE)
    first = next(rows, None)
    if first is None:
        raise _empty_file(path)
    line, header = first
    positions = _glue_positions(path, spec, header, line)
    width = len(header)
    if not spec.has_header:
        rows = itertools.chain([first], rows)  # CoLA: the first line is already data
    label_name = _glue_column_name(spec, spec.label)
    examples = []
    for line, row in rows:
        _check_width(path, line, row, width)
        text = _text(path, line, row[positions["text"]], _glue_column_name(spec, spec.text))
        pair = None
        if spec.text_pair is not None:
            pair = _text(path, line, row[positions["text_pair"]], _glue_column_name(spec, spec.text_pair))
        raw = row[positions["label"]]
        if spec.labels is None:
            label: int | float = _target(path, line, raw, label_name)
        else:
            label = _class_index(
                path, line, raw.strip(), spec.labels, label_name, f"{spec.folder} labels are"
            )
        examples.append(Example(text, pair, label))
    if not examples:
        raise _no_rows(path)
    return examples


# --------------------------------------------------------------------------- user files


def file_format(path: str | Path) -> str:
    """"tsv", "csv" or "jsonl", from the file extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            str(path), f"unsupported file type {suffix or '(none)'!r}; use .tsv, .csv or .jsonl"
        )
    return FORMATS[suffix]


class _Table:
    """A user file as (line, record) pairs; ``columns`` lists the header (or the JSON keys seen)."""

    def __init__(self, path: Path):
        self.path = path
        self.format = file_format(path)
        self.columns: list[str] = []

    def records(self, needed: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        if self.format == "jsonl":
            yield from self._json_records(needed)
        else:
            yield from self._delimited_records(needed)

    def _delimited_records(self, needed: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        # TSV follows the GLUE convention (no quoting, so a stray quote stays text); CSV is RFC 4180.
        if self.format == "tsv":
            rows = _delimited_rows(self.path, "\t", csv.QUOTE_NONE)
        else:
            rows = _delimited_rows(self.path, ",", csv.QUOTE_MINIMAL)
        first = next(rows, None)
        if first is None:
            raise _empty_file(self.path)
        header_line, header = first
        self.columns = [name.strip() for name in header]
        duplicates = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if duplicates:
            raise DataError(
                str(self.path), f"duplicate column name(s) in the header: {', '.join(duplicates)}",
                line=header_line,
            )
        for name in needed:
            if name not in self.columns:
                raise _missing_column(self.path, header_line, name, self.columns)
        for line, row in rows:
            _check_width(self.path, line, row, len(self.columns))
            yield line, dict(zip(self.columns, row, strict=True))

    def _json_records(self, needed: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        seen_any = False
        for line, text in enumerate(_lines(self.path), start=1):
            if not text.strip():
                continue
            seen_any = True
            record = self._parse_json_line(text, line)
            for key in record:
                if key not in self.columns:
                    self.columns.append(key)
            for name in needed:
                if name not in record:
                    raise _missing_column(self.path, line, name, record)
            yield line, record
        if not seen_any:
            raise _empty_file(self.path)

    def _parse_json_line(self, text: str, line: int) -> dict[str, Any]:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            hint = ""
            if line == 1 and text.lstrip().startswith("["):
                hint = " (the file looks like one JSON array; write one JSON object per line)"
            raise DataError(
                str(self.path), f"invalid JSON at column {exc.colno}: {exc.msg}{hint}", line=line
            ) from None
        if not isinstance(record, dict):
            kind = {list: "an array", str: "a string"}.get(type(record), type(record).__name__)
            raise DataError(
                str(self.path), f"a JSON Lines row must be an object {{...}}, got {kind}", line=line
            )
        return record


def _label_order(labels: set[str]) -> tuple[str, ...]:
    """Sorted distinct labels; numerically when all are integers so "2" comes before "10"."""
    try:
        return tuple(sorted(labels, key=int))
    except ValueError:
        return tuple(sorted(labels))


@dataclass
class _UserRead:
    format: str
    columns: list[str]
    examples: list[Example]
    labels: tuple[str, ...] | None


def _read_user(
    path: str | Path,
    *,
    text_column: str,
    label_column: str,
    text_pair_column: str | None,
    labels: Sequence[str] | None,
    regression: bool,
    max_rows: int | None = None,
) -> _UserRead:
    path = Path(path)
    table = _Table(path)
    needed = [text_column, label_column] + ([text_pair_column] if text_pair_column else [])
    known = tuple(labels) if labels is not None and not regression else None
    examples: list[Example] = []
    raw_labels: list[tuple[int, str]] = []  # (line, label) awaiting the label set when it is not given
    for line, record in table.records(needed):
        if max_rows is not None and len(examples) >= max_rows:
            raise DataError(str(path), f"too many rows: the limit is {max_rows}", line=line)
        text = _text(path, line, record[text_column], text_column)
        pair = _text(path, line, record[text_pair_column], text_pair_column) if text_pair_column else None
        value = record[label_column]
        label: int | float
        if regression:
            label = _target(path, line, value, label_column)
        elif known is not None:
            name = _label_string(path, line, value, label_column)
            label = _class_index(path, line, name, known, label_column, "the training labels are")
        else:
            raw_labels.append((line, _label_string(path, line, value, label_column)))
            label = -1  # filled in below, once every label is known
        examples.append(Example(text, pair, label))
    if not examples:
        raise _no_rows(path)
    if not regression and known is None:
        known = _label_order({name for _, name in raw_labels})
        for example, (_, name) in zip(examples, raw_labels, strict=True):
            example.label = known.index(name)
    return _UserRead(table.format, table.columns, examples, known)


def read_user_file(
    path: str | Path,
    *,
    text_column: str,
    label_column: str,
    text_pair_column: str | None = None,
    labels: Sequence[str] | None = None,
    regression: bool = False,
) -> tuple[list[Example], tuple[str, ...] | None]:
    """Examples of a user TSV/CSV/JSONL file (format from the extension) and its label set.

    For classification without ``labels`` the label set is the sorted distinct label strings of this
    file; read the train file that way and pass its labels when reading dev, so a dev label the
    model cannot predict is an error. Regression returns None as the label set.

    TSV is read the GLUE way (a tab separates fields, quotes are plain text); CSV follows RFC 4180
    (quoted fields may hold commas and newlines); JSON Lines holds one object per line.
    """
    read = _read_user(
        path, text_column=text_column, label_column=label_column, text_pair_column=text_pair_column,
        labels=labels, regression=regression,
    )
    return read.examples, read.labels


def validate_user_file(
    path: str | Path,
    *,
    text_column: str,
    label_column: str,
    text_pair_column: str | None = None,
    regression: bool = False,
    max_rows: int | None = None,
) -> dict[str, Any]:
    """Check an upload end to end; a summary {"format", "rows", "labels", "columns"} or a DataError.

    ``max_rows`` is a limit: a file with more data rows is rejected. ``labels`` is a list (None for
    regression) so the summary can be stored as JSON as is.
    """
    read = _read_user(
        path, text_column=text_column, label_column=label_column, text_pair_column=text_pair_column,
        labels=None, regression=regression, max_rows=max_rows,
    )
    return {
        "format": read.format,
        "rows": len(read.examples),
        "labels": list(read.labels) if read.labels is not None else None,
        "columns": list(read.columns),
    }
