"""The scan a release bundle passes before it is sealed.

1. `scan_folder(root, identifiers)`: no identifier of the real data (synthmed.release.identifiers)
   in any byte of any file, nor in any file name. Compressed content is searched as what it
   decompresses to: gzip files (.nii.gz), PNG text chunks and pixel streams, deflated DICOM, and
   Parquet tables (read back as values). All values are searched at once with an Aho-Corasick
   automaton (pyahocorasick), case-insensitively; one pass over each file's bytes whatever the
   number of identifiers (a source series has thousands of UIDs).
   Short all-digit values (a date, a numeric patient ID) must stand alone (not inside a longer
   run of letters and digits), and so must UIDs under 16 characters: otherwise they match inside
   any long number or hex digest by chance. Longer UIDs match anywhere: a synthetic UID built around a source UID
   would carry it.
   Inside pixel data and compressed streams (bytes that are not text: DICOM Pixel Data, NIfTI
   voxels, .npy arrays, PNG pixel streams, the deflate payload of a gzip or PNG chunk) values
   under 8 characters are not searched. Those bytes are close to random, and a 5-digit study ID
   matches random bytes with probability 256^-5 per position and value: with the ~2,800 such IDs
   of the demo's sources, a full demo bundle (~3,000 files) met one by chance in a gzip payload
   and was refused (seed 0, 2026-12-02). What a compressed stream holds is searched in full
   where it decompresses to; only the header, text and metadata bytes can carry a written value.
2. `equal_to_real(synthetic, real, value_range)`: synthetic images equal to a real one once
   written (compared at the 16-bit quantisation the writers store; an exact float copy is equal
   there too).
3. `pixel_text(synthetic)`: the ingestion's burned-in text check (synthmed.deid.pixels) on every
   synthetic image; it fails closed (an unavailable OCR engine refuses).

Findings name the kind of value and the file, never the value.
"""

from __future__ import annotations

import bisect
import gzip
import hashlib
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthmed.release.identifiers import Identifiers

_LONG_UID = 16
_DIGITS = re.compile(r"^[0-9.]+$")


@dataclass(frozen=True)
class Hit:
    kind: str    # what was found: "dataset pseudonym", "source UID", ...
    where: str   # the file (relative to the bundle), and the part of it

    def line(self) -> str:
        return f"{self.where}: holds a {self.kind} of the real data"


class Matcher:
    """Every identifier at once (Aho-Corasick over latin-1 text: one character per byte)."""

    def __init__(self, ids: Identifiers):
        import ahocorasick

        self.automaton = ahocorasick.Automaton()
        n = 0
        for kind, values in ids.values.items():
            for v in values:
                low = v.lower()
                try:
                    low.encode("latin-1")
                except UnicodeEncodeError:
                    # a non-latin-1 name: search its UTF-8 bytes (as latin-1 characters)
                    low = low.encode("utf-8").decode("latin-1")
                standalone = bool(_DIGITS.match(low)) and (low.replace(".", "").isdigit()) and (
                    "." not in low or len(low) < _LONG_UID)
                self.automaton.add_word(low, (kind, len(low), standalone))
                n += 1
        if ids.key_raw:
            raw = ids.key_raw.lower().decode("latin-1")
            self.automaton.add_word(raw, ("key bytes", len(raw), False))
            n += 1
        self.size = n
        if n:
            self.automaton.make_automaton()

    def find(self, data: bytes, where: str, binary: tuple[tuple[int, int], ...] = ()) -> list[Hit]:
        """Kinds of value found in `data`; inside the `binary` ranges (sorted, not overlapping
        text) only values of at least BINARY_MIN_CHARS characters count."""
        if not self.size or not data:
            return []
        text = data.lower().decode("latin-1")
        starts = [lo for lo, _ in binary]
        kinds: list[str] = []
        for end, (kind, length, standalone) in self.automaton.iter(text):
            if kind in kinds:
                continue
            if length < BINARY_MIN_CHARS and binary:
                start = end - length + 1
                k = bisect.bisect_right(starts, start) - 1
                if k >= 0 and start >= binary[k][0] and end < binary[k][1]:
                    continue
            if standalone:
                start = end - length + 1
                before = text[start - 1] if start > 0 else ""
                after = text[end + 1] if end + 1 < len(text) else ""
                # a token of its own: not inside a longer number, UID or hex digest (a sha256 in
                # hex holds a given 5-digit run between letters every ~3,000 characters)
                if (before and (before.isalnum() or before == ".")) or (after and after.isalnum()):
                    continue
            kinds.append(kind)
        return [Hit(k, where) for k in kinds]


