"""DICOM reading: find series from headers, then load each series as de-identified images.

Two passes, and every byte is parsed once:
1. `find_dicom_series` reads only the start of each header (up to the image size tags, before
   the large private groups and the pixel data) to refuse what is not DICOM and to group files
   by series. The partial headers are cached in memory (bounded).
2. `load_series` continues each file from where the scan stopped (or reads it whole when the
   cache no longer holds it), decodes the pixels, applies the modality LUT (CT in HU) and
   assembles slices into volumes ordered along the slice normal (cross product of the
   ImageOrientationPatient rows). Repeated positions (fMRI, perfusion) become one volume per
   time point; multi-frame files with per-frame positions become volumes, cine multi-frames
   (frame time pointer) become 2D frames, other multi-frames a volume in stored order; projection
   images (CR, DX, MG, ...) and single files stay 2D. Slices 2..n of a native (uncompressed)
   single-frame series whose shape, policy, pixel-module and rescale values are byte-identical
   to the first slice's skip re-checking and re-converting them (see `_FastSlices`); any slice
   that differs takes the full path.

De-identification: the header whose identity values are used (patient, study, series, age, sex)
is run through `Deidentifier.deidentify` before any value is taken from it. The other slices of
the series are only asked for geometry, ordering and pixel-transform attributes (position,
orientation, spacing, rescale, temporal/acquisition/instance numbers, image size), which identify
nobody; walking each of their headers too would add ~7 ms per slice for nothing, since no header
is ever written.

Colour: synthmed models grayscale images. A colour image whose three channels are equal (grey
stored as RGB, common for secondary captures) is kept as one channel; a truly colour image or a
palette (pseudo-colour) image is refused, because any grey conversion would invent intensities
that the model would then learn as anatomy.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict, defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_partial
from pydicom.pixels import apply_modality_lut, get_decoder
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import UID

from synthmed.deid import Deidentifier
from synthmed.deid.dicom_deid import quiet_pydicom
from synthmed.io.types import LoadedImage, RefusedInput

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
_HEADER_END = 0x00280011  # Columns: everything the grouping needs lies before it
_POSITION_DECIMALS = 2  # positions equal to 0.01 mm are the same slice location


@dataclass
class DicomSeries:
    """Files of one series, as grouped from their headers.

    `key` is the raw grouping key (a SeriesInstanceUID, or a fallback built from other UIDs);
    it lives only in memory, is never written, and reaches outputs only as a keyed pseudonym.
    """

    files: list[Path]
    modality: str = ""
    key: str = field(default="", repr=False)

    def __len__(self) -> int:
        return len(self.files)


# ---------------------------------------------------------------------------------------------
# Pass 1: headers
# ---------------------------------------------------------------------------------------------
# The scan's partial headers, kept so that `load_series` parses only the rest of each file
# instead of parsing the header a second time (re-parsing it costs 25-50 % of a bare
# `dcmread(...).pixel_array` on small MR slices). Bounded; oldest first out; an entry is used once. Forked workers inherit it.
_HEADER_CACHE: OrderedDict[str, tuple[Dataset, int, int, int]] = OrderedDict()
_HEADER_CACHE_MAX = 8192  # ~40-50 kB each: at most ~0.4 GB


def _cache_put(path: Path, ds: Dataset, offset: int, st: os.stat_result) -> None:
    _HEADER_CACHE[str(path)] = (ds, offset, st.st_mtime_ns, st.st_size)
    while len(_HEADER_CACHE) > _HEADER_CACHE_MAX:
        _HEADER_CACHE.popitem(last=False)


def _cache_put_raw(path: Path, entry: tuple) -> None:
    _HEADER_CACHE[str(path)] = entry


def _truncated(caught: list) -> bool:
    return any("end of file" in str(w.message).lower() for w in caught)


def _stop_after_header(tag, vr, length) -> bool:
    return int(tag) > _HEADER_END  # plain int compare: BaseTag.__gt__ is slow in this hot loop


def _looks_like_dicom(ds: Dataset) -> bool:
    # Forced parsing of arbitrary bytes often "succeeds" with garbage tags; a real dataset
    # without a preamble still carries some of these.
    return any(t in ds for t in (0x00080016, 0x00080018, 0x00080060, 0x00280010, 0x0020000D))


def _read_header(path: Path, caught: list | None = None) -> Dataset:
    """The header up to Columns, or RefusedInput with a short reason.

    `caught` is the warnings list of a `quiet_pydicom` context already open around the whole
    scan (one context per file costs about a tenth of parsing a small header); without it,
    this call opens its own.
    """
    try:
        fp = open(path, "rb")
    except OSError as err:
        raise RefusedInput(path, f"cannot read file ({err.strerror or err})") from None
    try:
        with fp, (quiet_pydicom() if caught is None else nullcontext(caught)) as caught:
            st = os.fstat(fp.fileno())
            if st.st_size == 0:
                raise RefusedInput(path, "empty file (0 bytes)")
            start = len(caught)
            try:
                ds = read_partial(fp, stop_when=_stop_after_header)
            except InvalidDicomError:
                # No 'DICM' preamble: old ACR-NEMA style files are still DICOM datasets.
                fp.seek(0)
                try:
                    ds = read_partial(fp, stop_when=_stop_after_header, force=True)
                except Exception:
                    raise RefusedInput(path, "not a DICOM file") from None
                if not _looks_like_dicom(ds):
                    raise RefusedInput(path, "not a DICOM file") from None
            if _truncated(caught[start:]):
                raise RefusedInput(path, "truncated file (header ends early)")
            offset = fp.tell()
    except RefusedInput:
        raise
    except OSError as err:
        raise RefusedInput(path, f"cannot read file ({err.strerror or err})") from None
    except Exception as err:  # EOFError, struct/ValueError from a cut-off header, ...
        raise RefusedInput(path, f"truncated or corrupt DICOM header ({type(err).__name__})") from None
    _cache_put(path, ds, offset, st)
    return ds


def _text(ds: Dataset, keyword: str) -> str:
    v = ds.get(keyword, "")
    return "" if v is None else str(v).strip()


def _raw_text(ds: Dataset, tag: int) -> str:
    """A short ASCII value (UI, CS, IS) straight from the raw bytes.

    The scan needs a handful of values per file; pydicom's conversion (value validation,
    character sets) would cost about as much as parsing the rest of the header.
    """
    elem = ds.get_item(tag)
    if elem is None:
        return ""
    value = elem.value
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip("\x00 ")
    return "" if value is None else str(value).strip()


def _series_key(ds: Dataset, path: Path) -> str:
    uid = _raw_text(ds, 0x0020000E)
    if uid:
        return "uid:" + uid
    # Some exports blank the series UID; slices that share a folder, frame of reference,
    # series number and image size still form one series. Without a frame of reference, the
    # file stands alone.
    frame = _raw_text(ds, 0x00200052)
    if frame:
        parts = (str(path.parent), _raw_text(ds, 0x0020000D), frame, _raw_text(ds, 0x00200011),
                 _raw_text(ds, 0x00080060), _text(ds, "Rows"), _text(ds, "Columns"))
        return "fallback:" + "|".join(parts)
    return "file:" + str(path)


def _expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
        else:
            out.append(p)
    return out


def find_dicom_series(paths: list[Path]) -> tuple[list[DicomSeries], list[RefusedInput]]:
    """Group DICOM files into series from their headers (no pixel data is read).

    Folders in `paths` are searched recursively. Non-DICOM, empty, unreadable and cut-off files
    come back as RefusedInput; a second file with the SOP Instance UID of one already in the
    series is refused as a duplicate.
    """
    groups: dict[str, list[Path]] = defaultdict(list)
    modality: dict[str, str] = {}
    seen: dict[str, set[str]] = defaultdict(set)
    refused: list[RefusedInput] = []
    with quiet_pydicom() as caught:
        _scan(_expand(paths), groups, modality, seen, refused, caught)
    series = [DicomSeries(files=sorted(files), modality=modality[k], key=k) for k, files in groups.items()]
    series.sort(key=lambda s: str(s.files[0]))
    return series, refused


def _scan(paths, groups, modality, seen, refused, caught) -> None:
    for path in paths:
        del caught[:]  # warnings of files already judged: keep the list short
        try:
            ds = _read_header(path, caught)
        except RefusedInput as r:
            refused.append(r)
            continue
        key = _series_key(ds, path)
        sop = _raw_text(ds, 0x00080018)
        if sop and sop in seen[key]:
            refused.append(RefusedInput(path, "duplicate image (same SOP Instance UID as another file of its series)"))
            continue
        if sop:
            seen[key].add(sop)
        groups[key].append(path)
        modality.setdefault(key, _raw_text(ds, 0x00080060).upper())


# ---------------------------------------------------------------------------------------------
# Pass 2: pixels
# ---------------------------------------------------------------------------------------------
def _floats(value, n: int) -> np.ndarray | None:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n and np.all(np.isfinite(arr)) else None


def _pixel_spacing(ds: Dataset) -> tuple[float, float]:
    for kw in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        sp = _floats(ds.get(kw), 2) if kw in ds else None
        if sp is not None and np.all(sp > 0):
            return float(sp[0]), float(sp[1])
    return math.nan, math.nan


def _parse_age(value: str) -> float:
    """DICOM AS ('057Y', '006M', '010W', '003D', also a bare '42') -> years."""
    v = value.strip().upper()
    if not v:
        return math.nan
    unit = v[-1] if v[-1] in "YMWD" else "Y"
    digits = v[:-1] if v[-1] in "YMWD" else v
    try:
        n = float(digits)
    except ValueError:
        return math.nan
    return n / {"Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}[unit]


def _sex(value: str) -> str:
    v = value.strip().upper()
    return v if v in ("M", "F") else ("O" if v else "")


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
            raise RefusedInput(path, f"truncated file (pixel data is {actual} of {expected} bytes)")
        return
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise RefusedInput(path, f"unsupported transfer syntax ({_ts_name(ts)})") from None
    if not decoder.is_available:
        raise RefusedInput(path, f"no decoder installed for {_ts_name(ts)}") from None


def _read_full(path: Path) -> Dataset:
    """The whole dataset; continues from the scan's partial header when it is cached."""
    cached = _HEADER_CACHE.pop(str(path), None)
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
        raise RefusedInput(path, f"cannot read file ({err.strerror or err})") from None
    except Exception as err:
        raise RefusedInput(path, f"truncated or corrupt DICOM file ({type(err).__name__})") from None
    if _truncated(caught):
        raise RefusedInput(path, "truncated file (data ends early)")
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
        msg = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        if "less than expected" in msg or "no pixel data" in msg.lower():
            raise RefusedInput(path, "truncated file (pixel data shorter than the image size)") from None
        raise RefusedInput(path, f"cannot decode pixel data ({_ts_name(_transfer_syntax(ds))}): {msg}") from None
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        # pydicom returns RGB (YBR converted) with channels last. Within 2 grey levels: the
        # YBR-to-RGB conversion of a grey image rounds unevenly.
        a = arr.astype(np.int32)
        if max(np.abs(a[..., 0] - a[..., 1]).max(), np.abs(a[..., 0] - a[..., 2]).max()) > 2:
            raise RefusedInput(path, f"colour image ({photometric or 'RGB'}) is not supported: "
                                     "synthmed models grayscale images")
        return arr[..., 0], 1.0, 0.0
    slope, intercept = 1.0, 0.0
    if rescale and "ModalityLUTSequence" in ds:
        arr = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    elif rescale:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if photometric == "MONOCHROME1":
        # Minimum means white: flip so that brighter always means more signal / attenuation.
        out = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        return (out.max() + out.min()) - out, 1.0, 0.0
    return arr, slope, intercept


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


