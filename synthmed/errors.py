"""User-facing errors.

Every error a user can cause (bad path, bad config value, unreadable file) is raised as a
`SynthmedError` whose message is one readable line naming the file and the problem. The CLI
prints that line and exits non-zero, without a traceback.

Messages speak of the Python arguments a user gave (`key=`, `overwrite=True`), written with
`arg(...)`; the CLI, which knows its own flags, shows the same message with `--key` and
`--overwrite` instead (`SynthmedError.message(flags)`, the table in synthmed/cli/options.py).
So a library function never names a command-line flag, and a notebook user is never told to
"omit --key".
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

# An argument inside a message: private-use code points that no path or value contains, so the
# CLI finds exactly the arguments the message was written with (never a look-alike in a path).
_OPEN, _SEP, _CLOSE = "\ue000", "\ue001", "\ue002"
_ARG = re.compile(f"{_OPEN}([A-Za-z_][A-Za-z0-9_]*)(?:{_SEP}([^{_CLOSE}]*))?{_CLOSE}")


def arg(name: str, value: Any = None) -> str:
    """How a message names the argument `name` (with `value` when the value is the point, as in
    `overwrite=True`); rendered `name=` / `name=value` in Python and as its flag on the CLI."""
    return f"{_OPEN}{name}{'' if value is None else _SEP + repr(value)}{_CLOSE}"


def render(text: str, flags: Mapping[str, str] | None = None) -> str:
    """`text` with its arguments spelled for Python (`flags` None) or as the flags in `flags`
    (an argument with no flag there keeps its Python spelling)."""
    def one(m: re.Match) -> str:
        name, value = m[1], m[2]
        if flags is not None and name in flags:
            # a switch is its flag alone; any other value follows its flag
            return flags[name] if value in (None, "True") else f"{flags[name]} {value}"
        return f"{name}={value}" if value is not None else f"{name}="

    return _ARG.sub(one, text)


def arguments(text: str) -> list[str]:
    """The argument names a message was written with."""
    return [m[1] for m in _ARG.finditer(text)]


class SynthmedError(Exception):
    """An error the user can act on; `str(err)` is the whole message (arguments spelled as in
    Python); `err.message(flags)` is the same message for the command line."""

    def __str__(self) -> str:
        return render(super().__str__())

    @property
    def arguments(self) -> list[str]:
        return arguments(super().__str__())

    def message(self, flags: Mapping[str, str] | None = None) -> str:
        return render(super().__str__(), flags)


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
