"""Turn phantom pixels plus a fake identity into real DICOM files (pydicom).

Headers carry the identifying fields a hospital export carries (names, IDs, dates, accession
numbers, sites, physicians, free text, private tags), all invented, so that reading phantoms
exercises the de-identifier exactly as real data would. UIDs are derived from the seed, and no
value comes from the wall clock, so the same seed writes the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from synthmed.io.atomic import write_bytes
from synthmed.phantoms.identity import Identity, Site

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"   # Digital X-Ray Image Storage - For Presentation
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PRIVATE_GROUP_RIS = 0x0011
PRIVATE_CREATOR_RIS = "SYNTHMED PHANTOM RIS"
PRIVATE_GROUP_VENDOR = 0x0019
PRIVATE_CREATOR_VENDOR = "ACME IMAGING 1.0"

# Every one of these is present and non-empty in every phantom file: the de-identifier must deal
# with each (plus the two private blocks above).
IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientAge", "PatientSex", "PatientAddress",
    "OtherPatientIDs", "PatientTelephoneNumbers", "StudyDate", "SeriesDate", "AcquisitionDate",
    "ContentDate", "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime",
    "AccessionNumber", "StudyID", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "ReferringPhysicianName", "PerformingPhysicianName",
    "OperatorsName", "StationName", "DeviceSerialNumber", "StudyDescription",
    "SeriesDescription", "ImageComments", "StudyInstanceUID", "SeriesInstanceUID",
    "SOPInstanceUID", "FrameOfReferenceUID",
)

_IMPLEMENTATION_UID = "2.25.164848062938251218931370349367786317870"  # fixed: synthmed phantoms


def make_uid(seed: int, *parts: object) -> str:
    """A deterministic UID under the 2.25 (UUID-derived) root, unique per seed and parts."""
    digest = hashlib.sha256(("synthmed-phantom|" + "|".join(map(str, (seed, *parts)))).encode())
    return "2.25." + str(int.from_bytes(digest.digest()[:16], "big"))


@dataclass(frozen=True)
class StudyHeader:
    """Per-study header values shared by every file of the study."""

    date: dt.date
    time: dt.time
    age: int
    accession: str
    study_id: str
    study_uid: str
    series_uid: str
    frame_uid: str
    referring: str
    performing: str
    operator: str
    description: str
    series_description: str
    comment: str
    site: Site


def dicom_date(d: dt.date) -> str:
    """A date as a DICOM DA value (YYYYMMDD)."""
    return d.strftime("%Y%m%d")


def _tm(t: dt.time, plus_seconds: int = 0) -> str:
    total = min(t.hour * 3600 + t.minute * 60 + t.second + plus_seconds, 86399)
    return f"{total // 3600:02d}{(total // 60) % 60:02d}{total % 60:02d}"


def new_dataset(sop_class: str, implementation_uid: str, version_name: str) -> Dataset:
    """An empty uncompressed (explicit VR little endian) dataset of `sop_class` with its file meta."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = implementation_uid
    meta.ImplementationVersionName = version_name
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    return ds


def _base(person: Identity, study: StudyHeader, sop_class: str, modality: str) -> Dataset:
    ds = new_dataset(sop_class, _IMPLEMENTATION_UID, "SYNTHMED_PHANTOM")
    ds.SpecificCharacterSet = "ISO_IR 100"  # Latin-1: names such as Müller or José
    ds.Modality = modality
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = dicom_date(study.date)
    ds.StudyTime = _tm(study.time)
    ds.SeriesTime = _tm(study.time, 40)
    ds.AcquisitionTime = _tm(study.time, 55)
    ds.ContentTime = _tm(study.time, 61)
    ds.AccessionNumber = study.accession
    ds.StudyID = study.study_id
    ds.InstitutionName = study.site.name
    ds.InstitutionAddress = study.site.address
    ds.InstitutionalDepartmentName = study.site.department
    ds.StationName = study.site.station
    ds.DeviceSerialNumber = study.site.serial
    ds.Manufacturer = study.site.manufacturer
    ds.ManufacturerModelName = study.site.model
    ds.SoftwareVersions = "4.2.1"
    ds.ReferringPhysicianName = study.referring
    ds.PerformingPhysicianName = study.performing
    ds.OperatorsName = study.operator
    ds.StudyDescription = study.description
    ds.SeriesDescription = study.series_description
    ds.ImageComments = study.comment
    ds.PatientName = person.dicom_name
    ds.PatientID = person.patient_id
    ds.IssuerOfPatientID = study.site.name
    ds.OtherPatientIDs = person.other_ids
    ds.PatientBirthDate = dicom_date(person.birth_date)
    ds.PatientSex = person.sex
    ds.PatientAge = f"{study.age:03d}Y"
    ds.PatientAddress = person.address
    ds.PatientTelephoneNumbers = person.phone
    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = study.series_uid
    ds.FrameOfReferenceUID = study.frame_uid
    ds.PositionReferenceIndicator = ""
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.BurnedInAnnotation = "NO"
    ds.BodyPartExamined = "CHEST"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"

    ris = ds.private_block(PRIVATE_GROUP_RIS, PRIVATE_CREATOR_RIS, create=True)
    ris.add_new(0x10, "LO", person.display_name)
    ris.add_new(0x11, "LO", person.internal_id)
    ris.add_new(0x12, "LT", f"Order for {person.display_name} (MRN {person.patient_id}, "
                            f"DOB {person.birth_date.isoformat()}), acc {study.accession}")
    vendor = ds.private_block(PRIVATE_GROUP_VENDOR, PRIVATE_CREATOR_VENDOR, create=True)
    vendor.add_new(0x10, "LO", study.site.serial)
    vendor.add_new(0x11, "SH", study.site.station)
    return ds


