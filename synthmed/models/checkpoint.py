"""Checkpoints: every tensor in safetensors, everything else in JSON; no pickle anywhere.

A checkpoint is a folder `RUN/checkpoint/step_XXXXXX/` with `tensors.safetensors` (weights, EMA,
optimiser moments, RNG states) and `state.json` (step, config, dataset fingerprint, the optimiser's
non-tensor state, and the sha256 of the tensors file). `RUN/checkpoint/latest` names the newest
complete one and is replaced atomically after both files are written, so a crash mid-save leaves the
previous checkpoint in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from synthmed.errors import SynthmedError
from synthmed.io.atomic import atomic_path, write_json, write_text
from synthmed.io.jsonfile import read_json as _read_json
from synthmed.provenance import sha256_file

CHECKPOINT_SCHEMA = "synthmed.checkpoint/1"


class CheckpointError(SynthmedError):
    """A checkpoint or model file is corrupt, incomplete or made for something else."""


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file is missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err}); "
                              "it is corrupt or truncated") from None


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A run's JSON record; a broken one is a CheckpointError (synthmed.io.jsonfile)."""
    return _read_json(path, what, error=CheckpointError)


# -- optimiser and RNG state as tensors + JSON -----------------------------------------------

def flatten_state(prefix: str, state: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested dict/list into `tensors` (keyed by path); return the rest."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state
        return {"__tensor__": prefix}
    if isinstance(state, dict):
        return {"__dict__": [[_key(k), flatten_state(f"{prefix}.{k}", v, tensors)]
                             for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        return [flatten_state(f"{prefix}.{i}", v, tensors) for i, v in enumerate(state)]
    return state


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {_unkey(k): unflatten_state(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def _key(k: Any) -> Any:
    # Optimiser state is keyed by int parameter index; JSON would turn it into a string.
    return {"int": k} if isinstance(k, int) else k


def _unkey(k: Any) -> Any:
    return k["int"] if isinstance(k, dict) else k


def rng_state(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    tensors["rng.torch"] = torch.get_rng_state()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    return {"numpy": [kind, int(pos), int(has_gauss), float(cached)]}


def restore_rng(state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    kind, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, tensors["rng.numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))


# -- the checkpoint folder -----------------------------------------------------------------------

def save_checkpoint(root: Path, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any],
                    keep: int = 1) -> Path:
    folder = root / f"step_{step:08d}"
    if folder.exists():
        shutil.rmtree(folder)
    save_tensors(folder / "tensors.safetensors", tensors)
    write_json(folder / "state.json", {**state, "schema": CHECKPOINT_SCHEMA, "step": step,
                                       "tensors_sha256": sha256_file(folder / "tensors.safetensors")})
    write_text(root / "latest", folder.name + "\n")
    old = sorted(p for p in root.glob("step_*") if p.is_dir() and p.name != folder.name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return folder


def latest_checkpoint(root: Path) -> Path | None:
    marker = root / "latest"
    if not marker.is_file():
        return None
    return root / marker.read_text().strip()


def load_checkpoint(root: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    folder = latest_checkpoint(root)
    if folder is None:
        raise CheckpointError(f"{root}: no checkpoint to resume from")
    state = read_json(folder / "state.json", "checkpoint state")
    if state.get("schema") != CHECKPOINT_SCHEMA:
        raise CheckpointError(f"{folder / 'state.json'}: not a synthmed checkpoint "
                              f"(schema {state.get('schema')!r})")
    tfile = folder / "tensors.safetensors"
    if not tfile.is_file() or sha256_file(tfile) != state.get("tensors_sha256"):
        raise CheckpointError(f"{tfile}: checkpoint tensors are missing or do not match state.json "
                              "(corrupt or half-written); delete the checkpoint folder to start over")
    return load_tensors(tfile), state


def load_module_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str,
                      source: Path) -> None:
    """Load `prefix.*` tensors into `module`; a shape or key mismatch is a one-line error."""
    sd = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or bad:
        what = (f"{len(missing)} missing" if missing else "") + \
               (f" {len(unexpected)} unexpected" if unexpected else "") + \
               (f" {len(bad)} with other shapes (e.g. {bad[0]})" if bad else "")
        raise CheckpointError(f"{source}: weights do not fit this network ({what.strip()} "
                              f"tensors under '{prefix}'); the config differs from the one trained")
    module.load_state_dict(sd)
