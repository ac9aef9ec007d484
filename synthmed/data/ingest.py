"""Ingestion: folders of DICOM / NIfTI / PNG / NPZ in, one de-identified Dataset folder out.

The pipeline is a short loop:

1. discover input files (recursive, sorted, each real file once: links and link loops are
   resolved); the reader registry (`synthmed.io.readers`) picks the reader, documents and
   tables (.csv, .json, .txt, ...) are skipped, DICOM files are grouped into series, and every
   task gets its patient by the `patient_from` rules;
2. read, check (`synthmed.data.checks`), normalise and resize each file or series in a process
   pool (results kept in input order, so the output does not depend on the number of workers);
3. stream images into `images.npy` (the dataset may be larger than memory); an image whose
   pixels equal an earlier one's is kept once for one patient and refused for two;
4. split by patient, then write `manifest.csv`, `dataset.json` and `ingest_report.json`, which
   lists every input file once (kept, refused or skipped, with the reason).

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
import stat
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from synthmed.config import validate_config
from synthmed.data.array_store import NpyAppender
from synthmed.data.dataset import DATASET_SCHEMA, SPLITS, dataset_fingerprint
from synthmed.data.ingest_config import IngestConfig
from synthmed.data.metadata import Metadata, MetadataRow, read_metadata
from synthmed.data.normalise import GeometryError, prepare
from synthmed.data.records import ImageRecord, records_to_csv
from synthmed.data.split import assert_patient_disjoint, patient_strata, split_patients
from synthmed.errors import InputError, SynthmedError, arg, require_path
from synthmed.data.checks import ImageCheck, build_checks, run_checks
from synthmed.io import folders, nifti
from synthmed.io.atomic import write_json, write_text
from synthmed.io.readers import (ReadOptions, ReadTask, get_reader, known_suffixes, reader_for,
                                 suffix_of)
from synthmed.io.types import LoadedImage, RefusedInput
from synthmed.progress import console, make_progress
from synthmed.provenance import hash_id_list, provenance, sha256_file

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
    files: list[dict[str, str]] = field(default_factory=list)  # every input once, with status

    def summary(self) -> str:
        splits = ", ".join(f"{k} {v['patients']} patients / {v['images']} images"
                           for k, v in self.splits.items() if v.get("images"))
        return (f"ingested {self.images} images of {self.patients} patients into {self.out} "
                f"({splits or 'no images'})\n"
                f"files: {self.read} read, {self.kept} kept, {self.refused} refused, "
                f"{self.skipped} skipped; details in {self.out / 'ingest_report.json'}")


# --------------------------------------------------------------------------- discovery

def _safe_suffix(path: Path) -> str:
    """The suffix when it is a known file type; anything else ('.16573', a UID tail, or
    '.Jane' in 'Doe.Jane') could identify, and is dropped."""
    suffix = suffix_of(path)
    return suffix if suffix in known_suffixes() else ""


def file_ref(key: bytes, path: str | Path) -> str:
    """Keyed, non-reversible name for an input file: 'F-' + 12 hex + known suffix."""
    # named by its final path: an input inside a folder still being staged (the demo's phantoms)
    # gets the same reference on every run
    path = folders.final_path(path)
    digest = hmac.new(key, b"synthmed-file/" + os.fsencode(str(path)), hashlib.sha256).hexdigest()
    return f"F-{digest[:12]}{_safe_suffix(Path(path))}"


def _walk(root: Path, seen_dirs: set, seen_files: set,
          loops: list[Path]) -> Iterator[tuple[Path, str | None]]:
    """(path, skip reason or None) for files under `root`, sorted, hidden names skipped.

    Symbolic links are followed, but every folder and every file is visited once, by its real
    path: a link back up the tree (`a/back -> ..`) is not followed (it goes to `loops`), and a
    second path to a file already listed is skipped with a reason, so that one image can never
    become several "patients". Broken links are listed (and refused as unreadable).
    """
    st = _stat(root)
    if st is None or not stat.S_ISDIR(st.st_mode):
        yield root, _seen_file(st, seen_files)
        return
    seen_dirs.add((st.st_dev, st.st_ino))
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        st = _stat(entry)  # one stat per entry (follows links): its kind and its identity
        if st is not None and stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) in seen_dirs:
                loops.append(entry)
                continue
            inner = list(_walk(entry, seen_dirs, seen_files, loops))
            # An empty folder named like an image file is what the user meant as a file.
            if not inner and reader_for(entry) not in (None, "dicom"):
                yield entry, None
            yield from inner
        else:
            yield entry, _seen_file(st, seen_files)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None  # a broken link (refused later as unreadable) or a file gone meanwhile


def _seen_file(st: os.stat_result | None, seen_files: set) -> str | None:
    """A skip reason when (device, inode) was listed already: a symbolic or hard link."""
    if st is None:
        return None
    ident = (st.st_dev, st.st_ino)
    if ident in seen_files:
        return "the same file as another input path (a link): read once"
    seen_files.add(ident)
    return None


@dataclass
class _Discovery:
    tasks: list[ReadTask]
    refusals: list[tuple[Path, str]]        # refused before reading, one file each
    skipped: list[tuple[Path, str]]         # (path, reason), one file each
    files: list[Path]                       # every input path, in input order
    dicom_headers: Any = None               # the DICOM scan's HeaderCache, for the readers
    warnings: list[str] = field(default_factory=list)

    @property
    def files_found(self) -> int:
        return len(self.files)


@dataclass
class _Candidate:
    path: Path
    reader: str
    order: tuple
    root: Path
    folder: str | None     # the patient folder (see `_patient_folders`), None when none


def _patient_folders(rels: list[str]) -> list[str | None]:
    """Each file's patient folder: the first folder level under the source root at which the
    files part ways. Folders every file shares ('data/' around all patients) are not patients;
    a file directly in that common folder has none (it becomes its own patient)."""
    parents = [Path(r).parent.parts for r in rels]
    common = 0
    if parents:
        shortest = min(len(p) for p in parents)
        while common < shortest and len({p[common] for p in parents}) == 1:
            common += 1
    return [p[common] if len(p) > common else None for p in parents]


def _from_filename(pattern: re.Pattern | None, stem: str) -> str | None:
    if pattern is None:
        return None
    m = pattern.search(stem)
    if not m:
        return None
    # '00000001' from a file name is patient '1' in a metadata CSV: numeric IDs lose leading
    # zeros so both routes give the same pseudonym.
    return (m.group(1).lstrip("0") or "0") if m.group(1).isdigit() else m.group(1)


def discover(sources: list[Path], config: IngestConfig, metadata: Metadata | None, deid) -> _Discovery:
    """List every input file once, skip or refuse what cannot be read, group DICOM into series,
    and give every task its patient by the `patient_from` rules (see IngestConfig)."""
    from_name = re.compile(config.filename_patient_pattern) if config.filename_patient_pattern else None
    rules = config.patient_rules()
    tasks: list[ReadTask] = []
    refusals: list[tuple[Path, str]] = []
    skipped: list[tuple[Path, str]] = []
    files: list[Path] = []
    seen_dirs: set = set()
    seen_files: set = set()
    loops: list[Path] = []
    candidates: list[_Candidate] = []
    for si, src in enumerate(sources):
        root = src if src.is_dir() else src.parent
        listed: list[tuple[Path, str]] = []
        for path, dup in _walk(src, seen_dirs, seen_files, loops):
            files.append(path)
            rel = path.relative_to(root).as_posix() if path != root else path.name
            if dup is not None:
                skipped.append((path, dup))
                continue
            if any(fnmatch.fnmatch(rel, pat) for pat in config.exclude):
                skipped.append((path, "excluded by config"))
                continue
            kind = reader_for(path)
            if kind is None:
                skipped.append((path, f"not an image type ({suffix_of(path)})"))  # a SKIP_SUFFIXES
                continue
            if path.is_symlink() and not path.exists():
                refusals.append((path, "unreadable: broken symbolic link"))
                continue
            if path.is_dir():
                refusals.append((path, "unreadable: a folder, not a file"))
                continue
            listed.append((path, kind, rel))
        folders = _patient_folders([rel for _, _, rel in listed])
        for (path, kind, rel), folder in zip(listed, folders):
            candidates.append(_Candidate(path, kind, (si, rel), root, folder))

    # DICOM first: its header patients decide what a patient folder holding DICOM means.
    headers = None
    folder_patients: dict[tuple, set[str]] = {}
    dicom = [c for c in candidates if get_reader(c.reader).groups_files]
    if dicom:
        by_path = {c.path: c for c in dicom}
        scan = get_reader("dicom").scan([c.path for c in dicom])
        headers = scan.headers
        for ref in scan.refused:
            refusals.append((Path(ref.path), ref.reason))
        for series in scan.series:
            members = [by_path.get(Path(f)) for f in series.files]
            members = sorted((m for m in members if m is not None), key=lambda m: m.order)
            first = members[0]
            row = None
            if metadata is not None:
                for m in members:
                    row = metadata.lookup(m.path, m.root)
                    if row is not None:
                        break
            if "metadata" in rules and row is not None and row.patient_id:
                rule, raw = "metadata", row.patient_id
            else:
                rule, raw = "dicom", series.raw_patient
            for m in members:
                if m.folder is not None:
                    folder_patients.setdefault((m.order[0], m.folder), set()).add(raw)
            tasks.append(ReadTask("dicom", first.path, first.order, row, None, series,
                                  tuple(m.path for m in members), patient_rule=rule))

    for c in candidates:
        if get_reader(c.reader).groups_files:
            continue
        reader = get_reader(c.reader)
        row = metadata.lookup(c.path, c.root) if metadata is not None else None
        raw, rule = None, "file"
        for name in rules:
            if name == "metadata" and row is not None and row.patient_id:
                raw = row.patient_id
            elif name == "filename":
                raw = _from_filename(from_name, reader.stem(c.path))
            elif name == "folder" and c.folder is not None and c.reader != "npz":
                held = folder_patients.get((c.order[0], c.folder), set())
                if len(held) > 1:
                    raw = None
                    rule = "ambiguous"
                    break
                raw = next(iter(held)) if held else c.folder
            if raw is not None:
                rule = name
                break
        if rule == "ambiguous":
            refusals.append((c.path, f"patient unclear: its patient folder holds images of "
                                     f"{len(held)} DICOM patients, so the folder cannot name "
                                     "one; give the file a row in a metadata CSV"))
            continue
        if raw is None and c.reader != "npz":
            raw = str(Path(c.order[1]).with_suffix(""))  # each file its own patient
        tasks.append(ReadTask(c.reader, c.path, c.order, row, raw, patient_rule=rule))
    tasks.sort(key=lambda t: t.order)
    warnings = []
    if loops:
        warnings.append(f"{len(loops)} symbolic link(s) to a folder already visited were not "
                        "followed (a link loop, or a second path to the same folder)")
    return _Discovery(tasks, refusals, skipped, files, headers, warnings)


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
    digest: bytes = b""  # pixel fingerprint after reading, before normalisation (duplicates)


@dataclass
class _Outcome:
    task_path: Path
    n_files: int
    items: list[_Item] = field(default_factory=list)
    refusals: list[tuple[Path, str]] = field(default_factory=list)
    dropped: list[tuple[Path, str]] = field(default_factory=list)  # members refused, rest kept
    notes: list[str] = field(default_factory=list)  # what checks changed in kept images


# Images up to this many pixels are fingerprinted whole (exact: every radiograph up to 1024 x
# 1024); a larger volume by evenly spaced whole rows holding about this many voxels, which two
# different scans never share in practice, so that a 50 MB MR volume costs ~3 ms of hashing
# instead of ~120 ms (whole rows: a strided gather would still read every cache line).
_FINGERPRINT_FULL = 1 << 20


def pixel_fingerprint(array: np.ndarray) -> bytes:
    """Keyless digest of an image's pixels and shape (it never leaves this process)."""
    arr = np.ascontiguousarray(array, dtype=np.float32)
    h = hashlib.sha1(repr(arr.shape).encode(), usedforsecurity=False)
    if arr.size <= _FINGERPRINT_FULL or arr.ndim < 2:
        h.update(memoryview(arr.reshape(-1)).cast("B"))
    else:
        rows = arr.reshape(-1, arr.shape[-1])
        step = -(-rows.shape[0] * rows.shape[1] // _FINGERPRINT_FULL)
        h.update(memoryview(np.ascontiguousarray(rows[::step])).cast("B"))
    return h.digest()


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
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent dies (prctl PR_SET_PDEATHSIG).

    A pool's own shutdown never runs when ingest is killed with SIGKILL, and orphaned workers
    would go on reading patient files. Elsewhere (no prctl) the pool's normal shutdown is all
    there is. The parent may have died before the call took effect: checked once after it."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)


def _init_worker(ctx: _WorkerContext, parent_pid: int) -> None:
    global _WORKER
    _die_with_parent(parent_pid)
    _WORKER = ctx


def _apply_metadata(img: LoadedImage, row: MetadataRow | None, deid,
                    use_patient: bool = True) -> LoadedImage:
    if row is None:
        return img
    changes: dict[str, Any] = {}
    if row.patient_id and use_patient:
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
        loaded, dropped = get_reader(task.reader).read_parts(task, deid, ctx.options)
        outcome.dropped = [(Path(d.path), d.reason) for d in dropped]
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
        # The exception's text could quote a value from the file: its type only.
        outcome.refusals.append((task.path, f"could not be read ({type(err).__name__})"))
        return outcome
    if not loaded:
        outcome.refusals.append((task.path, "no image in the file"))
    for i, img in enumerate(loaded):
        img = _apply_metadata(img, task.meta, deid, use_patient=task.patient_rule == "metadata")
        where = f"image {i + 1} of {len(loaded)}: " if len(loaded) > 1 else ""
        checked = run_checks(img, ctx.checks)
        if checked.refused:
            outcome.refusals.append((task.path, f"{where}{checked.reason}"))
            continue
        img = checked.image
        if checked.note:
            outcome.notes.append(f"{where}{checked.note}")
        try:
            prep = prepare(img.array, img.spacing, img.modality, config)
        except GeometryError as err:
            outcome.refusals.append((task.path, f"{where}{err}"))
            continue
        slim = dataclasses.replace(img, array=np.empty((0,), np.float32), rgb_preview=None)
        outcome.items.append(_Item(prep.images, prep.shapes, prep.spacings, slim, prep.window,
                                   prep.raw_range, pixel_fingerprint(img.array)))
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
                               initializer=_init_worker, initargs=(ctx, os.getpid()))
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


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _scrub(reason: str, path: Path, ref: str) -> str:
    """The last defence before a reason is written: the file's own name becomes its keyed
    reference, anything quoted (how Python and library messages show a value) is removed, and
    the reason is one line. Readers already word reasons without input values; reasons are
    short and whole, never cut.

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
    reason = _QUOTED.sub("(value not shown)", reason)
    return " ".join("".join(ch if ch.isprintable() else " " for ch in reason).split())


def _warn(message: str, warnings: list[str], *, console_message: str | None = None) -> None:
    """Record a warning in the report and print it (the console may name real paths)."""
    warnings.append(message)
    console.print(f"synthmed: warning: {console_message or message}", markup=False,
                  highlight=False, soft_wrap=True)


class _Ledger:
    """Every input path, once: kept, refused (with a reason) or skipped (with a reason).

    The report's counts are counted from here, so that files_found == kept + refused +
    skipped holds by construction and is checked before anything is written."""

    def __init__(self, key: bytes, files: list[Path], show_paths: bool):
        self.key, self.show_paths = key, show_paths
        self.status: dict[Path, tuple[str, str]] = {f: ("", "") for f in files}
        self.refusals: list[dict[str, Any]] = []
        self._refs: dict[Path, str] = {}

    def ref(self, path: Path) -> str:
        ref = self._refs.get(path)
        if ref is None:
            ref = self._refs[path] = file_ref(self.key, path)
        return ref

    def set(self, path: Path, status: str, reason: str = "") -> None:
        if path not in self.status:  # a file a reader names that discovery did not list
            path = Path(path)
        self.status[path] = (status, _scrub(reason, path, self.ref(path)) if reason else "")

    def refuse(self, path: Path, reason: str, members: tuple[Path, ...] = (),
               file_kept: bool = False) -> str:
        """One report line (and one console line) for a refusal; returns the scrubbed reason.
        `members`: the other files of a series refused with it."""
        ref = self.ref(path)
        reason = _scrub(reason, path, ref)
        entry: dict[str, Any] = {"file": ref, "reason": reason}
        others = [m for m in members if m != path]
        if others:
            entry["files"] = 1 + len(others)
            entry["members"] = [self.ref(m) for m in others]
        if file_kept:
            entry["file_kept"] = True  # one image of the file refused, the others kept
        self.refusals.append(entry)
        if not file_kept:
            self.status[path] = ("refused", reason)
            for m in others:
                self.status[m] = ("refused", f"refused with its series (see {ref})")
        shown = path if self.show_paths else ref
        more = f" (with {len(others)} other file(s) of its series)" if others else ""
        console.print(f"synthmed: refused {shown}{more}: {reason}", markup=False, highlight=False,
                      soft_wrap=True)
        return reason

    def counts(self) -> Counter:
        return Counter(st for st, _ in self.status.values())

    def entries(self) -> list[dict[str, str]]:
        out = []
        for path, (st, why) in self.status.items():
            out.append({"file": self.ref(path), "status": st} | ({"reason": why} if why else {}))
        return out


def ingest(sources: list[Path], out: Path, config: IngestConfig | None = None,
           metadata_csv: Path | None = None, key_path: Path | None = None,
           workers: int | None = None, show_paths: bool = False,
           overwrite: bool = False) -> IngestResult:
    """Turn `sources` (files or folders) into a de-identified Dataset folder at `out`.

    A refused file is named on the console by its keyed reference (as in the report) unless
    `show_paths` is set: input paths often carry identifiers (MRN folders, UID file names), and a
    console is easily captured into a log. A `metadata_csv` that was asked for but cannot be
    used (missing, a folder, no recognisable columns, conflicting rows) is an InputError.

    The dataset is built in a staging folder beside `out` and moved into place whole
    (synthmed/io/folders.py), under a lock that keeps a second writer out; `out` must be new, an
    empty folder, or (with `overwrite`) a dataset.
    """

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
                             f"another {arg('out')}")
    folders.prepare_output(out, "dataset", overwrite)  # before any work
    with folders.staged_output(out, "dataset", overwrite) as stage:
        return _ingest_into(stage, out, sources, config, metadata_csv, key_path, workers,
                            show_paths)


def _ingest_into(stage: Path, out: Path, sources: list[Path], config: IngestConfig,
                 metadata_csv: Path | None, key_path: Path | None, workers: int | None,
                 show_paths: bool) -> IngestResult:
    """The work of `ingest`, writing into the staging folder `stage` (the result names `out`)."""
    from synthmed.deid import Deidentifier, load_or_create_key

    workers = workers or config.workers or default_workers()
    key, key_file = load_or_create_key(key_path)
    deid = Deidentifier(key)
    warnings: list[str] = []

    metadata, meta_info = None, {"csv": None}
    if metadata_csv is not None:
        # Asked for and unusable is an error (the console names the path): ingesting without
        # it would put one patient's images on several splits.
        metadata = read_metadata(require_path(metadata_csv, "metadata CSV", kind="file"),
                                 config.metadata_columns)
        # The CSV's own name can identify (an MRN in it): the report has its keyed reference.
        meta_info = {"csv": file_ref(key, Path(metadata_csv)), "layout": metadata.layout,
                     "rows": len(metadata), "matched_files": 0}

    found = discover(sources, config, metadata, deid)
    for w in found.warnings:
        _warn(w, warnings)
    ledger = _Ledger(key, found.files, show_paths)
    for path, reason in found.skipped:
        ledger.set(path, "skipped", reason)
    for path, reason in found.refusals:
        ledger.refuse(path, reason)
    if metadata is not None:
        meta_info["matched_files"] = sum(t.n_files for t in found.tasks if t.meta is not None)
        unmatched = sum(1 for t in found.tasks if t.meta is None)
        if unmatched:
            _warn(f"the metadata CSV has no row for {unmatched} of {len(found.tasks)} input(s); "
                  "those keep the patient from their header, folder or file name and no labels",
                  warnings)

    tmp_images = stage / ".images-ingest.npy"  # the staging folder is this process's own
    appender = NpyAppender(tmp_images, tuple(config.shape))
    rows: list[dict[str, Any]] = []
    intensity: dict[str, dict[str, Any]] = {}
    # Duplicates: fingerprint -> (patient, task index, row indices). Rows of a copy are kept
    # out (same patient) or dropped with their original (another patient) before writing.
    first_copy: dict[bytes, tuple[str, int, list[int]]] = {}
    drop_rows: set[int] = set()
    alive: dict[int, int] = {}                  # task index -> images kept
    dup_note: dict[int, tuple[str, str]] = {}   # task index -> (status, reason) if none kept
    kept_note: dict[int, str] = {}              # task index -> what checks changed (masking)
    try:
        ctx = _WorkerContext(deid, config, ReadOptions(config, found.dicom_headers),
                             build_checks(config))
        with _worker_pool(workers, len(found.tasks), ctx) as pool, \
                make_progress() as progress:
            bar = progress.add_task("ingest", total=len(found.tasks))
            for ti, outcome in enumerate(_ordered_map(found.tasks, ctx, pool, workers)):
                task = found.tasks[ti]
                for path, reason in outcome.dropped:
                    ledger.refuse(path, reason)
                if not outcome.items:
                    if not outcome.refusals:
                        outcome.refusals.append((task.path, "no image in the file"))
                    (path, reason), rest = outcome.refusals[0], outcome.refusals[1:]
                    named = path if path in task.members else task.path
                    left = tuple(m for m in task.members if m not in {d for d, _ in outcome.dropped})
                    ledger.refuse(named, reason, left)
                    for path, reason in rest:
                        ledger.refuse(path, reason, file_kept=True)
                    progress.advance(bar)
                    continue
                for path, reason in outcome.refusals:
                    ledger.refuse(path, reason, file_kept=True)
                if outcome.notes:
                    kept_note[ti] = "; ".join(outcome.notes)
                alive[ti] = 0
                for item in outcome.items:
                    img = item.image
                    seen = first_copy.get(item.digest)
                    if seen is not None:
                        patient, tj, idx = seen
                        other = found.tasks[tj].path
                        if patient == img.patient:
                            dup_note[ti] = ("skipped", f"the same pixels as {ledger.ref(other)} "
                                                       "of the same patient: kept once")
                            continue
                        # One image under two patients: which one it belongs to is unknown, and
                        # keeping either could put that person on two sides of the split.
                        if idx:
                            drop_rows.update(idx)
                            alive[tj] -= 1
                            idx.clear()
                            dup_note[tj] = ("refused", "the same pixels as another input of "
                                            f"another patient ({ledger.ref(task.path)}): "
                                            "every copy refused")
                        dup_note[ti] = ("refused", "the same pixels as another input of another "
                                        f"patient ({ledger.ref(other)}): every copy refused")
                        continue
                    idx = []
                    first_copy[item.digest] = (img.patient, ti, idx)
                    alive[ti] += 1
                    stats = intensity.setdefault(img.modality or "unknown", {
                        "images": 0, "raw_min": np.inf, "raw_max": -np.inf, "windows": set()})
                    stats["images"] += 1
                    stats["raw_min"] = min(stats["raw_min"], item.raw_range[0])
                    stats["raw_max"] = max(stats["raw_max"], item.raw_range[1])
                    if img.modality == "CT":
                        stats["windows"].add(item.window)
                    for arr, shp, spc in zip(item.images, item.shapes, item.spacings):
                        idx.append(appender.append(arr))
                        rows.append({"index": idx[-1], "patient": img.patient,
                                     "study": img.study, "series": img.series,
                                     "labels": tuple(img.labels), "age": float(img.age),
                                     "sex": img.sex, "modality": img.modality,
                                     "source_format": img.source_format,
                                     "original_shape": tuple(int(s) for s in shp),
                                     "original_spacing": _spacing(spc),
                                     "_rule": task.patient_rule})
                progress.advance(bar)
        for ti, n in alive.items():
            task = found.tasks[ti]
            members = [m for m in task.members if ledger.status.get(m, ("",))[0] != "refused"]
            if n > 0:
                for m in members:
                    ledger.set(m, "kept", kept_note.get(ti, ""))
                continue
            status, reason = dup_note.get(ti, ("refused", "no image kept"))
            if status == "refused":
                ledger.refuse(task.path, reason, tuple(members))
            else:
                for m in members:
                    ledger.set(m, status, reason)
        if drop_rows:
            rows = _without_rows(appender, tmp_images, rows, drop_rows, tuple(config.shape))
            appender = None
        counts = ledger.counts()
        if not rows:
            if appender is not None:
                appender.abort()
            if counts["refused"] == 0 and not found.tasks:
                raise InputError(f"{sources[0]}: no image files found ({found.files_found} file(s), "
                                 "none with a readable image type); nothing to ingest")
            raise InputError(f"nothing usable: all {counts['refused']} input image file(s) were "
                             f"refused, {counts['skipped']} skipped (reasons above); no dataset "
                             "written")
        if appender is not None:
            appender.close()
    except BaseException:
        if appender is not None:
            appender.abort()
        tmp_images.unlink(missing_ok=True)
        raise

    try:
        result = _write_outputs(stage, out, tmp_images, rows, config, deid, key_file, found,
                                ledger, meta_info, warnings, intensity,
                                [c.name for c in ctx.checks])
    finally:
        tmp_images.unlink(missing_ok=True)
    return result


def _without_rows(appender: NpyAppender, tmp_images: Path, rows: list[dict[str, Any]],
                  drop: set[int], shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """Rewrite the streamed images without the rows in `drop` (duplicates found later)."""
    appender.close()
    src = np.load(tmp_images, mmap_mode="r")
    kept_rows = [r for r in rows if r["index"] not in drop]
    staging = tmp_images.with_name(".images-dedup.npy")
    writer = NpyAppender(staging, shape)
    try:
        for r in kept_rows:
            new = writer.append(src[r["index"]])
            r["index"] = new
        writer.close()
    except BaseException:
        writer.abort()
        raise
    del src
    os.replace(staging, tmp_images)
    return kept_rows


def _patients_report(rows: list[dict[str, Any]], config: IngestConfig) -> dict[str, Any]:
    by_rule: dict[str, set[str]] = {}
    files: Counter = Counter()
    for r in rows:
        by_rule.setdefault(r["_rule"] or "file", set()).add(r["patient"])
    for rule, pats in by_rule.items():
        files[rule] = len(pats)
    return {
        "patient_from": list(config.patient_from),
        "patients_by_rule": dict(sorted(files.items())),
        "note": ("the rule that named each image's patient, in the order of patient_from; "
                 "'file': no rule named one, so the file is its own patient; a patient named "
                 "by two rules (a DICOM patient's folder) counts under each"),
    }


def _write_outputs(out: Path, final: Path, tmp_images: Path, rows: list[dict[str, Any]],
                   config: IngestConfig, deid, key_file: Path, found: _Discovery, ledger: _Ledger,
                   meta_info: dict, warnings: list[str], intensity: dict,
                   checks: list[str]) -> IngestResult:
    """Write the dataset files into `out` (the staging folder of the dataset `final`)."""
    patient_info = _patients_report(rows, config)
    own = patient_info["patients_by_rule"].get("file", 0)
    if own:
        _warn(f"{own} patient(s) are single files: no metadata row, DICOM header, file-name "
              "pattern or patient folder named their patient (each file its own patient)", warnings)
    for r in rows:
        del r["_rule"]
    patients = [r["patient"] for r in rows]
    strata = patient_strata(patients, [r["labels"] for r in rows])
    assignment = split_patients(patients, config.split, strata)
    records = [ImageRecord(split=assignment[r["patient"]], **r) for r in rows]
    assert_patient_disjoint([r.patient for r in records], [r.split for r in records])

    manifest = records_to_csv(records, ImageRecord)
    # The same identity Dataset.open recomputes from the files it reads.
    fingerprint = dataset_fingerprint(sha256_file(tmp_images),
                                      hashlib.sha256(manifest.encode("utf-8")).hexdigest())

    counts = ledger.counts()
    n_found, n_kept, n_refused, n_skipped = (found.files_found, counts["kept"], counts["refused"],
                                             counts["skipped"])
    if n_kept + n_refused + n_skipped != n_found or counts[""]:
        raise SynthmedError(f"internal error: {n_found} input files but {n_kept} kept + "
                            f"{n_refused} refused + {n_skipped} skipped ({counts['']} unaccounted)")
    skipped_by_reason = Counter(why for st, why in ledger.status.values() if st == "skipped")
    file_entries = ledger.entries()

    splits = {s: {"images": sum(1 for r in records if r.split == s),
                  "patients": len({r.patient for r in records if r.split == s})} for s in SPLITS}
    vocab = sorted({lab for r in records for lab in r.labels})
    spacing = (list(config.spacing) if config.spacing is not None and config.fit == "pad_crop"
               else None)
    n_read = n_found - n_skipped
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
        "provenance": provenance(config, seed=config.split.seed, compute=False),
    }
    for stats in intensity.values():
        stats["windows"] = sorted([list(w) for w in stats["windows"]])
    report = {
        "schema": REPORT_SCHEMA,
        "counts": {"files_found": n_found, "read": n_read, "kept": n_kept,
                   "refused": n_refused, "skipped": n_skipped,
                   "refusal_entries": len(ledger.refusals), "images": len(records),
                   "patients": len(set(patients))},
        "counts_note": "files_found = kept + refused + skipped; 'files' lists each input once",
        "skipped": dict(sorted(skipped_by_reason.items())),
        "refusals": ledger.refusals,
        "files": file_entries,
        "refusal_file_names": "keyed",
        "refusal_file_names_note": ("input file names can identify patients (NIH stems, DICOM "
                                    "UIDs), so input files are named by a keyed hash of their "
                                    "path plus the suffix; the real paths of refused files were "
                                    "printed on the console of the run only (--show-paths)"),
        "patients": patient_info,
        "checks": checks,
        "metadata": meta_info,
        "warnings": warnings,
        "intensity_before_normalisation": intensity,
        "deid": {"profile": deid.profile_description(), "key_path": str(folders.final_path(key_file))},
        "splits": splits,
        "config": config.model_dump(mode="json"),
        "packages": info["provenance"]["packages"],
        "fingerprint": fingerprint,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "manifest.csv", manifest)
    write_json(out / "ingest_report.json", report)
    write_json(out / "dataset.json", info)
    os.replace(tmp_images, out / "images.npy")
    return IngestResult(out=final, files_found=n_found, read=n_read, kept=n_kept,
                        refused=n_refused, skipped=n_skipped,
                        images=len(records), patients=len(set(patients)), splits=splits,
                        refusals=ledger.refusals, warnings=warnings,
                        files=file_entries)


def iter_outputs(out: Path) -> Iterable[Path]:
    """Every file in a dataset folder (for privacy scans in tests and audits)."""
    return sorted(p for p in Path(out).rglob("*") if p.is_file())
