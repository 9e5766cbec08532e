"""Fuzzing the loaders: whatever the bytes, a record, a counted skip or a DataFormatError — never a crash,
a hang or a silently dropped line."""

from __future__ import annotations

import csv
import io
import json
import tempfile
import time
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a dev extra: pip install -e '.[dev]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from medlora.data.records import QARecord  # noqa: E402
from medlora.data.sources import abstracts, medquad  # noqa: E402
from medlora.data.sources.json_pairs import iter_json_pairs  # noqa: E402
from medlora.errors import DataFormatError  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
records = st.dictionaries(st.sampled_from(["input", "output", "focus", "source", "category", "x"]), json_values,
                          max_size=5)
garbage = st.binary(max_size=600) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))


def _file(data: bytes, suffix: str) -> Path:
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as handle:
        handle.write(data)
    return Path(handle.name)


def _read_json(data: bytes, skip: bool) -> tuple[list[QARecord], list[DataFormatError]]:
    path = _file(data, ".jsonl")
    errors: list[DataFormatError] | None = [] if skip else None
    try:
        return list(iter_json_pairs(path, errors=errors)), errors or []
    finally:
        path.unlink()


def _check_record(record: QARecord) -> None:
    assert isinstance(record.question, str) and record.question.strip()
    assert isinstance(record.answer, str) and record.answer.strip()
    json.dumps(record.question, ensure_ascii=False).encode("utf-8")  # writable as UTF-8


@FUZZ
@given(st.lists(records | json_values, max_size=8), st.booleans(), st.booleans())
def test_jsonl_every_line_is_a_record_or_a_counted_error(items, bom, crlf):
    lines = [json.dumps(item) for item in items]
    data = ("\r\n" if crlf else "\n").join(lines).encode()
    data = (b"\xef\xbb\xbf" if bom else b"") + data
    if data.lstrip(b"\xef\xbb\xbf").lstrip().startswith(b"["):
        return  # a line that starts with '[' makes the file a JSON array: covered below
    found, errors = _read_json(data, skip=True)
    for record in found:
        _check_record(record)
    assert len(found) + len(errors) == len(lines), "a line was dropped silently"
    if errors:
        with pytest.raises(DataFormatError, match=r":\d+"):
            _read_json(data, skip=False)


@FUZZ
@given(st.lists(records | json_values, max_size=8))
def test_json_array_every_item_is_a_record_or_a_counted_error(items):
    found, errors = _read_json(json.dumps(items).encode(), skip=True)
    assert len(found) + len(errors) == len(items)
    assert all(f"[record {i}]" in str(e) for i, e in zip(range(len(items)), errors, strict=False)) or errors == []


@FUZZ
@given(garbage, st.booleans())
def test_json_garbage_bytes_never_crash(data, skip):
    try:
        found, _ = _read_json(data, skip=skip)
    except DataFormatError as err:
        assert str(err)
        return
    for record in found:
        _check_record(record)


def test_json_edge_cases(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataFormatError, match="nested too deeply"):
        list(iter_json_pairs(deep))
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps({"input": "What is acne?", "output": "a" * 2_000_000}) + "\n")
    assert len(next(iter_json_pairs(huge)).answer) == 2_000_000
    bad_utf8 = tmp_path / "latin.jsonl"
    bad_utf8.write_bytes(b'{"input": "ok question?", "output": "fine answer"}\n{"input": "caf\xe9", "output": "x"}\n')
    errors: list[DataFormatError] = []
    assert len(list(iter_json_pairs(bad_utf8, errors=errors))) == 1
    assert f"{bad_utf8}:2" in str(errors[0]) and "UTF-8" in str(errors[0])
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text('{"input": "q \\ud800?", "output": "an answer"}\n')
    with pytest.raises(DataFormatError, match="invalid unicode"):
        list(iter_json_pairs(surrogate))
    truncated = tmp_path / "truncated.json"
    truncated.write_text(json.dumps([{"input": "q?", "output": "an answer"}] * 3)[:-7])
    with pytest.raises(DataFormatError, match="invalid JSON"):
        list(iter_json_pairs(truncated))


