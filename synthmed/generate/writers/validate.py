"""Checking written DICOM with dciodvfy (David Clunie's dicom3tools; Debian package dicom3tools).

`dciodvfy_errors` returns the errors dciodvfy reports for a file, less the allow-list below.
Each allowed entry is a known defect of the validator, not of the file:

- Debian's dicom3tools build has a data dictionary older than SyntheticData (0008,001C): it
  calls the tag "not a recognized standard attribute" (and warns that it is not in the IOD).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

DCIODVFY_ALLOWED_ERRORS = (
    "Error - Attribute with an even group number is not a recognized standard attribute - "
    "(0x0008,0x001c)",
)


def dciodvfy_path() -> str | None:
    return shutil.which("dciodvfy")


def dciodvfy_errors(path: str | Path, *, executable: str | None = None) -> list[str]:
    """dciodvfy's error lines for `path` that are not on the allow-list (empty: valid)."""
    exe = executable or dciodvfy_path()
    if exe is None:
        raise FileNotFoundError("dciodvfy is not installed (Debian/Ubuntu: apt-get install "
                                "dicom3tools)")
    done = subprocess.run([exe, str(path)], capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")
            and not any(ln.startswith(a) for a in DCIODVFY_ALLOWED_ERRORS)]
