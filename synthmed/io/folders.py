"""Typed output folders: a marker that says what a folder is, and writes that are all or nothing.

Every folder synthmed writes (dataset, run, cohort, audit, evaluation, demo, release bundle)
holds one small marker, `synthmed-folder.json`: its kind, schema, the synthmed version
that wrote it, and a content fingerprint (sha256 of every file it holds, marker excluded, plus one
digest over that list). Readers check the marker against the files, so a folder edited by hand,
half written, or mixed from two runs is refused with one line naming what differs.

How each kind is written, and why:

- dataset, cohort, audit, evaluation, demo, identity (a re-identification network), bundle are
  written once: `staged_output` builds them in a
  staging folder next to the target (`.<name>.staging-<pid>-<random>`), stamps the marker there,
  and moves the whole folder into place with one rename. Replacing an existing folder of the same
  kind (`--overwrite`) swaps the two atomically (Linux `renameat2(RENAME_EXCHANGE)`), then deletes
  the old one; a crash at any point leaves the old folder or the new one at the target, never a
  mix. Without RENAME_EXCHANGE (not Linux) the old folder is renamed aside first and put back by
  the next writer if a crash left the target missing.
- a training run grows in place (resume keeps checkpoints): its marker is rewritten at each
  checkpoint commit, so a run killed between checkpoint files and marker is refused by `load`
  until `--resume` rewrites it.

One writer per target: `writer_lock` holds an OS lock (fcntl.flock) on `.<name>.lock` next to the
target; a second writer gets "DIR is being written by another synthmed process (pid N)".
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from synthmed.errors import InputError, arg

MARKER = "synthmed-folder.json"
MARKER_SCHEMA = "synthmed.folder/1"
KINDS = ("dataset", "run", "cohort", "audit", "evaluation", "demo", "release", "identity", "bundle")
_SCHEMAS = {"dataset": "synthmed.dataset/1", "cohort": "synthmed.cohort/1",
            "audit": "synthmed.audit/1", "evaluation": "synthmed.evaluation/1",
            "run": "synthmed.run/1", "demo": "synthmed.demo/1", "release": "synthmed.release/1",
            "identity": "synthmed.identity/1", "bundle": "synthmed.bundle/1"}


@dataclass(frozen=True)
class FolderInfo:
    """What `verify` found: the folder's kind, schema and fingerprint, per file and combined."""

    root: Path
    kind: str
    schema: str
    version: str
    files: dict[str, dict[str, Any]]
    fingerprint: str
    history: list[dict[str, Any]] = field(default_factory=list)

    def sha256(self, name: str) -> str:
        return str(self.files[name]["sha256"])


# ------------------------------------------------------------------------------ fingerprints
def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _listing(root: Path) -> list[str]:
    """Every file under `root` (relative POSIX paths, sorted), the top-level marker excluded."""
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in filenames:
            rel = Path(dirpath, fn).relative_to(root).as_posix()
            if rel != MARKER:
                names.append(rel)
    return sorted(names)


def _digest(path: Path) -> dict[str, Any]:
    return {"sha256": _sha256_file(path), "bytes": path.stat().st_size}


def file_digests(root: str | Path) -> dict[str, dict[str, Any]]:
    root = Path(root)
    return {rel: _digest(root / rel) for rel in _listing(root)}


def combined_digest(files: dict[str, dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]['sha256']}\n".encode("utf-8"))
    return h.hexdigest()


# -------------------------------------------------------------------------------- the marker
def read_marker(root: str | Path) -> dict[str, Any] | None:
    """The marker as written, None when the folder has none; a broken marker is an InputError."""
    path = Path(root) / MARKER
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable synthmed folder marker ({err})") from None
    if (not isinstance(data, dict) or data.get("schema") != MARKER_SCHEMA
            or data.get("kind") not in KINDS or not isinstance(data.get("files"), dict)):
        raise InputError(f"{path}: not a synthmed folder marker (schema {MARKER_SCHEMA} with kind "
                         "and files expected)")
    return data


def kind_of(root: str | Path) -> str | None:
    data = read_marker(root)
    return None if data is None else str(data["kind"])