# ---- CSV ------------------------------------------------------------------------------------------------

cells = st.text(max_size=60) | st.integers(-5, 20).map(str) | st.just("") | st.just('"') | st.just("\x00")


@FUZZ
@given(st.lists(st.tuples(cells, cells), max_size=8), st.booleans())
def test_csv_rows_are_abstracts_or_counted_errors(rows, bom):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["condition_label", "medical_abstract"])
    writer.writerows(rows)
    data = (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8", "surrogatepass")
    path = _file(data, ".csv")
    errors: list[DataFormatError] = []
    try:
        found = list(abstracts.iter_abstracts(path, errors=errors))
    except DataFormatError as err:  # a whole-file problem (a NUL byte breaks the csv module) names a line
        assert f"{path}:" in str(err)
        return
    finally:
        path.unlink()
    assert len(found) + len(errors) == len(rows), "a row was dropped silently"
    for err in errors:
        assert str(err).startswith(f"{path}:")


@FUZZ
@given(garbage)
def test_csv_garbage_bytes_never_crash(data):
    path = _file(b"condition_label,medical_abstract\n" + data, ".csv")
    try:
        for item in abstracts.iter_abstracts(path, errors=[]):
            assert isinstance(item.label, int)
    except DataFormatError as err:
        assert str(err).startswith(str(path))
    finally:
        path.unlink()


def test_csv_errors_name_file_and_line(tmp_path):
    path = tmp_path / "abstracts.csv"
    path.write_bytes(b'condition_label,medical_abstract\n1,"Good title. Body one."\n2,"caf\xe9. Body."\nx,"T. B."\n'
                     b'3,"multi\nline. body"\n4,""\n')
    errors: list[DataFormatError] = []
    found = list(abstracts.iter_abstracts(path, errors=errors))
    assert [a.label for a in found] == [1, 3]
    assert [str(e).split(": ")[0] for e in errors] == [f"{path}:3", f"{path}:4", f"{path}:7"]
    with pytest.raises(DataFormatError, match=f"{path}:3.*UTF-8"):
        list(abstracts.iter_abstracts(path))
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b'condition_label,medical_abstract\n1,"a\x00b. c"\n')
    try:
        rows = list(abstracts.iter_abstracts(nul))
        assert rows[0].label == 1  # newer csv modules accept NUL
    except DataFormatError as err:
        assert f"{nul}:2" in str(err)


# ---- XML ------------------------------------------------------------------------------------------------

VALID_XML = ('<?xml version="1.0"?><Document id="1" source="x" url="https://e.org"><Focus>Acne</Focus>'
             '<QAPairs><QAPair pid="1"><Question qtype="information">What is acne?</Question>'
             '<Answer>A skin condition.</Answer></QAPair></QAPairs></Document>')


def _parse(data: bytes):
    directory = Path(tempfile.mkdtemp())
    path = directory / "doc.xml"
    path.write_bytes(data)
    try:
        return medquad.parse_document(path)
    finally:
        path.unlink()
        directory.rmdir()


@FUZZ
@given(garbage | st.integers(0, len(VALID_XML)).map(lambda n: VALID_XML[:n].encode()))
def test_xml_garbage_and_truncation_never_crash(data):
    try:
        doc = _parse(data)
    except DataFormatError as err:
        assert "doc.xml" in str(err)
        return
    assert isinstance(doc.pairs, list)


def test_xml_entity_bombs_and_external_entities_are_refused_fast():
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10))
            + ']><Document id="1"><Focus>&lol9;</Focus></Document>').replace("&lol;", "&lol;")
    started = time.perf_counter()
    with pytest.raises(DataFormatError, match="unsafe XML"):
        _parse(bomb.encode())
    assert time.perf_counter() - started < 1.0
    external = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                '<Document id="1"><Focus>&x;</Focus></Document>')
    with pytest.raises(DataFormatError, match="unsafe XML"):
        _parse(external.encode())
    assert _parse(VALID_XML.encode()).pairs == [("information", "What is acne?", "A skin condition.")]
