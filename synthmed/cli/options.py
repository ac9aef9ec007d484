"""Checks on command-line values, made before a command does any work.

Numbers given on the command line are validated like config values (click's `min=` lets NaN
through for floats and its message is a multi-line usage block); `None` means "not given" and is
never confused with 0. Each problem is a ConfigError: one line, exit 2.
"""

from __future__ import annotations

import math
from pathlib import Path

from synthmed.errors import ConfigError, InputError

# The flag that stands for each library argument a message may name (synthmed.errors.arg): the
# library speaks of `key=`, the command line of `--key`. Where the CLI's flag differs from the
# argument's name (`--source` for `sources=`) this table is the one place that says so.
FLAGS: dict[str, str] = {
    "out": "--out", "overwrite": "--overwrite", "resume": "--resume", "key": "--key",
    "sources": "--source", "formats": "--formats", "tier": "--tier", "override": "--override",
    "shard": "--shard", "allow_other_dataset": "--allow-other-dataset", "reason": "--reason",
    "k": "--canaries", "spec": "--spec", "n": "--n", "config": "--config",
    "synthetic": "--synthetic", "model": "--model", "metadata": "--metadata",
    "show_paths": "--show-paths", "steps": "--steps", "seed": "--seed",
}


def check_int(value: int | None, option: str, minimum: int) -> int | None:
    if value is not None and value < minimum:
        raise ConfigError(f"{option}: must be at least {minimum} (got {value})")
    return value


def check_float(value: float | None, option: str, low: float | None = None,
                high: float | None = None) -> float | None:
    """A finite number in [low, high] (either bound optional), or None."""
    if value is None:
        return None
    if not math.isfinite(value):
        raise ConfigError(f"{option}: must be a finite number (got {value})")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (f"between {low:g} and {high:g}" if low is not None and high is not None
                  else f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise ConfigError(f"{option}: must be {bounds} (got {value:g})")
    return value


def check_seed(value: int | None, option: str = "--seed") -> int | None:
    # numpy's generators take only non-negative seeds
    return check_int(value, option, 0)


def check_out_folder(path: Path, option: str = "--out") -> Path:
    """`path` is a folder or does not exist yet; an existing file is refused before any work."""
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: {option} names an existing file; it must be a folder (new or "
                         "existing)")
    if path.parent.exists() and not path.parent.is_dir():
        raise InputError(f"{path.parent}: {option} is inside a file, not a folder")
    return path
