"""The per-slice fast path of `load_series` (slices whose decisive header values equal the
first slice's) must give exactly what the full per-slice path gives, and must not skip a check
for a slice that differs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

import synthmed.io.dicom as dicom
from synthmed.deid import Deidentifier
from synthmed.io.dicom import find_dicom_series, load_series
from synthmed.io.types import RefusedInput

from conftest import shared_path

DEID = Deidentifier(b"f" * 32)


def _copies(tmp_path: Path, n: int) -> list[Path]:
    src = sorted(p for p in shared_path("dicom", "mr-brain-sagittal").iterdir() if p.is_file())[:n]
    out = []
    for i, f in enumerate(src):
        out.append(tmp_path / f"s{i:02d}.dcm")
        shutil.copy(f, out[-1])
    return out


def _load(paths: list[Path]):
    series, refused = find_dicom_series(paths)
    assert not refused and len(series) == 1
    return load_series(series[0], DEID)


def test_fast_and_full_paths_agree(tmp_path, monkeypatch):
    paths = _copies(tmp_path, 16)
    taken = []
    original = dicom._FastSlices.read

    def counted(self, *a):
        got = original(self, *a)
        taken.append(got is not None)
        return got

    monkeypatch.setattr(dicom._FastSlices, "read", counted)
    fast = _load(paths)
    assert taken == [True] * (len(paths) - 1)  # the fast path really served slices 2..n
    monkeypatch.setattr(dicom._FastSlices, "for_series", classmethod(lambda cls, *a: None))
    full = _load(paths)
    assert len(fast) == len(full) == 1
    assert fast[0].array.shape == (16, 256, 256)
    np.testing.assert_array_equal(fast[0].array, full[0].array)
    assert fast[0].spacing == full[0].spacing
    assert (fast[0].patient, fast[0].study, fast[0].series) == (full[0].patient, full[0].study, full[0].series)


def test_slice_with_other_rescale_is_rescaled_with_its_own(tmp_path):
    paths = _copies(tmp_path, 5)
    ds = pydicom.dcmread(paths[3])
    raw = ds.pixel_array.astype(np.float32)
    ds.RescaleSlope, ds.RescaleIntercept = "2", "10"
    ds.save_as(paths[3])
    normal_proj = []
    for p in paths:
        h = pydicom.dcmread(p, stop_before_pixels=True)
        iop = np.array(h.ImageOrientationPatient, float)
        normal_proj.append(float(np.dot(np.array(h.ImagePositionPatient, float), np.cross(iop[:3], iop[3:]))))
    (vol,) = _load(paths)
    k = int(np.argsort(normal_proj).tolist().index(3))  # where slice 3 lands along the normal
    np.testing.assert_array_equal(vol.array[k], raw * 2 + 10)


def test_policy_still_checked_on_a_differing_slice(tmp_path):
    paths = _copies(tmp_path, 4)
    ds = pydicom.dcmread(paths[2])
    ds.BurnedInAnnotation = "YES"
    ds.save_as(paths[2])
    series, _ = find_dicom_series(paths)
    with pytest.raises(RefusedInput, match="burned-in"):
        load_series(series[0], DEID)


def test_monochrome1_slices_are_each_flipped(tmp_path):
    paths = _copies(tmp_path, 4)
    raws = []
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.PhotometricInterpretation = "MONOCHROME1"
        ds.save_as(p)
        h = pydicom.dcmread(p)
        iop = np.array(h.ImageOrientationPatient, float)
        proj = float(np.dot(np.array(h.ImagePositionPatient, float), np.cross(iop[:3], iop[3:])))
        raws.append((proj, h.pixel_array.astype(np.float32) * float(h.get("RescaleSlope", 1) or 1)
                     + float(h.get("RescaleIntercept", 0) or 0)))
    raws.sort(key=lambda r: r[0])
    (vol,) = _load(paths)
    for k, (_, raw) in enumerate(raws):
        np.testing.assert_array_equal(vol.array[k], (raw.max() + raw.min()) - raw)
