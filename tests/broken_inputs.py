"""Builds a corpus of broken (and a few good) inputs in a temporary folder, for ingestion tests.

Every broken file is made from scratch with pydicom / nibabel / plain bytes, so the test does not
depend on shared data. `build_corpus` returns the folder and, per case, the file(s) that must be
refused and a word the refusal reason must contain.

Tests run as root, so `chmod 000` does not stop reads; an unreadable file is simulated by a
broken symbolic link and by a folder named like an image file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PATIENT_ID = "BROKEN-PATIENT-4711"
PATIENT_NAME = "Doe^Jane^Broken"
MARK = "case7-"  # every file name starts with it: outputs must not contain it


def _uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.8.498.{n}"


def write_ct_slice(path: Path, *, z: float, series: int, instance: int, rows: int = 32,
                   cols: int = 32, pixels: bool = True, transfer_syntax: str | None = None,
                   seed: int = 0) -> Path:
    """A small valid CT slice (16-bit, HU = raw - 1024) with identifying header values."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = _uid(10_000 * series + instance)
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid(1)
    ds.SeriesInstanceUID = _uid(100 + series)
    ds.FrameOfReferenceUID = _uid(200 + series)
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19470203"
    ds.PatientSex = "F"
    ds.StudyDate = "20190304"
    ds.Modality = "CT"
    ds.SeriesNumber = series
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, float(z)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 2.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    if pixels:
        rng = np.random.default_rng(seed + instance)
        arr = rng.integers(0, 2000, size=(rows, cols), dtype=np.uint16)
        if transfer_syntax is None:
            ds.PixelData = arr.tobytes()
        else:  # an encapsulated stream no installed decoder understands
            from pydicom.encaps import encapsulate
            ds.PixelData = encapsulate([arr.tobytes()])
            ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclass
class Case:
    name: str
    files: list[Path]   # the refusal entry must name (keyed) one of these
    reason: str         # a word the reason must contain (lower case)


@dataclass
class Corpus:
    root: Path
    cases: list[Case]
    good_pngs: list[Path]
    good_series: list[Path]
    bad_metadata: Path


def build_corpus(tmp: Path, *, with_good: bool = True) -> Corpus:
    from PIL import Image
    import nibabel as nib

    root = tmp / "corpus"
    root.mkdir(parents=True)
    cases: list[Case] = []

    # A DICOM cut off in the middle of its pixel data.
    full = write_ct_slice(root / "dicom" / "case7-truncated.dcm", z=0, series=1, instance=1, rows=64, cols=64)
    data = full.read_bytes()
    full.write_bytes(data[: len(data) - 4000])
    cases.append(Case("truncated DICOM", [full], ""))

    cases.append(Case("DICOM without pixel data",
                      [write_ct_slice(root / "dicom" / "case7-nopixels.dcm", z=0, series=2, instance=1,
                                      pixels=False)], "pixel"))
    empty = root / "dicom" / "case7-empty.dcm"
    empty.write_bytes(b"")
    cases.append(Case("zero-byte DICOM", [empty], "empty"))
    empty_png = root / "images" / "case7-empty.png"
    empty_png.parent.mkdir(parents=True)
    empty_png.write_bytes(b"")
    cases.append(Case("zero-byte PNG", [empty_png], ""))
    notes = root / "dicom" / "case7-notes.dcm"
    notes.write_text("This is a text file with a .dcm name, not an image.\n" * 20)
    cases.append(Case("non-image with a .dcm name", [notes], "not a dicom"))
    # An unknown suffix is a DICOM candidate (DICOM names are free-form) and, not being DICOM,
    # is refused; the suffix, which could be a name, must not reach the report.
    odd = root / "case7-Doe.Jane"
    odd.write_bytes(b"\x00\x01 binary junk " * 10)
    cases.append(Case("unknown suffix, not DICOM", [odd], "not a dicom"))
    cases.append(Case("unsupported transfer syntax",
                      [write_ct_slice(root / "dicom" / "case7-mpeg2.dcm", z=0, series=3, instance=1,
                                      transfer_syntax="1.2.840.10008.1.2.4.100")], "transfer syntax"))
    mixed = [write_ct_slice(root / "dicom" / "mixed" / f"case7-m{i}.dcm", z=2.0 * i, series=4, instance=i + 1,
                            rows=32 + 16 * (i == 1), cols=32 + 16 * (i == 1)) for i in range(3)]
    cases.append(Case("series with mixed shapes", mixed, "shape"))
    nan_nii = root / "nifti" / "case7-nan.nii.gz"
    nan_nii.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), np.nan, np.float32), np.eye(4)), str(nan_nii))
    cases.append(Case("NIfTI full of NaN", [nan_nii], "nan"))
    link = root / "nifti" / "case7-gone.nii.gz"
    os.symlink(root / "does-not-exist.nii.gz", link)
    cases.append(Case("unreadable (broken symbolic link)", [link], "unreadable"))
    folder = root / "images" / "case7-folder.png"
    folder.mkdir()
    cases.append(Case("unreadable (folder named like a file)", [folder], "unreadable"))

    (root / "case7-README.txt").write_text("not an image\n")
    bad_meta = root / "bad_metadata.csv"
    bad_meta.write_text("file,age\nimages/case7-good0.png,40\n")

    good_pngs: list[Path] = []
    good_series: list[Path] = []
    if with_good:
        rng = np.random.default_rng(0)
        for i in range(2):
            p = root / "images" / f"case7-good{i}.png"
            Image.fromarray(rng.integers(0, 255, size=(40, 40), dtype=np.uint8)).save(p)
            good_pngs.append(p)
        good_series = [write_ct_slice(root / "dicom" / "good" / f"case7-g{i}.dcm", z=3.0 * i, series=5,
                                      instance=i + 1) for i in range(3)]
    return Corpus(root, cases, good_pngs, good_series, bad_meta)
