"""DICOM pixels: the rest of each file after the scan's header, decoding, modality LUT /
rescale, colour reduction, and the per-slice fast path for uniform native series."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset
from pydicom.filereader import read_dataset
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import UID

from synthmed.deid.dicom_deid import quiet_pydicom
from synthmed.io.dicom.geometry import _floats, _shape_signature
from synthmed.io.dicom.policy import _transfer_syntax, _ts_name
from synthmed.io.dicom.scan import HeaderCache, _text, _truncated, header_number
from synthmed.io.types import BrokenFile, RefusedInput

def _read_full(path: Path, headers: HeaderCache | None = None) -> Dataset:
    """The whole dataset; continues from the scan's partial header when `headers` holds it."""
    cached = headers.pop(path) if headers is not None else None
    try:
        with quiet_pydicom() as caught:
            st = path.stat()
            if cached is not None and cached[2:] == (st.st_mtime_ns, st.st_size):
                ds, offset = cached[0], cached[1]
                implicit, little = ds.original_encoding
                with open(path, "rb") as fp:
                    fp.seek(offset)
                    rest = read_dataset(fp, bool(implicit), bool(little),
                                        parent_encoding=ds.original_character_set)
                # Raw elements straight into a new dataset: `Dataset.update` would convert
                # every value, which costs more than parsing the header again.
                elements = dict(ds.items())
                elements.update(rest.items())
                charset = ds.original_character_set
                ds = FileDataset(path, elements, preamble=ds.preamble, file_meta=ds.file_meta,
                                 is_implicit_VR=bool(implicit), is_little_endian=bool(little))
                ds.set_original_encoding(bool(implicit), bool(little), charset)
            else:
                ds = pydicom.dcmread(path, force=True)
    except OSError as err:
        raise BrokenFile(path, f"cannot read file ({err.strerror or type(err).__name__})") from None
    except Exception as err:
        raise BrokenFile(path, f"truncated or corrupt DICOM file ({type(err).__name__})") from None
    if _truncated(caught):
        raise BrokenFile(path, "truncated file (data ends early)")
    return ds


def _decoded(ds: Dataset, path: Path, rescale: bool = True) -> tuple[np.ndarray, float, float]:
    """Decoded pixels plus the linear rescale (slope, intercept) still to apply.

    The rescale is returned rather than applied so that slices can be written once, converted
    and rescaled, straight into their place in the volume. Colour is reduced or refused here;
    Modality LUT sequences and MONOCHROME1 are resolved here (slope 1, intercept 0).
    """
    photometric = _text(ds, "PhotometricInterpretation").upper()
    if photometric == "PALETTE COLOR":
        raise RefusedInput(path, "palette colour image (pseudo-colour) is not supported")
    try:
        arr = ds.pixel_array
    except Exception as err:
        msg = str(err)
        if "less than expected" in msg or "no pixel data" in msg.lower():
            raise BrokenFile(path, "truncated file (pixel data shorter than the image size)") from None
        # The decoder's own message is long (the RLE one runs over several sentences) and may
        # quote header values: the reason names the syntax and the kind of error only.
        raise RefusedInput(path, f"cannot decode pixel data ({_ts_name(_transfer_syntax(ds))}, "
                                 f"{type(err).__name__})") from None
    if header_number(ds, "SamplesPerPixel", 1, path, int) > 1:
        # pydicom returns RGB (YBR converted) with channels last. Within 2 grey levels: the
        # YBR-to-RGB conversion of a grey image rounds unevenly.
        a = arr.astype(np.int32)
        if max(np.abs(a[..., 0] - a[..., 1]).max(), np.abs(a[..., 0] - a[..., 2]).max()) > 2:
            shown = photometric if photometric in _COLOUR_CODES else "RGB"  # a header value: only known codes
            raise RefusedInput(path, f"colour image ({shown}) is not supported: "
                                     "synthmed models grayscale images")
        return arr[..., 0], 1.0, 0.0
    slope, intercept = 1.0, 0.0
    if rescale and "ModalityLUTSequence" in ds:
        arr = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    elif rescale:
        slope = header_number(ds, "RescaleSlope", 1.0, path) or 1.0
        intercept = header_number(ds, "RescaleIntercept", 0.0, path)
    if photometric == "MONOCHROME1":
        # Minimum means white: flip so that brighter always means more signal / attenuation.
        out = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        return (out.max() + out.min()) - out, 1.0, 0.0
    return arr, slope, intercept


