"""Synthetic-marked DICOM: DX (For Presentation) for 2D cohorts, a CT or MR series for 3D.

pydicom builds the datasets (highdicom has no constructor for these IODs, only for derived
objects); highdicom's `ContributingEquipment` builds the Synthesizing Equipment item. Every
value comes from the study, the cohort context or a UID derived from the seed: no clock, no
host name, nothing from the training data. What the files say about themselves:

- SyntheticData YES, BurnedInAnnotation NO, "SYNTHETIC" in the series description;
- Contributing Equipment Sequence: (109100, DCM, "Synthesizing Equipment") with synthmed's
  version, the model hash, the seed and the sampler settings;
- patient name and ID are the SYN- id; dates are the study's synthetic date (epoch + offset).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from highdicom import ContributingEquipment
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes

from synthmed.errors import InputError
from synthmed.generate.uids import IMPLEMENTATION_UID
from synthmed.generate.writers.base import (NOMINAL_SPACING_MM, Geometry, StudyOutput, Writer,
                                            register_writer)
from synthmed.generate.writers.encoding import ds_text
from synthmed.io.atomic import write_bytes
from synthmed.phantoms.dicom_writer import CT_STORAGE, DX_STORAGE, dicom_date, encode_file, new_dataset

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"

# SNOMED CT codes for the Anatomic Region Sequence the DX IOD requires, by Body Part Examined.
_ANATOMY = {
    "CHEST": ("51185008", "Thorax"),
    "KNEE": ("72696002", "Knee"),
    "HAND": ("85562004", "Hand"),
    "PELVIS": ("12921003", "Pelvis"),
    "SKULL": ("89546000", "Skull"),
    "HEAD": ("69536005", "Head"),
    "BRAIN": ("12738006", "Brain"),
    "ABDOMEN": ("818983003", "Abdomen"),
}
_PAIRED = {"KNEE", "HAND", "FOOT", "ANKLE", "WRIST", "ELBOW", "SHOULDER", "HIP", "BREAST", "EYE",
           "ARM", "LEG", "THIGH", "FOREARM", "CLAVICLE", "FEMUR", "HUMERUS", "EAR"}
# An unknown body part: "Body structure" is the honest top-level code rather than a guess.
_UNKNOWN_ANATOMY = ("123037004", "Body structure")


def _text(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit]


def _synthesizing_equipment(out: StudyOutput) -> Dataset:
    ctx, study = out.ctx, out.study
    s = ctx.sampling
    description = (f"Synthetic image made by synthmed {ctx.synthmed_version}; model sha256 "
                   f"{ctx.model_hash}; cohort seed {ctx.cohort_seed}; study seed {study.seed}; "
                   f"sampler {s.get('sampler', '')}, steps {s.get('steps', '')}, guidance "
                   f"{s.get('guidance_scale', '')}")
    if study.followup_strength is not None:
        description += f"; follow-up of study 0 at strength {study.followup_strength:g}"
    return ContributingEquipment(
        manufacturer="synthmed",
        purpose_of_reference=codes.DCM.SynthesizingEquipment,
        manufacturer_model_name="synthmed generate",
        # LO holds 64 characters: a sha256 in hex exactly fits.
        software_versions=[_text(f"synthmed {ctx.synthmed_version}", 64), _text(ctx.model_hash, 64),
                           f"seed {study.seed}"],
        contribution_description=_text(description, 1024),
    )


def _base(out: StudyOutput, sop_class: str) -> Dataset:
    study, ctx, uids = out.study, out.ctx, out.uids
    ds = new_dataset(sop_class, IMPLEMENTATION_UID, "SYNTHMED")
    ds.SyntheticData = "YES"
    ds.ContributingEquipmentSequence = Sequence([_synthesizing_equipment(out)])
    date = dicom_date(study.date)
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ""  # type 2: no clock value, on purpose
    ds.AccessionNumber = ""
    ds.StudyID = str(study.study_index + 1)
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "SYNTHETIC - not for clinical use"
    ds.SeriesDescription = "SYNTHETIC - synthmed virtual patient"
    ds.Manufacturer = "synthmed"
    ds.ManufacturerModelName = "synthmed generate"
    ds.SoftwareVersions = _text(f"synthmed {ctx.synthmed_version}", 64)
    ds.PatientName = study.patient.patient_id
    ds.PatientID = study.patient.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = study.patient.sex if study.patient.sex in ("F", "M") else ""
    if study.age is not None and study.age == study.age:
        ds.PatientAge = f"{min(int(study.age), 999):03d}Y"
    ds.StudyInstanceUID = uids.study
    ds.SeriesInstanceUID = uids.series
    ds.FrameOfReferenceUID = uids.frame_of_reference
    ds.PositionReferenceIndicator = ""
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    if ctx.body_part:
        ds.BodyPartExamined = _text(ctx.body_part.upper(), 16)
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"  # no real person's features: the audit checks copies
    ds.LossyImageCompression = "00"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def _instance(ds: Dataset, sop_uid: str, number: int) -> None:
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.InstanceNumber = number


def _window(ds: Dataset, out: StudyOutput) -> None:
    # The display window is the training data's normalisation window, [0, 1] of the sample: with
    # PS3.3 C.11.2.1.2's linear function, lo maps to black and hi to white.
    lo, hi = out.encoded.window
    ds.WindowCenter = ds_text((lo + hi) / 2 + 0.5)
    ds.WindowWidth = ds_text(hi - lo + 1)
    ds.VOILUTFunction = "LINEAR"


def _write_dx(out: StudyOutput, folder: Path) -> list[Path]:
    ds = _base(out, DX_STORAGE)
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PatientOrientation = list(out.ctx.patient_orientation)
    ds.ImageLaterality = "U"
    code, meaning = _ANATOMY.get(out.ctx.body_part.upper(), _UNKNOWN_ANATOMY)
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = code, "SCT", meaning
    ds.AnatomicRegionSequence = Sequence([region])
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = ds_text(out.encoded.intercept)
    ds.RescaleSlope = ds_text(out.encoded.slope)
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.DetectorType = ""
    ds.AcquisitionContextSequence = Sequence([])
    dy, dx = out.geometry.spacing
    ds.ImagerPixelSpacing = [ds_text(dy), ds_text(dx)]
    if out.geometry.spacing_known:  # type 1C "if calibrated": a nominal spacing is not
        ds.PixelSpacing = [ds_text(dy), ds_text(dx)]
    _window(ds, out)
    ds.Rows, ds.Columns = out.encoded.stored.shape
    _instance(ds, out.uids.sop(0), 1)
    ds.PixelData = out.encoded.stored.astype("<u2").tobytes()
    path = folder / "0001.dcm"
    write_bytes(path, encode_file(ds))
    return [path]


def _volume_base(out: StudyOutput, sop_class: str, modality: str) -> Dataset:
    ds = _base(out, sop_class)
    ds.Modality = modality
    ds.ImageType = ["DERIVED", "PRIMARY", "AXIAL"]
    ds.PatientPosition = "HFS"
    # Type 2C: present (empty: the side is unknown) unless the body part is unpaired.
    if not out.ctx.body_part or out.ctx.body_part.upper() in _PAIRED:
        ds.Laterality = ""
    dz, dy, dx = out.geometry.spacing
    ds.SliceThickness = ds_text(dz)
    ds.SpacingBetweenSlices = ds_text(dz)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [ds_text(dy), ds_text(dx)]
    ds.Rows, ds.Columns = out.encoded.stored.shape[1:]
    ds.RescaleIntercept = ds_text(out.encoded.intercept)
    ds.RescaleSlope = ds_text(out.encoded.slope)
    _window(ds, out)
    return ds


class _SeriesEncoder:
    """Encodes the slices of one series, re-encoding only what changes from slice to slice.

    In Explicit VR Little Endian a data set's bytes are its elements' encodings in tag order, so
    the constant runs between the varying elements are encoded once; pydicom's `save_as` spends
    ~20 ms per file re-encoding ~80 unchanged elements (measured: benchmarks/bench_writers.py).
    tests/test_generate_writers.py checks the bytes equal `encode_file` of the full data set.
    """

    VARYING = ("SOPInstanceUID", "InstanceNumber", "ImagePositionPatient", "SliceLocation",
               "PixelData")

    def __init__(self, template: Dataset):
        self.meta = template.file_meta
        self.keywords = sorted(self.VARYING, key=tag_for_keyword)
        tags = [tag_for_keyword(k) for k in self.keywords]
        runs: list[Dataset] = [Dataset() for _ in range(len(tags) + 1)]
        for elem in template:
            if elem.tag not in tags:  # run i holds the elements between varying tags i-1 and i
                runs[sum(elem.tag > t for t in tags)].add(elem)
        self.runs = [self._bytes(r) for r in runs]

    @staticmethod
    def _bytes(ds: Dataset) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, ds)
        return fp.getvalue()

    def encode(self, **values) -> bytes:
        meta = FileMetaDataset(self.meta)
        meta.MediaStorageSOPInstanceUID = values["SOPInstanceUID"]
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        fp.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fp, meta, enforce_standard=True)
        parts = [fp.getvalue(), self.runs[0]]
        for keyword, run in zip(self.keywords, self.runs[1:]):
            one = Dataset()
            # 16-bit pixels are OW (what pydicom resolves "OB or OW" to with BitsAllocated 16)
            vr = "OW" if keyword == "PixelData" else dictionary_VR(keyword)
            one.add_new(keyword, vr, values[keyword])
            parts += [self._bytes(one), run]
        return b"".join(parts)


def slice_values(out: StudyOutput, k: int) -> dict:
    x, y, z = out.geometry.slice_position(k)
    return {"SOPInstanceUID": out.uids.sop(k), "InstanceNumber": k + 1,
            "ImagePositionPatient": [ds_text(x), ds_text(y), ds_text(z)], "SliceLocation": ds_text(z),
            "PixelData": out.encoded.stored[k].astype("<u2").tobytes()}


def _write_series(out: StudyOutput, ds: Dataset, folder: Path) -> list[Path]:
    for keyword, value in slice_values(out, 0).items():  # the template holds every element
        setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    encoder = _SeriesEncoder(ds)
    paths = []
    for k in range(out.encoded.stored.shape[0]):
        path = folder / f"{k + 1:04d}.dcm"
        write_bytes(path, encoder.encode(**slice_values(out, k)))
        paths.append(path)
    return paths


def _write_ct(out: StudyOutput, folder: Path) -> list[Path]:
    ds = _volume_base(out, CT_STORAGE, "CT")
    ds.RescaleType = "HU"
    ds.KVP = ""
    return _write_series(out, ds, folder)


def _write_mr(out: StudyOutput, folder: Path) -> list[Path]:
    ds = _volume_base(out, MR_STORAGE, "MR")
    ds.ImageType = ["DERIVED", "PRIMARY", "OTHER"]  # MR needs value 3; "AXIAL" is CT's term
    # The MR Image module's acquisition attributes: there was no acquisition. "RM" (research
    # mode) and empty type 2 values say so rather than inventing a sequence.
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D"
    ds.RepetitionTime = ""
    ds.EchoTime = ""
    ds.EchoTrainLength = ""
    # The MR IOD has no modality LUT: stored values are the normalised image.
    del ds.RescaleIntercept, ds.RescaleSlope
    return _write_series(out, ds, folder)


def _single_slice(write: Callable[[StudyOutput, Path], list[Path]]):
    """A 2D CT or MR model's image (a slice) as a one-slice series of that modality."""
    def write_slice(out: StudyOutput, folder: Path) -> list[Path]:
        stored = out.encoded.stored[None]
        thickness = NOMINAL_SPACING_MM  # a 2D model knows no slice thickness
        geometry = Geometry.for_image(stored.shape, (thickness, *out.geometry.spacing))
        return write(replace(out, encoded=replace(out.encoded, stored=stored), geometry=geometry),
                     folder)
    return write_slice


