"""Every output folder is whole, verified and never clobbered (issue 9, items 1-4 and 8).

Each test is a case found by probing synthmed as a hostile but fair user: a demo deleting a user's
folder, a command writing into another kind of folder, two ingests into one --out, a crash between
the files of one output, a hand-edited manifest accepted, an audit written into a cohort, a model
audited or evaluated against a dataset it never saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers_dataset import edit_manifest, make_toy_dataset
from helpers_nih import toy_dataset, write_plain_cohort
from synthmed.cli import main
from synthmed.data.cohort import Cohort, write_cohort
from synthmed.data.dataset import Dataset
from synthmed.data.records import CohortRecord
from synthmed.errors import InputError
from synthmed.io import folders

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ROOT / "configs" / "audit-public.yaml"


def _cli(capsys, args: list[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return int(e.value.code or 0), cap.out, cap.err.strip()


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _png_corpus(root: Path, n: int = 40, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    yy, xx = np.mgrid[0:48, 0:48] / 48.0
    for i in range(n):
        a = 0.5 + 0.3 * np.sin(xx * rng.uniform(2, 8) + yy * rng.uniform(2, 8)) + rng.normal(0, 0.05, xx.shape)
        Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8)).save(root / f"img{i:03d}.png")
    return root


def _key(tmp: Path) -> Path:
    key = tmp / "deid.key"
    key.write_bytes(bytes(range(7, 39)))
    return key


def _ingest_args(src: Path, out: Path, key: Path, *extra) -> list:
    return ["ingest", src, "--out", out, "--key", key, "--workers", "1", *extra]


def _fast_profile(tmp: Path) -> Path:
    prof = tmp / "p.yaml"
    prof.write_text(PUBLIC.read_text().replace("steps: 300", "steps: 0").replace("aligned: true", "aligned: false")
                    .replace("  enabled: true", "  enabled: false")  # identity attack: no network to train
                    .replace("min_holdout_patients: 20", "min_holdout_patients: 10")
                    .replace("spaces: [pixel, encoder]", "spaces: [pixel]"))
    return prof


# ------------------------------------------------------------------------------ item 1: kinds
def test_demo_never_deletes_a_user_folder(tmp_path, capsys):
    user = tmp_path / "work"
    (user / "run").mkdir(parents=True)
    (user / "notes.txt").write_text("my notes")
    (user / "run" / "model.safetensors").write_bytes(b"weights I trained for a week")
    (user / "phantoms").mkdir()
    (user / "phantoms" / "phantoms.json").write_text("{}")  # what the old check looked for
    before = _tree(user)
    code, _, err = _cli(capsys, ["demo", "--out", user, "--patients", "6", "--no-train"])
    assert code == 2 and "not empty and not a synthmed folder" in err
    assert _tree(user) == before


def test_demo_replaces_only_its_own_untouched_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    code, _, err = _cli(capsys, ["demo", "--out", out, "--patients", "6", "--no-train"])
    assert code == 0, err
    info = folders.verify(out, "demo")
    assert folders.verify(out / "dataset", "dataset")
    Dataset.open(out / "dataset")
    code, _, err = _cli(capsys, ["demo", "--out", out, "--patients", "6", "--no-train", "--keep"])
    assert code == 2 and "pass --overwrite" in err
    code, _, err = _cli(capsys, ["demo", "--out", out, "--patients", "6", "--no-train"])
    assert code == 0, err  # --fresh (the default) replaces a previous demo
    assert folders.verify(out, "demo").fingerprint == info.fingerprint  # same seed, same bytes
    (out / "notes.txt").write_text("I put this here")
    before = _tree(out)
    code, _, err = _cli(capsys, ["demo", "--out", out, "--patients", "6", "--no-train"])
    assert code == 2 and "not replaced" in err and "notes.txt" in err
    assert _tree(out) == before


def test_sample_and_ingest_refuse_another_kind_of_folder_before_any_work(tmp_path, capsys):
    ds = make_toy_dataset(tmp_path / "ds", n_patients=6)
    cohort = write_plain_cohort(tmp_path / "co", np.asarray(Dataset.open(ds).images)[:4])
    before_ds, before_co = _tree(ds), _tree(cohort)
    # the run does not even exist: the --out check comes first
    for over in ([], ["--overwrite"]):
        code, _, err = _cli(capsys, ["sample", tmp_path / "no-run", "--n", "4", "--out", ds, *over])
        assert code == 2 and "holds a synthmed dataset, not a cohort" in err
        code, _, err = _cli(capsys, _ingest_args(tmp_path / "no-src", cohort, tmp_path / "k", *over))
        assert code == 2 and "holds a synthmed cohort, not a dataset" in err
    assert _tree(ds) == before_ds and _tree(cohort) == before_co
    Dataset.open(ds)
    Cohort.open(cohort)


def test_audit_output_inside_a_cohort_is_refused(tmp_path, capsys):
    ds = toy_dataset(tmp_path / "ds", n_patients=60, per_patient=2, size=16)
    d = Dataset.open(ds)
    cohort = write_plain_cohort(tmp_path / "co", np.asarray(d.images[d.indices("reference")])[:30])
    before = _tree(cohort)
    for out in (cohort, cohort / "audit"):
        code, _, err = _cli(capsys, ["audit", "--dataset", ds, "--synthetic", cohort, "--profile",
                                     _fast_profile(tmp_path), "--out", out])
        assert code == 2, err
        assert ("inside the synthmed cohort folder" in err) or ("holds a synthmed cohort" in err)
    assert _tree(cohort) == before
    Cohort.open(cohort)


# ------------------------------------------------------------------------------ item 3: locks
def test_two_concurrent_ingests_one_writes_the_other_is_refused(tmp_path, capsys):
    src = _png_corpus(tmp_path / "src", n=120)
    out, key = tmp_path / "ds", _key(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT), SYNTHMED_NO_PROGRESS="1")
    first = subprocess.Popen([sys.executable, "-c", "from synthmed.cli import main; main()",
                              *map(str, _ingest_args(src, out, key))],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / ".ds.lock"
    deadline = time.time() + 120
    while not (lock.is_file() and lock.read_text().strip()) and first.poll() is None:
        assert time.time() < deadline, "the first ingest never took its lock"
        time.sleep(0.02)
    assert first.poll() is None, "the first ingest finished before the second could start"
    code, _, err = _cli(capsys, _ingest_args(src, out, key))
    assert code == 2
    assert err == f"synthmed: error: {out} is being written by another synthmed process (pid {first.pid})"
    _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err
    ds = Dataset.open(out)  # whole, and its manifest belongs to its images
    assert len(ds) == 120
    assert json.loads((out / "dataset.json").read_text())["fingerprint"] == ds.fingerprint()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deid.key", "ds", "src"]


# ---------------------------------------------------------------------- item 2: crash at renames
def _crash_at_every_rename(monkeypatch, target: Path, kind: str, write, old_fp: str, new_fp: str):
    """Run `write()` (an --overwrite of `target`) once for each rename it makes, killed at that
    rename; after each, `target` is the old folder or the new one, whole and verified."""
    real_replace, real_exchange = os.replace, folders._exchange
    calls = {"n": 0, "kill_at": 0}

    def counted(fn):
        def call(*args, **kw):
            calls["n"] += 1
            if calls["n"] == calls["kill_at"]:
                raise KeyboardInterrupt(f"killed at rename {calls['n']}")
            return fn(*args, **kw)
        return call

    seen, k = [], 1
    while True:
        calls.update(n=0, kill_at=k)
        monkeypatch.setattr(os, "replace", counted(real_replace))
        monkeypatch.setattr(folders, "_exchange", counted(real_exchange))
        try:
            write()
            finished = True
        except KeyboardInterrupt:
            finished = False
        monkeypatch.setattr(os, "replace", real_replace)
        monkeypatch.setattr(folders, "_exchange", real_exchange)
        fp = folders.verify(target, kind).fingerprint
        assert fp in (old_fp, new_fp), f"a mix after a kill at rename {k}"
        seen.append("new" if fp == new_fp else "old")
        leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
        assert leftovers == [], leftovers
        if finished or fp == new_fp:
            break
        k += 1
    assert k > 2, "the write made fewer renames than expected"
    return seen


def test_ingest_killed_at_every_rename_leaves_old_or_new(tmp_path, monkeypatch, capsys):
    old_src, new_src = _png_corpus(tmp_path / "a", n=24, seed=1), _png_corpus(tmp_path / "b", n=24, seed=2)
    key = _key(tmp_path)
    from synthmed.data.ingest import ingest

    ingest([new_src], tmp_path / "ref", key_path=key, workers=1)
    new_fp = folders.verify(tmp_path / "ref").fingerprint
    ingest([old_src], tmp_path / "ds", key_path=key, workers=1)
    old_fp = folders.verify(tmp_path / "ds").fingerprint
    seen = _crash_at_every_rename(
        monkeypatch, tmp_path / "ds", "dataset",
        lambda: ingest([new_src], tmp_path / "ds", key_path=key, workers=1, overwrite=True),
        old_fp, new_fp)
    assert seen[-1] == "new" and set(seen[:-1]) == {"old"}
    Dataset.open(tmp_path / "ds")


def test_sample_killed_at_every_rename_leaves_old_or_new(tmp_path, monkeypatch):
    from synthmed.generate import generate_cohort
    from synthmed.models import load, train
    from test_models import tiny_config

    ds = make_toy_dataset(tmp_path / "ds", n_patients=6, images_per_patient=2, shape=(8, 8), seed=4)
    model = load(train(ds, tiny_config(steps=2, batch_size=4), tmp_path / "run"))
    generate_cohort(model, 4, tmp_path / "ref", seed=2, steps=2)
    new_fp = folders.verify(tmp_path / "ref").fingerprint
    generate_cohort(model, 4, tmp_path / "co", seed=1, steps=2)
    old_fp = folders.verify(tmp_path / "co").fingerprint
    assert old_fp != new_fp
    seen = _crash_at_every_rename(
        monkeypatch, tmp_path / "co", "cohort",
        lambda: generate_cohort(model, 4, tmp_path / "co", seed=2, steps=2, overwrite=True),
        old_fp, new_fp)
    assert seen[-1] == "new" and set(seen[:-1]) == {"old"}
    Cohort.open(tmp_path / "co")


def test_audit_killed_at_every_rename_leaves_old_or_new(tmp_path, monkeypatch):
    from synthmed.audit import run_audit

    ds = toy_dataset(tmp_path / "ds", n_patients=60, per_patient=2, size=16)
    d = Dataset.open(ds)
    train_imgs = np.asarray(d.images[d.indices("train")])
    copies = write_plain_cohort(tmp_path / "copies", train_imgs[:30])          # fails
    unseen = write_plain_cohort(tmp_path / "unseen", np.asarray(d.images[d.indices("reference")])[:30])
    prof = _fast_profile(tmp_path)
    run_audit(ds, copies, prof, tmp_path / "ref", filter=True)
    new_fp = folders.verify(tmp_path / "ref").fingerprint
    run_audit(ds, unseen, prof, tmp_path / "a")
    old_fp = folders.verify(tmp_path / "a").fingerprint
    seen = _crash_at_every_rename(
        monkeypatch, tmp_path / "a", "audit",
        lambda: run_audit(ds, copies, prof, tmp_path / "a", filter=True, overwrite=True),
        old_fp, new_fp)
    assert seen[-1] == "new" and set(seen[:-1]) == {"old"}
    # never audit.json "fail" beside an old report.html "PASS"
    verdict = json.loads((tmp_path / "a" / "audit.json").read_text())["verdict"]
    assert verdict == "fail"


# ------------------------------------------------------------------ item 4: verified on open
def _move_patient(rows):
    patient = next(r["patient"] for r in rows if r["split"] == "train")
    for r in rows:
        if r["patient"] == patient:
            r["split"] = "holdout"  # consistent: only the fingerprint can tell
    return rows


def _duplicate_index(rows):
    rows[1]["index"] = rows[0]["index"]
    return rows


def _split_typo(rows):
    rows[0]["split"] = "trian"
    return rows


@pytest.mark.parametrize("edit", [_move_patient, _duplicate_index, _split_typo])
def test_edited_manifest_is_refused_by_its_fingerprint(tmp_path, capsys, edit):
    ds = make_toy_dataset(tmp_path / "ds", n_patients=10)
    original = Dataset.open(ds).fingerprint()
    edit_manifest(ds / "manifest.csv", edit)
    with pytest.raises(InputError, match=r"manifest\.csv: changed since synthmed wrote it"):
        folders.verify(ds, "dataset")
    with pytest.raises(InputError, match="manifest.csv"):
        Dataset.open(ds)
    code, _, err = _cli(capsys, ["verify", ds])
    assert code == 2 and "manifest.csv" in err and len(err.splitlines()) == 1
    if edit is _move_patient:
        # a deliberate, checked edit is accepted only with --restamp, and recorded
        code, out, err = _cli(capsys, ["verify", ds, "--restamp", "--reason", "patient re-assigned"])
        assert code == 0, err
        reopened = Dataset.open(ds)
        assert reopened.fingerprint() != original  # the identity follows what is read
        marker = json.loads((ds / folders.MARKER).read_text())
        assert marker["history"][-1]["reason"] == "patient re-assigned"


def test_audit_certifies_the_fingerprint_it_read(tmp_path):
    """dataset.json's copy of the fingerprint is never what an audit certifies."""
    from synthmed.audit import run_audit

    ds = toy_dataset(tmp_path / "ds", n_patients=60, per_patient=2, size=16)
    info = json.loads((ds / "dataset.json").read_text())
    info["fingerprint"] = "0" * 64
    (ds / "dataset.json").write_text(json.dumps(info))
    folders.stamp(ds, "dataset")  # even a stamped folder: the value is recomputed
    d = Dataset.open(ds)
    cohort = write_plain_cohort(tmp_path / "co", np.asarray(d.images[d.indices("reference")])[:30])
    res = run_audit(ds, cohort, _fast_profile(tmp_path), tmp_path / "a")
    assert res.audit["data"]["dataset_fingerprint"] == d.fingerprint() != "0" * 64
    assert res.audit["data"]["cohort_fingerprint"] == Cohort.open(cohort).folder.sha256("images.npy")


