"""What a release bundle must never contain: the identifiers of the real data behind it.

`collect_identifiers(dataset, sources, key)` gathers, straight from the files (never from
synthmed's own de-identifier, whose blind spots they are meant to catch):

* dataset pseudonyms: every patient, study and series pseudonym in the dataset's manifest;
* source UIDs: every UID in every header of the source DICOM files (the DICOM standard's own
  UIDs, 1.2.840.10008.*, identify nothing and are left out);
* source dates: every DA / DT value of those headers (as written, and as YYYY-MM-DD,
  YYYY/MM/DD, YYYY.MM.DD), and every 8-digit date-like value of private text elements;
* source patient IDs and names: PatientID, OtherPatientIDs, AccessionNumber, PatientName (and
  its components), and the patient ID / file columns of a metadata CSV (non-DICOM sources such as
  the NIH PNGs), with the file stems of non-DICOM images (NIH names files PATIENT_FOLLOWUP);
* key bytes: the de-identification key, raw and as hex and base64.

Values are kept in memory only; a scan reports the KIND of value it found and where, never the
value (a refusal printed on a console must not leak what it refuses).
"""

from __future__ import annotations

import base64
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from synthmed.errors import InputError, arg

STANDARD_UID_ROOT = "1.2.840.10008."
_DICOM_SUFFIXES = ("", ".dcm", ".dicom", ".ima")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".nii", ".gz", ".npy")
_ID_KEYWORDS = ("PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "DeviceSerialNumber")
# metadata CSV columns that hold a patient identifier or a source file name
_ID_COLUMNS = re.compile(r"^(patient[ _]?id|patientid|subject[ _]?id|mrn|file|image[ _]?index|filename|path)$",
                         re.IGNORECASE)
# The shortest value worth searching: shorter ones (a 3-digit ID, an initial) match by chance.
MIN_ID_CHARS = 5


@dataclass
class Identifiers:
    """kind -> identifying values (kinds: pseudonym, source UID, source date, source ID,
    source name, key bytes)."""

    values: dict[str, set[str]] = field(default_factory=dict)
    key_raw: bytes = b""
    sources_scanned: int = 0     # files read for identifiers
    notes: list[str] = field(default_factory=list)

    def add(self, kind: str, value: object) -> None:
        text = str(value).strip().strip("\x00").strip()
        if len(text) >= MIN_ID_CHARS:
            self.values.setdefault(kind, set()).add(text)

    def add_date(self, kind: str, value: object) -> None:
        digits = re.sub(r"[^0-9]", "", str(value))[:8]
        text = str(value).strip()
        if len(digits) == 8 and len(text) > 8 and re.fullmatch(r"[0-9.+\-]+", text):
            self.add(kind, text)  # a DT value as written (20190312093000.000)
        if len(digits) == 8:
            y, m, d = digits[:4], digits[4:6], digits[6:]
            for form in (digits, f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}"):
                self.add(kind, form)

    def counts(self) -> dict[str, int]:
        out = {k: len(v) for k, v in sorted(self.values.items())}
        if self.key_raw:
            out["key bytes"] = out.get("key bytes", 0) + 1
        return out


def key_forms(key: bytes) -> list[str]:
    """The ways a key could be written into a text file."""
    forms = {key.hex(), key.hex().upper()}
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        s = enc(key).decode("ascii")
        forms |= {s, s.rstrip("=")}
    return sorted(forms)


def add_key(ids: Identifiers, key: bytes) -> None:
    ids.key_raw = bytes(key)
    for form in key_forms(key):
        ids.values.setdefault("key bytes", set()).add(form)


def add_dataset(ids: Identifiers, dataset) -> None:
    """Every pseudonym of `dataset` (a synthmed Dataset)."""
    for r in dataset.records:
        for v in (r.patient, r.study, r.series):
            if v:
                ids.add("dataset pseudonym", v)


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


# Read from every file of a series; every other element is read from its first and last file
# (a full header walk costs ~50 ms a file: a minute for a 630-slice fMRI series, while the
# elements below are all that differs from slice to slice).
_PER_FILE_TAGS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
                  "ReferencedSOPInstanceUID", "ContentDate", "AcquisitionDate", "AcquisitionDateTime",
                  "InstanceCreationDate", "PatientID", "PatientName", "AccessionNumber")


