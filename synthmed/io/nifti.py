"""NIfTI volumes (.nii, .nii.gz) read with nibabel.

NIfTI stores voxels as (x, y, z); synthmed's convention is (D, H, W) with D along the slice
normal, so the array is transposed to (z, y, x) and the spacing (header zooms) with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthmed.io.types import LoadedImage, RefusedInput

SUFFIXES = (".nii", ".nii.gz")


def nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def load_nifti(path: str | Path, deid, *, raw_patient: str | None = None,
               modality: str = "MR") -> LoadedImage:
    """Read one NIfTI volume; `raw_patient` (default: the file stem) is pseudonymised by `deid`."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
        # zooms are float32: 0.8 would come back as 0.800000011920929
        zooms = tuple(round(float(z), 6) for z in img.header.get_zooms())
    except (OSError, EOFError, ValueError, nib.filebasedimages.ImageFileError) as err:
        raise RefusedInput(path, f"not a readable NIfTI file ({type(err).__name__})") from None
    # A 4D file with one time point is a volume; more is a series we do not split here.
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise RefusedInput(path, f"NIfTI with {data.ndim} dimensions {data.shape}; expected a 3D volume")
    if data.size == 0:
        raise RefusedInput(path, "NIfTI volume is empty")
    finite = np.isfinite(data)
    if not finite.any():
        raise RefusedInput(path, "NIfTI volume holds no finite value (all NaN or infinite)")
    if not finite.all():
        raise RefusedInput(path, f"NIfTI volume holds {int((~finite).sum())} NaN or infinite voxels")
    array = np.ascontiguousarray(data.transpose(2, 1, 0))
    spacing = (zooms[2], zooms[1], zooms[0]) if len(zooms) >= 3 else (float("nan"),) * 3
    stem = nifti_stem(path)
    raw = raw_patient if raw_patient is not None else stem
    return LoadedImage(
        array=array, spacing=spacing, patient=deid.patient(raw), study=deid.study(f"{raw}/{stem}"),
        series=deid.series(f"{raw}/{stem}"), modality=modality, source_format="nifti",
        source=str(path), original_shape=tuple(array.shape),
    )
