"""Inputs that cannot be trusted, patients without headers, and accounting for every file.

Each test here checks one finding of a hostile-input probe of `synthmed ingest` (issue 8): a
symlink loop, a header value quoted in a refusal reason, the metadata CSV's own name in the
report, an unusable --metadata, conflicting CSV rows, degenerate images, duplicate pixels, a
series losing a slice, patient folders mixing DICOM and PNG, and workers outliving a killed
ingest. Every one of them failed on the code before the change.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from broken_inputs import MARK, PATIENT_ID, PATIENT_NAME, build_corpus, write_ct_slice
from synthmed.cli import main
from synthmed.data.ingest import file_ref, ingest, iter_outputs
from synthmed.data.ingest_config import IngestConfig, SplitConfig
from synthmed.data.records import ImageRecord, read_records
from synthmed.errors import InputError

KEY = bytes(range(7, 39))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def key(tmp_path) -> Path:
    p = tmp_path / "deid.key"
    p.write_bytes(KEY)
    return p


def _png(path: Path, seed: int, size=(40, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size=size, dtype=np.uint8)).save(path)
    return path


def _dicom(path: Path, patient: str, *, series: int, instance: int = 1, z: float = 0.0,
           seed: int = 0) -> Path:
    """A small CT slice of `patient` (own study and series per `series`)."""
    write_ct_slice(path, z=z, series=series, instance=instance, seed=seed + 100 * series)
    ds = pydicom.dcmread(path)
    ds.PatientID, ds.PatientName = patient, patient.replace("-", "^")
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.77.{series}"
    ds.save_as(path)
    return path


def _report(out: Path) -> dict:
    return json.loads((out / "ingest_report.json").read_text())


def _accounted(report: dict, inputs: list[Path]) -> None:
    """Every input once in report['files'], and the counts add up."""
    c = report["counts"]
    assert c["files_found"] == c["kept"] + c["refused"] + c["skipped"], c
    refs = Counter(f["file"] for f in report["files"])
    assert sorted(refs) == sorted(file_ref(KEY, p) for p in inputs), "files listed != inputs"
    assert all(n == 1 for n in refs.values())
    status = Counter(f["status"] for f in report["files"])
    assert (status["kept"], status["refused"], status["skipped"]) == (c["kept"], c["refused"], c["skipped"])
    for f in report["files"]:
        if f["status"] != "kept":
            assert f.get("reason"), f  # refused and skipped files say why


def _all_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out += [Path(dirpath) / n for n in names if not n.startswith(".")]
        # a folder named like an image file is an input (refused as unreadable)
        out += [Path(dirpath) / d for d in dirs if d.endswith(".png") and not os.listdir(Path(dirpath) / d)]
    return out


# --------------------------------------------------------------------------- M3: accounting

def test_broken_corpus_every_case_accounted_for(tmp_path, key):
    """Each broken-input case on its own (the rest excluded by config, so counted as skipped),
    with one good PNG: every file is in the report once, and the counts add up."""
    corpus = build_corpus(tmp_path)
    files = _all_files(corpus.root)
    good = corpus.good_pngs[0]
    for i, case in enumerate(corpus.cases):
        keep = set(case.files) | {good}
        exclude = [p.relative_to(corpus.root).as_posix() for p in files if p not in keep]
        out = tmp_path / f"ds{i}"
        ingest([corpus.root], out, IngestConfig(exclude=exclude), key_path=key, workers=1)
        report = _report(out)
        _accounted(report, files)
        refused = {f["file"] for f in report["files"] if f["status"] == "refused"}
        assert refused == {file_ref(KEY, p) for p in case.files}, case.name
        assert report["counts"]["kept"] == 1, case.name


def test_whole_broken_corpus_accounted_for(tmp_path, key):
    corpus = build_corpus(tmp_path)
    out = tmp_path / "ds"
    ingest([corpus.root], out, IngestConfig(), key_path=key, workers=2)
    _accounted(_report(out), _all_files(corpus.root))


def _series_with_truncated_slice(folder: Path) -> tuple[list[Path], Path]:
    good = [write_ct_slice(folder / f"s{i}.dcm", z=2.0 * i, series=9, instance=i + 1) for i in range(3)]
    bad = write_ct_slice(folder / "s3.dcm", z=6.0, series=9, instance=4)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) - 700])  # cut inside the pixel data
    return good, bad


def test_series_losing_a_slice_2d_keeps_the_rest(tmp_path, key):
    """spatial_dims 2: the good slices are kept, the truncated one refused on its own (the bug:
    'all 4 input file(s) were refused' with a reason for only 3 of them)."""
    good, bad = _series_with_truncated_slice(tmp_path / "src" / "series")
    out = tmp_path / "ds"
    res = ingest([tmp_path / "src"], out, IngestConfig(slices="all"), key_path=key, workers=1)
    report = _report(out)
    _accounted(report, [*good, bad])
    status = {f["file"]: f for f in report["files"]}
    assert status[file_ref(KEY, bad)]["status"] == "refused"
    assert "truncated" in status[file_ref(KEY, bad)]["reason"]
    assert all(status[file_ref(KEY, g)]["status"] == "kept" for g in good)
    assert res.images == 3


def test_series_losing_a_slice_3d_refused_as_incomplete_naming_it(tmp_path, key, capsys):
    good, bad = _series_with_truncated_slice(tmp_path / "src" / "series")
    other = [write_ct_slice(tmp_path / "src" / "ok" / f"o{i}.dcm", z=2.0 * i, series=10, instance=i + 1)
             for i in range(4)]
    out = tmp_path / "ds"
    cfg = IngestConfig(spatial_dims=3, shape=(4, 16, 16))
    ingest([tmp_path / "src"], out, cfg, key_path=key, workers=1)
    report = _report(out)
    _accounted(report, [*good, bad, *other])
    (entry,) = [r for r in report["refusals"]]
    assert entry["file"] == file_ref(KEY, bad) and entry["files"] == 4
    assert "series incomplete" in entry["reason"] and file_ref(KEY, bad) in entry["reason"]
    assert sorted(entry["members"]) == sorted(file_ref(KEY, g) for g in good)
    for g in good:  # the good slices are refused, each with a reason that points at the entry
        (f,) = [f for f in report["files"] if f["file"] == file_ref(KEY, g)]
        assert f["status"] == "refused" and file_ref(KEY, bad) in f["reason"]


def test_series_with_a_missing_slice_refused_in_3d_kept_in_2d(tmp_path, key):
    """A slice file that is not there at all shows as a jump in slice positions."""
    src = tmp_path / "src"
    files = [write_ct_slice(src / "gap" / f"g{i}.dcm", z=2.0 * i, series=12, instance=i + 1)
             for i in range(6) if i != 3]
    full = [write_ct_slice(src / "full" / f"f{i}.dcm", z=2.0 * i, series=13, instance=i + 1)
            for i in range(5)]
    out = tmp_path / "ds3"
    res = ingest([src], out, IngestConfig(spatial_dims=3, shape=(4, 16, 16)), key_path=key, workers=1)
    assert res.images == 1
    (entry,) = _report(out)["refusals"]
    assert entry["file"] == file_ref(KEY, files[0]) and entry["files"] == 5
    assert "series incomplete" in entry["reason"] and "1 slice(s) missing" in entry["reason"]
    _accounted(_report(out), [*files, *full])
    res = ingest([src], tmp_path / "ds2", IngestConfig(slices="all"), key_path=key, workers=1)
    assert res.images == 10 and res.refused == 0


def test_nothing_usable_counts_every_file(tmp_path, key):
    good, bad = _series_with_truncated_slice(tmp_path / "src")
    (tmp_path / "src" / "broken.dcm").write_bytes(b"")
    with pytest.raises(InputError, match=r"all 5 input image file\(s\) were refused"):
        ingest([tmp_path / "src"], tmp_path / "ds", IngestConfig(spatial_dims=3, shape=(4, 16, 16)),
               key_path=key, workers=1)


# --------------------------------------------------------------------------- M2: patients

def test_patient_folders_mixing_dicom_and_png(tmp_path, key):
    """One folder per patient, each with a DICOM series and PNGs: one patient per folder, no
    patient in two splits. A folder holding two DICOM patients stays two patients, and its PNG
    (whose patient the folder cannot name) is refused."""
    src = tmp_path / "hospital" / "export"  # a shared outer folder is not a patient
    folders = {}
    for k in range(8):
        pid = f"PAT-{k:03d}"
        d = src / f"case{k}"
        dcm = [_dicom(d / "ct" / f"{j}.dcm", pid, series=k + 1, instance=j + 1, z=2.0 * j) for j in range(2)]
        pngs = [_png(d / f"photo{j}.png", seed=10 * k + j) for j in range(2)]
        folders[d] = (pid, dcm, pngs)
    two = src / "shared"
    _dicom(two / "a.dcm", "PAT-A", series=50)
    _dicom(two / "b.dcm", "PAT-B", series=51)
    amb = _png(two / "which.png", seed=999)
    own = _png(tmp_path / "hospital" / "export" / "loose.png", seed=998)  # no folder: own patient
    out = tmp_path / "ds"
    cfg = IngestConfig(split=SplitConfig(holdout_fraction=0.3, reference_fraction=0.2, seed=3))
    res = ingest([tmp_path / "hospital"], out, cfg, key_path=key, workers=2)
    report = _report(out)
    _accounted(report, _all_files(tmp_path / "hospital"))
    recs = read_records(out / "manifest.csv", ImageRecord)
    by_patient: dict[str, set[str]] = {}
    for r in recs:
        by_patient.setdefault(r.patient, set()).add(r.split)
    assert all(len(s) == 1 for s in by_patient.values()), "a patient on two splits"
    assert len(by_patient) == 8 + 2 + 1 == res.patients
    # Each folder: its 2 DICOM slices and 2 PNGs are one patient.
    per_patient_formats = Counter((r.patient, r.source_format) for r in recs)
    multi = [p for p in by_patient if per_patient_formats[(p, "dicom")] == 2 and per_patient_formats[(p, "png")] == 2]
    assert len(multi) == 8
    assert len({r.split for r in recs}) >= 2  # the split really spread patients
    status = {f["file"]: f for f in report["files"]}
    assert status[file_ref(KEY, amb)]["status"] == "refused"
    assert "2 DICOM patients" in status[file_ref(KEY, amb)]["reason"]
    rules = report["patients"]["patients_by_rule"]
    assert rules == {"dicom": 10, "folder": 8, "file": 1}
    assert any("single files" in w for w in report["warnings"])
    assert status[file_ref(KEY, own)]["status"] == "kept"


def test_patient_from_filename_and_file_only(tmp_path, key):
    src = tmp_path / "src"
    for pid in ("11", "12", "13"):
        for j in range(2):
            _png(src / f"ward{j}" / f"{pid}_{j}.png", seed=int(pid) * 7 + j)
    cfg = IngestConfig(filename_patient_pattern=r"^(\d+)_\d+$", patient_from=["filename", "folder"])
    res = ingest([src], tmp_path / "a", cfg, key_path=key, workers=1)
    assert res.patients == 3 and _report(tmp_path / "a")["patients"]["patients_by_rule"] == {"filename": 3}
    res = ingest([src], tmp_path / "b", IngestConfig(patient_from="folder"), key_path=key, workers=1)
    assert res.patients == 2  # ward0, ward1
    res = ingest([src], tmp_path / "c", IngestConfig(patient_from=["metadata"]), key_path=key, workers=1)
    assert res.patients == 6 and _report(tmp_path / "c")["patients"]["patients_by_rule"] == {"file": 6}


# --------------------------------------------------------------------------- M7: probe findings

def test_symlink_loop_and_links_to_one_file_count_once(tmp_path, key):
    src = tmp_path / "src"
    img = _png(src / "a" / "img.png", seed=1)
    _png(src / "b" / "other.png", seed=2)
    os.symlink("..", src / "a" / "back")          # a/back -> src: a loop
    os.symlink(img, src / "b" / "same.png")       # a second name for img.png
    out = tmp_path / "ds"
    res = ingest([src], out, IngestConfig(), key_path=key, workers=1)
    assert res.images == 2 and res.patients == 2
    report = _report(out)
    assert report["counts"]["files_found"] == 3 and report["counts"]["skipped"] == 1
    (skip,) = [f for f in report["files"] if f["status"] == "skipped"]
    assert skip["file"] == file_ref(KEY, src / "b" / "same.png") and "link" in skip["reason"]
    assert any("link" in w for w in report["warnings"])


def _dicom_with_bad_slope(path: Path, value: str) -> Path:
    write_ct_slice(path, z=0, series=31, instance=1)
    ds = pydicom.dcmread(path)
    ds.RescaleSlope = "1.0000000000"  # 12 characters, replaced byte for byte below
    ds.save_as(path)
    data = path.read_bytes()
    assert data.count(b"1.0000000000") == 1 and len(value) == 12
    path.write_bytes(data.replace(b"1.0000000000", value.encode()))
    return path


def test_header_value_never_in_a_refusal_reason(tmp_path, key):
    src = tmp_path / "src"
    bad = _dicom_with_bad_slope(src / "slope.dcm", "SMITHJOHN445")
    _png(src / "good.png", seed=3)
    out = tmp_path / "ds"
    ingest([src], out, IngestConfig(), key_path=key, workers=1)
    (entry,) = _report(out)["refusals"]
    assert entry["file"] == file_ref(KEY, bad)
    assert "RescaleSlope" in entry["reason"]
    for p in iter_outputs(out):
        assert b"SMITHJOHN445" not in p.read_bytes(), p.name


def test_reasons_are_whole_not_cut(tmp_path, key):
    """The RLE decoder's message ran past the 240-character cap and was cut mid-sentence."""
    src = tmp_path / "src"
    rle = write_ct_slice(src / "rle.dcm", z=0, series=32, instance=1,
                         transfer_syntax="1.2.840.10008.1.2.5")  # RLE Lossless, bytes not RLE
    _png(src / "good.png", seed=4)
    out = tmp_path / "ds"
    ingest([src], out, IngestConfig(), key_path=key, workers=1)
    (entry,) = _report(out)["refusals"]
    assert entry["file"] == file_ref(KEY, rle)
    reason = entry["reason"]
    assert "RLE" in reason and reason.endswith(")") and "..." not in reason
    assert reason.count("(") == reason.count(")")