def _set_instance(ds: Dataset, sop_uid: str, number: int) -> None:
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.InstanceNumber = number


def encode_file(ds: Dataset) -> bytes:
    """The bytes of a valid DICOM Part 10 file (shared with the cohort writers in generate/)."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)  # 128-byte preamble, DICM, valid file meta
    return buf.getvalue()


def write_radiograph(path: Path, pixels: np.ndarray, person: Identity, study: StudyHeader,
                     sop_uid: str, pixel_mm: float, exposure_mas: float) -> None:
    """One 12-bit MONOCHROME2 frontal chest radiograph (CR or DX, as the site does it)."""
    modality = study.site.cxr_modality
    ds = _base(person, study, DX_STORAGE if modality == "DX" else CR_STORAGE, modality)
    _set_instance(ds, sop_uid, 1)
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]  # PA view: rows run to the patient's left, columns down
    ds.ImageLaterality = "U"
    if modality == "DX":  # the DX IOD's extra type 1 attributes
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.RescaleType = "US"
        ds.PresentationLUTShape = "IDENTITY"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = 1
        ds.DetectorType = "SCINTILLATOR"
    ds.KVP = 120
    ds.ExposureInuAs = int(round(exposure_mas * 1000))
    ds.DistanceSourceToDetector = 1800
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [f"{pixel_mm:.4f}", f"{pixel_mm:.4f}"]
    ds.ImagerPixelSpacing = [f"{pixel_mm:.4f}", f"{pixel_mm:.4f}"]
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.LossyImageCompression = "00"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    write_bytes(path, encode_file(ds))


@dataclass(frozen=True)
class CtGeometry:
    pixel_mm: float
    slice_mm: float
    origin: tuple[float, float, float]  # ImagePositionPatient of slice 0 (the most cranial)
    intercept: int


def write_ct_series(folder: Path, volume_hu: np.ndarray, person: Identity, study: StudyHeader,
                    geometry: CtGeometry, seed: int, uid_parts: tuple) -> list[Path]:
    """One axial series, one file per slice, named by SOP Instance UID so that file-name order
    says nothing about anatomy: a reader must sort by ImagePositionPatient."""
    ds = _base(person, study, CT_STORAGE, "CT")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientPosition = "HFS"
    ds.KVP = 120
    ds.XRayTubeCurrent = 200
    ds.ConvolutionKernel = "B30f"
    ds.SliceThickness = f"{geometry.slice_mm:g}"
    ds.SpacingBetweenSlices = f"{geometry.slice_mm:g}"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [f"{geometry.pixel_mm:.4f}", f"{geometry.pixel_mm:.4f}"]
    ds.Rows, ds.Columns = volume_hu.shape[1:]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = geometry.intercept
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = [40, -600]
    ds.WindowWidth = [400, 1500]
    stored = np.clip(np.round(volume_hu) - geometry.intercept, -32768, 32767).astype("<i2")
    x0, y0, z0 = geometry.origin
    paths = []
    for i in range(volume_hu.shape[0]):
        sop_uid = make_uid(seed, *uid_parts, "sop", i)
        _set_instance(ds, sop_uid, i + 1)  # numbered head to feet, as scanners do
        z = z0 - i * geometry.slice_mm     # +z points to the head, so z falls slice by slice
        ds.ImagePositionPatient = [f"{x0:.3f}", f"{y0:.3f}", f"{z:.3f}"]
        ds.SliceLocation = f"{z:.3f}"
        ds.PixelData = stored[i].tobytes()
        path = folder / f"{sop_uid}.dcm"
        write_bytes(path, encode_file(ds))
        paths.append(path)
    return paths
