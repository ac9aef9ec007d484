"""Per-image rows of a manifest, and reading / writing them as CSV."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from synthmed.errors import InputError
from synthmed.io.atomic import write_text

LABEL_SEP = "|"


@dataclass(frozen=True)
class ImageRecord:
    """One row of `manifest.csv`. Every identifier here is already a pseudonym."""

    index: int
    patient: str
    study: str = ""
    series: str = ""
    split: str = ""
    labels: tuple[str, ...] = field(default_factory=tuple)
    age: float = math.nan
    sex: str = ""
    modality: str = ""
    source_format: str = ""
    original_shape: tuple[int, ...] = field(default_factory=tuple)
    original_spacing: tuple[float, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CohortRecord:
    """One row of a synthetic cohort's `manifest.csv`: one image (one study of a virtual patient).

    Cohorts written before virtual patients had several studies lack the study columns; they
    read as first studies."""

    index: int
    patient: str
    labels: tuple[str, ...] = field(default_factory=tuple)
    age: float = math.nan
    sex: str = ""
    study_index: int = 0
    days_since_first: int = 0
    study_date: str = ""            # SYNTHETIC_EPOCH + offsets, never a date from the data
    seed: str = ""                  # the study's sampling seed (text: it may exceed 2^53)
    followup_strength: float = math.nan  # SDEdit strength of a follow-up; empty for a first study


def _fmt(value: object) -> str:
    if isinstance(value, tuple):
        sep = LABEL_SEP if all(isinstance(v, str) for v in value) else "x"
        return sep.join(_fmt(v) for v in value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:g}"
    return str(value)


def records_to_csv(records: list, record_type: type) -> str:
    names = [f.name for f in fields(record_type)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for r in records:
        d = asdict(r)
        writer.writerow([_fmt(d[n]) for n in names])
    return buf.getvalue()


def write_records(path: str | Path, records: list, record_type: type) -> None:
    write_text(path, records_to_csv(records, record_type))


def read_records(path: str | Path, record_type: type) -> list:
    types = {f.name: f.type for f in fields(record_type)}
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            kwargs = {}
            for name, typ in types.items():
                if name not in row:
                    continue
                kwargs[name] = _parse(row[name], str(typ), name)
            out.append(record_type(**kwargs))
    return out


def read_manifest(path: str | Path, record_type: type) -> list:
    """`read_records` for an input folder: a malformed row is one line naming the file and row."""
    required = [f.name for f in fields(record_type) if f.name in ("index", "patient")]
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: cannot be read as CSV ({err})") from None
    missing = [n for n in required if n not in header]
    if missing:
        raise InputError(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    try:
        return read_records(path, record_type)
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: malformed row ({str(err).splitlines()[0]})") from None


def _parse(text: str, typ: str, name: str) -> object:
    if typ == "int":
        return int(text)
    if typ == "float":
        return float(text) if text else math.nan
    if name == "labels":
        return tuple(t for t in text.split(LABEL_SEP) if t)
    if name == "original_shape":
        return tuple(int(t) for t in text.split("x") if t)
    if name == "original_spacing":
        return tuple(float(t) for t in text.split("x") if t)
    return text
