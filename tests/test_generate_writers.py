"""Cohort writers (issue 11, builds 4-5): DICOM DX / CT / MR, NIfTI, PNG, the manifest and the
documents, all from small synthetic arrays (no model)."""

from __future__ import annotations

import datetime as dt
import getpass
import os
import socket
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from synthmed.errors import InputError
from synthmed.generate.documents import (NOTICE, SourceSummary, build_data_card,
                                         check_sha256sums, read_data_card, write_data_card,
                                         write_provenance, write_sha256sums)
from synthmed.generate.manifest import (ManifestRow, manifest_csv, read_manifest_rows,
                                        write_manifest)
from synthmed.generate.study import CohortContext, SyntheticStudy, VirtualPatient
from synthmed.generate.uids import uid_from
from synthmed.generate.writers import WRITERS, write_study
from synthmed.generate.writers.validate import dciodvfy_errors, dciodvfy_path

SAMPLING = {"sampler": "ddim", "steps": 12, "guidance_scale": 2.5, "clip": True, "eta": 0.0,
            "timestep_spacing": "trailing"}
MODEL_HASH = "ab" * 32
WINDOW = (-1000.0, 1000.0)
SHAPES = {"DX": (40, 32), "CT": (6, 20, 16), "MR": (5, 18, 14)}
SPACING = {"DX": (0.5, 0.5), "CT": (2.5, 0.8, 0.7), "MR": (1.2, 1.0, 1.0)}


def full16(x: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(x, np.float64) * 65535)


def context(modality: str, **kw) -> CohortContext:
    dims = len(SHAPES[modality])
    base = dict(cohort_seed=11, model_hash=MODEL_HASH, synthmed_version="0.1.0", spatial_dims=dims,
                modality=modality, sampling=SAMPLING, spacing=SPACING[modality],
                intensity_window=WINDOW if modality == "CT" else None,
                label_vocabulary=("effusion", "nodule"), spec_sha256="cd" * 32,
                body_part="CHEST" if modality != "MR" else "BRAIN")
    base.update(kw)
    return CohortContext(**base)


def patient(i: int, sex: str = "F") -> VirtualPatient:
    return VirtualPatient(index=i, patient_id=f"SYN-{i:06d}", sex=sex, age=40.0 + i,
                          seed=1000 + i, first_offset_days=30 * i)


def study(p: VirtualPatient, k: int, modality: str, seed: int = 0) -> SyntheticStudy:
    rng = np.random.default_rng([p.index, k, seed])
    img = rng.random(SHAPES[modality]).astype(np.float32)
    img.reshape(-1)[:2] = (0.0, 1.0)  # both ends of the window occur
    return SyntheticStudy(patient=p, study_index=k, days_since_first=0 if k == 0 else 90 * k,
                          labels=("effusion",) if k else (), age=p.age + 90 * k / 365.25,
                          image=img, seed=p.seed * 10 + k,
                          followup_strength=None if k == 0 else 0.4)


def write_cohort(root: Path, modality: str, n_patients: int = 2, studies: int = 2,
                 formats=("dicom", "nifti", "png"), **ctx_kw) -> list[ManifestRow]:
    ctx = context(modality, **ctx_kw)
    rows = []
    for i in range(n_patients):
        p = patient(i, "F" if i % 2 == 0 else "M")
        for k in range(studies):
            rows += write_study(study(p, k, modality), ctx, root, formats)
    return rows


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> dict[str, tuple[Path, list[ManifestRow]]]:
    out = {}
    for modality in SHAPES:
        root = tmp_path_factory.mktemp(f"cohort-{modality}")
        out[modality] = (root, write_cohort(root, modality))
    return out


def dicom_files(root: Path, row: ManifestRow) -> list[Path]:
    p = root / row.paths["dicom"]
    return sorted(p.glob("*.dcm")) if p.is_dir() else [p]