# --------------------------------------------------------------------------- file contents
# Values shorter than this are not searched inside binary ranges (see the module docstring): at
# 8 characters a chance match in random bytes is ~256^-8 per position and value (1e-14 for the
# demo's 15,000 values over 1e8 bytes), where 5 characters gave about one refusal in ten bundles.
BINARY_MIN_CHARS = 8


@dataclass(frozen=True)
class Part:
    """Bytes to search, with the ranges that are pixel data or compressed payload."""

    name: str                                  # "" for the file's own bytes
    data: bytes
    binary: tuple[tuple[int, int], ...] = ()   # [start, end) ranges, sorted


def _png_parts(data: bytes) -> tuple[list[Part], list[tuple[int, int]]]:
    """A PNG's decompressed text chunks and pixel stream, and the ranges of its compressed
    chunk bodies in the file."""
    parts, idat, binary = [], [], []
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        start = pos + 8
        body = data[start:start + length]
        pos += 12 + length
        if ctype == b"IDAT":
            idat.append(body)
            binary.append((start, start + length))
        elif ctype == b"zTXt":
            key, _, rest = body.partition(b"\0")
            parts.append(Part("zTXt chunk", key + b" " + _inflate(rest[1:])))
            binary.append((start + len(key) + 2, start + length))
        elif ctype == b"iTXt":
            key, _, rest = body.partition(b"\0")
            flag = rest[:1]
            fields = rest[2:].split(b"\0", 2)
            text = fields[2] if len(fields) == 3 else b""
            parts.append(Part("iTXt chunk", key + b" " + (_inflate(text) if flag == b"\x01" else text)))
            if flag == b"\x01":
                binary.append((start + length - len(text), start + length))
        elif ctype == b"IEND":
            break
    if idat:
        stream = _inflate(b"".join(idat))
        parts.append(Part("pixel stream", stream, ((0, len(stream)),)))
    return parts, binary


def _inflate(data: bytes, wbits: int = zlib.MAX_WBITS) -> bytes:
    try:
        return zlib.decompressobj(wbits).decompress(data, 1 << 30)
    except zlib.error:
        return b""


def _gunzip(data: bytes) -> tuple[bytes | None, tuple[int, int] | None]:
    """What a gzip file decompresses to (None when it does not), and the [start, end) range of
    its first member's deflate stream and trailer: one inflate pass for both. The header before
    the stream, with its file name and comment fields, stays text."""
    def whole() -> bytes | None:  # every member, as gzip reads them
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            return None

    if len(data) < 18 or data[:3] != b"\x1f\x8b\x08":
        return whole(), None
    flags, pos = data[3], 10
    try:
        if flags & 4:
            pos += 2 + struct.unpack("<H", data[pos:pos + 2])[0]
        for bit in (8, 16):  # file name, comment: zero-terminated text
            if flags & bit:
                pos = data.index(b"\0", pos) + 1
        if flags & 2:
            pos += 2
        d = zlib.decompressobj(-zlib.MAX_WBITS)
        inner = d.decompress(data[pos:])
    except (ValueError, struct.error, zlib.error):
        return whole(), None
    if not d.eof:
        return whole(), None
    end = min(len(data) - len(d.unused_data) + 8, len(data))  # the CRC-32 and size trailer
    if len(d.unused_data) > 8:  # more members follow: let gzip read them all
        inner = whole()
    return inner, (pos, end)


def _voxel_range(data: bytes) -> tuple[int, int] | None:
    """Where a NIfTI-1/2 file's voxels or a .npy file's array begin (to the end of the bytes)."""
    if data[:6] == b"\x93NUMPY" and len(data) >= 12:
        if data[6] == 1:
            start = 10 + struct.unpack("<H", data[8:10])[0]
        else:
            start = 12 + struct.unpack("<I", data[8:12])[0]
        return (start, len(data)) if start <= len(data) else None
    for order in ("<", ">"):
        if len(data) >= 352 and struct.unpack(order + "i", data[:4])[0] == 348:
            start = int(struct.unpack(order + "f", data[108:112])[0])
        elif len(data) >= 544 and struct.unpack(order + "i", data[:4])[0] == 540:
            start = struct.unpack(order + "q", data[168:176])[0]
        else:
            continue
        return (start, len(data)) if 348 <= start <= len(data) else None
    return None


_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


def _dicom_pixel_range(data: bytes, offset: int = 132) -> tuple[int, int] | None:
    """The value of the last (7FE0,0010) Pixel Data element of a little-endian data set (the
    image's; an icon's comes earlier and stays text-searched, which can only add findings)."""
    i = data.rfind(_PIXEL_DATA_TAG, offset)
    if i < 0:
        return None
    if data[i + 4:i + 6] in (b"OB", b"OW") and data[i + 6:i + 8] == b"\0\0":
        start, length = i + 12, struct.unpack("<I", data[i + 8:i + 12])[0]
    else:  # implicit VR
        start, length = i + 8, struct.unpack("<I", data[i + 4:i + 8])[0]
    if length == 0xFFFFFFFF:  # encapsulated fragments run to the end of the data set
        return (start, len(data))
    return (start, start + length) if start + length <= len(data) else None


