"""The secret de-identification key.

The key turns raw identifiers into pseudonyms (HMAC-SHA256). It stays with the hospital, outside
every output: whoever holds it can re-link pseudonyms to patients by recomputing them, whoever
does not cannot. No mapping table is ever written, so the key is the only secret to guard.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from synthmed.errors import InputError, arg

KEY_BYTES = 32  # 256-bit key, the HMAC-SHA256 block-size sweet spot


def default_key_path() -> Path:
    """`$SYNTHMED_HOME/deid.key`, else `~/.config/synthmed/deid.key`."""
    home = os.environ.get("SYNTHMED_HOME")
    base = Path(home) if home else Path.home() / ".config" / "synthmed"
    return base / "deid.key"


def load_or_create_key(path: Path | None) -> tuple[bytes, Path]:
    """Return (key, where it lives).

    A given `path` must exist and hold at least 32 bytes (a short key is guessable, so it is
    refused rather than stretched). With `path=None` the user's default key is reused, or created
    once with mode 0600 so the same patient keeps the same pseudonym across runs.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise InputError(f"{p}: de-identification key file does not exist "
                             f"(omit {arg('key')} to create one in the user's config folder)")
        try:
            key = p.read_bytes()
        except OSError as err:
            raise InputError(f"{p}: cannot read de-identification key ({err.strerror})") from None
        if len(key) < KEY_BYTES:
            raise InputError(f"{p}: de-identification key is {len(key)} bytes, needs at least "
                             f"{KEY_BYTES} (create one with: head -c 32 /dev/urandom > {p.name})")
        return key, p

    p = default_key_path()
    if p.is_file():
        key = p.read_bytes()
        if len(key) < KEY_BYTES:
            raise InputError(f"{p}: de-identification key is {len(key)} bytes, needs at least "
                             f"{KEY_BYTES}; delete it to create a new one (pseudonyms will change)")
        return key, p
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(KEY_BYTES)
    # O_EXCL: two processes racing to create the key must not end up with different keys.
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_key(p)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.chmod(p, 0o600)
    return key, p