def test_metadata_csv_name_not_in_outputs(tmp_path, key):
    src = tmp_path / "src"
    _png(src / "x1.png", seed=5)
    _png(src / "x2.png", seed=6)
    csv = tmp_path / "Smith_John_MRN1234567.csv"
    csv.write_text("file,patient_id,labels,age,sex\nx1.png,A,,40,F\nx2.png,B,,41,M\n")
    out = tmp_path / "ds"
    ingest([src], out, IngestConfig(), metadata_csv=csv, key_path=key, workers=1)
    assert _report(out)["metadata"]["csv"] == file_ref(KEY, csv)
    for p in iter_outputs(out):
        data = p.read_bytes()
        for word in (b"Smith", b"MRN1234567"):
            assert word not in data, (p.name, word)


@pytest.mark.parametrize("kind", ["missing", "folder", "semicolons"])
def test_unusable_metadata_is_an_error(tmp_path, key, kind):
    src = tmp_path / "src"
    _png(src / "x1.png", seed=7)
    csv = tmp_path / "meta.csv"
    if kind == "folder":
        csv.mkdir()
    elif kind == "semicolons":
        csv.write_text("file;patient_id;labels\nx1.png;A;\n")
    with pytest.raises(InputError) as err:
        ingest([src], tmp_path / "ds", IngestConfig(), metadata_csv=csv, key_path=key, workers=1)
    assert "meta.csv" in str(err.value)
    if kind == "semicolons":
        assert "semicolon" in str(err.value)
    assert not (tmp_path / "ds").exists()


