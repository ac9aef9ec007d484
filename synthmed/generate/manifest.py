"""The cohort's manifest: one row per image, as manifest.csv and manifest.parquet.

Rows are sorted by (patient index, study index) and numbered in that order, so shards merged in
any order give the same files. The first columns (index, patient, labels, age, sex) are those of
a sampled cohort's manifest.csv (`CohortRecord`), so a reader of either finds them.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from synthmed.data.records import LABEL_SEP
from synthmed.errors import InputError
from synthmed.io.atomic import write_bytes, write_text

CSV_NAME = "manifest.csv"
PARQUET_NAME = "manifest.parquet"
_PATH_PREFIX = "path_"


@dataclass(frozen=True)
class ManifestRow:
    """One image of a generated cohort: who, when, which UIDs, where, and how it was made."""

    patient: str                    # SYN- id
    patient_index: int
    study_index: int                # 0 for the first study
    days_since_first: int
    study_date: str                 # ISO date: synthetic epoch + offset
    study_uid: str
    series_uid: str
    sop_uid: str                    # the first instance's (a 3D series has `instances` of them)
    instances: int
    labels: tuple[str, ...]
    age: float | None
    sex: str
    seed: int                       # this study's sampling seed
    patient_seed: int
    cohort_seed: int
    model_hash: str
    sampler: str
    steps: int
    guidance_scale: float
    followup_strength: float | None = None
    paths: dict[str, str] = field(default_factory=dict)  # format -> path relative to the cohort


_SCALARS = [f for f in fields(ManifestRow) if f.name not in ("labels", "paths")]
_INT = {"patient_index", "study_index", "days_since_first", "instances", "seed", "patient_seed",
        "cohort_seed", "steps"}
_FLOAT = {"guidance_scale"}
_OPT_FLOAT = {"age", "followup_strength"}


def _sorted(rows: list[ManifestRow]) -> list[ManifestRow]:
    out = sorted(rows, key=lambda r: (r.patient_index, r.study_index))
    seen = set()
    for r in out:
        key = (r.patient_index, r.study_index)
        if key in seen:
            raise ValueError(f"manifest: {r.patient} study {r.study_index} appears twice")
        seen.add(key)
    return out


def _formats(rows: list[ManifestRow]) -> list[str]:
    return sorted({name for r in rows for name in r.paths})


def _columns(formats: list[str]) -> list[str]:
    names = [f.name for f in fields(ManifestRow) if f.name != "paths"]
    # CohortRecord's columns first, in its order
    head = ["index", "patient", "labels", "age", "sex"]
    return head + [n for n in names if n not in head] + [_PATH_PREFIX + f for f in formats]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return LABEL_SEP.join(value)
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


def manifest_csv(rows: list[ManifestRow]) -> str:
    rows = _sorted(rows)
    formats = _formats(rows)
    cols = _columns(formats)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for i, r in enumerate(rows):
        d = {f.name: getattr(r, f.name) for f in fields(ManifestRow)}
        d["index"] = i
        for fmt in formats:
            d[_PATH_PREFIX + fmt] = r.paths.get(fmt, "")
        w.writerow([_cell(d[c]) for c in cols])
    return buf.getvalue()


def _arrow_table(rows: list[ManifestRow]):
    import pyarrow as pa

    rows = _sorted(rows)
    formats = _formats(rows)
    types = {"index": pa.int64(), "labels": pa.list_(pa.string())}
    for f in _SCALARS:
        types[f.name] = (pa.int64() if f.name in _INT else
                         pa.float64() if f.name in _FLOAT | _OPT_FLOAT else pa.string())
    columns = {}
    for name in _columns(formats):
        if name == "index":
            values: list[Any] = list(range(len(rows)))
        elif name == "labels":
            values = [list(r.labels) for r in rows]
        elif name.startswith(_PATH_PREFIX):
            values = [r.paths.get(name[len(_PATH_PREFIX):]) for r in rows]
            types[name] = pa.string()
        else:
            values = [getattr(r, name) for r in rows]
        columns[name] = pa.array(values, type=types[name])
    return pa.table(columns)


def manifest_parquet(rows: list[ManifestRow]) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(_arrow_table(rows), buf, compression="zstd")
    return buf.getvalue()


def write_manifest(rows: list[ManifestRow], root: str | Path) -> tuple[Path, Path]:
    """manifest.csv and manifest.parquet under `root`, each written atomically."""
    root = Path(root)
    write_text(root / CSV_NAME, manifest_csv(rows))
    write_bytes(root / PARQUET_NAME, manifest_parquet(rows))
    return root / CSV_NAME, root / PARQUET_NAME


def _row_from(d: dict[str, Any], where: str) -> ManifestRow:
    kwargs: dict[str, Any] = {}
    try:
        for f in _SCALARS:
            v = d[f.name]
            if f.name in _INT:
                kwargs[f.name] = int(v)
            elif f.name in _FLOAT:
                kwargs[f.name] = float(v)
            elif f.name in _OPT_FLOAT:
                kwargs[f.name] = None if v is None or v == "" or (isinstance(v, float) and
                                                                  math.isnan(v)) else float(v)
            else:
                kwargs[f.name] = "" if v is None else str(v)
        labels = d["labels"]
        if isinstance(labels, str):
            labels = [t for t in labels.split(LABEL_SEP) if t]
        kwargs["labels"] = tuple(str(t) for t in (labels or ()))
    except KeyError as err:
        raise InputError(f"{where}: missing column {err.args[0]}") from None
    except (TypeError, ValueError) as err:
        raise InputError(f"{where}: malformed value ({err})") from None
    kwargs["paths"] = {k[len(_PATH_PREFIX):]: str(v) for k, v in d.items()
                       if k.startswith(_PATH_PREFIX) and v not in (None, "")}
    return ManifestRow(**kwargs)


def read_manifest_rows(root: str | Path) -> list[ManifestRow]:
    """The rows of a cohort's manifest.parquet (manifest.csv when there is no parquet file)."""
    root = Path(root)
    parquet, csv_path = root / PARQUET_NAME, root / CSV_NAME
    if parquet.is_file():
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(parquet).to_pylist()
        except (OSError, pa.ArrowException) as err:
            raise InputError(f"{parquet}: not a readable Parquet file ({err})") from None
        return [_row_from(r, f"{parquet} row {i}") for i, r in enumerate(records)]
    if csv_path.is_file():
        try:
            with open(csv_path, newline="", encoding="utf-8") as fh:
                records = list(csv.DictReader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise InputError(f"{csv_path}: cannot be read as CSV ({err})") from None
        return [_row_from(r, f"{csv_path} row {i + 2}") for i, r in enumerate(records)]
    raise InputError(f"{root}: no {PARQUET_NAME} or {CSV_NAME}")


__all__ = ["ManifestRow", "write_manifest", "read_manifest_rows", "manifest_csv", "manifest_parquet"]