def stamp(root: str | Path, kind: str, *, history: list[dict[str, Any]] | None = None) -> FolderInfo:
    """Write the marker of `root` from the files it holds now (the commit point of a folder)."""
    from synthmed import __version__
    from synthmed.io.atomic import write_json

    if kind not in KINDS:
        raise ValueError(f"unknown folder kind {kind!r}")
    root = Path(root)
    files = file_digests(root)
    fp = combined_digest(files)
    marker = {"schema": MARKER_SCHEMA, "kind": kind, "folder_schema": _SCHEMAS[kind],
              "synthmed_version": __version__, "fingerprint": fp, "files": files,
              "history": list(history or [])}
    write_json(root / MARKER, marker)
    return FolderInfo(root, kind, _SCHEMAS[kind], __version__, files, fp, marker["history"])


def restamp(root: str | Path, reason: str) -> tuple[FolderInfo, str | None]:
    """Re-stamp a folder deliberately (after a checked hand edit); the change is recorded in its
    history with the old and new fingerprint, the time and `reason`. Returns (info, old fp)."""
    root = Path(root)
    if not reason.strip():
        raise InputError(f"restamping needs a {arg('reason')}: say why the folder changed")
    old = read_marker(root)
    kind = old["kind"] if old else _guess_kind(root)
    if kind is None:
        raise InputError(f"{root}: not a synthmed folder (no {MARKER} and no dataset.json, "
                         "cohort.json, run.json or audit.json to tell its kind)")
    with writer_lock(root):
        history = list(old.get("history", [])) if old else []
        before = str(old["fingerprint"]) if old else None
        info = stamp(root, kind, history=history)
        entry = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                 "old_fingerprint": before, "new_fingerprint": info.fingerprint,
                 "reason": reason.strip()}
        info = stamp(root, kind, history=history + [entry])
    return info, before


def _guess_kind(root: Path) -> str | None:
    """The kind of a folder written before markers existed, from its main record."""
    for name, kind in (("dataset.json", "dataset"), ("cohort.json", "cohort"),
                       ("run.json", "run"), ("model.json", "run"), ("audit.json", "audit"),
                       ("evaluation.json", "evaluation")):
        if (root / name).is_file():
            return kind
    return None


def verify(root: str | Path, kind: str | tuple[str, ...] | None = None,
           quick: bool = False) -> FolderInfo:
    """Check `root`'s marker against its files; any difference is one InputError line.

    `kind` (one or several) is what the caller expects; a folder of another kind is refused.
    `quick`: a file of the recorded size last modified strictly before the marker was written
    (the marker is the commit point, written after every file) is taken as unchanged without
    hashing it. That catches every accidental change (an edit, a copy over it, a crash) but not
    one made on purpose to look old (`touch -d`), so only readers that certify nothing use it
    (`inspect`); audits, training, sampling, evaluation and `synthmed verify` hash every byte and
    certify what they hashed. (The marker holds no times: the same content gives the same bytes.)
    """
    root = Path(root)
    kinds = (kind,) if isinstance(kind, str) else kind
    what = kinds[0] if kinds else "synthmed folder"
    if not root.is_dir():
        raise InputError(f"{root}: {what} folder does not exist" if not root.exists()
                         else f"{root}: is a file, not a {what} folder")
    data = read_marker(root)
    if data is None:
        guessed = _guess_kind(root)
        hint = (f"it looks like a {guessed} written before synthmed folder markers, or a write that "
                f"did not finish; write it again, or check it and run `synthmed verify --restamp "
                f"{root} --reason ...`" if guessed else "make it with synthmed")
        raise InputError(f"{root}: not a synthmed {what} ({MARKER} is missing); {hint}")
    if kinds and data["kind"] not in kinds:
        raise InputError(f"{root}: is a synthmed {data['kind']} folder, not a {' or '.join(kinds)}")
    recorded: dict[str, Any] = data["files"]
    present = set(_listing(root))
    missing = sorted(set(recorded) - present)
    extra = sorted(present - set(recorded))
    if missing:
        raise InputError(f"{root}: {missing[0]} is missing (the marker lists it"
                         f"{f', and {len(missing) - 1} more' if len(missing) > 1 else ''}); the "
                         "folder is incomplete")
    if extra:
        raise InputError(f"{root}: {extra[0]} was not written with this {data['kind']} (not in "
                         f"its marker{f'; {len(extra) - 1} more' if len(extra) > 1 else ''}); "
                         "remove it or write the folder again")
    files = {}
    committed_ns = (root / MARKER).stat().st_mtime_ns
    for rel in sorted(recorded):
        want = recorded[rel]
        if quick:
            st = (root / rel).stat()
            if st.st_size == want.get("bytes") and st.st_mtime_ns < committed_ns:
                files[rel] = {"sha256": want.get("sha256"), "bytes": st.st_size}
                continue
        digest = _digest(root / rel)
        if digest["sha256"] != want.get("sha256"):
            raise InputError(f"{root / rel}: changed since synthmed wrote it (sha256 differs from "
                             f"the folder's marker); write it again, or check the change and run "
                             f"`synthmed verify --restamp {root} --reason ...`")
        files[rel] = digest
    fp = combined_digest(files)
    if fp != data.get("fingerprint"):
        raise InputError(f"{root / MARKER}: its fingerprint does not match its file list")
    return FolderInfo(root, str(data["kind"]), str(data.get("folder_schema", "")),
                      str(data.get("synthmed_version", "")), files, fp,
                      list(data.get("history", [])))