def test_unusable_metadata_cli_exit_2(tmp_path, key, capsys):
    src = tmp_path / "src"
    _png(src / "x1.png", seed=7)
    with pytest.raises(SystemExit) as e:
        main(["ingest", str(src), "--out", str(tmp_path / "ds"), "--key", str(key),
              "--metadata", str(tmp_path / "nope.csv")])
    assert e.value.code == 2 and "nope.csv" in capsys.readouterr().err


def test_conflicting_duplicate_rows_are_an_error_identical_ones_accepted(tmp_path, key):
    src = tmp_path / "src"
    _png(src / "x1.png", seed=8)
    _png(src / "x2.png", seed=9)
    csv = tmp_path / "m.csv"
    csv.write_text("file,patient_id,labels\nx1.png,A,\nx2.png,B,\nx1.png,C,\n")
    with pytest.raises(InputError, match=r"rows 2 and 4") as err:
        ingest([src], tmp_path / "ds", IngestConfig(), metadata_csv=csv, key_path=key, workers=1)
    assert ",C" not in str(err.value) and " C " not in str(err.value)
    csv.write_text("file,patient_id,labels\nx1.png,A,\nx2.png,B,\nx1.png,A,\n")
    res = ingest([src], tmp_path / "ds", IngestConfig(), metadata_csv=csv, key_path=key, workers=1)
    assert res.patients == 2 and res.images == 2


