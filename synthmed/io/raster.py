"""PNG / JPEG / TIFF images read with Pillow, as grayscale.

Colour images become luminance (ITU-R 601, Pillow's "L" conversion) because every model in
synthmed works on single-channel intensities; 16-bit grayscale keeps its full range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthmed.io.types import LoadedImage, RefusedInput

SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_FORMAT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff",
           ".bmp": "bmp"}


def load_raster(path: str | Path, deid, *, raw_patient: str | None = None,
                modality: str = "DX") -> LoadedImage:
    """Read one 2D image; `raw_patient` (default: the file stem) is pseudonymised by `deid`."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
                array = np.asarray(im, dtype=np.float32)
            else:
                array = np.asarray(im.convert("L"), dtype=np.float32)
    except UnidentifiedImageError:
        raise RefusedInput(path, "not a readable image (format not recognised)") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise RefusedInput(path, f"not a readable image ({_short(err)})") from None
    if array.ndim != 2 or array.size == 0:
        raise RefusedInput(path, f"image has shape {array.shape}; expected a 2D grayscale image")
    stem = path.stem
    raw = raw_patient if raw_patient is not None else stem
    return LoadedImage(
        array=array, spacing=(float("nan"), float("nan")), patient=deid.patient(raw),
        study=deid.study(f"{raw}/{stem}"), series=deid.series(f"{raw}/{stem}"),
        modality=modality, source_format=_FORMAT.get(path.suffix.lower(), "raster"),
        source=str(path), original_shape=tuple(array.shape),
    )


def _short(err: Exception) -> str:
    # Pillow messages are about the file structure ("image file is truncated"), never its content.
    if isinstance(err, OSError) and err.strerror:
        return err.strerror  # without the file name that str(err) would add
    # Whole first line (never cut); ingest's last-line scrub removes anything quoted.
    return str(err).splitlines()[0] if str(err) else type(err).__name__
