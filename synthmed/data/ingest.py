"""Ingestion: folders of DICOM / NIfTI / PNG / NPZ in, one de-identified Dataset folder out.

The pipeline is a short loop:

1. discover input files (recursive, sorted); the suffix picks the reader, documents and tables
   (.csv, .json, .txt, ...) are skipped and counted, DICOM files are grouped into series;
2. read + normalise + resize each file or series in a process pool (results kept in input
   order, so the output does not depend on the number of workers);
3. stream images into `images.npy` (the dataset may be larger than memory);
4. split by patient, then write `manifest.csv`, `dataset.json` and `ingest_report.json`.

Privacy: readers pseudonymise every identifier with the user's key before it reaches this
module. File names can themselves identify (NIH stems encode patient IDs, DICOM files are named
by UID), so no input path is written anywhere: a refused file appears in the report as a keyed
hash plus its suffix, and its real path is printed on the console only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import hmac
import multiprocessing
import os
import re
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from synthmed.config import validate_config
from synthmed.data.array_store import NpyAppender
from synthmed.data.dataset import DATASET_SCHEMA, SPLITS
from synthmed.data.ingest_config import IngestConfig
from synthmed.data.metadata import Metadata, MetadataRow, read_metadata
from synthmed.data.normalise import GeometryError, prepare
from synthmed.data.records import ImageRecord, records_to_csv
from synthmed.data.split import assert_patient_disjoint, patient_strata, split_patients
from synthmed.errors import InputError, SynthmedError, require_path
from synthmed.data.checks import ImageCheck, build_checks, run_checks
from synthmed.io import nifti
from synthmed.io.atomic import write_json, write_text
from synthmed.io.readers import (ReadOptions, ReadTask, get_reader, known_suffixes, reader_for,
                                 suffix_of)
from synthmed.io.types import LoadedImage, RefusedInput
from synthmed.progress import console, make_progress
from synthmed.provenance import hash_id_list, provenance

REPORT_SCHEMA = "synthmed.ingest_report/1"

@dataclass
class IngestResult:
    """What `ingest` wrote and what it left out (counts are files unless named otherwise)."""

    out: Path
    files_found: int
    read: int
    kept: int
    refused: int
    skipped: int
    images: int
    patients: int
    splits: dict[str, dict[str, int]]
    refusals: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- discovery

def _safe_suffix(path: Path) -> str:
    """The suffix when it is a known file type; anything else ('.16573', a UID tail, or
    '.Jane' in 'Doe.Jane') could identify, and is dropped."""
    suffix = suffix_of(path)
    return suffix if suffix in known_suffixes() else ""


def file_ref(key: bytes, path: str | Path) -> str:
    """Keyed, non-reversible name for an input file: 'F-' + 12 hex + known suffix."""
    digest = hmac.new(key, b"synthmed-file/" + os.fsencode(str(path)), hashlib.sha256).hexdigest()
    return f"F-{digest[:12]}{_safe_suffix(Path(path))}"


def _walk(root: Path) -> Iterator[Path]:
    """Files under `root`, sorted, hidden names skipped, symlinks followed (broken ones kept)."""
    if not root.is_dir():
        yield root
        return
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            inner = list(_walk(entry))
            # An empty folder named like an image file is what the user meant as a file.
            if not inner and reader_for(entry) not in (None, "dicom"):
                yield entry
            yield from inner
        else:
            yield entry


@dataclass
class _Discovery:
    tasks: list[ReadTask]
    refusals: list[tuple[Path, str, int]]   # (path, reason, n_files)
    skipped: Counter
    files_found: int
    dicom_headers: Any = None               # the DICOM scan's HeaderCache, for the readers


def discover(sources: list[Path], config: IngestConfig, metadata: Metadata | None, deid) -> _Discovery:
    from_name = re.compile(config.filename_patient_pattern) if config.filename_patient_pattern else None
    tasks: list[ReadTask] = []
    refusals: list[tuple[Path, str, int]] = []
    skipped: Counter = Counter()
    dicom_files: list[tuple[Path, tuple, Path]] = []
    found = 0
    for si, src in enumerate(sources):
        root = src if src.is_dir() else src.parent
        for path in _walk(src):
            rel = path.relative_to(root).as_posix() if path != root else path.name
            if any(fnmatch.fnmatch(rel, pat) for pat in config.exclude):
                skipped["excluded by config"] += 1
                found += 1
                continue
            found += 1
            kind = reader_for(path)
            if kind is None:
                skipped[suffix_of(path)] += 1  # always one of SKIP_SUFFIXES
                continue
            order = (si, rel)
            if path.is_symlink() and not path.exists():
                refusals.append((path, "unreadable: broken symbolic link", 1))
                continue
            if path.is_dir():
                refusals.append((path, "unreadable: a folder, not a file", 1))
                continue
            if get_reader(kind).groups_files:
                dicom_files.append((path, order, root))
                continue
            row = metadata.lookup(path, root) if metadata is not None else None
            raw = row.patient_id if row is not None and row.patient_id else None
            if raw is None and from_name is not None:
                stem = get_reader(kind).stem(path)
                m = from_name.search(stem)
                # '00000001' from a file name is patient '1' in a metadata CSV: numeric IDs lose
                # leading zeros so both routes give the same pseudonym.
                raw = (m.group(1).lstrip("0") or "0") if m and m.group(1).isdigit() else \
                    (m.group(1) if m else None)
            if raw is None and kind != "npz":
                raw = str(Path(rel).with_suffix(""))  # each file its own patient
            tasks.append(ReadTask(kind, path, order, row, raw))
    headers = None
    if dicom_files:
        order_of = {p: (o, r) for p, o, r in dicom_files}
        scan = get_reader("dicom").scan([p for p, _, _ in dicom_files])
        series_list, dicom_refused, headers = scan.series, scan.refused, scan.headers
        for ref in dicom_refused:
            refusals.append((Path(ref.path), ref.reason, 1))
        for series in series_list:
            files = sorted(series.files, key=lambda p: order_of.get(Path(p), ((1 << 30, ""), None))[0])
            first = Path(files[0])
            order, root = order_of.get(first, ((len(sources), str(first)), None))
            row = None
            if metadata is not None:
                for f in files:
                    row = metadata.lookup(Path(f), root)
                    if row is not None:
                        break
            tasks.append(ReadTask("dicom", first, order, row, None, series,
                                  tuple(Path(f) for f in files)))
    tasks.sort(key=lambda t: t.order)
    return _Discovery(tasks, refusals, skipped, found, headers)


# --------------------------------------------------------------------------- workers

@dataclass
class _Item:
    """Output images from one LoadedImage, with what the manifest needs."""

    images: list[np.ndarray]
    shapes: list[tuple[int, ...]]
    spacings: list[tuple[float, ...]]
    image: LoadedImage  # array dropped before it crosses the process boundary
    window: tuple[float, float]
    raw_range: tuple[float, float]


@dataclass
class _Outcome:
    task_path: Path
    n_files: int
    items: list[_Item] = field(default_factory=list)
    refusals: list[tuple[Path, str]] = field(default_factory=list)


@dataclass
class _WorkerContext:
    """Everything a worker needs besides its task; built once per run by `ingest` and handed
    to worker processes by the pool initializer (fork: inherited, not pickled)."""

    deid: Any
    config: IngestConfig
    options: ReadOptions
    checks: list[ImageCheck]


# Set only by `_init_worker`, in a worker process: ProcessPoolExecutor calls a module-level
# function per task, and this is how the initializer's arguments reach it.
_WORKER: _WorkerContext | None = None


def _init_worker(ctx: _WorkerContext) -> None:
    global _WORKER
    _WORKER = ctx


def _apply_metadata(img: LoadedImage, row: MetadataRow | None, deid) -> LoadedImage:
    if row is None:
        return img
    changes: dict[str, Any] = {}
    if row.patient_id:
        changes["patient"] = deid.patient(row.patient_id)
    if row.labels is not None:
        changes["labels"] = row.labels
    if row.age == row.age:  # not NaN
        changes["age"] = row.age
    if row.sex:
        changes["sex"] = row.sex
    return dataclasses.replace(img, **changes)


def _process(task: ReadTask, ctx: _WorkerContext) -> _Outcome:
    """Read, de-identify, check, normalise and resize one task; never raises for bad input."""
    deid, config = ctx.deid, ctx.config
    outcome = _Outcome(task.path, task.n_files)
    try:
        loaded = get_reader(task.reader).read(task, deid, ctx.options)
    except RefusedInput as err:
        outcome.refusals.append((Path(err.path), err.reason))
        return outcome
    except MemoryError:
        outcome.refusals.append((task.path, "too large to read into memory"))
        return outcome
    except OSError as err:
        outcome.refusals.append((task.path, f"unreadable: {err.strerror or type(err).__name__}"))
        return outcome
    except Exception as err:  # noqa: BLE001 - one bad file must not stop a hospital-sized run
        outcome.refusals.append((task.path, f"could not be read ({type(err).__name__}: {err})"))
        return outcome
    if not loaded:
        outcome.refusals.append((task.path, "no image in the file"))
    for i, img in enumerate(loaded):
        img = _apply_metadata(img, task.meta, deid)
        where = f"image {i + 1} of {len(loaded)}: " if len(loaded) > 1 else ""
        checked = run_checks(img, ctx.checks)
        if checked.refused:
            outcome.refusals.append((task.path, f"{where}{checked.reason}"))
            continue
        img = checked.image
        try:
            prep = prepare(img.array, img.spacing, img.modality, config)
        except GeometryError as err:
            outcome.refusals.append((task.path, f"{where}{err}"))
            continue
        slim = dataclasses.replace(img, array=np.empty((0,), np.float32))
        outcome.items.append(_Item(prep.images, prep.shapes, prep.spacings, slim, prep.window,
                                   prep.raw_range))
    return outcome


def _noop() -> None:
    return None


@contextlib.contextmanager
def _worker_pool(workers: int, n_tasks: int, ctx: _WorkerContext) -> Iterator[Any]:
    """A started process pool, or None when the work runs in this process.

    fork: workers inherit the imported modules, so starting them costs milliseconds instead of
    the seconds a fresh interpreter spends importing numpy, scipy and pydicom. The workers are
    started here, before the progress bar's refresh thread exists, so no child can inherit a
    lock that thread holds.
    """
    if workers <= 1 or n_tasks <= 1:
        yield None
        return
    methods = multiprocessing.get_all_start_methods()
    mp = get_context("fork") if "fork" in methods else get_context()
    pool = ProcessPoolExecutor(max_workers=min(workers, n_tasks), mp_context=mp,
                               initializer=_init_worker, initargs=(ctx,))
    try:
        pool.submit(_noop).result()  # with fork, all workers start on the first submit
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _process_chunk(tasks: list[ReadTask]) -> list[_Outcome]:
    assert _WORKER is not None, "_process_chunk runs in a worker started by _worker_pool"
    return [_process(t, _WORKER) for t in tasks]


def _chunks(tasks: list[ReadTask], workers: int) -> list[list[ReadTask]]:
    """Small files travel to workers in batches (one round trip per ~16 PNGs instead of one per
    file); a DICOM series, already many files, travels alone."""
    size = max(1, min(16, len(tasks) // (8 * workers)))
    out: list[list[ReadTask]] = []
    for t in tasks:
        if (t.series is not None or not out or out[-1][-1].series is not None
                or len(out[-1]) >= size):
            out.append([t])
        else:
            out[-1].append(t)
    return out


def _ordered_map(tasks: list[ReadTask], ctx: _WorkerContext, pool,
                 workers: int = 1) -> Iterator[_Outcome]:
    """Outcomes in task order; at most a few batches in flight per worker (bounded memory)."""
    if pool is None:
        for task in tasks:
            yield _process(task, ctx)
        return
    pending: deque = deque()
    it = iter(_chunks(tasks, workers))
    for chunk in it:
        pending.append(pool.submit(_process_chunk, chunk))
        if len(pending) >= 3 * workers:
            break
    while pending:
        outcomes = pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(_process_chunk, nxt))
        yield from outcomes


# --------------------------------------------------------------------------- pipeline

def _spacing(spacing) -> tuple[float, ...]:
    """Spacing for the manifest; unknown (any NaN) is written as empty."""
    values = tuple(round(float(s), 6) for s in spacing)
    return () if any(v != v for v in values) else values


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _scrub(reason: str, path: Path, ref: str) -> str:
    """Remove the file's own name from a reason, and keep the reason to one short line.

    The stem alone is replaced only when it looks like an identifier (has a digit, 6+ chars),
    so that a file called 'empty.dcm' keeps the reason 'empty file'."""
    texts = {str(path), path.name}
    if path.is_absolute() or path.exists():
        texts.add(str(path.resolve()))
    for stem in (nifti.nifti_stem(path), path.stem):
        if len(stem) >= 6 and any(ch.isdigit() for ch in stem):
            texts.add(stem)
    for text in sorted(texts, key=len, reverse=True):
        if len(text) >= 3:
            reason = reason.replace(text, ref)
    reason = " ".join(reason.split())
    return reason if len(reason) <= 240 else reason[:237] + "..."


def _warn(message: str, warnings: list[str], *, console_message: str | None = None) -> None:
    """Record a warning in the report and print it (the console may name real paths)."""
    warnings.append(message)
    console.print(f"synthmed: warning: {console_message or message}", markup=False,
                  highlight=False, soft_wrap=True)


def ingest(sources: list[Path], out: Path, config: IngestConfig | None = None,
           metadata_csv: Path | None = None, key_path: Path | None = None,
           workers: int | None = None, show_paths: bool = False) -> IngestResult:
    """Turn `sources` (files or folders) into a de-identified Dataset folder at `out`.

    A refused file is named on the console by its keyed reference (as in the report) unless
    `show_paths` is set: input paths often carry identifiers (MRN folders, UID file names), and a
    console is easily captured into a log.
    """
    from synthmed.deid import Deidentifier, load_or_create_key

    config = config if config is not None else IngestConfig()
    if not isinstance(config, IngestConfig):
        config = validate_config(dict(config), IngestConfig)
    sources = [require_path(s, "input") for s in sources]
    if not sources:
        raise InputError("no input given: name at least one file or folder to ingest")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output exists and is not a folder")
    for src in sources:
        if src.is_dir() and out.resolve().is_relative_to(src.resolve()):
            raise InputError(f"{out}: output folder is inside the input folder {src}; choose "
                             "another --out")
    workers = workers or config.workers or default_workers()
    key, key_file = load_or_create_key(key_path)
    deid = Deidentifier(key)
    warnings: list[str] = []

    metadata, meta_info = None, {"csv": None}
    if metadata_csv is not None:
        try:
            metadata = read_metadata(require_path(metadata_csv, "metadata CSV", kind="file"),
                                     config.metadata_columns)
            meta_info = {"csv": Path(metadata_csv).name, "layout": metadata.layout,
                         "rows": len(metadata), "matched_files": 0}
        except SynthmedError as err:
            name = Path(metadata_csv).name
            # The report names the CSV by its file name only; the console gets the full path.
            short = str(err).replace(str(metadata_csv), name)
            _warn(f"{short}; ingesting without metadata", warnings,
                  console_message=f"{err}; ingesting without metadata")
            meta_info = {"csv": name, "error": short}

    found = discover(sources, config, metadata, deid)
    refusals: list[dict[str, str]] = []
    files_refused = 0

    def refuse(path: Path, reason: str, n_files: int = 1) -> None:
        nonlocal files_refused
        ref = file_ref(key, path)
        reason = _scrub(reason, path, ref)
        refusals.append({"file": ref, "reason": reason} | ({"files": n_files} if n_files > 1 else {}))
        files_refused += n_files
        shown = path if show_paths else ref
        console.print(f"synthmed: refused {shown}: {reason}", markup=False, highlight=False, soft_wrap=True)

    for path, reason, n in found.refusals:
        refuse(path, reason, n)
    if metadata is not None:
        meta_info["matched_files"] = sum(t.n_files for t in found.tasks if t.meta is not None)
        unmatched = sum(1 for t in found.tasks if t.meta is None)
        if unmatched:
            _warn(f"{Path(metadata_csv).name}: no row for {unmatched} of {len(found.tasks)} input(s); those "
                  "keep the patient from their header or file name and no labels", warnings)

    created_out = not out.exists()
    tmp_images = out / ".images-ingest.npy"
    appender = NpyAppender(tmp_images, tuple(config.shape))
    rows: list[dict[str, Any]] = []
    files_kept = 0
    intensity: dict[str, dict[str, Any]] = {}
    try:
        ctx = _WorkerContext(deid, config, ReadOptions(config, found.dicom_headers),
                             build_checks(config))
        with _worker_pool(workers, len(found.tasks), ctx) as pool, \
                make_progress() as progress:
            bar = progress.add_task("ingest", total=len(found.tasks))
            for outcome in _ordered_map(found.tasks, ctx, pool, workers):
                for path, reason in outcome.refusals:
                    refuse(path, reason, outcome.n_files if not outcome.items else 1)
                if outcome.items:
                    files_kept += outcome.n_files
                for item in outcome.items:
                    img = item.image
                    stats = intensity.setdefault(img.modality or "unknown", {
                        "images": 0, "raw_min": np.inf, "raw_max": -np.inf, "windows": set()})
                    stats["images"] += 1
                    stats["raw_min"] = min(stats["raw_min"], item.raw_range[0])
                    stats["raw_max"] = max(stats["raw_max"], item.raw_range[1])
                    if img.modality == "CT":
                        stats["windows"].add(item.window)
                    for arr, shp, spc in zip(item.images, item.shapes, item.spacings):
                        rows.append({"index": appender.append(arr), "patient": img.patient,
                                     "study": img.study, "series": img.series,
                                     "labels": tuple(img.labels), "age": float(img.age),
                                     "sex": img.sex, "modality": img.modality,
                                     "source_format": img.source_format,
                                     "original_shape": tuple(int(s) for s in shp),
                                     "original_spacing": _spacing(spc)})
                progress.advance(bar)
        if not rows:
            appender.abort()
            n_read = found.files_found - sum(found.skipped.values())
            if n_read == 0:
                raise InputError(f"{sources[0]}: no image files found ({found.files_found} file(s), "
                                 "none with a readable image type); nothing to ingest")
            raise InputError(f"nothing usable: all {n_read} input file(s) were refused (reasons "
                             "above); no dataset written")
        appender.close()
    except BaseException:
        appender.abort()
        tmp_images.unlink(missing_ok=True)
        if created_out and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # leave no empty dataset folder behind
        raise

    try:
        result = _write_outputs(out, tmp_images, rows, config, deid, key_file, found, refusals,
                                files_refused, files_kept, meta_info, warnings, intensity)
    finally:
        tmp_images.unlink(missing_ok=True)
    return result


def _write_outputs(out: Path, tmp_images: Path, rows: list[dict[str, Any]], config: IngestConfig,
                   deid, key_file: Path, found: _Discovery, refusals: list[dict[str, str]],
                   files_refused: int, files_kept: int, meta_info: dict, warnings: list[str],
                   intensity: dict) -> IngestResult:
    patients = [r["patient"] for r in rows]
    strata = patient_strata(patients, [r["labels"] for r in rows])
    assignment = split_patients(patients, config.split, strata)
    records = [ImageRecord(split=assignment[r["patient"]], **r) for r in rows]
    assert_patient_disjoint([r.patient for r in records], [r.split for r in records])

    manifest = records_to_csv(records, ImageRecord)
    h = hashlib.sha256()
    with open(tmp_images, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    h.update(manifest.encode("utf-8"))
    fingerprint = h.hexdigest()

    splits = {s: {"images": sum(1 for r in records if r.split == s),
                  "patients": len({r.patient for r in records if r.split == s})} for s in SPLITS}
    vocab = sorted({lab for r in records for lab in r.labels})
    spacing = (list(config.spacing) if config.spacing is not None and config.fit == "pad_crop"
               else None)
    n_read = found.files_found - sum(found.skipped.values())
    info = {
        "schema": DATASET_SCHEMA,
        "spatial_dims": config.spatial_dims,
        "shape": list(config.shape),
        "spacing": spacing,
        "normalisation": config.normalisation.describe(),
        "label_vocabulary": vocab,
        "splits": {s: v["images"] for s, v in splits.items()},
        "split_patients": {s: v["patients"] for s, v in splits.items()},
        "images": len(records),
        "patients": len(set(patients)),
        "patients_sha256": hash_id_list(patients),
        "modalities": dict(sorted(Counter(r.modality for r in records).items())),
        "source_formats": dict(sorted(Counter(r.source_format for r in records).items())),
        "fingerprint": fingerprint,
        "provenance": provenance(config, seed=config.split.seed),
    }
    for stats in intensity.values():
        stats["windows"] = sorted([list(w) for w in stats["windows"]])
    report = {
        "schema": REPORT_SCHEMA,
        "counts": {"files_found": found.files_found, "read": n_read, "kept": files_kept,
                   "refused": files_refused, "skipped": sum(found.skipped.values()),
                   "refusal_entries": len(refusals), "images": len(records),
                   "patients": len(set(patients))},
        "skipped": dict(sorted(found.skipped.items())),
        "refusals": refusals,
        "refusal_file_names": "keyed",
        "refusal_file_names_note": ("input file names can identify patients (NIH stems, DICOM "
                                    "UIDs), so refused files are named by a keyed hash of their "
                                    "path plus the suffix; the real paths were printed on the "
                                    "console of the run only"),
        "metadata": meta_info,
        "warnings": warnings,
        "intensity_before_normalisation": intensity,
        "deid": {"profile": deid.profile_description(), "key_path": str(key_file)},
        "splits": splits,
        "config": config.model_dump(mode="json"),
        "packages": info["provenance"]["packages"],
        "fingerprint": fingerprint,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "manifest.csv", manifest)
    write_json(out / "ingest_report.json", report)
    write_json(out / "dataset.json", info)
    os.replace(tmp_images, out / "images.npy")  # last: a dataset is complete once images.npy is new
    (out / "contact_sheet.png").unlink(missing_ok=True)  # drawn from the previous images, if any
    return IngestResult(out=out, files_found=found.files_found, read=n_read, kept=files_kept,
                        refused=files_refused, skipped=sum(found.skipped.values()),
                        images=len(records), patients=len(set(patients)), splits=splits,
                        refusals=refusals, warnings=warnings)


def iter_outputs(out: Path) -> Iterable[Path]:
    """Every file in a dataset folder (for privacy scans in tests and audits)."""
    return sorted(p for p in Path(out).rglob("*") if p.is_file())