# ---------------------------------------------------------------------------------- outputs
def _enclosing_kind(path: Path) -> tuple[Path, str] | None:
    """The nearest folder above `path` that carries a marker, and its kind."""
    for parent in path.resolve().parents:
        if (parent / MARKER).is_file():
            try:
                k = kind_of(parent)
            except InputError:
                k = None
            if k:
                return parent, k
    return None


def prepare_output(path: str | Path, kind: str, overwrite: bool = False,
                   grows_in_place: bool = False) -> Path:
    """Refuse, before any work, an output `path` that is not a new path, an empty folder or (with
    `overwrite`) a folder of the same `kind`; and any path inside a finished synthmed folder.

    `grows_in_place` (a training run, which resumes into its own folder): a folder of the same
    kind is accepted as it is; the writer decides whether to resume it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: {arg('out')} names an existing file; it must be a folder (new or "
                         "existing)")
    # Nothing is written inside a finished synthmed folder: it would change its fingerprint (a
    # run or a demo would no longer verify), and an audit's report.html, which shows real
    # training images, must never ride along with a cohort or a release. (The folders a demo or
    # an audit holds are written inside its staging folder, before it has a marker.)
    outer = _enclosing_kind(path)
    if outer is not None:
        raise InputError(f"{path}: is inside the synthmed {outer[1]} folder {outer[0]}; a {kind} "
                         f"may not be written into a {outer[1]} (choose an {arg('out')} outside it)")
    if not path.exists() or not any(path.iterdir()):
        return path
    existing = kind_of(path)
    if existing is None:
        raise InputError(f"{path}: is not empty and not a synthmed folder; synthmed writes only "
                         "into a new or empty folder (nothing in it was changed)")
    if existing != kind:
        raise InputError(f"{path}: holds a synthmed {existing}, not a {kind}; choose another "
                         f"{arg('out')} (nothing in it was changed)")
    if grows_in_place:
        return path
    if not overwrite:
        raise InputError(f"{path}: already holds a synthmed {kind}; pass {arg('overwrite', True)} to replace it")
    # Replacing deletes the old folder: only when it holds exactly what synthmed wrote, so a
    # file a user put in it (notes, a trained run) is never deleted.
    try:
        verify(path, kind)
    except InputError as err:
        raise InputError(f"{path}: not replaced, it is no longer as synthmed wrote it ({err}); "
                         f"move what you added elsewhere, or choose another {arg('out')}") from None
    return path


def _lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


@contextlib.contextmanager
def writer_lock(path: str | Path) -> Iterator[Path]:
    """Hold the one-writer lock of output folder `path` (a lock file beside it, with our pid)."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise
            try:
                pid = os.pread(fd, 32, 0).decode().strip() or "unknown"
            except OSError:
                pid = "unknown"
            os.close(fd)
            raise InputError(f"{path} is being written by another synthmed process (pid {pid})") from None
        # The holder before us may have removed the lock file after we opened it: then our lock
        # is on a file nobody else sees; start again on the current one.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _leftovers(path: Path) -> list[Path]:
    prefix_s, prefix_o = f".{path.name}.staging-", f".{path.name}.old-"
    if not path.parent.is_dir():
        return []
    return [p for p in path.parent.iterdir() if p.name.startswith((prefix_s, prefix_o))]