def test_model_audited_or_evaluated_against_another_dataset(tmp_path, capsys):
    from synthmed.evaluate import evaluate_generator
    from synthmed.generate import generate_cohort
    from synthmed.models import load, train
    from test_models import tiny_config

    ds = make_toy_dataset(tmp_path / "ds", n_patients=30, images_per_patient=2, shape=(16, 16), seed=4)
    other = make_toy_dataset(tmp_path / "other", n_patients=30, images_per_patient=2, shape=(16, 16), seed=5)
    run = train(ds, tiny_config(steps=2, batch_size=4), tmp_path / "run")
    model = load(run)
    assert model.info["dataset_fingerprint"] == Dataset.open(ds).fingerprint()
    cohort = generate_cohort(model, 30, tmp_path / "co", seed=1, steps=2)
    assert json.loads((cohort / "cohort.json").read_text())["dataset_fingerprint"] == \
        Dataset.open(ds).fingerprint()
    prof = _fast_profile(tmp_path)
    prof.write_text(prof.read_text().replace("min_holdout_patients: 10", "min_holdout_patients: 2")
                    .replace("min_train_patients: 20", "min_train_patients: 2"))
    # evaluate: refused before any work, and nothing written
    code, _, err = _cli(capsys, ["evaluate", run, "--dataset", other, "--out", tmp_path / "ev", "--n", "2"])
    assert code == 2 and "is not the dataset the model was trained on" in err
    assert "--allow-other-dataset" in err and not (tmp_path / "ev").exists()
    with pytest.raises(InputError, match="not the dataset the model was trained on"):
        evaluate_generator(model, Dataset.open(other), None, n=2)
    # audit of the model's cohort against another dataset
    code, _, err = _cli(capsys, ["audit", "--dataset", other, "--synthetic", cohort, "--profile", prof,
                                 "--out", tmp_path / "au"])
    assert code == 2 and "is not the dataset the model of the cohort" in err
    assert not (tmp_path / "au").exists()
    code, _, err = _cli(capsys, ["audit", "--dataset", other, "--synthetic", cohort, "--profile", prof,
                                 "--out", tmp_path / "au", "--allow-other-dataset"])
    assert code == 0, err
    data = json.loads((tmp_path / "au" / "audit.json").read_text())["data"]
    assert "another dataset" in data["other_dataset"]
    assert data["dataset_fingerprint"] == Dataset.open(other).fingerprint()


