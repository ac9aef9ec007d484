"""Ingestion of the real shared data: NIH CXR PNGs, the three DICOM series, MSD hippocampus,
every pydicom-data file; privacy scans of every output byte; determinism."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from synthmed.config import load_config
from synthmed.data.dataset import Dataset
from synthmed.data.ingest import ingest, iter_outputs
from synthmed.data.ingest_config import IngestConfig
from synthmed.data.normalise import normalise_intensity, prepare, resize

ROOT = Path(__file__).resolve().parents[1]
KEY = bytes(range(7, 39))  # fixed 32-byte key: pseudonyms (and so outputs) are reproducible


def _config(name: str, **overrides) -> IngestConfig:
    return load_config(ROOT / "configs" / f"ingest-{name}.yaml", IngestConfig, overrides or None)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("key") / "deid.key"
    p.write_bytes(KEY)
    return p


def _deid():
    from synthmed.deid import Deidentifier
    return Deidentifier(KEY)


def _output_bytes(out: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in iter_outputs(out)}
    assert {"images.npy", "manifest.csv", "dataset.json", "ingest_report.json"} <= set(files)
    return files


# --------------------------------------------------------------------------- NIH CXR

@pytest.fixture(scope="module")
def nih_dataset(tmp_path_factory, key_file):
    from conftest import shared_path
    src = shared_path("nih-cxr14-1000")
    out = tmp_path_factory.mktemp("nih") / "ds"
    result = ingest([src / "images"], out, _config("cxr-64"), metadata_csv=src / "metadata.csv",
                    key_path=key_file)
    return src, out, result


def test_nih_counts_splits_and_metadata(nih_dataset):
    src, out, result = nih_dataset
    ds = Dataset.open(out)
    assert len(ds) == 1000 and ds.images.shape == (1000, 64, 64)
    assert len(ds.patients()) == 264 and result.refused == 0
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
    # No patient on two sides, and the holdout is about 20 % of patients.
    train, hold = set(ds.patients("train")), set(ds.patients("holdout"))
    assert train.isdisjoint(hold) and len(train | hold) == 264
    assert 45 <= len(hold) <= 60

    with open(src / "metadata.csv", newline="") as fh:
        meta = {r["Image Index"]: r for r in csv.DictReader(fh)}
    names = sorted(meta)  # images are ingested in sorted file order
    deid = _deid()
    for rec, name in zip(ds.records, names):
        row = meta[name]
        want = () if row["Finding Labels"] == "No Finding" else tuple(sorted(row["Finding Labels"].split("|")))
        assert rec.labels == want
        assert rec.age == float(row["Patient Age"]) and rec.sex == row["Patient Gender"]
        assert rec.patient == deid.patient(row["Patient ID"])
    assert "No Finding" not in ds.label_vocabulary and "Effusion" in ds.label_vocabulary
    # The image itself: the PNG's luminance, percentile-normalised.
    from PIL import Image
    raw = np.asarray(Image.open(src / "images" / names[5]).convert("L"), dtype=np.float32)
    lo, hi = np.percentile(raw, [0.5, 99.5])
    np.testing.assert_allclose(ds.images[5], np.clip((raw - lo) / (hi - lo), 0, 1), atol=1e-5)


def test_nih_no_stem_or_patient_id_in_any_output_byte(nih_dataset):
    """Stems such as '00000001_000' and patient IDs must not appear in any output file.

    Patient IDs are written in the CSV as '1', '2', ...: too short to search for (any digit
    would match), so they are searched as they appear in the stems, zero-padded to 8 digits.
    Every 8-digit window of every output file is compared with that set (one pass per file).
    """
    src, out, _ = nih_dataset
    stems = {p.stem for p in (src / "images").glob("*.png")}
    ids = {s.split("_")[0] for s in stems}
    assert len(stems) == 1000 and len(ids) == 264
    window = re.compile(rb"(?=(\d{8}))")
    stem_re = re.compile(rb"\d{8}_\d{3}")
    for name, data in _output_bytes(out).items():
        found_ids = {m.decode() for m in window.findall(data)} & ids
        found_stems = {m.decode() for m in stem_re.findall(data)} & stems
        assert not found_ids and not found_stems, f"{name} holds {sorted(found_ids | found_stems)[:5]}"
        assert b".png" not in data or name == "ingest_report.json"  # only as a config suffix


# --------------------------------------------------------------------------- DICOM series

def _by_folder(files: list[Path]) -> list[list[Path]]:
    groups: dict[Path, list[Path]] = {}
    for f in files:
        groups.setdefault(f.parent, []).append(f)
    return list(groups.values())


def _identifying_values(folder: Path) -> tuple[set[str], set[str]]:
    """(UIDs, other identifying strings) from every header in `folder`'s three series."""
    import pydicom

    from pydicom.datadict import DicomDictionary

    # Some headers hold attribute names as placeholder values (InstitutionName 'Institution',
    # private 'OperatorsName'): public vocabulary that the report's de-id profile also lists.
    public_words = " ".join(v[4] for v in DicomDictionary.values())
    uids: set[str] = set()
    values: set[str] = set()
    keywords = {"AccessionNumber", "StationName", "DeviceSerialNumber", "InstitutionName",
                "InstitutionAddress", "PatientID", "OtherPatientIDs", "StudyID",
                "RequestedProcedureID", "PerformedProcedureStepID", "ReferringPhysicianName",
                "PatientName", "OperatorsName", "PerformingPhysicianName"}
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for f in files:  # per-image UIDs from every file
        ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        uids.add(str(ds.SOPInstanceUID))
    # Every element of the first and last file of each series (the rest repeat them).
    full = sorted({*(min(g) for g in _by_folder(files)), *(max(g) for g in _by_folder(files))})
    for f in full:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for elem in [*ds.file_meta.iterall(), *ds.iterall()]:
            v = elem.value
            if v is None or isinstance(v, (bytes, bytearray)) or elem.VR == "SQ":
                continue
            items = list(v) if isinstance(v, pydicom.multival.MultiValue) else [v]
            for item in items:
                text = str(item).strip()
                if elem.VR == "UI":
                    if text and not text.startswith("1.2.840.10008."):  # standard UIDs are public
                        uids.add(text)
                elif text in public_words:  # placeholders such as 'Institution'
                    continue
                elif elem.VR in ("PN", "DA", "DT") and len(text) >= 4:
                    values.add(text)
                elif elem.keyword in keywords and len(text) >= 4:
                    values.add(text)
                elif (elem.tag.is_private and elem.tag.element > 0xFF and len(text) >= 6
                      and elem.VR in ("LO", "SH", "LT", "ST", "UT", "PN", "DA", "DT")):
                    values.add(text)
    uids.discard("")
    return uids, values


