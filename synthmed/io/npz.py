"""MedMNIST-style `.npz` archives: `train_images`, `train_labels`, `val_*`, `test_*`.

Each image is its own patient unless the archive holds `<part>_patients` (one ID per image),
because MedMNIST publishes no patient IDs. The archive's own train/val/test parts are not kept:
synthmed splits by patient itself. Arrays are read with `allow_pickle=False`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from synthmed.io.types import LoadedImage, RefusedInput

SUFFIXES = (".npz",)
_PARTS = ("train", "val", "test")


def _parts(keys: Sequence[str]) -> list[str]:
    found = [p for p in _PARTS if f"{p}_images" in keys]
    found += sorted(k[: -len("_images")] for k in keys
                    if k.endswith("_images") and k[: -len("_images")] not in found)
    if "images" in keys:
        found.append("")
    return found


def _labels(raw: np.ndarray | None, n: int, names: Sequence[str] | None) -> list[tuple[str, ...]]:
    if raw is None:
        return [()] * n
    raw = np.asarray(raw)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]

    def name(k: int) -> str:
        return names[k] if names is not None and k < len(names) else f"class_{k}"

    if raw.ndim == 1:  # one class index per image
        return [(name(int(v)),) for v in raw]
    # (N, K) 0/1 matrix: multi-label
    return [tuple(name(k) for k in np.flatnonzero(row)) for row in raw.reshape(n, -1)]


def load_npz(path: str | Path, deid, *, raw_prefix: str | None = None, modality: str = "DX",
             label_names: Sequence[str] | None = None) -> list[LoadedImage]:
    """Every image in the archive, as grayscale 2D (N, H, W) or 3D (N, D, H, W) arrays.

    `raw_prefix` (default: the file stem) makes per-image patient IDs unique across archives.
    """
    path = Path(path)
    prefix = raw_prefix if raw_prefix is not None else path.stem
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            parts = _parts(keys)
            if not parts:
                # Array names are the archive's own text: counted, never quoted.
                raise RefusedInput(path, "no <part>_images or images array in the .npz "
                                         f"({len(keys)} other array(s))")
            out: list[LoadedImage] = []
            for part in parts:
                key = f"{part}_" if part else ""
                images = np.asarray(npz[f"{key}images"])
                n = images.shape[0] if images.ndim else 0
                labels = _labels(npz[f"{key}labels"] if f"{key}labels" in keys else None, n,
                                 label_names)
                patients = (np.asarray(npz[f"{key}patients"]).astype(str)
                            if f"{key}patients" in keys else None)
                if images.ndim == 4 and images.shape[-1] in (3, 4):  # (N, H, W, RGB[A])
                    images = images[..., :3].astype(np.float32) @ np.array(
                        [0.299, 0.587, 0.114], dtype=np.float32)
                if images.ndim not in (3, 4) or n == 0:
                    raise RefusedInput(path, f"an images array has shape {images.shape}; expected "
                                             "(N, H, W) or (N, D, H, W)")
                for i in range(n):
                    raw = (f"{prefix}/{patients[i]}" if patients is not None
                           else f"{prefix}/{part or 'images'}/{i}")
                    arr = np.asarray(images[i], dtype=np.float32)
                    out.append(LoadedImage(
                        array=arr, spacing=(float("nan"),) * arr.ndim, patient=deid.patient(raw),
                        study=deid.study(f"{prefix}/{part}/{i}"),
                        series=deid.series(f"{prefix}/{part}/{i}"), labels=labels[i],
                        modality=modality, source_format="npz", source=f"{path}[{key}images][{i}]",
                        original_shape=tuple(arr.shape)))
            return out
    except RefusedInput:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise RefusedInput(path, f"not a readable .npz archive ({reason})") from None