# ------------------------------------------------------------------------ item 8: verify
def test_verify_says_what_a_folder_is(tmp_path, capsys):
    ds = make_toy_dataset(tmp_path / "ds", n_patients=6)
    code, out, err = _cli(capsys, ["verify", ds])
    assert code == 0, err
    info = folders.verify(ds)
    assert f"synthmed dataset (synthmed.dataset/1)" in out and info.fingerprint in out
    assert "manifest consistent" in out and Dataset.open(ds).fingerprint() in out
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.txt").write_text("x")
    code, _, err = _cli(capsys, ["verify", tmp_path / "plain"])
    assert code == 2 and "synthmed-folder.json is missing" in err
    (ds / "images.npy").write_bytes((ds / "images.npy").read_bytes()[:-4] + b"\0\0\0\1")
    code, _, err = _cli(capsys, ["verify", ds])
    assert code == 2 and "images.npy" in err


def test_a_run_is_typed_too(tmp_path):
    from synthmed.models import load, train
    from test_models import tiny_config

    ds = make_toy_dataset(tmp_path / "ds", n_patients=6, images_per_patient=2, shape=(8, 8), seed=4)
    before = _tree(ds)
    with pytest.raises(InputError, match="holds a synthmed dataset, not a run"):
        train(ds, tiny_config(steps=1, batch_size=4), ds)
    assert _tree(ds) == before
    run = train(ds, tiny_config(steps=1, batch_size=4), tmp_path / "run")
    assert folders.verify(run, "run")
    (run / "losses.csv").write_text("step,loss\n")  # any change since the last commit
    with pytest.raises(InputError, match=r"losses\.csv: changed since synthmed wrote it"):
        load(run)


