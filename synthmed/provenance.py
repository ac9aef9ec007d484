"""What made an output: package versions, config, hashes, seed.

Every output synthmed writes records this block, so a cohort or a report can be traced back to
the exact config, model and software that produced it.
"""

from __future__ import annotations

import functools
import hashlib
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from synthmed.io.atomic import dumps_json

_PACKAGES = (
    "synthmed", "torch", "monai", "diffusers", "numpy", "scipy", "pydicom", "nibabel",
    "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-libjpeg", "pylibjpeg-rle", "safetensors",
    "faiss-cpu", "pydantic", "highdicom", "pyarrow", "pillow",
)


def package_versions() -> dict[str, str]:
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str], ...]:
    # importlib.metadata scans site-packages on every call (~0.1 s); versions do not change
    # while a process runs.
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions.items())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_bytes(dumps_json(obj).encode())


def hash_id_list(ids: Iterable[str]) -> str:
    """Order-free hash of a set of pseudonyms: records who was seen without listing them."""
    return sha256_bytes("\n".join(sorted(set(ids))).encode())


def compute_environment() -> dict[str, Any]:
    """What the floats were computed on.

    Same config and seed give the same bytes on one machine, but trained floats also depend on
    the CPU's instruction set (oneDNN and the vectorised kernels pick AVX2, AVX-512 or SSE paths
    at run time) and on the number of threads (the order of parallel reductions); measured: the
    same audit on one machine wrote encoder AUC 0.575 with its own ISA and 0.5725 with oneDNN held
    to SSE4.1. Recorded so that two outputs that differ can be told apart from a bug."""
    import torch

    env: dict[str, Any] = {"machine": platform.machine(),
                           "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                           "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        env["cuda_device"] = torch.cuda.get_device_name()
    return env


def provenance(config: Any = None, *, seed: int | None = None, compute: bool = True,
               **extra: Any) -> dict[str, Any]:
    """The block every output carries: config (as data), its hash, seed, package versions and
    (`compute`) the compute environment. Stages that compute no floats with torch (phantoms,
    ingest) pass compute=False: their bytes do not depend on it, and recording a thread count
    there would make the same input give different bytes under different settings."""
    cfg = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
    block: dict[str, Any] = {"packages": package_versions()}
    if compute:
        block["compute"] = compute_environment()
    if cfg is not None:
        block["config"] = cfg
        block["config_sha256"] = sha256_json(cfg)
    if seed is not None:
        block["seed"] = seed
    block.update(extra)
    return block