def _recover(path: Path) -> None:
    """Under the lock: finish what a crashed writer left (put an old folder set aside back when
    the target is missing; delete staging folders and old copies)."""
    for p in sorted(_leftovers(path)):
        if p.name.startswith(f".{path.name}.old-") and not path.exists() and (p / MARKER).is_file():
            _rename(p, path)
            continue
        shutil.rmtree(p, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    lib = ctypes.CDLL(name, use_errno=True)
    return lib if hasattr(lib, "renameat2") else None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False when this system cannot (then the caller falls back)."""
    lib = _libc()
    if lib is None:
        return False
    rc = lib.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.ENOTSUP):
            return False
        raise OSError(err, os.strerror(err), str(a))
    return True


def _rename(a: Path, b: Path) -> None:
    os.replace(a, b)


def commit_folder(staging: Path, target: Path) -> None:
    """Move the finished `staging` folder onto `target` as a whole."""
    if not target.exists():
        _rename(staging, target)
        return
    if target.is_dir() and not any(target.iterdir()):
        _rename(staging, target)  # rename(2) replaces an empty folder in one step
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the old folder
        return
    aside = target.parent / f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    _rename(target, aside)
    _rename(staging, target)
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def staged_output(path: str | Path, kind: str, overwrite: bool = False,
                  history: list[dict[str, Any]] | None = None) -> Iterator[Path]:
    """Yield a staging folder for a new `kind` folder at `path`; on success it is stamped and moved
    into place whole, on any error it is deleted and `path` is left as it was."""
    path = Path(path)
    with writer_lock(path):
        _recover(path)
        prepare_output(path, kind, overwrite)
        staging = path.parent / f".{path.name}.staging-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            yield staging
            stamp(staging, kind, history=history)
            commit_folder(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


@contextlib.contextmanager
def amend(root: str | Path, kind: str) -> Iterator[Path]:
    """Add derived files to a finished folder (a dataset's contact sheet): under the lock, the
    folder is verified first (a hand edit is never blessed), then re-stamped with what was added."""
    root = Path(root)
    with writer_lock(root):
        before = verify(root, kind)
        yield root
        stamp(root, kind, history=before.history)


_STAGING_PART = re.compile(r"^\.(.+)\.staging-\d+-[0-9a-f]{8}$")


def final_path(path: str | Path) -> Path:
    """`path` as it will be once the staging folders it lies in are moved into place: what a
    record may name (a staging name is random and gone after the commit)."""
    parts = [(_STAGING_PART.match(part).group(1) if _STAGING_PART.match(part) else part)
             for part in Path(path).parts]
    return Path(*parts) if parts else Path(path)


def final_text(text: str) -> str:
    """`text` with every staging folder name replaced by its target's (for console messages)."""
    return re.sub(r"\.([^/\s]+)\.staging-\d+-[0-9a-f]{8}", r"\1", text)


def describe(info: FolderInfo) -> list[str]:
    """Lines for `synthmed verify`: what the folder is."""
    total = sum(int(f["bytes"]) for f in info.files.values())
    lines = [f"{info.root}: synthmed {info.kind} ({info.schema}), written by synthmed "
             f"{info.version}", f"fingerprint {info.fingerprint}",
             f"{len(info.files)} files, {total} bytes, all match the marker"]
    for h in info.history:
        lines.append(f"restamped {h.get('time')}: {h.get('old_fingerprint')} -> "
                     f"{h.get('new_fingerprint')} ({h.get('reason')})")
    return lines


__all__ = ["MARKER", "KINDS", "FolderInfo", "verify", "stamp", "amend", "restamp", "read_marker",
           "kind_of", "prepare_output", "staged_output", "writer_lock", "commit_folder",
           "file_digests", "combined_digest", "describe", "final_path"]
