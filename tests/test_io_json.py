"""synthmed.io.jsonfile.read_json: the one reader of synthmed's JSON records, and its callers."""

from __future__ import annotations

import json

import pytest

from synthmed.errors import InputError
from synthmed.io.jsonfile import read_json
from synthmed.models.checkpoint import CheckpointError
from synthmed.models.checkpoint import read_json as read_checkpoint_json


def test_a_record_is_read_as_written(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"a": [1, 2], "b": None}))
    assert read_json(tmp_path / "r.json", "record") == {"a": [1, 2], "b": None}


@pytest.mark.parametrize("content, problem", [
    (None, "is missing"),
    ("folder", "is not a file"),
    ('{"a": 1', "is not valid JSON"),
    (b"\xff\xfe{}", "is not valid JSON"),
    ("[1, 2]", "is not a JSON object"),
])
def test_each_problem_is_one_line_naming_the_file_the_record_and_the_hint(tmp_path, content, problem):
    path = tmp_path / "state.json"
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(InputError) as err:
        read_json(path, "generation state", hint="remove W to start over")
    text = str(err.value)
    assert text.startswith(f"{path}: generation state {problem}") and "\n" not in text
    assert text.endswith("; remove W to start over")
    # the caller chooses the class; without a hint the line ends at the problem
    with pytest.raises(CheckpointError) as err:
        read_checkpoint_json(path, "checkpoint state")
    assert str(err.value).startswith(f"{path}: checkpoint state {problem}")
    assert "start over" not in str(err.value)


def test_missing_ok_is_only_about_a_missing_file(tmp_path):
    assert read_json(tmp_path / "none.json", "record", missing_ok=True) == {}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="bad.json: record is not valid JSON"):
        read_json(tmp_path / "bad.json", "record", missing_ok=True)
