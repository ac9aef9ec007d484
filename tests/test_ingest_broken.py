"""Bad input through the real CLI: every broken file is one line in the report (keyed name +
reason), the rest is ingested, exit 0; with nothing usable, one sentence and a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from broken_inputs import MARK, PATIENT_ID, PATIENT_NAME, build_corpus
from synthmed.cli import main
from synthmed.data.dataset import Dataset
from synthmed.data.ingest import file_ref

KEY = bytes(range(100, 132))


@pytest.fixture
def key_file(tmp_path) -> Path:
    p = tmp_path / "deid.key"
    p.write_bytes(KEY)
    return p


def _run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    captured = capsys.readouterr()
    return int(e.value.code or 0), captured.out, captured.err


def test_broken_corpus_each_refusal_one_line_rest_ingested(tmp_path, key_file, capsys):
    corpus = build_corpus(tmp_path)
    out = tmp_path / "ds"
    code, stdout, stderr = _run_cli(["ingest", str(corpus.root), "--out", str(out), "--key",
                                     str(key_file), "--workers", "2"], capsys)
    assert code == 0, stderr
    assert "Traceback" not in stderr + stdout
    report = json.loads((out / "ingest_report.json").read_text())
    assert report["refusal_file_names"] == "keyed"
    by_ref = {r["file"]: r["reason"] for r in report["refusals"]}
    assert len(by_ref) == len(report["refusals"])  # one line per refused input
    for case in corpus.cases:
        refs = [file_ref(KEY, f) for f in case.files]
        hits = [by_ref[r] for r in refs if r in by_ref]
        assert len(hits) == 1, f"{case.name}: expected one refusal line, got {hits}"
        assert case.reason in hits[0].lower(), f"{case.name}: reason {hits[0]!r}"
        # The console names the refused file by the same keyed reference as the report, never by
        # its path (paths carry identifiers); --show-paths is the opt-in for the real path.
        assert any(r in stderr for r in refs), case.name
        assert not any(str(f) in stderr for f in case.files), case.name
    assert len(report["refusals"]) == len(corpus.cases)
    assert "--show-paths" in stdout
    assert report["counts"]["skipped"] == 2  # the README and the CSV itself
    # The good inputs: 2 PNGs and the 3 (non-empty) slices of the good CT series.
    ds = Dataset.open(out)
    assert sorted(ds.info["source_formats"]) == ["dicom", "png"]
    assert ds.info["source_formats"]["png"] == 2 and ds.info["source_formats"]["dicom"] == 3
    assert np.isfinite(ds.images[:]).all()
    # No input file name (the metadata CSV, the user's own table, is named) or header identity.
    raw = b"".join(p.read_bytes() for p in out.iterdir() if p.is_file())
    for word in (MARK, str(corpus.root), PATIENT_ID, PATIENT_NAME, "19470203", ".Jane", ".jane"):
        assert word.encode() not in raw, word


def test_unusable_metadata_csv_is_one_line_error_exit_2(tmp_path, key_file, capsys):
    """Asked for but unusable (here: no patient_id column): ingesting without it would spread
    patients over splits, so it is an error naming the CSV and the column, not a warning."""
    corpus = build_corpus(tmp_path)
    out = tmp_path / "ds"
    code, _, stderr = _run_cli(["ingest", str(corpus.root), "--out", str(out), "--key",
                                str(key_file), "--metadata", str(corpus.bad_metadata)], capsys)
    assert code == 2
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "bad_metadata.csv" in lines[0] and "patient_id" in lines[0]
    assert not out.exists()


def test_nothing_usable_one_sentence_nonzero_exit_no_traceback(tmp_path, key_file):
    corpus = build_corpus(tmp_path, with_good=False)
    out = tmp_path / "ds"
    env = {**os.environ, "SYNTHMED_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", "from synthmed.cli import main; main()", "ingest", str(corpus.root),
         "--out", str(out), "--key", str(key_file)],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("synthmed: error:")]
    assert len(errors) == 1 and "nothing usable" in errors[0] and errors[0].rstrip().endswith("written")
    assert not out.exists()  # no partial (or empty) dataset folder left behind


def test_nothing_usable_keeps_an_existing_dataset_intact(tmp_path, key_file, capsys):
    corpus = build_corpus(tmp_path)
    out = tmp_path / "ds"
    assert _run_cli(["ingest", str(corpus.root), "--out", str(out), "--key", str(key_file)],
                    capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "x.dcm").write_bytes(b"")
    code, _, err = _run_cli(["ingest", str(empty), "--out", str(out), "--key", str(key_file)], capsys)
    assert code == 2 and "already holds a synthmed dataset; pass --overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _, err = _run_cli(["ingest", str(empty), "--out", str(out), "--key", str(key_file),
                             "--overwrite"], capsys)
    assert code == 2 and "nothing usable" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bad_config_and_missing_input_are_one_line_errors(tmp_path, key_file, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("spatial_dims: 3\nshape: [64, 64]\n")
    code, _, err = _run_cli(["ingest", str(tmp_path), "--out", str(tmp_path / "o"), "--config",
                             str(cfg)], capsys)
    assert code == 2 and str(cfg) in err and "shape" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run_cli(["ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                             "--key", str(key_file)], capsys)
    assert code == 2 and "missing" in err and "does not exist" in err


def test_show_paths_names_refused_files_on_the_console_only(tmp_path, key_file, capsys):
    corpus = build_corpus(tmp_path)
    out = tmp_path / "ds"
    code, _, stderr = _run_cli(["ingest", str(corpus.root), "--out", str(out), "--key", str(key_file),
                                "--show-paths"], capsys)
    assert code == 0
    for case in corpus.cases:
        assert any(str(f) in stderr for f in case.files), case.name
    raw = b"".join(p.read_bytes() for p in out.iterdir() if p.is_file())
    assert str(corpus.root).encode() not in raw
