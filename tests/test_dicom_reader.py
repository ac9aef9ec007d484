"""DICOM reader: series grouping, volume assembly and geometry, units, refusals, privacy."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.filereader import read_partial
from pydicom.pixels import apply_modality_lut

from synthmed.deid import Deidentifier
from synthmed.io.dicom import DicomSeries, find_dicom_series, load_series
from synthmed.io.types import RefusedInput

from conftest import shared_path

DEID = Deidentifier(b"k" * 32)


def _files(name: str) -> list[Path]:
    return sorted(p for p in shared_path("dicom", name).iterdir() if p.is_file())


def _load_dir(name: str):
    series, refused = find_dicom_series(_files(name))
    assert not refused and len(series) == 1
    return [im for s in series for im in load_series(s, DEID)]


def _header_until(path: Path, last_tag: int):
    """The header up to `last_tag` (a fast independent read for the oracle)."""
    with open(path, "rb") as fp:
        return read_partial(fp, stop_when=lambda tag, vr, length: tag > last_tag)


def _normal_projection(ds) -> float:
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    return float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), np.cross(iop[:3], iop[3:])))


@pytest.fixture(scope="module")
def sagittal():
    return _load_dir("mr-brain-sagittal")


@pytest.fixture(scope="module")
def fmri():
    return _load_dir("mr-fmri-series")


@pytest.fixture(scope="module")
def ct():
    return _load_dir("ct-chest-jpeg2000")


def test_sagittal_volume_order_and_geometry(sagittal):
    assert len(sagittal) == 1
    vol = sagittal[0]
    assert vol.array.shape == (192, 256, 256) and vol.array.dtype == np.float32
    assert vol.original_shape == (192, 256, 256) and vol.source_format == "dicom"
    files = _files("mr-brain-sagittal")
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    proj = np.array([_normal_projection(h) for h in headers])
    order = np.argsort(proj)
    assert np.all(np.diff(proj[order]) > 0), "positions strictly monotonic along the normal"
    assert vol.spacing[0] == pytest.approx(np.median(np.diff(proj[order])), rel=1e-6)
    assert vol.spacing[1:] == pytest.approx(tuple(float(v) for v in headers[0].PixelSpacing))
    # Slice k of the volume is the file k-th along the normal (spot checks, including both ends).
    for k in (0, 1, 95, 191):
        expected = pydicom.dcmread(files[order[k]]).pixel_array.astype(np.float32)
        np.testing.assert_array_equal(vol.array[k], expected)
    assert vol.modality == "MR" and vol.sex == "M" and vol.age == pytest.approx(3.0)


def test_ct_in_hounsfield_units_and_ordered(ct):
    assert len(ct) == 1
    vol = ct[0]
    files = _files("ct-chest-jpeg2000")
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    proj = np.array([_normal_projection(h) for h in headers])
    order = np.argsort(proj)
    assert vol.array.shape == (20, 512, 512)
    assert np.all(np.diff(proj[order]) > 0)
    assert vol.spacing[0] == pytest.approx(np.median(np.diff(proj[order])))
    assert vol.spacing[1:] == pytest.approx(tuple(float(v) for v in headers[0].PixelSpacing))
    k = 7
    ds = pydicom.dcmread(files[order[k]])
    np.testing.assert_allclose(vol.array[k], apply_modality_lut(ds.pixel_array, ds), atol=1e-3)
    mid = vol.array[10]
    air = float(np.median(mid[64:128, 192:320]))  # in front of the chest
    tissue = float(np.median(mid[330:370, 140:180]))  # inside the body
    assert -1050 < air < -950
    assert 0 < tissue < 100


def test_fmri_splits_into_time_points(fmri):
    assert len(fmri) == 18
    assert all(v.array.shape == (35, 80, 80) for v in fmri)
    files = _files("mr-fmri-series")
    headers = {f: _header_until(f, 0x00200100) for f in files}
    by_key = {(int(h.TemporalPositionIdentifier), round(_normal_projection(h), 2)): f for f, h in headers.items()}
    positions = sorted({p for _, p in by_key})
    assert len(positions) == 35
    for t, k in ((0, 0), (5, 17), (17, 34)):
        f = by_key[(sorted({tp for tp, _ in by_key})[t], positions[k])]
        np.testing.assert_array_equal(fmri[t].array[k], pydicom.dcmread(f).pixel_array.astype(np.float32))
    assert fmri[0].spacing[0] == pytest.approx(np.median(np.diff(positions)), abs=0.01)
    assert len({v.patient for v in fmri}) == 1 and len({v.series for v in fmri}) == 1
    assert fmri[0].age == 42 and fmri[0].sex == "F"


def test_loaded_images_hold_only_pseudonyms(sagittal, fmri, ct):
    raw = [pydicom.dcmread(_files(n)[0], stop_before_pixels=True)
           for n in ("mr-brain-sagittal", "mr-fmri-series", "ct-chest-jpeg2000")]
    secrets = {str(r.get(k)) for r in raw for k in ("PatientID", "PatientName", "StudyInstanceUID",
                                                      "SeriesInstanceUID", "AccessionNumber") if r.get(k)}
    for img in (sagittal[0], fmri[0], ct[0]):
        fields = (img.patient, img.study, img.series, img.sex, img.modality)
        assert img.patient.startswith("P-") and img.study.startswith("S-") and img.series.startswith("R-")
        assert not any(s in f for s in secrets for f in fields)
    assert sagittal[0].patient != fmri[0].patient != ct[0].patient


def test_nothing_identifying_is_logged(tmp_path, caplog, capfd):
    src = _files("mr-brain-sagittal")[:3]
    raw = pydicom.dcmread(src[0], stop_before_pixels=True)
    with caplog.at_level(logging.DEBUG):
        series, _ = find_dicom_series(src)
        load_series(series[0], DEID)
    out, err = capfd.readouterr()
    text = out + err + caplog.text
    for value in (raw.PatientID, raw.StudyInstanceUID, raw.AccessionNumber, raw.StationName):
        assert str(value) not in text


def test_every_pydicom_data_file_loads_or_is_refused():
    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pydicom-data not installed")
    files = sorted(Path(list(spec.submodule_search_locations)[0], "data").glob("*.dcm"))
    assert files
    series, refused = find_dicom_series(files)
    loaded, reasons = 0, [r.reason for r in refused]
    for s in series:
        try:
            for img in load_series(s, DEID):
                assert np.isfinite(img.array).all() and img.array.ndim in (2, 3)
                assert len(img.spacing) == img.array.ndim
                loaded += 1
        except RefusedInput as r:
            reasons.append(r.reason)
    assert loaded >= 10 and all(reasons)
    grouped = {f for s in series for f in s.files}
    assert len(grouped) + len(refused) == len(files)


# ---------------------------------------------------------------------------------------------
# Refusals, each built in tmp_path from real files
# ---------------------------------------------------------------------------------------------
def _refusal(paths: list[Path], **kw) -> RefusedInput:
    series, refused = find_dicom_series(paths)
    if refused:
        return refused[0]
    with pytest.raises(RefusedInput) as info:
        for s in series:
            load_series(s, DEID, **kw)
    return info.value


def _copy_one(tmp_path: Path, name: str = "one.dcm") -> Path:
    dst = tmp_path / name
    shutil.copy(_files("mr-brain-sagittal")[0], dst)
    return dst


@pytest.mark.parametrize("case, expect", [
    ("empty", "empty file"),
    ("text", "not a DICOM file"),
    ("truncated", "truncated"),
    ("no_pixels", "no pixel data"),
    ("burned_in", "burned-in annotation"),
    ("ultrasound", "modality US"),
    ("transfer_syntax", "unsupported transfer syntax"),
    ("mixed_shapes", "mixed shapes"),
])
def test_refusals(tmp_path, case, expect):
    path = _copy_one(tmp_path)
    paths = [path]
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("patient list\nthis is not an image\n" * 20)
    elif case == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        ds = pydicom.dcmread(path)
        if case == "no_pixels":
            del ds.PixelData
        elif case == "burned_in":
            ds.BurnedInAnnotation = "YES"
        elif case == "ultrasound":
            ds.Modality = "US"
        elif case == "transfer_syntax":
            ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7.8"
        elif case == "mixed_shapes":
            others = _files("mr-brain-sagittal")[1:3]
            for i, f in enumerate(others):
                shutil.copy(f, tmp_path / f"z{i}.dcm")
            paths += [tmp_path / "z0.dcm", tmp_path / "z1.dcm"]
            small = pydicom.dcmread(paths[2])
            arr = small.pixel_array[::2, ::2].copy()
            small.Rows, small.Columns = arr.shape
            small.PixelData = arr.tobytes()
            small.save_as(paths[2])
        ds.save_as(path)
    refusal = _refusal(paths)
    assert expect in refusal.reason
    assert str(path) in str(refusal)  # the line names the file (the series' first file for shapes)
    assert "1449c1d" not in str(refusal)  # never the patient ID


def test_unreadable_file_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can read anything")
    path = _copy_one(tmp_path)
    path.chmod(0)
    try:
        refusal = _refusal([path])
        assert "cannot read file" in refusal.reason
    finally:
        path.chmod(0o600)


def test_policy_switches(tmp_path):
    path = _copy_one(tmp_path)
    ds = pydicom.dcmread(path)
    ds.Modality, ds.BurnedInAnnotation = "US", "YES"
    ds.save_as(path)
    series, _ = find_dicom_series([path])
    with pytest.raises(RefusedInput, match="burned-in"):
        load_series(series[0], DEID, allowed_modalities=frozenset({"US"}))
    imgs = load_series(find_dicom_series([path])[0][0], DEID, allow_burned_in=True,
                       allowed_modalities=frozenset({"US"}))
    assert imgs[0].array.shape == (256, 256)
    with pytest.raises(RefusedInput, match="modality US is refused"):
        load_series(find_dicom_series([path])[0][0], DEID, allow_burned_in=True,
                    allowed_modalities=frozenset({"SC"}))
    # Allowing one default-refused modality does not refuse the ordinary ones.
    mr = _copy_one(tmp_path, "mr.dcm")
    assert load_series(find_dicom_series([mr])[0][0], DEID, allowed_modalities=frozenset({"US"}))


def test_single_2d_image_and_series_picklable(tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    path = _copy_one(tmp_path)
    series, refused = find_dicom_series([tmp_path])  # folders are searched
    assert not refused and isinstance(series[0], DicomSeries)
    # Ingestion hands series to worker processes: load it in one.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        img = pool.submit(load_series, series[0], DEID).result()
    assert len(img) == 1 and img[0].array.shape == (256, 256) and len(img[0].spacing) == 2
    assert img[0].spacing == pytest.approx((0.859375, 0.859375))
    assert not math.isnan(img[0].age)
    assert "1449c1d" not in repr(series[0])


def test_colour_kept_only_when_grey(tmp_path):
    path = _copy_one(tmp_path)
    ds = pydicom.dcmread(path)
    grey = ds.pixel_array
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.uint16)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = rgb.tobytes()
    ds.save_as(path)
    img = load_series(find_dicom_series([path])[0][0], DEID)[0]
    np.testing.assert_array_equal(img.array, grey.astype(np.float32))
    rgb[..., 0] += 3
    ds.PixelData = rgb.tobytes()
    ds.save_as(path)
    with pytest.raises(RefusedInput, match="colour image"):
        load_series(find_dicom_series([path])[0][0], DEID)


def test_missing_file_refused(tmp_path):
    gone = tmp_path / "gone.dcm"
    gone.symlink_to(tmp_path / "nowhere.dcm")
    refusal = _refusal([gone])
    assert "cannot read file" in refusal.reason


def _pydicom_data(name: str) -> Path:
    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pydicom-data not installed")
    return Path(list(spec.submodule_search_locations)[0], "data", name)


def test_multiframe_with_per_frame_positions_is_a_sorted_volume_in_hu():
    path = _pydicom_data("eCT_Supplemental.dcm")  # enhanced CT, 2 frames
    raw = pydicom.dcmread(path)
    shared = raw.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    proj = np.array([np.dot(np.array(f.PlanePositionSequence[0].ImagePositionPatient, float), normal)
                     for f in raw.PerFrameFunctionalGroupsSequence])
    order = np.argsort(proj)
    pvt = shared.PixelValueTransformationSequence[0]
    expected = raw.pixel_array[order] * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
    imgs = load_series(find_dicom_series([path])[0][0], DEID)
    assert len(imgs) == 1 and imgs[0].source_format == "dicom-multiframe"
    np.testing.assert_allclose(imgs[0].array, expected)
    assert imgs[0].array.min() < -900  # air in HU, so the functional-group rescale was applied
    assert imgs[0].spacing[0] == pytest.approx(abs(np.diff(proj)[0]))


def test_multiframe_without_positions_keeps_stored_order():
    path = _pydicom_data("emri_small.dcm")  # 10 frames, no functional groups
    raw = pydicom.dcmread(path)
    imgs = load_series(find_dicom_series([path])[0][0], DEID)
    assert len(imgs) == 1
    np.testing.assert_array_equal(imgs[0].array, raw.pixel_array.astype(np.float32))
    assert imgs[0].spacing[0] == pytest.approx(float(raw.SpacingBetweenSlices))


def test_truncated_slice_refuses_its_series(tmp_path):
    src = _files("mr-brain-sagittal")[:3]
    paths = []
    for i, f in enumerate(src):
        paths.append(tmp_path / f"s{i}.dcm")
        shutil.copy(f, paths[-1])
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) - 5000])  # cut inside the pixel data
    refusal = _refusal(paths)
    assert "truncated" in refusal.reason and str(paths[2]) in str(refusal)