@pytest.fixture(scope="module")
def dicom_dataset(tmp_path_factory, key_file):
    from conftest import shared_path
    src = shared_path("dicom")
    out = tmp_path_factory.mktemp("dicom") / "ds"
    result = ingest([src], out, _config("ct"), key_path=key_file, workers=2)
    return src, out, result


def _reference_volume(folder: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """The series built straight from pydicom: sorted along the slice normal, in HU."""
    import pydicom
    slices = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    iop = np.array(slices[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    slices.sort(key=lambda s: float(np.dot(normal, np.array(s.ImagePositionPatient, dtype=float))))
    vol = np.stack([s.pixel_array.astype(np.float32) * float(getattr(s, "RescaleSlope", 1))
                    + float(getattr(s, "RescaleIntercept", 0)) for s in slices])
    pos = [float(np.dot(normal, np.array(s.ImagePositionPatient, dtype=float))) for s in slices]
    dz = float(np.median(np.diff(pos)))
    return vol, (dz, *map(float, slices[0].PixelSpacing))


def test_dicom_series_geometry_order_and_hu(dicom_dataset):
    src, out, result = dicom_dataset
    ds = Dataset.open(out)
    assert ds.images.shape == (1 + 1 + 18, 32, 64, 64) and result.refused == 0
    by_shape = {}
    for r in ds.records:
        by_shape.setdefault(r.original_shape, []).append(r)
    assert sorted((s, len(v)) for s, v in by_shape.items()) == [
        ((20, 512, 512), 1), ((35, 80, 80), 18), ((192, 256, 256), 1)]
    assert len({r.patient for r in by_shape[(35, 80, 80)]}) == 1  # fMRI: one patient, 18 volumes
    cfg = _config("ct")
    for sub, shape, modality in (("ct-chest-jpeg2000", (20, 512, 512), "CT"),
                                 ("mr-brain-sagittal", (192, 256, 256), "MR")):
        ref, spacing = _reference_volume(src / sub)
        rec = by_shape[shape][0]
        assert rec.modality == modality
        np.testing.assert_allclose(rec.original_spacing, spacing, rtol=1e-4)
        if modality == "CT":
            # CT reaches normalisation in HU: air about -1000, the [-1000, 1000] window fixed.
            assert ref.min() <= -1000 and ref.max() > 500
            want = normalise_intensity(resize(ref, (32, 64, 64)), (-1000.0, 1000.0))
        else:
            want = prepare(ref, spacing, "MR", cfg).images[0]
        np.testing.assert_allclose(ds.images[rec.index], want, atol=1e-4)
        # A volume in the wrong slice order would not match.
        assert not np.allclose(ds.images[rec.index], want[::-1], atol=1e-3)
    report = (out / "ingest_report.json").read_text()
    assert '"CT"' in report and '-1000.0' in report


def test_dicom_no_identifying_header_value_in_any_output_byte(dicom_dataset):
    src, out, _ = dicom_dataset
    uids, values = _identifying_values(src)
    # The fixtures really hold what must be removed (else this test would prove nothing).
    assert len(uids) > 842 and any(len(v) == 8 and v.isdigit() for v in values)
    assert len(values) > 10
    # Every UID is a run of digits and dots: collect the runs of each file and look each UID
    # up as a substring of a run (by length, through a set: one pass over the bytes).
    uid_run = re.compile(rb"[0-9.]{8,}")
    lengths = sorted({len(u) for u in uids})
    for name, data in _output_bytes(out).items():
        leaked_uids = set()
        for run in {m.decode() for m in uid_run.findall(data)}:
            for n in lengths:
                leaked_uids |= {run[i:i + n] for i in range(len(run) - n + 1)} & uids
        leaked = {v for v in values if v.encode() in data}
        assert not leaked_uids and not leaked, f"{name}: {sorted(leaked_uids | leaked)[:5]}"


# --------------------------------------------------------------------------- MSD hippocampus

@pytest.fixture(scope="module")
def hippo_subset():
    from conftest import shared_path
    return sorted(shared_path("msd-hippocampus", "imagesTr").glob("*.nii.gz"))[:20]


def test_msd_hippocampus_as_3d_volumes(hippo_subset, tmp_path, key_file):
    import nibabel as nib
    result = ingest(hippo_subset, tmp_path / "ds", _config("mri-3d"), key_path=key_file)
    ds = Dataset.open(tmp_path / "ds")
    assert ds.images.shape == (20, 48, 56, 48) and result.refused == 0
    assert len(ds.patients()) == 20 and ds.info["spacing"] == [1.0, 1.0, 1.0]
    cfg = _config("mri-3d")
    for i in (0, 7):
        data = np.asarray(nib.load(hippo_subset[i]).dataobj, dtype=np.float32)
        zyx = data.transpose(2, 1, 0)
        assert ds.records[i].original_shape == zyx.shape
        # Same as normalising the (z, y, x) volume and padding it at 1 mm: geometry preserved.
        np.testing.assert_allclose(ds.images[i], prepare(zyx, (1, 1, 1), "MR", cfg).images[0], atol=1e-6)
        lo, hi = np.percentile(zyx, [0.5, 99.5])
        norm = np.clip((zyx - lo) / (hi - lo), 0, 1)
        z0, y0, x0 = [(o - n) // 2 for o, n in zip((48, 56, 48), zyx.shape)]
        if min(z0, y0, x0) >= 0:
            inner = ds.images[i][z0:z0 + zyx.shape[0], y0:y0 + zyx.shape[1], x0:x0 + zyx.shape[2]]
            np.testing.assert_allclose(inner, norm, atol=1e-5)


def test_msd_hippocampus_as_2d_slices(hippo_subset, tmp_path, key_file):
    import nibabel as nib
    ingest(hippo_subset, tmp_path / "ds", _config("mri-2d", slices="all"), key_path=key_file)
    ds = Dataset.open(tmp_path / "ds")
    depths = [nib.load(p).shape[2] for p in hippo_subset]  # z becomes the slice axis
    assert ds.images.shape == (sum(depths), 64, 64)
    assert len(ds.patients()) == 20
    assert set(ds.patients("train")).isdisjoint(ds.patients("holdout"))
    # non_empty keeps slices with at least this share of pixels above 0.1 once normalised.
    frac = 0.97  # the crops are tight: most slices are 90-99 % tissue
    ingest(hippo_subset, tmp_path / "ne", _config("mri-2d", non_empty_fraction=frac), key_path=key_file)
    ne = Dataset.open(tmp_path / "ne")
    want = 0
    for p in hippo_subset:
        zyx = np.asarray(nib.load(p).dataobj, dtype=np.float32).transpose(2, 1, 0)
        # float32 arithmetic as the pipeline does it: pixels right at 0.1 decide a slice or two
        norm = normalise_intensity(zyx, tuple(np.percentile(zyx, [0.5, 99.5])))
        share = (norm > 0.1).reshape(zyx.shape[0], -1).mean(1)
        want += int((share >= frac).sum())
    assert 20 <= len(ne) == want < sum(depths)


# --------------------------------------------------------------------------- pydicom-data

def test_every_pydicom_data_file_is_ingested_or_refused(tmp_path, key_file):
    data_store = pytest.importorskip("data_store")
    folder = Path(data_store.__file__).parent / "data"
    files = sorted(folder.glob("*.dcm"))
    assert len(files) > 50
    result = ingest([folder], tmp_path / "ds", IngestConfig(), key_path=key_file)
    assert result.kept + result.refused + result.skipped == result.files_found
    assert result.kept > 10 and result.images > 10
    assert all(r["reason"] and r["file"].startswith("F-") for r in result.refusals)
    report = (tmp_path / "ds" / "ingest_report.json").read_text()
    for f in files:  # refused files are named by keyed hash, never by name
        assert f.stem not in report


# --------------------------------------------------------------------------- determinism

def test_same_input_key_config_gives_byte_identical_output(tmp_path, key_file):
    from conftest import shared_path
    nih = shared_path("nih-cxr14-1000")
    pngs = sorted((nih / "images").glob("*.png"))[:60]
    ct = shared_path("dicom", "ct-chest-jpeg2000")
    hippo = sorted(shared_path("msd-hippocampus", "imagesTr").glob("*.nii.gz"))[:3]
    sources = [*pngs, ct, *hippo]
    cfg = _config("cxr-64", slices="middle")
    ingest(sources, tmp_path / "a", cfg, metadata_csv=nih / "metadata.csv", key_path=key_file, workers=1)
    ingest(sources, tmp_path / "b", cfg, metadata_csv=nih / "metadata.csv", key_path=key_file, workers=2)
    a, b = _output_bytes(tmp_path / "a"), _output_bytes(tmp_path / "b")
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], f"{name} differs between runs"
    ds = Dataset.open(tmp_path / "a")
    assert len(ds) == 60 + 1 + 3 and ds.info["fingerprint"] == Dataset.open(tmp_path / "b").fingerprint()
    assert sorted(ds.info["modalities"]) == ["CT", "DX", "MR"]


def test_nih_patient_from_file_name_matches_metadata_pseudonym(tmp_path, key_file):
    """Without the CSV, the cxr config takes the patient from the stem ('00000001_000' -> '1'),
    giving the same pseudonym as the CSV's 'Patient ID' would."""
    from conftest import shared_path
    nih = shared_path("nih-cxr14-1000")
    pngs = sorted((nih / "images").glob("*.png"))[:12]
    ingest(pngs, tmp_path / "ds", _config("cxr-64"), key_path=key_file)
    ds = Dataset.open(tmp_path / "ds")
    with open(nih / "metadata.csv", newline="") as fh:
        pid = {r["Image Index"]: r["Patient ID"] for r in csv.DictReader(fh)}
    deid = _deid()
    assert [r.patient for r in ds.records] == [deid.patient(pid[p.name]) for p in pngs]
    assert len(ds.patients()) < 12  # several images per patient were grouped
