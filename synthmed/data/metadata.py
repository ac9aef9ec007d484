"""Per-image metadata from a CSV (patient ID, labels, age, sex), joined to images by file name.

Two layouts are recognised without configuration:

- NIH ChestX-ray14: `Image Index, Finding Labels, Patient ID, Patient Age, Patient Gender`
  ('No Finding' means no labels, labels are '|'-joined);
- canonical (what `synthmed phantoms` writes): `file, patient_id, labels, age, sex`.

Any other layout is described by `metadata_columns` in the ingest config. Rows join an image by
its path relative to the source folder or to the CSV's folder, else by its base name (when
that name is unique in the CSV). Raw patient IDs stay in memory: readers pseudonymise them.
"""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from synthmed.data.ingest_config import MetadataColumns
from synthmed.errors import InputError

NIH = MetadataColumns(file="Image Index", patient_id="Patient ID", labels="Finding Labels",
                      age="Patient Age", sex="Patient Gender")
CANONICAL = MetadataColumns(file="file", patient_id="patient_id", labels="labels", age="age",
                            sex="sex", no_finding="")

_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "o": "O", "other": "O"}


@dataclass(frozen=True)
class MetadataRow:
    patient_id: str | None
    labels: tuple[str, ...] | None  # None: the CSV has no label column
    age: float = math.nan
    sex: str = ""


@dataclass
class Metadata:
    name: str                       # the CSV's file name, for reports
    layout: str                     # "nih", "canonical" or "custom"
    base: Path                      # the CSV's folder
    by_path: dict[str, MetadataRow] = field(default_factory=dict)
    by_name: dict[str, MetadataRow] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.by_path)

    def lookup(self, path: Path, root: Path | None = None) -> MetadataRow | None:
        """The row for `path` (found under source folder `root`), or None."""
        # abspath, not resolve(): no file-system calls per image (this runs for every file)
        target = os.path.abspath(path)
        for base in (root, self.base):
            if base is None:
                continue
            rel = os.path.relpath(target, os.path.abspath(base))
            if not rel.startswith(".."):
                row = self.by_path.get(Path(rel).as_posix())
                if row is not None:
                    return row
        return self.by_name.get(path.name)


def parse_age(text: str) -> float:
    """'57', '057Y', '57.5' -> years; months/weeks/days ('006M') converted; implausible -> NaN."""
    text = (text or "").strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([YMWDymwd]?)", text)
    if not m:
        return math.nan
    value = float(m.group(1)) / {"": 1, "Y": 1, "M": 12, "W": 52.1775, "D": 365.25}[m.group(2).upper()]
    return value if 0.0 <= value <= 130.0 else math.nan


def parse_sex(text: str) -> str:
    return _SEX.get((text or "").strip().lower(), "")


def parse_labels(text: str, cols: MetadataColumns) -> tuple[str, ...]:
    parts = {t.strip() for t in (text or "").split(cols.label_separator)}
    return tuple(sorted(t for t in parts if t and t != cols.no_finding))


def read_metadata(path: str | Path, columns: MetadataColumns | None = None) -> Metadata:
    """Read a metadata CSV; missing required columns raise InputError naming the CSV and them."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise InputError(f"{path}: metadata CSV is unreadable ({why})") from None
    if columns is not None:
        cols, layout = columns, "custom"
    elif NIH.file in header:
        cols, layout = NIH, "nih"
    elif CANONICAL.file in header:
        cols, layout = CANONICAL, "canonical"
    else:
        hint = ("; it looks semicolon-delimited, and synthmed reads comma-separated CSV"
                if len(header) <= 1 and ";" in "".join(header) else "")
        raise InputError(f"{path}: metadata CSV has neither an '{NIH.file}' (NIH) nor a "
                         f"'{CANONICAL.file}' (canonical) column{hint}; set metadata_columns in "
                         "the config")
    required = [cols.file, cols.patient_id] if cols.patient_id else [cols.file]
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"{path}: metadata CSV lacks required column(s) {', '.join(missing)} "
                         f"({layout} layout; found: {', '.join(header) or 'no header'})")

    def get(row: dict, col: str | None) -> str | None:
        return None if col is None or col not in header else (row.get(col) or "")

    meta = Metadata(name=path.name, layout=layout, base=path.parent)
    names: dict[str, MetadataRow | None] = {}
    line_of: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        ref = (row.get(cols.file) or "").strip().replace("\\", "/")
        if not ref:
            continue
        labels = get(row, cols.labels)
        pid = get(row, cols.patient_id)
        rec = MetadataRow(
            patient_id=pid.strip() if pid and pid.strip() else None,
            labels=None if labels is None else parse_labels(labels, cols),
            age=parse_age(get(row, cols.age) or ""),
            sex=parse_sex(get(row, cols.sex) or ""),
        )
        ref = ref[2:] if ref.startswith("./") else ref
        if ref in meta.by_path:
            if meta.by_path[ref] != rec:
                # Which row is right is unknown, and either could move a patient to another
                # split: an error naming the rows (by number; their values stay out of it).
                raise InputError(f"{path}: metadata CSV rows {line_of[ref]} and {line} describe "
                                 "the same file with different values; keep one of them")
            continue  # an identical repeat: the same facts, used once
        line_of[ref] = line
        meta.by_path[ref] = rec
        base = ref.rsplit("/", 1)[-1]
        # A base name shared by different rows cannot identify one image.
        names[base] = rec if base not in names or names[base] == rec else None
    meta.by_name = {k: v for k, v in names.items() if v is not None}
    return meta
