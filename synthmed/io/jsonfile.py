"""Reading the JSON records synthmed writes (synthmed.io.atomic.write_json writes them).

One reader for every record, so that a missing, truncated or hand-edited file is reported the
same way everywhere: one line naming the file, what it should have been and, when the caller
knows one, what to do about it. Each caller chooses the error class its own callers expect
(InputError for a folder a user gave, CheckpointError for a run's checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthmed.errors import InputError


def read_json(path: str | Path, what: str, *, error: type[Exception] = InputError,
              hint: str = "", missing_ok: bool = False) -> dict[str, Any]:
    """The JSON object in `path`; `what` names the record in errors ("checkpoint state").

    Each problem raises `error` with one line: `{path}: {what} is missing` (or is not a file, is
    unreadable, is not valid JSON, is not a JSON object), then `; {hint}` when `hint` is given.
    `missing_ok`: a missing file is an empty record instead (a page showing what a run has so
    far); a file that is there but broken is still an error.
    """
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    if not path.exists():
        if missing_ok:
            return {}
        raise error(f"{path}: {what} is missing{tail}")
    if not path.is_file():
        raise error(f"{path}: {what} is not a file{tail}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise error(f"{path}: {what} cannot be read ({err.strerror or err}){tail}") from None
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise error(f"{path}: {what} is not valid JSON ({err}){tail}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: {what} is not a JSON object{tail}")
    return data