def add_dicom_file(ids: Identifiers, path: Path, full: bool = True) -> None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                             specific_tags=None if full else list(_PER_FILE_TAGS))
    except Exception as err:  # noqa: BLE001 - an unreadable source is reported, not fatal
        ids.notes.append(f"{path.name}: header not readable ({type(err).__name__})")
        return
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        for elem in meta:
            if elem.VR == "UI" and elem.value and not str(elem.value).startswith(STANDARD_UID_ROOT):
                ids.add("source UID", elem.value)
    _walk(ids, ds)


def _values(elem) -> list[str]:
    import pydicom

    v = elem.value
    if v is None or isinstance(v, (bytes, bytearray)):
        return []
    items = list(v) if isinstance(v, pydicom.multival.MultiValue) else [v]
    return [str(i).strip() for i in items if str(i).strip()]


def _walk(ids: Identifiers, ds) -> None:
    for elem in ds:
        try:
            vr = elem.VR
            if vr == "SQ":
                for item in elem.value or []:
                    _walk(ids, item)
                continue
            values = _values(elem)
        except Exception:  # noqa: BLE001 - a malformed element holds nothing we can search for
            continue
        for text in values:
            if vr == "UI":
                if not text.startswith(STANDARD_UID_ROOT):
                    ids.add("source UID", text)
            elif vr in ("DA", "DT"):
                ids.add_date("source date", text)
            elif vr == "PN":
                for part in [text, *re.split(r"[\^=_]", text)]:
                    if not _placeholder(part):
                        ids.add("source name", part)
            elif elem.keyword in _ID_KEYWORDS:
                ids.add("source ID", text)
            elif elem.tag.is_private and vr in ("LO", "SH", "LT", "ST", "UT") and re.fullmatch(r"(19|20)\d{6}", text):
                ids.add_date("source date", text)


def _placeholder(text: str) -> bool:
    """Exports fill name fields with their own keyword ('ReferringPhysicianName') or a word
    such as 'anonymized': public vocabulary, not a person."""
    from pydicom.datadict import keyword_dict

    low = re.sub(r"[^a-z]", "", text.lower())
    return low in _GENERIC or any(low == k.lower() for k in keyword_dict) or low in _KEYWORD_PARTS


_GENERIC = frozenset({"anonymized", "anonymised", "anonymous", "unknown", "none", "physician",
                      "doctor", "patient", "operator", "radiologist", "technologist"})
_KEYWORD_PARTS = frozenset({"operatorsname", "requestingphysician", "referringphysician",
                            "performingphysician", "namesofintendedrecipients"})


def add_metadata_csv(ids: Identifiers, path: Path) -> None:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = [c for c in (reader.fieldnames or []) if _ID_COLUMNS.match(c.strip())]
            for row in reader:
                for c in cols:
                    v = (row.get(c) or "").strip()
                    ids.add("source ID", v)
                    ids.add("source ID", Path(v).stem)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot read the metadata table for the identifier scan ({err})") from None


def add_sources(ids: Identifiers, sources: list[Path]) -> None:
    """Identifiers of every file under each source folder (or of a single source file)."""
    for src in sources:
        src = Path(src)
        if not src.exists():
            raise InputError(f"{src}: source folder does not exist ({arg('sources')} names the inputs the "
                             "dataset was ingested from)")
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        # first and last file of each folder: a full header walk (see _PER_FILE_TAGS)
        ends: dict[Path, list[Path]] = {}
        for f in files:
            ends.setdefault(f.parent, []).append(f)
        full_walk = {g[0] for g in ends.values()} | {g[-1] for g in ends.values()}
        for f in files:
            low = f.name.lower()
            if low.endswith(".csv"):
                add_metadata_csv(ids, f)
            elif _is_dicom(f) or (low.endswith(_DICOM_SUFFIXES[1:])):
                add_dicom_file(ids, f, full=f in full_walk)
            elif low.endswith(_IMAGE_SUFFIXES):
                stem = f.name.split(".")[0]
                ids.add("source ID", stem)
            else:
                continue
            ids.sources_scanned += 1


def collect_identifiers(dataset=None, sources: list[Path] | None = None,
                        key: bytes | None = None) -> Identifiers:
    ids = Identifiers()
    if dataset is not None:
        add_dataset(ids, dataset)
    if sources:
        add_sources(ids, [Path(s) for s in sources])
    if key:
        add_key(ids, key)
    return ids


__all__ = ["Identifiers", "collect_identifiers", "add_dataset", "add_sources", "add_key",
           "key_forms", "STANDARD_UID_ROOT"]