_COLOUR_CODES = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT",
                           "YBR_RCT", "HSV", "ARGB", "CMYK"})


def _write_rescaled(dst: np.ndarray, arr: np.ndarray, slope: float, intercept: float) -> None:
    dst[...] = arr  # the one conversion to float32
    if slope != 1:
        dst *= np.float32(slope)
    if intercept:
        dst += np.float32(intercept)


def _pixels(ds: Dataset, path: Path, rescale: bool = True) -> np.ndarray:
    """Decoded pixels in modality units (HU for CT), float32."""
    arr, slope, intercept = _decoded(ds, path, rescale)
    out = np.empty(arr.shape, dtype=np.float32)
    _write_rescaled(out, arr, slope, intercept)
    return out



# Per-slice fast path for the volume loop. On small uncompressed slices (MR) the cost of a slice
# is dominated by fixed per-file work, not by pixels: parsing ~45 header elements after Columns
# (Siemens CSA private groups among them), converting ~20 values for the shape, policy and
# rescale checks, and `Dataset.pixel_array`'s bookkeeping. Slices of one series almost always
# carry byte-identical values for everything that decides shape, policy, decoding and rescale,
# so a slice whose raw values equal the first slice's reuses the first slice's checks and
# decoding options; any difference (or anything unusual) sends it through the full path.
_REST_TAGS = [0x00280100, 0x00280101, 0x00280102, 0x00280103, 0x00280301, 0x00281052,
              0x00281053, 0x00281054, 0x00283000, 0x7FE00001, 0x7FE00002, 0x7FE00008,
              0x7FE00009, 0x7FE00010]
# Raw values that must equal the first slice's: modality, image pixel module, burned-in
# annotation, rescale, modality LUT (presence) and the pixel data element kinds.
_KEY_TAGS = (0x00080060, 0x00280002, 0x00280004, 0x00280006, 0x00280008, 0x00280010,
             0x00280011, 0x00280100, 0x00280101, 0x00280102, 0x00280103, 0x00280301,
             0x00281052, 0x00281053, 0x00281054, 0x00283000, 0x7FE00008, 0x7FE00009)
_NATIVE_LE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})


def _elem(ds: Dataset, tag: int):
    """The stored (raw or converted) element, or None. A plain dict look-up: `get_item` and
    `in` normalise the tag first, which costs more than the look-up on this per-slice path
    (`_dict` is also what pydicom's own `as_pixel_options` reads)."""
    return ds._dict.get(tag)


def _raw_value(ds: Dataset, tag: int):
    elem = _elem(ds, tag)
    if elem is None:
        return None
    value = elem.value
    return value if isinstance(value, (bytes, str, int, float, type(None))) else repr(value)


def _slice_key(head: Dataset, rest: Dataset) -> tuple:
    meta = getattr(head, "file_meta", None)
    ts = _raw_value(meta, 0x00020010) if meta is not None else None
    inner = rest._dict
    return (ts, *(_raw_value(rest if t in inner else head, t) for t in _KEY_TAGS))


def _raw_strings(ds: Dataset, tag: int) -> list[str] | None:
    elem = _elem(ds, tag)
    if elem is None:
        return None
    value = elem.value
    if isinstance(value, bytes):  # DS / IS text, the same bytes in every transfer syntax
        return value.decode("ascii", "replace").strip("\x00 ").split("\\")
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, pydicom.multival.MultiValue)) else [str(value)]


def _raw_number(ds: Dataset, tag: int) -> float:
    values = _raw_strings(ds, tag)
    try:
        return float(values[0]) if values and values[0].strip() else math.inf
    except ValueError:
        return math.inf  # missing or unreadable sorts last, as `_num`