def read_series(files: list[Path]) -> tuple[list[pydicom.Dataset], np.ndarray]:
    """pydicom alone: sort by position along the slice normal, apply the modality LUT."""
    dss = [pydicom.dcmread(f) for f in files]
    normal = np.cross(*np.reshape(np.asarray(dss[0].ImageOrientationPatient, float), (2, 3)))
    dss.sort(key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))))
    return dss, np.stack([np.asarray(apply_modality_lut(d.pixel_array, d), np.float64) for d in dss])


# ---------------------------------------------------------------------------------- registry
def test_writers_are_found_by_format_name_and_unknown_formats_write_nothing(tmp_path):
    assert {"dicom", "nifti", "png"} <= set(WRITERS)
    with pytest.raises(InputError, match="unknown output format 'jpeg'.*dicom"):
        write_study(study(patient(0), 0, "DX"), context("DX"), tmp_path, ["dicom", "jpeg"])
    assert not any(tmp_path.iterdir())


def test_bad_images_and_ct_without_a_window_are_refused_before_any_file(tmp_path):
    bad = study(patient(0), 0, "CT")
    with pytest.raises(InputError, match="intensity window"):
        write_study(bad, context("CT", intensity_window=None), tmp_path, ["nifti"])
    img = bad.image.copy()
    img[0, 0, 0] = np.nan
    nan = SyntheticStudy(bad.patient, 0, 0, (), 40.0, img, 1)
    with pytest.raises(InputError, match="NaN"):
        write_study(nan, context("CT"), tmp_path, ["dicom"])
    with pytest.raises(InputError, match="2D cohort"):
        write_study(bad, context("DX"), tmp_path, ["png"])
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------ DICOM validity
@pytest.mark.parametrize("modality", ["DX", "CT", "MR"])
def test_dciodvfy_reports_no_error_but_the_allow_list(cohorts, modality):
    if dciodvfy_path() is None:
        pytest.skip("dciodvfy not installed (Debian dicom3tools; .ci/run installs it)")
    root, rows = cohorts[modality]
    files = [f for r in rows for f in dicom_files(root, r)]
    assert len(files) == len(rows) * (1 if modality == "DX" else SHAPES[modality][0])
    # every file of the first series, the first file of the others
    for f in dicom_files(root, rows[0]) + [dicom_files(root, r)[0] for r in rows[1:]]:
        assert dciodvfy_errors(f) == [], f


def test_dx_without_known_spacing_or_anatomy_claims_neither_and_stays_valid(tmp_path):
    rows = write_cohort(tmp_path, "DX", 1, 1, formats=["dicom"], spacing=(), body_part="")
    f = dicom_files(tmp_path, rows[0])[0]
    ds = pydicom.dcmread(f)
    assert "PixelSpacing" not in ds and [float(v) for v in ds.ImagerPixelSpacing] == [1.0, 1.0]
    assert ds.AnatomicRegionSequence[0].CodeMeaning == "Body structure"
    assert "BodyPartExamined" not in ds
    if dciodvfy_path() is not None:
        assert dciodvfy_errors(f) == []


@pytest.mark.parametrize("modality,iod", [("CR", "1.2.840.10008.5.1.4.1.1.1.1"),
                                          ("CT", "1.2.840.10008.5.1.4.1.1.2"),
                                          ("MR", "1.2.840.10008.5.1.4.1.1.4")])
def test_a_2d_model_of_another_modality_gets_its_own_iod(tmp_path, modality, iod):
    """CR radiographs give DX; a 2D CT or MR model's slices are one-slice series."""
    window = WINDOW if modality == "CT" else None
    ctx = replace(context("DX"), modality=modality, intensity_window=window)
    (row,) = write_study(study(patient(0), 0, "DX"), ctx, tmp_path, ["dicom"])
    (f,) = dicom_files(tmp_path, row)
    ds = pydicom.dcmread(f)
    assert ds.SOPClassUID == iod and ds.Modality == ("DX" if modality == "CR" else modality)
    assert (ds.Rows, ds.Columns) == SHAPES["DX"]
    if dciodvfy_path() is not None:
        assert dciodvfy_errors(f) == [], f