@pytest.mark.parametrize("size,value", [((1, 1), None), ((1, 5000), None), ((5000, 1), None),
                                        ((64, 64), 7)])
def test_degenerate_images_refused(tmp_path, key, size, value):
    src = tmp_path / "src"
    bad = src / "bad.png"
    bad.parent.mkdir(parents=True)
    arr = (np.full(size, value, np.uint8) if value is not None
           else np.random.default_rng(0).integers(0, 255, size=size, dtype=np.uint8))
    Image.fromarray(arr).save(bad)
    _png(src / "good.png", seed=10)
    out = tmp_path / "ds"
    res = ingest([src], out, IngestConfig(), key_path=key, workers=1)
    assert res.images == 1
    (entry,) = _report(out)["refusals"]
    assert entry["file"] == file_ref(KEY, bad) and "degenerate" in entry["reason"]


def test_duplicate_pixels_across_patients_refused_within_one_kept_once(tmp_path, key):
    src = tmp_path / "src"
    a = _png(src / "p1" / "scan.png", seed=11)
    b = src / "p2" / "copy.png"
    b.parent.mkdir(parents=True)
    b.write_bytes(a.read_bytes())      # the same image under another patient: both refused
    c = _png(src / "p3" / "one.png", seed=12)
    d = src / "p3" / "again.png"
    d.write_bytes(c.read_bytes())      # twice for one patient: kept once
    _png(src / "p4" / "x.png", seed=13)
    out = tmp_path / "ds"
    res = ingest([src], out, IngestConfig(), key_path=key, workers=1)
    report = _report(out)
    _accounted(report, [a, b, c, d, src / "p4" / "x.png"])
    status = {f["file"]: f for f in report["files"]}
    assert status[file_ref(KEY, a)]["status"] == status[file_ref(KEY, b)]["status"] == "refused"
    assert "another patient" in status[file_ref(KEY, b)]["reason"]
    assert {status[file_ref(KEY, c)]["status"], status[file_ref(KEY, d)]["status"]} == {"kept", "skipped"}
    assert res.images == 2 and res.patients == 2