class _FastSlices:
    """Reads slices 2..n of a single-frame, native little-endian series (see `_REST_TAGS`)."""

    def __init__(self, key: tuple, options: dict, headers: HeaderCache | None = None):
        self.key, self.options, self.headers = key, options, headers
        self.decoder = get_decoder(options["transfer_syntax_uid"])
        self.slope, self.intercept = 1.0, 0.0

    @classmethod
    def for_series(cls, first: Dataset, key: tuple, ts: UID,
                   headers: HeaderCache | None = None) -> "_FastSlices | None":
        # MONOCHROME1 is flipped per slice and colour reduced per slice in `_decoded`: those
        # keep the full path.
        if (str(ts) not in _NATIVE_LE or 0x7FE00010 not in first or 0x00283000 in first
                or _shape_signature(first)[2:] != (1, 1)
                or _text(first, "PhotometricInterpretation").upper() != "MONOCHROME2"):
            return None
        elem = first[0x7FE00010]
        options = as_pixel_options(first, transfer_syntax_uid=ts, pixel_keyword="PixelData",
                                   pixel_vr=elem.VR if elem.VR in ("OB", "OW") else "OW")
        return cls(key, options, headers)

    def read(self, path: Path, caught: list) -> tuple[np.ndarray, np.ndarray | None, tuple] | None:
        """(pixels, position, order key) of one slice, or None to take the full path."""
        cached = self.headers.pop(path) if self.headers is not None else None
        if cached is None:
            return None
        head, offset, mtime, size = cached
        start = len(caught)
        try:
            with open(path, "rb") as fp:
                st = os.fstat(fp.fileno())
                if (st.st_mtime_ns, st.st_size) != (mtime, size):
                    return None
                implicit, little = head.original_encoding
                fp.seek(offset)
                # Elements not in _REST_TAGS are stepped over, not parsed into values.
                rest = read_dataset(fp, bool(implicit), bool(little), specific_tags=_REST_TAGS,
                                    parent_encoding=head.original_character_set)
        except OSError as err:
            raise BrokenFile(path, f"cannot read file ({err.strerror or type(err).__name__})") from None
        except Exception as err:
            raise BrokenFile(path, f"truncated or corrupt DICOM file ({type(err).__name__})") from None
        if _truncated(caught[start:]):
            raise BrokenFile(path, "truncated file (data ends early)")
        pixels = _elem(rest, 0x7FE00010)
        if (pixels is None or not isinstance(pixels.value, bytes)
                or _slice_key(head, rest) != self.key):
            self.headers.put_raw(path, cached)  # the full path reads it again from the header on
            return None
        try:
            arr = self.decoder.as_array(pixels.value, validate=True, **self.options)[0]
        except ValueError as err:
            if "less than expected" in str(err):
                raise BrokenFile(path, "truncated file (pixel data shorter than the image size)") from None
            return None  # let the full path say what is wrong
        position = _raw_strings(head, 0x00200032)
        order = (_raw_number(head, 0x00200100), _raw_number(head, 0x00200012), _raw_number(head, 0x00200013))
        return arr, (None if position is None else _floats(position, 3)), order



def _pixels_multiframe(ds: Dataset, path: Path) -> np.ndarray:
    """Like `_pixels`, but with per-frame rescale from functional groups when present."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    if "RescaleSlope" in ds or (per_frame is None and shared is None):
        return _pixels(ds, path)
    shared_item = shared[0] if shared else None
    arr = _pixels(ds, path, rescale=False)
    nframes = header_number(ds, "NumberOfFrames", 1, path, int) or 1

    def _pvt(item):
        if item is not None and "PixelValueTransformationSequence" in item and item.PixelValueTransformationSequence:
            t = item.PixelValueTransformationSequence[0]
            return (header_number(t, "RescaleSlope", 1.0, path) or 1.0,
                    header_number(t, "RescaleIntercept", 0.0, path))
        return None

    base = _pvt(shared_item)
    if nframes == 1 or arr.ndim < 3:
        t = base or (per_frame is not None and len(per_frame) and _pvt(per_frame[0])) or None
        return arr * t[0] + t[1] if t else arr
    for f in range(min(nframes, arr.shape[0])):
        t = (per_frame is not None and f < len(per_frame) and _pvt(per_frame[f])) or base
        if t:
            arr[f] = arr[f] * t[0] + t[1]
    return arr
