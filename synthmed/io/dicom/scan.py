"""Pass 1 of DICOM reading: header scan and series grouping (no pixel data is read).

`find_dicom_series` reads only the start of each header (up to the image size tags, before the
large private groups and the pixel data) to refuse what is not DICOM and to group files by
series. The partial headers stay in the scan's `HeaderCache` (bounded), which `load_series`
continues from, so every byte is parsed once.
"""

from __future__ import annotations

import os
from collections import OrderedDict, defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial

from synthmed.deid.dicom_deid import quiet_pydicom, raw_identity
from synthmed.io.types import RefusedInput

_HEADER_END = 0x00280011  # Columns: everything the grouping needs lies before it


class HeaderCache:
    """The scan's partial headers, so that `load_series` parses only the rest of each file
    instead of the header a second time (re-parsing it costs 25-50 % of a bare
    `dcmread(...).pixel_array` on small MR slices).

    Bounded (oldest out first); an entry is used once. Owned by the `DicomScan` that filled it;
    forked ingest workers inherit it through the pool initializer. Pickling (a spawned worker)
    gives an empty cache: the reader then parses each file whole, the same result, slower.
    """

    MAX_ENTRIES = 8192  # ~40-50 kB each: at most ~0.4 GB

    def __init__(self, max_entries: int | None = None):
        self._entries: OrderedDict[str, tuple[Dataset, int, int, int]] = OrderedDict()
        self.max_entries = max_entries or self.MAX_ENTRIES

    def put(self, path: Path, ds: Dataset, offset: int, st: os.stat_result) -> None:
        self.put_raw(path, (ds, offset, st.st_mtime_ns, st.st_size))

    def put_raw(self, path: Path, entry: tuple) -> None:
        self._entries[str(path)] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def pop(self, path: Path) -> tuple | None:
        return self._entries.pop(str(path), None)

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict:
        return {"max_entries": self.max_entries}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state.get("max_entries"))


@dataclass
class DicomSeries:
    """Files of one series, as grouped from their headers.

    `key` is the raw grouping key (a SeriesInstanceUID, or a fallback built from other UIDs)
    and `raw_patient` the raw identity of its first file (`synthmed.deid.raw_identity`); both
    live only in memory, are never written, and reach outputs only as keyed pseudonyms.
    `headers` is the scan's cache (not pickled: a worker gets it through its initializer).
    """

    files: list[Path]
    modality: str = ""
    key: str = field(default="", repr=False)
    raw_patient: str = field(default="", repr=False)
    headers: HeaderCache | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "headers": None}


@dataclass
class DicomScan:
    """What pass 1 found: series, refused files, and the partial headers it read.

    Unpacks and indexes as `(series, refused)`, the tuple `find_dicom_series` used to return.
    """

    series: list[DicomSeries]
    refused: list[RefusedInput]
    headers: HeaderCache

    def __iter__(self):
        return iter((self.series, self.refused))

    def __getitem__(self, i: int):
        return (self.series, self.refused)[i]


def _truncated(caught: list) -> bool:
    return any("end of file" in str(w.message).lower() for w in caught)


def _stop_after_header(tag, vr, length) -> bool:
    return int(tag) > _HEADER_END  # plain int compare: BaseTag.__gt__ is slow in this hot loop


def _looks_like_dicom(ds: Dataset) -> bool:
    # Forced parsing of arbitrary bytes often "succeeds" with garbage tags; a real dataset
    # without a preamble still carries some of these.
    return any(t in ds for t in (0x00080016, 0x00080018, 0x00080060, 0x00280010, 0x0020000D))


def _read_header(path: Path, caught: list | None = None,
                 headers: HeaderCache | None = None) -> Dataset:
    """The header up to Columns, or RefusedInput with a short reason.

    `caught` is the warnings list of a `quiet_pydicom` context already open around the whole
    scan (one context per file costs about a tenth of parsing a small header); without it,
    this call opens its own.
    """
    try:
        fp = open(path, "rb")
    except OSError as err:
        raise RefusedInput(path, f"cannot read file ({err.strerror or type(err).__name__})") from None
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
        raise RefusedInput(path, f"cannot read file ({err.strerror or type(err).__name__})") from None
    except Exception as err:  # EOFError, struct/ValueError from a cut-off header, ...
        raise RefusedInput(path, f"truncated or corrupt DICOM header ({type(err).__name__})") from None
    if headers is not None:
        headers.put(path, ds, offset, st)
    return ds


def _text(ds: Dataset, keyword: str) -> str:
    v = ds.get(keyword, "")
    return "" if v is None else str(v).strip()


def header_number(ds: Dataset, keyword: str, default: float, path: Path, cast=float):
    """`keyword`'s value as a number (`default` when absent or empty), or RefusedInput naming the
    keyword. The reason never quotes the value: a malformed field can hold anything, a name
    included, and Python's own message ("could not convert string to float: '...'") would."""
    try:
        value = ds.get(keyword, default)
        return cast(value if value not in (None, "") else default)
    except (TypeError, ValueError, OverflowError):
        raise RefusedInput(path, f"{keyword} is not a valid number") from None


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


def find_dicom_series(paths: list[Path], *, headers: HeaderCache | None = None) -> DicomScan:
    """Group DICOM files into series from their headers (no pixel data is read).

    Folders in `paths` are searched recursively. Non-DICOM, empty, unreadable and cut-off files
    come back as RefusedInput; a second file with the SOP Instance UID of one already in the
    series is refused as a duplicate. The partial headers go into `headers` (a new cache by
    default), which every returned series points to.
    """
    headers = headers if headers is not None else HeaderCache()
    groups: dict[str, list[Path]] = defaultdict(list)
    first: dict[str, tuple[str, str]] = {}
    seen: dict[str, set[str]] = defaultdict(set)
    refused: list[RefusedInput] = []
    with quiet_pydicom() as caught:
        _scan(_expand(paths), groups, first, seen, refused, caught, headers)
    series = [DicomSeries(files=sorted(files), modality=first[k][0], key=k, raw_patient=first[k][1],
                          headers=headers) for k, files in groups.items()]
    series.sort(key=lambda s: str(s.files[0]))
    return DicomScan(series, refused, headers)


def _scan(paths, groups, first, seen, refused, caught, headers) -> None:
    for path in paths:
        del caught[:]  # warnings of files already judged: keep the list short
        try:
            ds = _read_header(path, caught, headers)
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
        if key not in first:
            first[key] = (_raw_text(ds, 0x00080060).upper(), raw_identity(ds))