def _shape_signature(ds: Dataset) -> tuple:
    return (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0),
            int(ds.get("NumberOfFrames", 1) or 1), int(ds.get("SamplesPerPixel", 1) or 1))


def _slice_normal(iop: np.ndarray | None) -> np.ndarray | None:
    if iop is None:
        return None
    n = np.cross(iop[:3], iop[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 1e-6 else None


def _split_volumes(proj: np.ndarray, order_keys: list[tuple], path: Path) -> list[np.ndarray]:
    """Indices of each volume, slices sorted along the normal.

    Repeated positions (a time series: fMRI, perfusion) are split into volumes: at each position
    the k-th acquisition (by temporal position, acquisition number, instance number) goes to
    volume k, so every volume covers every position once.
    """
    rounded = np.round(proj, _POSITION_DECIMALS)
    positions, inverse, counts = np.unique(rounded, return_inverse=True, return_counts=True)
    repeats = int(counts[0])
    if np.any(counts != repeats):
        raise RefusedInput(path, f"slice positions repeat unevenly ({int(counts.min())} to {int(counts.max())} "
                                 "images per position): incomplete time series?")
    vols = np.empty((repeats, positions.size), dtype=np.int64)
    for p in range(positions.size):
        members = np.flatnonzero(inverse == p)
        members = sorted(members, key=lambda i: order_keys[i])
        vols[:, p] = members
    return [vols[k] for k in range(repeats)]


def _z_spacing(sorted_proj: np.ndarray, ds: Dataset) -> float:
    if sorted_proj.size > 1:
        return float(np.median(np.diff(sorted_proj)))
    for kw in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            v = float(ds.get(kw))
            if v > 0:
                return v
        except (TypeError, ValueError):
            pass
    return math.nan


def _num(ds: Dataset, kw: str) -> float:
    try:
        return float(ds.get(kw))
    except (TypeError, ValueError):
        return math.inf  # missing sorts last


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

    def __init__(self, key: tuple, options: dict):
        self.key, self.options = key, options
        self.decoder = get_decoder(options["transfer_syntax_uid"])
        self.slope, self.intercept = 1.0, 0.0

    @classmethod
    def for_series(cls, first: Dataset, key: tuple, ts: UID) -> "_FastSlices | None":
        # MONOCHROME1 is flipped per slice and colour reduced per slice in `_decoded`: those
        # keep the full path.
        if (str(ts) not in _NATIVE_LE or 0x7FE00010 not in first or 0x00283000 in first
                or _shape_signature(first)[2:] != (1, 1)
                or _text(first, "PhotometricInterpretation").upper() != "MONOCHROME2"):
            return None
        elem = first[0x7FE00010]
        options = as_pixel_options(first, transfer_syntax_uid=ts, pixel_keyword="PixelData",
                                   pixel_vr=elem.VR if elem.VR in ("OB", "OW") else "OW")
        return cls(key, options)

    def read(self, path: Path, caught: list) -> tuple[np.ndarray, np.ndarray | None, tuple] | None:
        """(pixels, position, order key) of one slice, or None to take the full path."""
        cached = _HEADER_CACHE.pop(str(path), None)
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
            raise RefusedInput(path, f"cannot read file ({err.strerror or err})") from None
        except Exception as err:
            raise RefusedInput(path, f"truncated or corrupt DICOM file ({type(err).__name__})") from None
        if _truncated(caught[start:]):
            raise RefusedInput(path, "truncated file (data ends early)")
        pixels = _elem(rest, 0x7FE00010)
        if (pixels is None or not isinstance(pixels.value, bytes)
                or _slice_key(head, rest) != self.key):
            _cache_put_raw(path, cached)  # the full path reads it again from the header on
            return None
        try:
            arr = self.decoder.as_array(pixels.value, validate=True, **self.options)[0]
        except ValueError as err:
            if "less than expected" in str(err):
                raise RefusedInput(path, "truncated file (pixel data shorter than the image size)") from None
            return None  # let the full path say what is wrong
        position = _raw_strings(head, 0x00200032)
        order = (_raw_number(head, 0x00200100), _raw_number(head, 0x00200012), _raw_number(head, 0x00200013))
        return arr, (None if position is None else _floats(position, 3)), order


def load_series(series: DicomSeries, deid: Deidentifier, *, allow_burned_in: bool = False,
                allowed_modalities: frozenset[str] | None = None) -> list[LoadedImage]:
    """Decode one series into de-identified 2D images or 3D volumes (see the module docstring).

    `allowed_modalities` lists modalities refused by default (US, SC, OT, and non-images such as
    SEG) to accept anyway; `allow_burned_in` accepts BurnedInAnnotation YES. Raises RefusedInput
    for the whole series when it must not or cannot be used.
    """
    try:
        with quiet_pydicom() as caught:
            return _load_series(series, deid, allow_burned_in, allowed_modalities, caught)
    finally:
        for f in series.files:  # a refused series leaves no cached headers behind
            _HEADER_CACHE.pop(str(f), None)


def _load_series(series: DicomSeries, deid: Deidentifier, allow_burned_in: bool,
                 allowed_modalities: frozenset[str] | None, caught: list) -> list[LoadedImage]:
    if not series.files:
        return []
    first_path = series.files[0]
    first = _read_full(first_path)
    first_key = _slice_key(first, first)  # raw values, before anything converts them
    _refuse_by_policy(first, first_path, allow_burned_in, allowed_modalities)
    _check_decodable(first, first_path)
    deid.deidentify(first)  # before any identity value is taken from the header
    meta = _identity(first, series, deid)

    separate = (len(series.files) == 1 or int(first.get("NumberOfFrames", 1) or 1) > 1
                or meta["modality"] in PROJECTION_MODALITIES
                or "ImageOrientationPatient" not in first or "ImagePositionPatient" not in first)
    if separate:
        out: list[LoadedImage] = []
        for i, path in enumerate(series.files):
            ds = first if i == 0 else _read_full(path)
            if i:
                _refuse_by_policy(ds, path, allow_burned_in, allowed_modalities)
                _check_decodable(ds, path)
            if (_shape_signature(ds)[2] > 1) != (_shape_signature(first)[2] > 1):
                raise RefusedInput(first_path, "mixed shapes in series (single- and multi-frame files)")
            out.extend(_load_file(ds, path, meta))
        return out

    signature = _shape_signature(first)
    first_ts = _transfer_syntax(first)
    slices: list[tuple[np.ndarray, float, float]] = []
    positions: list[np.ndarray | None] = []
    order_keys: list[tuple] = []
    fast = _FastSlices.for_series(first, first_key, first_ts)
    for i, path in enumerate(series.files):
        if i and fast is not None:
            got = fast.read(path, caught)
            if got is not None:
                arr, position, order = got
                slices.append((arr, fast.slope, fast.intercept))
                positions.append(position)
                order_keys.append((*order, i))
                continue
        ds = first if i == 0 else _read_full(path)
        if i:
            if _shape_signature(ds) != signature:
                r, c, f, s = _shape_signature(ds)
                raise RefusedInput(first_path, f"mixed shapes in series ({signature[0]}x{signature[1]} "
                                               f"and {r}x{c}{' multi-frame' if f > 1 else ''})")
            _refuse_by_policy(ds, path, allow_burned_in, allowed_modalities)
            if _transfer_syntax(ds) != first_ts:  # else the first file's check holds for this one
                _check_decodable(ds, path)
        arr, slope, intercept = _decoded(ds, path)
        if arr.ndim != 2:
            raise RefusedInput(path, f"unexpected pixel array shape {arr.shape}")
        if i == 0 and fast is not None:
            fast.slope, fast.intercept = slope, intercept
        slices.append((arr, slope, intercept))
        positions.append(_floats(ds.get("ImagePositionPatient"), 3) if "ImagePositionPatient" in ds else None)
        order_keys.append((_num(ds, "TemporalPositionIdentifier"), _num(ds, "AcquisitionNumber"),
                           _num(ds, "InstanceNumber"), i))
    row_sp, col_sp = _pixel_spacing(first)
    iop = _floats(first.get("ImageOrientationPatient"), 6) if "ImageOrientationPatient" in first else None
    normal = _slice_normal(iop)
    if normal is None or any(p is None for p in positions):
        # Orientation unusable or a slice without position: no trustworthy order along a normal.
        raise RefusedInput(first_path, "slices lack a usable position or orientation, "
                                       "so they cannot be ordered into a volume")
    proj = np.array([float(p @ normal) for p in positions])
    out = []
    for idx in _split_volumes(proj, order_keys, first_path):
        vol = np.empty((len(idx), *slices[0][0].shape), dtype=np.float32)
        for k, i in enumerate(idx):
            _write_rescaled(vol[k], *slices[i])
        out.append(_image(vol, (_z_spacing(proj[idx], first), row_sp, col_sp), meta, "dicom", first_path))
    return out


def _identity(ds: Dataset, series: DicomSeries, deid: Deidentifier) -> dict:
    """Identity values from an already de-identified header: pseudonyms, age, sex, modality."""
    patient = _text(ds, "PatientID")  # the keyed pseudonym set by deidentify
    study_uid = _text(ds, "StudyInstanceUID")  # a replaced UID
    study = deid.study(study_uid or f"{patient}|{_text(ds, 'StudyDate')}")
    series_uid = _text(ds, "SeriesInstanceUID")
    return {
        "patient": patient,
        "study": study,
        "series": deid.series(series_uid or series.key),
        "age": _parse_age(_text(ds, "PatientAge")),
        "sex": _sex(_text(ds, "PatientSex")),
        "modality": _text(ds, "Modality").upper(),
    }


def _image(arr: np.ndarray, spacing: tuple[float, ...], meta: dict, fmt: str, path: Path) -> LoadedImage:
    if arr.ndim == 3 and arr.shape[0] == 1:  # a "volume" of one slice is a 2D image
        arr, spacing = arr[0], spacing[1:]
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    return LoadedImage(array=arr, spacing=tuple(float(s) for s in spacing), patient=meta["patient"],
                       study=meta["study"], series=meta["series"], age=meta["age"], sex=meta["sex"],
                       modality=meta["modality"], source_format=fmt, source=str(path),
                       original_shape=tuple(arr.shape))


def _frame_geometry(ds: Dataset, nframes: int):
    """Per-frame positions, the orientation and temporal order keys from functional groups."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")

    def _from(item, seq, kw, n):
        if item is None or seq not in item or not item[seq].value:
            return None
        inner = item[seq][0]
        return _floats(inner.get(kw), n) if kw in inner else None

    iop = _from(shared, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
    spacing = _from(shared, "PixelMeasuresSequence", "PixelSpacing", 2)
    positions, keys = [], []
    for f in range(nframes):
        item = per_frame[f] if per_frame is not None and f < len(per_frame) else None
        positions.append(_from(item, "PlanePositionSequence", "ImagePositionPatient", 3))
        if iop is None:
            iop = _from(item, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
        if spacing is None:
            spacing = _from(item, "PixelMeasuresSequence", "PixelSpacing", 2)
        temporal = math.inf
        if item is not None and "FrameContentSequence" in item and item.FrameContentSequence:
            fc = item.FrameContentSequence[0]
            temporal = _num(fc, "TemporalPositionIndex")
            if math.isinf(temporal):
                temporal = _num(fc, "FrameAcquisitionNumber")
        keys.append((temporal, f))
    if iop is None and "ImageOrientationPatient" in ds:
        iop = _floats(ds.ImageOrientationPatient, 6)
    if all(p is None for p in positions) and "DetectorInformationSequence" in ds:
        # NM: one start position and a constant spacing along the normal.
        det = ds.DetectorInformationSequence[0]
        iop = _floats(det.get("ImageOrientationPatient"), 6) if "ImageOrientationPatient" in det else iop
    return iop, spacing, positions, keys


def _load_file(ds: Dataset, path: Path, meta: dict) -> list[LoadedImage]:
    """One file: a single 2D image, or a multi-frame file (volume, volumes, or cine frames)."""
    data = _pixels_multiframe(ds, path)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    row_sp, col_sp = _pixel_spacing(ds)
    if nframes == 1:
        if data.ndim == 3 and data.shape[0] == 1:
            data = data[0]
        if data.ndim != 2:
            raise RefusedInput(path, f"unexpected pixel array shape {data.shape}")
        return [_image(data, (row_sp, col_sp), meta, "dicom", path)]

    if data.ndim != 3:
        raise RefusedInput(path, f"unexpected pixel array shape {data.shape}")
    iop, spacing, positions, keys = _frame_geometry(ds, nframes)
    if spacing is not None and np.all(spacing > 0):
        row_sp, col_sp = float(spacing[0]), float(spacing[1])
    normal = _slice_normal(iop)
    if normal is not None and all(p is not None for p in positions):
        proj = np.array([float(p @ normal) for p in positions])
        return [_image(data[idx], (_z_spacing(proj[idx], ds), row_sp, col_sp), meta, "dicom-multiframe", path)
                for idx in _split_volumes(proj, keys, path)]
    increment = ds.get("FrameIncrementPointer")
    pointers = increment if isinstance(increment, (list, pydicom.multival.MultiValue)) else [increment]
    if any(p in (0x00181063, 0x00181065) for p in pointers if p is not None):
        # Cine (frame time / frame time vector): frames are moments, not slices.
        return [_image(data[f], (row_sp, col_sp), meta, "dicom-multiframe", path) for f in range(nframes)]
    # Frames without positions: a volume in stored order (NM, legacy enhanced); slice spacing
    # from the header when it has one.
    return [_image(data, (_z_spacing(np.array([]), ds), row_sp, col_sp), meta, "dicom-multiframe", path)]


def _pixels_multiframe(ds: Dataset, path: Path) -> np.ndarray:
    """Like `_pixels`, but with per-frame rescale from functional groups when present."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    if "RescaleSlope" in ds or (per_frame is None and shared is None):
        return _pixels(ds, path)
    shared_item = shared[0] if shared else None
    arr = _pixels(ds, path, rescale=False)
    nframes = int(ds.get("NumberOfFrames", 1) or 1)

    def _pvt(item):
        if item is not None and "PixelValueTransformationSequence" in item and item.PixelValueTransformationSequence:
            t = item.PixelValueTransformationSequence[0]
            return float(t.get("RescaleSlope", 1) or 1), float(t.get("RescaleIntercept", 0) or 0)
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