def test_a_modality_without_a_dicom_iod_is_refused_before_any_file(tmp_path):
    with pytest.raises(InputError, match="no DICOM writer for modality US in 2D"):
        write_study(study(patient(0), 0, "DX"), replace(context("DX"), modality="US"), tmp_path,
                    ["png", "nifti", "dicom"])
    assert not any(tmp_path.iterdir())


def test_dciodvfy_check_would_catch_a_broken_file(cohorts, tmp_path):
    if dciodvfy_path() is None:
        pytest.skip("dciodvfy not installed (Debian dicom3tools; .ci/run installs it)")
    root, rows = cohorts["DX"]
    ds = pydicom.dcmread(dicom_files(root, rows[0])[0])
    del ds.ImagerPixelSpacing, ds.PresentationIntentType
    ds.save_as(tmp_path / "broken.dcm")
    errors = dciodvfy_errors(tmp_path / "broken.dcm")
    assert any("PresentationIntentType" in e or "Presentation Intent" in e for e in errors), errors


@pytest.mark.parametrize("modality", ["DX", "CT", "MR"])
def test_dicom_is_marked_synthetic_with_the_synthesizing_equipment(cohorts, modality):
    root, rows = cohorts[modality]
    ds = pydicom.dcmread(dicom_files(root, rows[1])[0])
    assert ds.SyntheticData == "YES" and ds.BurnedInAnnotation == "NO"
    (item,) = ds.ContributingEquipmentSequence
    (purpose,) = item.PurposeOfReferenceCodeSequence
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning) == \
        ("109100", "DCM", "Synthesizing Equipment")
    versions = list(item.SoftwareVersions)
    assert versions[0] == "synthmed 0.1.0" and MODEL_HASH in versions
    assert f"seed {rows[1].seed}" in versions and f"seed {rows[1].seed}" in item.ContributionDescription
    assert "ddim" in item.ContributionDescription and "steps 12" in item.ContributionDescription
    assert ds.Modality == modality and ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.BitsAllocated == 16 and ds.BitsStored == 16


