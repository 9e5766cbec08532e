"""JSON array or JSONL files of ``{"input", "output"}`` pairs, the original note's format.

Extra fields are kept as metadata (``focus``, ``category``, ``source`` ... are understood). A malformed
record raises :class:`DataFormatError` naming the file and line (or record index).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medlora.data.records import QARecord
from medlora.errors import DataFormatError

_FIX = 'each record must be an object like {"input": "question", "output": "answer"}'


def _to_record(obj: Any, location: str, source: str, license: str) -> QARecord:
    if not isinstance(obj, dict):
        raise DataFormatError(location, f"expected an object, got {type(obj).__name__}", _FIX)
    for key in ("input", "output"):
        if key not in obj:
            raise DataFormatError(location, f"missing field '{key}'", _FIX)
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise DataFormatError(location, f"field '{key}' must be a non-empty string", _FIX)
        try:
            obj[key].encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800": it could never be written out
            raise DataFormatError(location, f"field '{key}' holds an invalid unicode escape", _FIX) from None
    extra = {k: v for k, v in obj.items() if k not in ("input", "output")}
    record = QARecord(
        question=obj["input"],
        answer=obj["output"],
        source=str(extra.pop("source", source)),
        focus=str(extra.pop("focus", "")),
        url=str(extra.pop("url", "")),
        license=str(extra.pop("license", license)),
    )
    record.group = record.focus
    record.qtype = str(extra.pop("category", extra.pop("qtype", "")))
    record.metadata = extra
    return record


def iter_json_pairs(
    path: str | Path, *, source: str | None = None, license: str = "", errors: list[DataFormatError] | None = None
) -> Iterator[QARecord]:
    """Yield records from a JSON array or JSONL file.

    With ``errors`` given, malformed records are appended there and skipped (``--skip-invalid``); without
    it the first one raises.
    """
    path = Path(path)
    source = source or path.stem
    if not path.is_file():
        raise DataFormatError(str(path), "file not found")
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a UTF-8 BOM (some editors write one)

    def handle(err: DataFormatError) -> None:
        if errors is None:
            raise err
        errors.append(err)

    if data.lstrip().startswith(b"["):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            bad_line = data[: err.start].count(b"\n") + 1
            raise DataFormatError(f"{path}:{bad_line}", "not valid UTF-8 text", "save the file as UTF-8") from None
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}:{err.lineno}", f"invalid JSON: {err.msg}") from None
        except RecursionError:
            raise DataFormatError(str(path), "invalid JSON: nested too deeply", _FIX) from None
        if not isinstance(items, list):
            raise DataFormatError(str(path), "expected a JSON array of records", _FIX)
        for index, obj in enumerate(items):
            try:
                yield _to_record(obj, f"{path}[record {index}]", source, license)
            except DataFormatError as err:
                handle(err)
        return
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        location = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            handle(DataFormatError(location, "not valid UTF-8 text", "save the file as UTF-8"))
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            handle(DataFormatError(location, f"invalid JSON: {err.msg}", "one JSON object per line"))
            continue
        except RecursionError:
            handle(DataFormatError(location, "invalid JSON: nested too deeply", "one JSON object per line"))
            continue
        try:
            yield _to_record(obj, location, source, license)
        except DataFormatError as err:
            handle(err)