def test_planted_values_in_no_output_of_the_broken_corpus(tmp_path, key):
    """Byte scan of every output: header identity, a value in RescaleSlope, file names, a folder
    name and the metadata CSV's name are planted; none may appear."""
    corpus = build_corpus(tmp_path)
    folder = corpus.root / "Smith_John_MRN1234567"
    _png(folder / "Doe_Jane_19470203.png", seed=20)
    _dicom_with_bad_slope(corpus.root / "dicom" / "case7-slope.dcm", "SMITHJOHN445")
    csv = tmp_path / "Smith_John_MRN1234567.csv"
    csv.write_text("file,patient_id,labels\nimages/case7-good0.png,MRN7654321,\n")
    out = tmp_path / "ds"
    ingest([corpus.root], out, IngestConfig(), metadata_csv=csv, key_path=key, workers=2)
    planted = [MARK, PATIENT_ID, PATIENT_NAME, "19470203", "SMITHJOHN445", "Smith_John",
               "MRN1234567", "MRN7654321", "Doe_Jane", ".Jane", str(corpus.root)]  # (the key path is not input)
    outputs = list(iter_outputs(out))
    assert {p.name for p in outputs} >= {"ingest_report.json", "manifest.csv", "dataset.json", "images.npy"}
    for p in outputs:
        data = p.read_bytes()
        for word in planted:
            assert word.encode() not in data, (p.name, word)


# --------------------------------------------------------------------------- workers

def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_when_ingest_is_killed(tmp_path, key):
    src = tmp_path / "src"
    for i in range(40):
        _png(src / f"i{i}.png", seed=100 + i)
    script = tmp_path / "run.py"
    script.write_text(f"""
import sys, time
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
import synthmed.data.ingest as ing
from synthmed.data.ingest_config import IngestConfig
_prepare = ing.prepare
def slow(*a, **k):  # workers are forked after this: each image takes a while
    time.sleep(0.5)
    return _prepare(*a, **k)
ing.prepare = slow
ing.ingest([Path({str(src)!r})], Path({str(tmp_path / 'ds')!r}), IngestConfig(shape=(16, 16)),
           key_path=Path({str(key)!r}), workers=2)
""")
    env = {**os.environ, "SYNTHMED_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.2)
            workers = [k for k in _children(proc.pid) if _alive(k)]
        assert len(workers) == 2, "the worker pool did not start"
        time.sleep(1.0)  # mid-task
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        survivors = [w for w in workers if _alive(w)]
    finally:
        for w in _children(proc.pid) if proc.poll() is None else []:
            os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    for w in survivors:  # clean up before failing
        os.kill(w, signal.SIGKILL)
    assert not survivors, f"{len(survivors)} worker(s) outlived the killed ingest"