def _dicom_parts(data: bytes) -> tuple[list[Part], list[tuple[int, int]]]:
    """A deflated DICOM data set (transfer syntax 1.2.840.10008.1.2.1.99) inflated, and the
    range of its deflate stream in the file."""
    if b"1.2.840.10008.1.2.1.99" not in data[:4096]:
        return [], []
    # the file meta group ends where its group length says; the rest is raw deflate
    try:
        i = data.index(b"\x02\x00\x00\x00UL", 128)
        start = i + 12 + struct.unpack("<I", data[i + 8:i + 12])[0]
    except (ValueError, struct.error):
        return [], []
    inflated = _inflate(data[start:], -zlib.MAX_WBITS)
    pixels = _dicom_pixel_range(inflated, 0)
    return ([Part("deflated data set", inflated, (pixels,) if pixels else ())],
            [(start, len(data))] if inflated else [])


def _parquet_parts(path: Path) -> list[Part]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception:  # noqa: BLE001 - an unreadable table is scanned as raw bytes only
        return []
    text = "\n".join(",".join(map(str, row.values())) for row in table.to_pylist())
    return [Part("table values", " ".join(table.column_names).encode() + b"\n" + text.encode("utf-8"))]


def file_parts(path: Path) -> list[Part]:
    """What a file holds: its bytes, and what its compressed parts decompress to, each with its
    pixel-data and compressed-payload ranges."""
    data = path.read_bytes()
    parts: list[Part] = []
    binary: list[tuple[int, int]] = []
    name = path.name.lower()
    if name.endswith(".gz") or data[:2] == b"\x1f\x8b":
        inner, payload = _gunzip(data)
        if inner is not None:
            voxels = _voxel_range(inner)
            parts.append(Part("decompressed", inner, (voxels,) if voxels else ()))
            binary += [payload] if payload else []
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        more, ranges = _png_parts(data)
        parts, binary = parts + more, binary + ranges
    if data[128:132] == b"DICM":
        more, ranges = _dicom_parts(data)
        parts, binary = parts + more, binary + ranges
        pixels = _dicom_pixel_range(data)
        binary += [pixels] if pixels and not ranges else []
    if name.endswith(".parquet"):
        parts += _parquet_parts(path)
    voxels = _voxel_range(data)
    binary += [voxels] if voxels else []
    return [Part("", data, tuple(sorted(binary))), *parts]


def scan_folder(root: str | Path, ids: Identifiers) -> tuple[list[Hit], dict[str, int]]:
    """Every file and file name under `root`; (hits, {"files": n, "bytes": n})."""
    root = Path(root)
    m = Matcher(ids)
    hits: list[Hit] = []
    n_files = n_bytes = 0
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        hits += [Hit(h.kind, f"the name {rel}") for h in m.find(rel.encode("utf-8"), rel)]
        if not path.is_file():
            continue
        n_files += 1
        for part in file_parts(path):
            n_bytes += len(part.data) if not part.name else 0
            hits += m.find(part.data, f"{rel}" + (f" ({part.name})" if part.name else ""),
                           binary=part.binary)
    return hits, {"files": n_files, "bytes": n_bytes, "identifiers": m.size}


# --------------------------------------------------------------------------- image checks
def _quantised_keys(images: np.ndarray, value_range: tuple[float, float]) -> list[bytes]:
    lo, hi = value_range
    out = []
    for im in images:
        q = np.round(np.clip((np.asarray(im, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0) * 65535)
        out.append(hashlib.sha256(q.astype("<u2").tobytes() + str(im.shape).encode()).digest())
    return out


def equal_to_real(synthetic: np.ndarray, real: np.ndarray,
                  value_range: tuple[float, float] = (0.0, 1.0)) -> list[int]:
    """Indices of synthetic images equal to a real image at the 16-bit quantisation."""
    real_keys = set(_quantised_keys(real, value_range))
    return [i for i, k in enumerate(_quantised_keys(synthetic, value_range)) if k in real_keys]


def pixel_text(synthetic: np.ndarray, checker=None) -> list[tuple[int, str]]:
    """(index, reason) of synthetic images the burned-in text check refuses."""
    from synthmed.deid.pixels import PixelTextChecker

    checker = checker or PixelTextChecker("refuse")
    out = []
    for i, im in enumerate(synthetic):
        finding = checker.check(np.asarray(im))
        if finding.refused:
            out.append((i, finding.reason))
    return out


__all__ = ["Hit", "Matcher", "scan_folder", "file_parts", "equal_to_real", "pixel_text"]
