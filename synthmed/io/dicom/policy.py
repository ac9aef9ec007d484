"""What DICOM is refused before its pixels are used: modality, burned-in text, decodability."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from synthmed.io.dicom.scan import _text
from synthmed.io.types import BrokenFile, RefusedInput

# Modalities refused unless listed in `allowed_modalities`: ultrasound and secondary/other
# captures are photographs of screens more often than not (burned-in text, annotations,
# non-physical units).
DEFAULT_REFUSED_MODALITIES = frozenset({"US", "SC", "OT"})
# Not pictures of anatomy: segmentations, dose grids, structured reports, presentation states.
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "RTIMAGE", "PR",
                                  "KO", "SR", "REG", "DOC", "FID", "PLAN", "RWV", "AU", "ECG", "HD"})
# Projection images: several files of one series are several 2D images, never a volume.
PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "XA", "RF", "IO", "PX", "RG", "DR"})
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloatPixelData


def _ts_name(ts: UID) -> str:
    return ts.name if ts.is_transfer_syntax else f"unknown transfer syntax {ts}"


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    return UID(str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2") if meta is not None else "1.2.840.10008.1.2"))


def _check_decodable(ds: Dataset, path: Path) -> None:
    if not any(t in ds for t in _PIXEL_TAGS):
        raise RefusedInput(path, "no pixel data (not an image)")
    ts = _transfer_syntax(ds)
    if 0x7FE00010 in ds and ts.is_transfer_syntax and not ts.is_compressed:
        # Native pixels: a cut-off file shows as pixel data shorter than the image size.
        try:
            expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1)
                        * int(ds.get("SamplesPerPixel", 1) or 1) * int(ds.BitsAllocated)) // 8
            actual = len(ds.PixelData)
        except (AttributeError, TypeError, ValueError):
            return  # let the decoder say what is wrong
        if actual < expected:
            raise BrokenFile(path, f"truncated file (pixel data is {actual} of {expected} bytes)")
        return
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise RefusedInput(path, f"unsupported transfer syntax ({_ts_name(ts)})") from None
    if not decoder.is_available:
        raise RefusedInput(path, f"no decoder installed for {_ts_name(ts)}") from None


def _refuse_by_policy(ds: Dataset, path: Path, allow_burned_in: bool, allowed: frozenset[str] | None) -> None:
    """`allowed` lists modalities refused by default (US, SC, OT, SEG, ...) to accept anyway;
    every other modality is accepted whatever it holds."""
    modality = _text(ds, "Modality").upper()
    if allowed and modality in {m.upper() for m in allowed}:
        pass
    elif modality in NON_IMAGE_MODALITIES:
        raise RefusedInput(path, f"modality {modality} is not an anatomical image (segmentation, dose, "
                                 "report or presentation object)")
    elif modality in DEFAULT_REFUSED_MODALITIES:
        raise RefusedInput(path, f"modality {modality} is refused by default (burned-in text is likely; "
                                 "allow it explicitly to ingest it)")
    if not allow_burned_in and _text(ds, "BurnedInAnnotation").upper() == "YES":
        raise RefusedInput(path, "burned-in annotation YES (text in the pixels may identify the patient)")


