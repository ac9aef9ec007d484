"""User-facing errors.

Every error a user can cause (bad path, bad config value, unreadable file) is raised as a
`SynthmedError` whose message is one readable line naming the file and the problem. The CLI
prints that line and exits non-zero, without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class SynthmedError(Exception):
    """An error the user can act on; `str(err)` is the whole message."""


class ConfigError(SynthmedError):
    """A config file is missing, not YAML, or holds a wrong key or value."""


class InputError(SynthmedError):
    """An input file or folder is missing, unreadable or not what was expected."""


def require_path(path: str | Path, what: str = "path", *, kind: str = "any") -> Path:
    """Return `path` as a Path, or raise InputError if it does not exist (or is the wrong kind)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: {what} does not exist")
    if kind == "dir" and not p.is_dir():
        raise InputError(f"{p}: {what} is not a folder")
    if kind == "file" and not p.is_file():
        raise InputError(f"{p}: {what} is not a file")
    return p
