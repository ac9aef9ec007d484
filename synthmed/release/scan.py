"""The scan a release bundle passes before it is sealed.

1. `scan_folder(root, identifiers)`: no identifier of the real data (synthmed.release.identifiers)
   in any byte of any file, nor in any file name. Compressed content is searched as what it
   decompresses to: gzip files (.nii.gz), PNG text chunks and pixel streams, deflated DICOM, and
   Parquet tables (read back as values). All values are searched at once with an Aho-Corasick
   automaton (pyahocorasick), case-insensitively; one pass over each file's bytes whatever the
   number of identifiers (a source series has thousands of UIDs).
   Short all-digit values (a date, a numeric patient ID) must stand alone (not inside a longer
   run of digits), and so must UIDs under 16 characters: otherwise they match inside any
   long number by chance. Longer UIDs match anywhere: a synthetic UID built around a source UID
   would carry it.
2. `equal_to_real(synthetic, real, value_range)`: synthetic images equal to a real one once
   written (compared at the 16-bit quantisation the writers store; an exact float copy is equal
   there too).
3. `pixel_text(synthetic)`: the ingestion's burned-in text check (synthmed.deid.pixels) on every
   synthetic image; it fails closed (an unavailable OCR engine refuses).

Findings name the kind of value and the file, never the value.
"""

from __future__ import annotations

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

    def find(self, data: bytes, where: str) -> list[Hit]:
        if not self.size or not data:
            return []
        text = data.lower().decode("latin-1")
        kinds: list[str] = []
        for end, (kind, length, standalone) in self.automaton.iter(text):
            if kind in kinds:
                continue
            if standalone:
                start = end - length + 1
                before = text[start - 1] if start > 0 else ""
                after = text[end + 1] if end + 1 < len(text) else ""
                if (before and (before.isdigit() or before == ".")) or (after and after.isdigit()):
                    continue
            kinds.append(kind)
        return [Hit(k, where) for k in kinds]


# --------------------------------------------------------------------------- file contents
def _png_parts(data: bytes) -> list[tuple[str, bytes]]:
    """(part, bytes) of a PNG: decompressed text chunks and the decompressed pixel stream."""
    parts, idat = [], []
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"zTXt":
            key, _, rest = body.partition(b"\0")
            parts.append(("zTXt chunk", key + b" " + _inflate(rest[1:])))
        elif ctype == b"iTXt":
            key, _, rest = body.partition(b"\0")
            flag = rest[:1]
            fields = rest[2:].split(b"\0", 2)
            text = fields[2] if len(fields) == 3 else b""
            parts.append(("iTXt chunk", key + b" " + (_inflate(text) if flag == b"\x01" else text)))
        elif ctype == b"IEND":
            break
    if idat:
        parts.append(("pixel stream", _inflate(b"".join(idat))))
    return parts


def _inflate(data: bytes, wbits: int = zlib.MAX_WBITS) -> bytes:
    try:
        return zlib.decompressobj(wbits).decompress(data, 1 << 30)
    except zlib.error:
        return b""


def _dicom_parts(data: bytes) -> list[tuple[str, bytes]]:
    """A deflated DICOM data set (transfer syntax 1.2.840.10008.1.2.1.99) inflated."""
    if b"1.2.840.10008.1.2.1.99" not in data[:4096]:
        return []
    # the file meta group ends where its group length says; the rest is raw deflate
    try:
        i = data.index(b"\x02\x00\x00\x00UL", 128)
        meta_len = struct.unpack("<I", data[i + 8:i + 12])[0]
        return [("deflated data set", _inflate(data[i + 12 + meta_len:], -zlib.MAX_WBITS))]
    except (ValueError, struct.error):
        return []


def _parquet_parts(path: Path) -> list[tuple[str, bytes]]:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception:  # noqa: BLE001 - an unreadable table is scanned as raw bytes only
        return []
    text = "\n".join(",".join(map(str, row.values())) for row in table.to_pylist())
    return [("table values", " ".join(table.column_names).encode() + b"\n" + text.encode("utf-8"))]


def file_parts(path: Path) -> list[tuple[str, bytes]]:
    """What a file holds: its bytes, and what its compressed parts decompress to."""
    data = path.read_bytes()
    parts = [("", data)]
    name = path.name.lower()
    if name.endswith(".gz") or data[:2] == b"\x1f\x8b":
        try:
            parts.append(("decompressed", gzip.decompress(data)))
        except (OSError, EOFError, zlib.error):
            pass
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        parts += _png_parts(data)
    if data[128:132] == b"DICM":
        parts += _dicom_parts(data)
    if name.endswith(".parquet"):
        parts += _parquet_parts(path)
    return parts


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
        for part, data in file_parts(path):
            n_bytes += len(data) if not part else 0
            hits += m.find(data, f"{rel}" + (f" ({part})" if part else ""))
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