def test_dx_is_for_presentation_with_a_window_that_shows_the_sampled_image(cohorts):
    root, rows = cohorts["DX"]
    ds = pydicom.dcmread(dicom_files(root, rows[0])[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    assert ds.PresentationIntentType == "FOR PRESENTATION"
    img = study(patient(0), 0, "DX").image
    assert np.array_equal(ds.pixel_array, full16(img))
    # PS3.3 C.11.2.1.2 linear VOI: stored 0 -> black, 65535 -> white, linear between
    shown = apply_voi_lut(ds.pixel_array, ds)
    lo, hi = float(shown.min()), float(shown.max())
    assert np.allclose((shown - lo) / (hi - lo), img, atol=2e-4)


def test_series_slices_are_the_bytes_pydicom_itself_writes(cohorts):
    from synthmed.phantoms.dicom_writer import encode_file

    for modality in ("CT", "MR"):
        root, rows = cohorts[modality]
        for f in dicom_files(root, rows[1]):
            assert f.read_bytes() == encode_file(pydicom.dcmread(f)), f


# -------------------------------------------------------------------------------- hierarchy
def test_patient_study_series_hierarchy_is_consistent_and_uids_come_from_the_seed(cohorts):
    root, rows = cohorts["CT"]
    seen_sops = set()
    for r in rows:
        files = dicom_files(root, r)
        dss = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        for ds in dss:
            assert ds.PatientID == r.patient and str(ds.PatientName) == r.patient
            assert (ds.StudyInstanceUID, ds.SeriesInstanceUID) == (r.study_uid, r.series_uid)
            assert ds.StudyDate == r.study_date.replace("-", "")
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            seen_sops.add(ds.SOPInstanceUID)
        assert len({d.FrameOfReferenceUID for d in dss}) == 1
        assert dss[0].SOPInstanceUID == r.sop_uid and r.instances == len(files)
    assert len(seen_sops) == sum(r.instances for r in rows)
    assert len({r.study_uid for r in rows}) == len(rows)  # one study per row, never shared
    assert len({r.series_uid for r in rows}) == len(rows)
    uids = [u for r in rows for u in (r.study_uid, r.series_uid)] + sorted(seen_sops)
    assert all(u.startswith("2.25.") and len(u) <= 64 and u[5:].isdigit() for u in uids)
    # same patient: both studies carry its id; the dates are the epoch-based synthetic ones
    first, follow = rows[0], rows[1]
    assert first.patient == follow.patient and follow.days_since_first == 90
    assert dt.date.fromisoformat(follow.study_date) - dt.date.fromisoformat(first.study_date) \
        == dt.timedelta(days=90)


def test_uids_are_a_function_of_the_seed_and_cohort(tmp_path):
    a = write_cohort(tmp_path / "a", "DX", 1, 1, formats=["nifti"])
    b = write_cohort(tmp_path / "b", "DX", 1, 1, formats=["nifti"])
    c = write_cohort(tmp_path / "c", "DX", 1, 1, formats=["nifti"], cohort_seed=12)
    d = write_cohort(tmp_path / "d", "DX", 1, 1, formats=["nifti"], spec_sha256="ef" * 32)
    assert a[0].study_uid == b[0].study_uid and a[0].sop_uid == b[0].sop_uid
    assert len({a[0].study_uid, c[0].study_uid, d[0].study_uid}) == 3
    assert uid_from("1", "23") != uid_from("12", "3")


# ----------------------------------------------------------------------- one volume, 3 readers
def test_ct_series_reads_the_same_with_pydicom_monai_and_nifti_and_maps_back_to_hu(cohorts):
    import nibabel as nib
    from monai.transforms import LoadImage

    from synthmed.io.nifti import load_nifti

    root, rows = cohorts["CT"]
    row = rows[1]
    x = study(patient(0), 1, "CT").image
    hu = WINDOW[0] + x.astype(np.float64) * (WINDOW[1] - WINDOW[0])
    dss, by_pydicom = read_series(dicom_files(root, row))
    assert np.abs(by_pydicom - hu).max() <= 0.5 + 1e-9  # 1 HU steps
    assert by_pydicom.min() == WINDOW[0] and by_pydicom.max() == WINDOW[1]
    assert dss[0].RescaleType == "HU"
    # geometry: positions step by the slice thickness along the normal, spacing as given
    z = [float(d.ImagePositionPatient[2]) for d in dss]
    assert np.allclose(np.diff(z), SPACING["CT"][0])
    assert [float(v) for v in dss[0].PixelSpacing] == list(SPACING["CT"][1:])
    assert float(dss[0].SliceThickness) == SPACING["CT"][0]

    loader = LoadImage(image_only=True)
    by_monai_dicom = loader(str(root / row.paths["dicom"]))       # (x, y, z)
    by_monai_nifti = loader(str(root / row.paths["nifti"]))
    nii = nib.load(root / row.paths["nifti"])
    for vol in (by_monai_dicom, by_monai_nifti):
        assert np.array_equal(np.asarray(vol, np.float64).transpose(2, 1, 0), by_pydicom)
    assert np.array_equal(np.asarray(nii.dataobj, np.float64).transpose(2, 1, 0), by_pydicom)
    assert np.allclose(np.asarray(by_monai_dicom.affine), np.asarray(by_monai_nifti.affine))
    assert np.allclose(nii.affine, np.asarray(by_monai_nifti.affine))
    assert np.allclose(nii.header.get_zooms(), SPACING["CT"][::-1])
    loaded = load_nifti(root / row.paths["nifti"], deid=type("D", (), {
        "patient": staticmethod(str), "study": staticmethod(str), "series": staticmethod(str)})())
    assert np.array_equal(loaded.array, by_pydicom.astype(np.float32))
    assert loaded.spacing == SPACING["CT"]


def test_monai_and_pydicom_reread_every_file_of_every_format(cohorts):
    from monai.transforms import LoadImage
    from PIL import Image

    loader = LoadImage(image_only=True)
    for modality, (root, rows) in cohorts.items():
        for r in rows:
            x = study(patient(r.patient_index), r.study_index, modality).image
            full = full16(x)
            for f in dicom_files(root, r):
                pydicom.dcmread(f).pixel_array
            vol = np.asarray(loader(str(root / r.paths["dicom"])), np.float64)
            nii = np.asarray(loader(str(root / r.paths["nifti"])), np.float64)
            if modality == "DX":
                assert np.array_equal(vol, full.T) and np.array_equal(nii[:, :, 0], full.T)
            else:
                assert np.array_equal(vol, nii)
                if modality == "MR":
                    assert np.array_equal(vol.transpose(2, 1, 0), full)
            png = root / r.paths["png"]
            pngs = [png] if png.is_file() else sorted(png.glob("*.png"))
            assert len(pngs) == (1 if modality == "DX" else x.shape[0])
            stack = np.stack([np.asarray(Image.open(p), np.float64) for p in pngs])
            assert np.array_equal(stack.reshape(full.shape), full)
            assert "SYNTHETIC" in Image.open(pngs[0]).text["Description"]


def test_dx_renders_through_its_voi_lut_to_an_8_bit_png(cohorts, tmp_path):
    from PIL import Image

    from synthmed.viz import save_png

    root, rows = cohorts["DX"]
    ds = pydicom.dcmread(dicom_files(root, rows[0])[0])
    shown = apply_voi_lut(ds.pixel_array, ds).astype(np.float64)
    eight = np.round((shown - shown.min()) / (shown.max() - shown.min()) * 255).astype(np.uint8)
    save_png(eight, tmp_path / "dx.png")
    back = np.asarray(Image.open(tmp_path / "dx.png"))
    x = study(patient(0), 0, "DX").image
    assert back.shape == x.shape and np.abs(back.astype(int) - np.round(x * 255)).max() <= 1


# ----------------------------------------------------------------------- nothing not given
def _dicom_strings(ds: pydicom.Dataset):
    for elem in ds.iterall():
        if elem.VR in ("OB", "OW", "SQ", "UN") or elem.tag == 0x7FE00010:
            continue
        values = elem.value if elem.VM > 1 else [elem.value]
        for v in values:
            yield elem.keyword, elem.VR, str(v)


def test_no_output_holds_anything_that_was_not_given(cohorts):
    """Dates are the studies' synthetic ones, names are SYN ids, and no text anywhere holds the
    current date or year, the host, the user or a path."""
    import gzip

    import nibabel as nib
    from PIL import Image

    today = dt.date.today()
    forbidden = {today.strftime("%Y%m%d"), today.isoformat(), str(today.year),
                 socket.gethostname(), getpass.getuser(), os.getcwd(), str(Path.home())}
    forbidden = {f for f in forbidden if len(f) >= 4}
    for modality, (root, rows) in cohorts.items():
        ids = {r.patient for r in rows}
        dates = {r.study_date.replace("-", "") for r in rows}
        # the synthetic epoch (2200-01-01) plus at most ~15 years: after any real date
        assert all(2200 <= int(d[:4]) < 2220 for d in dates)
        for f in sorted(root.rglob("*")):
            if not f.is_file():
                continue
            if f.suffix == ".dcm":
                ds = pydicom.dcmread(f)
                del ds.PixelData
                values = list(_dicom_strings(ds))
                for kw, vr, v in values:
                    if vr in ("DA", "DT", "TM"):
                        assert v == "" or v in dates, (f, kw, v)
                    if vr == "PN":
                        assert v == "" or v in ids, (f, kw, v)
                assert ds.PatientBirthDate == "" and ds.PatientID in ids
                # UIDs are long random-looking numbers: a 4-digit year can occur in one by chance
                text = " ".join(v for _, vr, v in values if vr != "UI")
            elif f.suffix == ".png":
                text = " ".join(Image.open(f).text.values())
            else:
                hdr = nib.Nifti1Header.from_fileobj(gzip.open(f))
                text = " ".join(hdr[k].item().decode() for k in ("descrip", "aux_file",
                                                                 "intent_name", "db_name"))
            for bad in forbidden | {str(root)}:
                assert bad not in text, (f, bad)


# ------------------------------------------------------------------------- reproducibility
def test_the_same_studies_give_the_same_bytes(tmp_path):
    write_cohort(tmp_path / "a", "CT", 1, 2)
    write_cohort(tmp_path / "b", "CT", 1, 2)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 10
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_nifti_of_a_2d_image_is_one_slice_that_synthmed_reads_back(cohorts):
    import nibabel as nib

    root, rows = cohorts["DX"]
    nii = nib.load(root / rows[0].paths["nifti"])
    assert nii.shape == (32, 40, 1)
    assert np.allclose(nii.header.get_zooms()[:2], SPACING["DX"][::-1])
    x = study(patient(0), 0, "DX").image
    assert np.array_equal(np.asarray(nii.dataobj)[:, :, 0].T, full16(x))


# -------------------------------------------------------------------------------- manifest
def test_manifest_round_trips_and_is_independent_of_row_order(cohorts, tmp_path):
    from synthmed.data.records import CohortRecord, read_manifest

    _, rows = cohorts["CT"]
    write_manifest(rows, tmp_path / "a")
    write_manifest(list(reversed(rows)), tmp_path / "b")
    for name in ("manifest.csv", "manifest.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert read_manifest_rows(tmp_path / "a") == rows
    (tmp_path / "a" / "manifest.parquet").unlink()
    assert read_manifest_rows(tmp_path / "a") == rows  # from the CSV
    r = rows[1]
    assert r.labels == ("effusion",) and r.followup_strength == 0.4 and r.age == pytest.approx(40 + 90 / 365.25)
    assert (r.sampler, r.steps, r.guidance_scale, r.model_hash) == ("ddim", 12, 2.5, MODEL_HASH)
    assert set(r.paths) == {"dicom", "nifti", "png"} and not Path(r.paths["dicom"]).is_absolute()
    # a sampled cohort's reader finds its own columns in the generated manifest
    records = read_manifest(tmp_path / "a" / "manifest.csv", CohortRecord)
    assert [(c.index, c.patient, c.labels, c.sex) for c in records] == \
        [(i, x.patient, x.labels, x.sex) for i, x in enumerate(rows)]
    with pytest.raises(ValueError, match="appears twice"):
        manifest_csv(rows + rows[:1])


def test_a_malformed_manifest_is_one_clear_error(tmp_path):
    (tmp_path / "manifest.csv").write_text("index,patient\n0,SYN-000000\n")
    with pytest.raises(InputError, match="manifest.csv row 2: missing column"):
        read_manifest_rows(tmp_path)
    (tmp_path / "manifest.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a readable Parquet"):
        read_manifest_rows(tmp_path)


# ------------------------------------------------------------------------------- documents
def _source() -> SourceSummary:
    return SourceSummary(dataset_fingerprint="f" * 64, modality="CT", spatial_dims=3,
                         image_shape=(6, 20, 16), n_patients=40, n_images=52,
                         label_vocabulary=("effusion", "nodule"))


def test_data_card_says_what_the_cohort_is_and_the_audit_tier_and_power(cohorts, tmp_path):
    import json

    _, rows = cohorts["CT"]
    spec = {"patients": 2, "studies": {"fixed": 2}, "seed": 11}
    card = build_data_card(context("CT"), rows, _source(), spec=spec)
    md, js = write_data_card(tmp_path, card)
    text = md.read_text()
    assert NOTICE in text and "Not audited yet" in text and "f" * 64 in text
    d = json.loads(js.read_text())
    assert d["synthetic"] is True and d["cohort"]["patients"] == 2 and d["cohort"]["images"] == 4
    assert d["cohort"]["studies_per_patient"] == {"2": 2} and d["spec"] == spec
    assert d["generation"]["model_sha256"] == MODEL_HASH and d["generation"]["sampling"]["steps"] == 12
    audit = {"verdict": "pass", "tier": "public", "power": {"min_excluded_auc": 0.6,
                                                             "holdout_patients": 300}}
    write_data_card(tmp_path, build_data_card(context("CT"), rows, _source(), spec=spec, audit=audit))
    text = md.read_text()
    assert "**tier**: public" in text and "min_excluded_auc: 0.6" in text
    assert json.loads(js.read_text())["audit"] == audit
    back = read_data_card(tmp_path)
    assert back.source == _source() and back.audit == audit and back.cohort == card.cohort
    js.write_text("{}")
    with pytest.raises(InputError, match="not a synthmed data card"):
        read_data_card(tmp_path)


def test_data_card_refuses_a_pseudonym_and_writes_nothing(cohorts, tmp_path):
    _, rows = cohorts["CT"]
    card = build_data_card(context("CT"), rows, _source(), spec={"note": "like P-0123456789ab"})
    with pytest.raises(ValueError, match="spec.note.*pseudonym"):
        write_data_card(tmp_path, card)
    assert not any(tmp_path.iterdir())


def test_provenance_records_configs_and_package_versions(tmp_path):
    import json

    folder = write_provenance(tmp_path, {"spec": {"patients": 2}}, seed=11, model_sha256=MODEL_HASH)
    assert json.loads((folder / "spec.json").read_text()) == {"patients": 2}
    pk = json.loads((folder / "packages.json").read_text())["packages"]
    assert {"python", "numpy", "pydicom", "highdicom", "pyarrow"} <= set(pk)
    import torch

    # what the floats were computed on: the instruction set and thread count in use when written
    compute = json.loads((folder / "packages.json").read_text())["compute"]
    assert compute["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert compute["torch_threads"] == torch.get_num_threads()
    from synthmed.provenance import provenance

    before = torch.get_num_threads()
    try:  # the setting in use at the time, not a value read once at import
        torch.set_num_threads(1)
        one = provenance()["compute"]["torch_threads"]
        torch.set_num_threads(2)
        two = provenance()["compute"]["torch_threads"]
    finally:
        torch.set_num_threads(before)
    assert (one, two) == (1, 2)
    # ingest and phantoms compute nothing with torch: their records leave it out
    assert "compute" not in provenance(compute=False)
    gen = json.loads((folder / "generation.json").read_text())
    assert gen["seed"] == 11 and len(gen["config_sha256"]["spec"]) == 64
    with pytest.raises(ValueError, match="plain file name"):
        write_provenance(tmp_path, {"../x": {}})


def test_sha256sums_is_what_sha256sum_checks_and_every_change_is_found(tmp_path):
    write_cohort(tmp_path, "DX", 1, 2)
    (tmp_path / "synthmed-folder.json").write_text("{}")  # the marker is not listed
    write_sha256sums(tmp_path)
    assert check_sha256sums(tmp_path) == []
    lines = (tmp_path / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == 6 and all(len(ln.split("  ")[0]) == 64 for ln in lines)
    ok = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=tmp_path,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    victim = tmp_path / "png" / "SYN-000000" / "study-01.png"
    data = bytearray(victim.read_bytes())
    data[-20] ^= 1
    victim.write_bytes(bytes(data))
    (tmp_path / "nifti" / "SYN-000000" / "study-00.nii.gz").unlink()
    (tmp_path / "extra.txt").write_text("x")
    bad = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True,
                         text=True)
    assert bad.returncode != 0 and "study-01.png: FAILED" in bad.stdout
    problems = check_sha256sums(tmp_path)
    assert any("study-01.png: changed" in p for p in problems)
    assert any("study-00.nii.gz: listed" in p and "missing" in p for p in problems)
    assert any("extra.txt: not listed" in p for p in problems)