# By modality and number of spatial dims; a new IOD is one entry here. Computed radiography
# (CR) training images give DX output: both are projection radiographs, and DX For Presentation
# is the IOD that carries a display-ready synthetic radiograph.
_IODS: dict[tuple[str, int], Callable[[StudyOutput, Path], list[Path]]] = {
    ("DX", 2): _write_dx, ("CR", 2): _write_dx, ("CT", 3): _write_ct, ("MR", 3): _write_mr,
    ("CT", 2): _single_slice(_write_ct), ("MR", 2): _single_slice(_write_mr),
}


@register_writer
class DicomWriter(Writer):
    name = "dicom"

    def check(self, out: StudyOutput) -> None:
        key = (out.ctx.modality, out.ctx.spatial_dims)
        if key not in _IODS:
            known = ", ".join(f"{m} ({d}D)" for m, d in _IODS)
            raise InputError(f"no DICOM writer for modality {key[0]} in {key[1]}D; known: {known}")

    def write(self, out: StudyOutput, root: Path) -> str:
        self.check(out)
        key = (out.ctx.modality, out.ctx.spatial_dims)
        folder = root / self.name / out.folder
        paths = _IODS[key](out, folder)
        target = paths[0] if key[0] in ("DX", "CR") else folder
        return target.relative_to(root).as_posix()