_KILL_AT_RENAME = r"""
import os, sys
from pathlib import Path
from synthmed.io import folders
from synthmed.data.ingest import ingest

kill_at = int(sys.argv[1])
calls = {"n": 0}
def killed(fn):
    def call(*args, **kw):
        calls["n"] += 1
        if calls["n"] == kill_at:
            os._exit(137)  # no finally blocks, no cleanup: what SIGKILL leaves
        return fn(*args, **kw)
    return call
os.replace = killed(os.replace)
folders._exchange = killed(folders._exchange)
ingest([Path(sys.argv[2])], Path(sys.argv[3]), key_path=Path(sys.argv[4]), workers=1, overwrite=True)
"""


def test_ingest_really_killed_at_every_rename_leaves_old_or_new(tmp_path):
    """The in-process test above interrupts with an exception, so `finally` blocks still run; a
    real kill runs nothing. Here a child process dies with os._exit at its k-th rename (every
    os.replace and the atomic swap), for each k: the target is always the old dataset or the new
    one and verifies; what the dead writer left beside it is cleared by the next writer."""
    from synthmed.data.ingest import ingest

    old_src, new_src = _png_corpus(tmp_path / "a", n=12, seed=1), _png_corpus(tmp_path / "b", n=12, seed=2)
    key = _key(tmp_path)
    ingest([new_src], tmp_path / "ref", key_path=key, workers=1)
    new_fp = folders.verify(tmp_path / "ref").fingerprint
    target = tmp_path / "ds"
    ingest([old_src], target, key_path=key, workers=1)
    old_fp = folders.verify(target).fingerprint
    env = dict(os.environ, PYTHONPATH=str(ROOT), SYNTHMED_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    seen = []
    for k in range(1, 20):
        proc = subprocess.run([sys.executable, "-c", _KILL_AT_RENAME, str(k), str(new_src),
                               str(target), str(key)], env=env, capture_output=True, text=True,
                              timeout=300)
        fp = folders.verify(target, "dataset").fingerprint
        assert fp in (old_fp, new_fp), f"a mix after a kill at rename {k}"
        seen.append("new" if fp == new_fp else "old")
        if proc.returncode == 0:
            break
        assert proc.returncode == 137, proc.stderr
    assert seen[-1] == "new" and len(seen) > 2, seen
    ingest([new_src], target, key_path=key, workers=1, overwrite=True)  # the next writer
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds.")] == []
    assert folders.verify(target, "dataset").fingerprint == new_fp
