"""Readers for GLUE TSVs and user TSV/CSV/JSONL files, including every bad-input message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xtc_core.errors import DataError
from xtc_core.tabular import (
    Example,
    TaskData,
    read_glue_file,
    read_user_file,
    validate_user_file,
)
from xtc_core.tasks import get_task

# (task, file, official GLUE row count) for every file present in the shared GLUE folder.
GLUE_FILES = [
    ("cola", "train.tsv", 8551),
    ("cola", "dev.tsv", 1043),
    ("sst2", "train.tsv", 67349),
    ("sst2", "dev.tsv", 872),
    ("mrpc", "train.tsv", 3668),
    ("mrpc", "dev.tsv", 408),
    ("stsb", "train.tsv", 5749),
    ("stsb", "dev.tsv", 1500),
    ("rte", "train.tsv", 2490),
    ("rte", "dev.tsv", 277),
    ("wnli", "train.tsv", 635),
    ("wnli", "dev.tsv", 71),
    ("qnli", "dev.tsv", 5463),
]


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def expect_error(path: Path, line: int | None, *problem: str, **read_kwargs) -> DataError:
    """Read ``path`` (GLUE reader when ``task`` is given, else the user reader) and check the message."""
    task = read_kwargs.pop("task", None)
    with pytest.raises(DataError) as info:
        if task:
            read_glue_file(get_task(task), path)
        else:
            read_user_file(path, **read_kwargs)
    message = str(info.value)
    assert path.name in message
    if line is not None:
        assert f"line {line}:" in message
        assert info.value.line == line
    for words in problem:
        assert words in message, message
    return info.value


USER = {"text_column": "text", "label_column": "label"}


# --------------------------------------------------------------------------- real GLUE files


@pytest.mark.parametrize(("task", "name", "rows"), GLUE_FILES)
def test_glue_files_have_official_counts_and_valid_labels(glue_dir, task, name, rows):
    spec = get_task(task)
    examples = read_glue_file(spec, glue_dir / spec.folder / name)
    assert len(examples) == rows
    assert all(e.text and e.text == e.text.strip() for e in examples)
    assert all((e.text_pair is None) == (spec.text_pair is None) for e in examples)
    if spec.is_regression:
        assert all(isinstance(e.label, float) and 0.0 <= e.label <= 5.0 for e in examples)
    else:
        assert {e.label for e in examples} == set(range(spec.num_labels))


def test_sst2_first_dev_sentence(glue_dir):
    first = read_glue_file(get_task("sst2"), glue_dir / "SST-2" / "dev.tsv")[0]
    assert first == Example("it 's a charming and often affecting journey .", None, 1)


def test_cola_is_read_by_position_including_the_unterminated_last_line(glue_dir):
    dev = read_glue_file(get_task("cola"), glue_dir / "CoLA" / "dev.tsv")
    assert dev[0] == Example("The sailors rode the breeze clear of the rocks.", None, 1)
    assert dev[-1].text == "John talked to Bill about himself."


def test_mrpc_bom_header_and_stray_quotes(glue_dir):
    dev = read_glue_file(get_task("mrpc"), glue_dir / "MRPC" / "dev.tsv")
    # An unbalanced quote is text, not the start of a quoted field spanning lines.
    assert dev[0].text_pair.startswith('"The foodservice pie business')
    assert dev[0].label == 1 and dev[1].label == 0


def test_glue_named_labels_map_to_spec_order(glue_dir):
    rte = read_glue_file(get_task("rte"), glue_dir / "RTE" / "dev.tsv")
    assert rte[0].label == get_task("rte").labels.index("not_entailment")


# --------------------------------------------------------------------------- bad GLUE-format files


def test_glue_unknown_label(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\ngood\t1\nbad\tpositive\n")
    expect_error(path, 3, "unknown label 'positive'", "0, 1", task="sst2")


def test_glue_missing_column_lists_the_header(tmp_path):
    path = write(tmp_path / "dev.tsv", "text\tlabel\ngood\t1\n")
    expect_error(path, 1, "missing column 'sentence'", "'text', 'label'", task="sst2")


def test_glue_ragged_row(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n")
    expect_error(path, 3, "ragged row", "expected 2 fields, got 3", task="sst2")


def test_glue_cola_row_with_too_few_columns(tmp_path):
    path = write(tmp_path / "dev.tsv", "gj04\t1\t\tFine.\ngj04\t1\n")
    expect_error(path, 2, "expected 4 fields, got 2", task="cola")


def test_glue_non_numeric_stsb_score(tmp_path):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    row = "0\tg\tf\t2012\t0\tnone\tnone\tA man.\tA person.\t{}\n"
    path = write(tmp_path / "dev.tsv", header + row.format("4.2") + row.format("high"))
    expect_error(path, 3, "regression target 'high'", "not a number", task="stsb")


def test_glue_empty_text(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\ngood\t1\n  \t0\n")
    expect_error(path, 3, "empty text in column 'sentence'", task="sst2")


def test_glue_empty_file_and_header_only(tmp_path):
    expect_error(write(tmp_path / "empty.tsv", ""), 1, "file is empty", task="sst2")
    expect_error(write(tmp_path / "header.tsv", "sentence\tlabel\n"), 2, "no data rows", task="sst2")


def test_glue_file_not_found(tmp_path):
    expect_error(tmp_path / "nope.tsv", None, "file not found", task="sst2")


# --------------------------------------------------------------------------- user files


def test_user_tsv_with_mapping_and_pair(tmp_path):
    path = write(tmp_path / "train.tsv", "id\tq\tp\ty\n1\tWho?\tHim.\tyes\n2\tWhat? \tIt\tno\n")
    examples, labels = read_user_file(path, text_column="q", text_pair_column="p", label_column="y")
    assert labels == ("no", "yes")
    assert examples == [Example("Who?", "Him.", 1), Example("What?", "It", 0)]


def test_user_csv_quoting_bom_crlf_and_multiline_fields(tmp_path):
    text = '\ufefftext,label\r\n"Hello, world",pos\r\n"Two\r\nlines",neg\r\n\r\nplain,pos\r\n'
    path = write(tmp_path / "train.csv", text)
    examples, labels = read_user_file(path, **USER)
    assert labels == ("neg", "pos")
    assert [e.text for e in examples] == ["Hello, world", "Two\r\nlines", "plain"]
    # The record after a two-line field starts on line 5: line numbers stay physical.
    bad = write(tmp_path / "bad.csv", 'text,label\n"Two\nlines",neg\n,pos\n')
    expect_error(bad, 4, "empty text in column 'text'", **USER)


def test_user_jsonl_numbers_and_strings_share_labels(tmp_path):
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": "0"}, {"text": "c", "label": 10, "x": 1}]
    path = write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    examples, labels = read_user_file(path, **USER)
    assert labels == ("0", "1", "10")  # numeric order: "10" after "1"
    assert [e.label for e in examples] == [1, 0, 2]


def test_user_labels_sorted_and_dev_uses_train_labels(tmp_path):
    train = write(tmp_path / "train.tsv", "text\tlabel\na\tz\nb\tb\nc\tm\n")
    dev = write(tmp_path / "dev.tsv", "text\tlabel\nd\tm\n")
    _, labels = read_user_file(train, **USER)
    assert labels == ("b", "m", "z")
    examples, dev_labels = read_user_file(dev, labels=labels, **USER)
    assert dev_labels == labels and examples[0].label == 1


def test_user_regression(tmp_path):
    path = write(tmp_path / "train.jsonl", '{"text": "a", "label": 0.5}\n{"text": "b", "label": "3"}\n')
    examples, labels = read_user_file(path, regression=True, **USER)
    assert labels is None
    assert [e.label for e in examples] == [0.5, 3.0]


def test_validate_user_file_summary(tmp_path):
    path = write(tmp_path / "up.csv", "text,label,extra\na,x,1\nb,y,2\nc,x,3\n")
    assert validate_user_file(path, **USER) == {
        "format": "csv", "rows": 3, "labels": ["x", "y"], "columns": ["text", "label", "extra"],
    }
    jsonl = write(tmp_path / "up.jsonl", '{"text": "a", "label": 1.5}\n{"label": 2, "text": "b", "k": 0}\n')
    summary = validate_user_file(jsonl, regression=True, **USER)
    assert summary == {"format": "jsonl", "rows": 2, "labels": None, "columns": ["text", "label", "k"]}


# --------------------------------------------------------------------------- bad user files


def test_user_empty_file(tmp_path):
    for name in ("a.tsv", "a.csv", "a.jsonl"):
        expect_error(write(tmp_path / name, ""), 1, "file is empty", **USER)
    expect_error(write(tmp_path / "blank.tsv", "\n\n  \n"), 1, "file is empty", **USER)


def test_user_header_only(tmp_path):
    expect_error(write(tmp_path / "h.csv", "text,label\n"), 2, "no data rows", **USER)


def test_user_not_utf8_names_line_and_offset(tmp_path):
    path = write(tmp_path / "latin1.tsv", "text\tlabel\nok\t1\ncaf\xe9\t0\n".encode("latin-1"))
    expect_error(path, 3, "not valid UTF-8", "byte 0xe9", "byte offset 19", **USER)


def test_user_utf16_file(tmp_path):
    path = write(tmp_path / "excel.csv", "text,label\nok,1\n".encode("utf-16"))
    expect_error(path, 1, "not valid UTF-8", "byte offset 0", **USER)


def test_user_missing_column_lists_available(tmp_path):
    path = write(tmp_path / "d.tsv", "sentence\ty\na\t1\n")
    expect_error(path, 1, "missing column 'text'", "available columns: 'sentence', 'y'", **USER)
    pair = write(tmp_path / "p.tsv", "text\tlabel\na\t1\n")
    expect_error(pair, 1, "missing column 'hyp'", text_pair_column="hyp", **USER)


def test_user_jsonl_missing_key(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "y": 0}\n')
    expect_error(path, 2, "missing column 'label'", "'text', 'y'", **USER)


def test_user_ragged_row(tmp_path):
    path = write(tmp_path / "d.tsv", "text\tlabel\na\t1\nb\t0\tmore\n")
    expect_error(path, 3, "ragged row", "expected 2 fields, got 3", **USER)
    short = write(tmp_path / "d.csv", "text,label\na,1\nb\n")
    expect_error(short, 3, "expected 2 fields, got 1", **USER)


def test_user_unknown_dev_label(tmp_path):
    path = write(tmp_path / "dev.tsv", "text\tlabel\na\tpos\nb\tmaybe\n")
    expect_error(
        path, 3, "unknown label 'maybe'", "training labels are: neg, pos", labels=("neg", "pos"), **USER
    )


def test_user_non_numeric_regression_target(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\na,0.5\nb,high\n")
    expect_error(path, 3, "regression target 'high'", "not a number", regression=True, **USER)
    nan = write(tmp_path / "n.jsonl", '{"text": "a", "label": true}\n')
    expect_error(nan, 1, "not a number", regression=True, **USER)
    inf = write(tmp_path / "i.tsv", "text\tlabel\na\tinf\n")
    expect_error(inf, 2, "not a number", regression=True, **USER)


def test_user_empty_text_and_label(tmp_path):
    expect_error(write(tmp_path / "t.tsv", "text\tlabel\n \t1\n"), 2, "empty text in column 'text'", **USER)
    expect_error(write(tmp_path / "l.tsv", "text\tlabel\na\t\n"), 2, "empty label in column 'label'", **USER)
    null = write(tmp_path / "n.jsonl", '{"text": null, "label": 1}\n')
    expect_error(null, 1, "empty text", **USER)
    number = write(tmp_path / "x.jsonl", '{"text": 5, "label": 1}\n')
    expect_error(number, 1, "column 'text' must be text", **USER)


def test_user_invalid_json(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": }\n')
    expect_error(path, 2, "invalid JSON", **USER)


def test_user_jsonl_line_not_an_object(tmp_path):
    expect_error(write(tmp_path / "a.jsonl", '["a", 1]\n'), 1, "must be an object", "array", **USER)
    expect_error(write(tmp_path / "s.jsonl", '{"text": "a", "label": 1}\n"b"\n'), 2, "got a string", **USER)


def test_user_json_array_file_gets_a_hint(tmp_path):
    path = write(tmp_path / "d.json", '[\n{"text": "a", "label": 1}\n]\n')
    expect_error(path, 1, "invalid JSON", "one JSON array", **USER)


def test_user_malformed_csv_quote(tmp_path):
    path = write(tmp_path / "d.csv", 'text,label\n"a"b,1\n')
    expect_error(path, 2, "malformed row", **USER)


def test_user_duplicate_header(tmp_path):
    expect_error(write(tmp_path / "d.tsv", "text\ttext\tlabel\na\tb\t1\n"), 1, "duplicate column", **USER)


def test_user_unsupported_extension_and_missing_file(tmp_path):
    expect_error(write(tmp_path / "d.xlsx", "x"), None, "unsupported file type '.xlsx'", **USER)
    expect_error(tmp_path / "absent.csv", None, "file not found", **USER)
    (tmp_path / "folder.csv").mkdir()
    expect_error(tmp_path / "folder.csv", None, "is a folder", **USER)


def test_validate_user_file_row_limit(tmp_path):
    path = write(tmp_path / "d.tsv", "text\tlabel\na\t1\nb\t0\nc\t1\n")
    assert validate_user_file(path, max_rows=3, **USER)["rows"] == 3
    with pytest.raises(DataError, match=r"d\.tsv, line 4: too many rows: the limit is 2"):
        validate_user_file(path, max_rows=2, **USER)


def test_task_data_properties():
    cls = TaskData("sst2", ("0", "1"), ("accuracy",), [], {"dev": []})
    reg = TaskData("stsb", None, ("pearson", "spearman"), [], {"dev": []})
    assert (cls.is_regression, cls.num_labels, cls.main_metric) == (False, 2, "accuracy")
    assert (reg.is_regression, reg.num_labels, reg.main_metric) == (True, 1, "pearson")
