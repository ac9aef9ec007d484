"""Built-in virtual patients: real DICOM, consistent identities, recognisable anatomy, findings,
determinism, CT geometry and Hounsfield units."""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest

from synthmed.errors import ConfigError, InputError
from synthmed.phantoms import FINDINGS, IDENTIFYING_KEYWORDS, make_phantoms
from synthmed.phantoms import ct, cxr
from synthmed.phantoms.dicom_writer import (CR_STORAGE, CT_STORAGE, DX_STORAGE,
                                            PRIVATE_CREATOR_RIS, PRIVATE_GROUP_RIS)
from synthmed.phantoms.findings import Findings
from synthmed.phantoms.identity import age_on


def _rows(out: Path) -> list[dict]:
    with open(out / "metadata.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _date(text: str) -> dt.date:
    return dt.datetime.strptime(text, "%Y%m%d").date()


@pytest.fixture(scope="module")
def cxr_cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantoms") / "cxr"
    summary = make_phantoms(out, 20, seed=7, kind="cxr", studies_per_patient=(2, 2), size=96,
                            findings_rate=0.3, workers=1)
    assert (summary.patients, summary.studies, summary.files) == (20, 40, 40)
    return out


@pytest.fixture(scope="module")
def ct_cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("phantoms") / "ct"
    make_phantoms(out, 2, seed=3, kind="ct3d", studies_per_patient=(1, 1), size=96, slices=24,
                  findings_rate=0.0, workers=1)
    return out


def test_cxr_files_are_valid_dicom(cxr_cohort):
    files = sorted(cxr_cohort.rglob("*.dcm"))
    assert len(files) == 40
    for f in files:
        raw = f.read_bytes()
        assert raw[128:132] == b"DICM"  # preamble + prefix: any viewer opens it
        ds = pydicom.dcmread(f)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == {"CR": CR_STORAGE, "DX": DX_STORAGE}[ds.Modality]
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsStored == 12
        px = ds.pixel_array
        assert px.shape == (96, 96) and px.dtype == np.uint16 and px.max() <= 4095
        assert px.std() > 100  # an image, not a blank
        assert float(ds.PixelSpacing[0]) > 0
        assert f.name == f"{ds.SOPInstanceUID}.dcm"


def test_every_identifying_field_is_present_and_consistent(cxr_cohort):
    people: dict[str, set] = defaultdict(set)
    for f in sorted(cxr_cohort.rglob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for kw in IDENTIFYING_KEYWORDS:
            assert str(ds.get(kw, "")).strip(), f"{f.name}: {kw} missing or empty"
        block = ds.private_block(PRIVATE_GROUP_RIS, PRIVATE_CREATOR_RIS)
        name = ds.PatientName
        assert block[0x10].value == f"{name.given_name} {name.family_name}"
        assert ds.PatientID in block[0x12].value  # free text that leaks the MRN
        birth, study = _date(ds.PatientBirthDate), _date(ds.StudyDate)
        assert int(ds.PatientAge[:3]) == age_on(birth, study)
        people[ds.PatientID].add((str(name), ds.PatientBirthDate, ds.PatientSex,
                                  ds.PatientAddress))
    assert len(people) == 20
    assert all(len(v) == 1 for v in people.values())  # same patient, same identity


def test_metadata_csv_matches_files(cxr_cohort):
    rows = _rows(cxr_cohort)
    assert list(rows[0]) == ["file", "patient_id", "labels", "age", "sex"]
    assert {r["file"] for r in rows} == {p.relative_to(cxr_cohort).as_posix()
                                         for p in cxr_cohort.rglob("*.dcm")}
    seen_labels = set()
    for r in rows:
        ds = pydicom.dcmread(cxr_cohort / r["file"], stop_before_pixels=True)
        assert r["patient_id"] == ds.PatientID and r["sex"] == ds.PatientSex
        assert int(r["age"]) == int(ds.PatientAge[:3])
        labels = [x for x in r["labels"].split("|") if x]
        assert set(labels) <= set(FINDINGS)
        seen_labels.update(labels)
    assert seen_labels  # findings_rate 0.3 over 20 patients gives some labels


def test_same_patient_is_recognisable(cxr_cohort):
    """Nearest neighbour on a crude feature (downsampled, normalised image) finds another
    study of the same patient far more often than chance (1 in 39)."""
    feats, pids = [], []
    for r in _rows(cxr_cohort):
        img = pydicom.dcmread(cxr_cohort / r["file"]).pixel_array.astype(np.float32)
        small = img.reshape(24, 4, 24, 4).mean(axis=(1, 3))
        feats.append(((small - small.mean()) / small.std()).ravel())
        pids.append(r["patient_id"])
    f = np.stack(feats)
    d = ((f[:, None] - f[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    hits = np.mean([pids[i] == pids[j] for i, j in enumerate(d.argmin(1))])
    assert hits >= 0.6, hits


def _render(findings: Findings, seed: int = 0) -> tuple[np.ndarray, cxr.CxrAnatomy]:
    rng = np.random.default_rng(seed)
    anat = cxr.sample_anatomy(rng, 50.0, "M")
    detail = cxr.build_detail(rng, anat, 50.0, 128)
    study = cxr.sample_study(np.random.default_rng(1))
    img = cxr.render(anat, detail, study, findings, 128, np.random.default_rng(2))
    return img.astype(np.float32), anat


def test_findings_change_the_image_where_they_should():
    base, anat = _render(Findings())

    def heart_width(img):  # bright run across the lower chest, at the heart's level
        row = int((anat.heart_cy * cxr.ZOOM + 1) / 2 * 128)
        band = img[row - 2: row + 3].mean(0)
        return int((band > np.percentile(img, 75)).sum())

    big, _ = _render(Findings(cardiomegaly=True))
    assert heart_width(big) >= heart_width(base) + 6

    eff, _ = _render(Findings(effusion=((1, 0.15),)))
    # Left costophrenic region (image right, just above the left dome) turns opaque; the
    # right side does not change.
    y = int(((anat.dia_l - 0.08) * cxr.ZOOM + 1) / 2 * 128)
    x = int((anat.lung_cx * cxr.ZOOM + 1) / 2 * 128)
    left, right = (slice(y - 4, y + 1), slice(x, x + 6)), (slice(y - 4, y + 1),
                                                             slice(128 - x - 6, 128 - x))
    assert eff[left].mean() > base[left].mean() + 300
    assert abs(eff[right].mean() - base[right].mean()) < 60

    nod = (-0.4, -0.2, 0.05)
    withn, _ = _render(Findings(nodule=nod))
    r = int((nod[1] * cxr.ZOOM + 1) / 2 * 128)
    c = int((nod[0] * cxr.ZOOM + 1) / 2 * 128)
    assert withn[r - 1:r + 2, c - 1:c + 2].mean() > base[r - 1:r + 2, c - 1:c + 2].mean() + 300
    assert np.abs(withn[:30] - base[:30]).max() == 0  # far from it nothing moved


def test_ct_findings_change_the_volume():
    rng = np.random.default_rng(0)
    anat = ct.sample_anatomy(rng, 60.0, "F")
    texture = ct.build_texture(rng, 24, 64)
    study = ct.CtStudy(dx=0, dy=0, dz=0, inspiration=0.0, noise=0.0, blur=0.5)

    def vol(findings):
        return ct.render(anat, texture, study, findings, 24, 64, np.random.default_rng(1))

    base, big = vol(Findings()), vol(Findings(cardiomegaly=True))
    blood = lambda v: int(((v > 35) & (v < 55)).sum())  # noqa: E731
    assert blood(big) > 1.3 * blood(base)
    nod = ct.sample_nodule(np.random.default_rng(2), anat)
    z, r, c = (int((nod[2]) * 24), int((nod[1] + 1) / 2 * 64), int((nod[0] + 1) / 2 * 64))
    assert base[z, r, c] < -600 and vol(Findings(nodule=nod))[z, r, c] > -100


def test_deterministic_and_independent_of_workers(tmp_path):
    kw = dict(kind="cxr", studies_per_patient=(1, 2), size=48, findings_rate=0.5)
    a = make_phantoms(tmp_path / "a", 4, seed=11, workers=1, **kw)
    b = make_phantoms(tmp_path / "b", 4, seed=11, workers=2, **kw)
    c = make_phantoms(tmp_path / "c", 4, seed=12, workers=1, **kw)

    def content(s):
        return {p.relative_to(s.out).as_posix(): p.read_bytes()
                for p in sorted(s.out.rglob("*")) if p.is_file()}

    def dicom(files):
        return {k for k in files if k.endswith(".dcm")}

    assert content(a) == content(b)  # byte-identical, whatever the number of workers
    ca, cc = content(a), content(c)
    assert not dicom(ca) & dicom(cc)  # other seed: other IDs, accessions and UIDs
    assert ca["metadata.csv"] != cc["metadata.csv"]
    ids_a = {r["patient_id"] for r in _rows(a.out)}
    ids_c = {r["patient_id"] for r in _rows(c.out)}
    assert not ids_a & ids_c


def test_ct_geometry_and_hounsfield_units(ct_cohort):
    series: dict[str, list] = defaultdict(list)
    for f in ct_cohort.rglob("*.dcm"):
        ds = pydicom.dcmread(f)
        assert ds.SOPClassUID == CT_STORAGE and ds.Modality == "CT"
        series[ds.SeriesInstanceUID].append((f, ds))
    assert len(series) == 2
    for items in series.values():
        assert len(items) == 24
        names = [f.name for f, _ in sorted(items, key=lambda t: t[0].name)]
        by_z = sorted(items, key=lambda t: -float(t[1].ImagePositionPatient[2]))
        assert names != [f.name for f, _ in by_z]  # file names do not give the anatomy order
        z = np.array([float(ds.ImagePositionPatient[2]) for _, ds in by_z])
        thickness = float(by_z[0][1].SliceThickness)
        assert np.allclose(np.diff(z), -thickness, atol=1e-3)
        assert [int(ds.InstanceNumber) for _, ds in by_z] == list(range(1, 25))
        assert np.allclose([float(ds.SliceLocation) for _, ds in by_z], z)
        assert len({ds.FrameOfReferenceUID for _, ds in items}) == 1
        assert all(list(map(float, ds.ImageOrientationPatient)) == [1, 0, 0, 0, 1, 0]
                   for _, ds in items)
        vol = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                        for _, ds in by_z])
        assert vol.shape == (24, 96, 96)

        def share(lo, hi):
            return float(((vol >= lo) & (vol <= hi)).mean())

        assert share(-1100, -950) > 0.15      # air around the body
        assert share(-920, -780) > 0.02       # lungs
        assert share(-150, -60) > 0.01        # fat
        assert share(10, 80) > 0.05           # soft tissue, blood, muscle
        assert share(700, 3000) > 0.001       # cortical bone
        assert vol[:, :3, :3].mean() < -950   # corners are air
        # Lungs are in the upper half of the stack, not in the abdomen at the bottom.
        assert share(-920, -780) and ((vol[:12] < -780) & (vol[:12] > -920)).mean() > \
            ((vol[-4:] < -780) & (vol[-4:] > -920)).mean()


def test_ct_metadata_rows_per_slice(ct_cohort):
    rows = _rows(ct_cohort)
    assert len(rows) == 48
    assert {r["file"] for r in rows} == {p.relative_to(ct_cohort).as_posix()
                                         for p in ct_cohort.rglob("*.dcm")}


@pytest.mark.parametrize("kwargs, match", [
    ({"patients": 0}, "patients must be"),
    ({"kind": "mri"}, "kind must be"),
    ({"studies_per_patient": (3, 1)}, "studies_per_patient"),
    ({"findings_rate": 1.5}, "findings_rate"),
    ({"size": 8}, "size"),
    ({"seed": -1}, "seed"),
])
def test_bad_arguments_raise_clear_errors(tmp_path, kwargs, match):
    args = {"patients": 1, **kwargs}
    with pytest.raises(ConfigError, match=match):
        make_phantoms(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()  # nothing written


def test_refuses_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        make_phantoms(tmp_path, 1)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_cli(tmp_path, capsys):
    from synthmed.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["phantoms", str(tmp_path / "p"), "--patients", "2", "--seed", "1", "--size", "48",
              "--studies", "1-1", "--workers", "1"])
    assert exc.value.code == 0
    assert "wrote 2 patients, 2 studies, 2 DICOM files (cxr)" in capsys.readouterr().out
    assert len(_rows(tmp_path / "p")) == 2
    with pytest.raises(SystemExit) as exc:
        main(["phantoms", str(tmp_path / "p"), "--patients", "2"])
    assert exc.value.code == 2
    assert "not empty" in capsys.readouterr().err
