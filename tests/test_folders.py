"""Typed output folders (synthmed/io/folders.py): markers, verification, staging, locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from synthmed.errors import InputError
from synthmed.io import folders


def _make(root, kind="cohort", files=None):
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (files or {"a.txt": "one", "sub/b.txt": "two"}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return folders.stamp(root, kind)


def test_stamp_then_verify(tmp_path):
    info = _make(tmp_path / "c")
    again = folders.verify(tmp_path / "c", "cohort")
    assert again.fingerprint == info.fingerprint
    assert set(again.files) == {"a.txt", "sub/b.txt"}


@pytest.mark.parametrize("edit, expect", [
    (lambda r: (r / "a.txt").write_text("ONE"), "a.txt: changed since synthmed wrote it"),
    (lambda r: (r / "sub" / "b.txt").unlink(), "sub/b.txt is missing"),
    (lambda r: (r / "notes.txt").write_text("x"), "notes.txt was not written with this cohort"),
    (lambda r: (r / folders.MARKER).unlink(), "synthmed-folder.json is missing"),
    (lambda r: (r / folders.MARKER).write_text("{"), "not a readable synthmed folder marker"),
])
def test_verify_refuses_any_change(tmp_path, edit, expect):
    _make(tmp_path / "c")
    edit(tmp_path / "c")
    with pytest.raises(InputError, match=expect):
        folders.verify(tmp_path / "c", "cohort")


def test_verify_refuses_other_kind(tmp_path):
    _make(tmp_path / "d", "dataset")
    with pytest.raises(InputError, match="is a synthmed dataset folder, not a cohort"):
        folders.verify(tmp_path / "d", "cohort")


def test_prepare_output_rules(tmp_path):
    assert folders.prepare_output(tmp_path / "new", "cohort") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    folders.prepare_output(tmp_path / "empty", "cohort")
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty and not a synthmed folder"):
        folders.prepare_output(tmp_path / "user", "cohort", overwrite=True)
    _make(tmp_path / "ds", "dataset")
    with pytest.raises(InputError, match="holds a synthmed dataset, not a cohort"):
        folders.prepare_output(tmp_path / "ds", "cohort", overwrite=True)
    _make(tmp_path / "co", "cohort")
    with pytest.raises(InputError, match="pass overwrite=True"):
        folders.prepare_output(tmp_path / "co", "cohort")
    folders.prepare_output(tmp_path / "co", "cohort", overwrite=True)
    with pytest.raises(InputError, match="inside the synthmed cohort folder"):
        folders.prepare_output(tmp_path / "co" / "audit", "audit")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="existing file"):
        folders.prepare_output(tmp_path / "f", "audit")


def test_staged_output_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "co"
    with folders.staged_output(target, "cohort") as st:
        (st / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with folders.staged_output(target, "cohort", overwrite=True) as st:
            (st / "a.txt").write_text("new")
            raise RuntimeError("crash mid-write")
    assert (target / "a.txt").read_text() == "old"
    folders.verify(target, "cohort")
    with folders.staged_output(target, "cohort", overwrite=True) as st:
        (st / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "new"
    folders.verify(target, "cohort")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["co"]  # no staging, lock or old copy


@pytest.mark.parametrize("exchange", [True, False])
def test_crash_at_every_rename_leaves_old_or_new(tmp_path, monkeypatch, exchange):
    """Kill the commit at each rename it makes (with and without the atomic swap)."""
    if not exchange:
        monkeypatch.setattr(folders, "_exchange", lambda a, b: False)
    real, real_x = folders._rename, folders._exchange
    for k in range(3):
        target = tmp_path / f"co{k}"
        with folders.staged_output(target, "cohort") as st:
            (st / "a.txt").write_text("old")
        calls = {"n": 0}

        def failing(fn):
            def call(a, b):
                calls["n"] += 1
                if calls["n"] == k + 1:
                    raise KeyboardInterrupt("killed at a rename")
                return fn(a, b)
            return call

        monkeypatch.setattr(folders, "_rename", failing(real))
        monkeypatch.setattr(folders, "_exchange", failing(folders._exchange))
        try:
            with folders.staged_output(target, "cohort", overwrite=True) as st:
                (st / "a.txt").write_text("new")
        except KeyboardInterrupt:
            pass
        monkeypatch.setattr(folders, "_rename", real)
        monkeypatch.setattr(folders, "_exchange", real_x if exchange else (lambda a, b: False))
        # The next writer (or reader after it) sees a whole folder: old or new, verified.
        with folders.writer_lock(target):
            folders._recover(target)
        info = folders.verify(target, "cohort")
        assert (target / "a.txt").read_text() in ("old", "new")
        assert set(info.files) == {"a.txt"}


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    target = tmp_path / "out"
    code = textwrap.dedent(f"""
        import sys, time
        from synthmed.io.folders import writer_lock
        with writer_lock({str(target)!r}):
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(InputError) as err:
            with folders.writer_lock(target):
                pass
        assert str(err.value) == (f"{target} is being written by another synthmed process "
                                  f"(pid {proc.pid})")
    finally:
        proc.communicate("\n", timeout=30)
    with folders.writer_lock(target):  # released with its holder
        pass


def test_restamp_records_the_change(tmp_path):
    info = _make(tmp_path / "c")
    (tmp_path / "c" / "a.txt").write_text("edited")
    with pytest.raises(InputError):
        folders.verify(tmp_path / "c")
    with pytest.raises(InputError, match="needs a reason="):
        folders.restamp(tmp_path / "c", "")
    new, old = folders.restamp(tmp_path / "c", "fixed a typo")
    assert old == info.fingerprint and new.fingerprint != old
    again = folders.verify(tmp_path / "c")
    assert again.history[-1]["old_fingerprint"] == old
    assert again.history[-1]["new_fingerprint"] == new.fingerprint
    assert again.history[-1]["reason"] == "fixed a typo"
    assert json.loads((tmp_path / "c" / folders.MARKER).read_text())["kind"] == "cohort"


def test_quick_verify_trusts_size_and_mtime_only(tmp_path):
    _make(tmp_path / "c")
    f = tmp_path / "c" / "a.txt"
    marker = (tmp_path / "c" / folders.MARKER).stat().st_mtime_ns
    os.utime(f, ns=(marker - 10**9, marker - 10**9))  # written before its marker, as a writer does
    folders.verify(tmp_path / "c", quick=True)
    f.write_text("TWO")  # same size, new content, newer than the marker: caught by the quick check
    with pytest.raises(InputError, match="a.txt: changed"):
        folders.verify(tmp_path / "c", quick=True)
    os.utime(f, ns=(marker - 10**9, marker - 10**9))  # made to look old on purpose
    folders.verify(tmp_path / "c", quick=True)  # what quick cannot see (documented) ...
    with pytest.raises(InputError, match="a.txt: changed"):
        folders.verify(tmp_path / "c")  # ... the full check, which certifying readers use, does
