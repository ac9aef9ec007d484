"""NIfTI-1 (.nii.gz, nibabel): the study's volume with its affine; a 2D image as one slice.

The voxels are the same integers as the DICOM's, with the same slope and intercept (scl_slope,
scl_inter), so a NIfTI reader gets HU for CT exactly as a DICOM reader does. The axes are
(x, y, z) = (W, H, D), the transpose of synthmed's (D, H, W) (see synthmed/io/nifti.py, which
reads these files back to the same array), and the affine is the DICOM geometry in RAS.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from synthmed.generate.writers.base import StudyOutput, Writer, register_writer
from synthmed.io.atomic import write_bytes


def nifti_bytes(out: StudyOutput) -> bytes:
    import nibabel as nib

    stored = out.encoded.stored
    data = stored.transpose(2, 1, 0) if stored.ndim == 3 else stored.T[:, :, None]
    img = nib.Nifti1Image(np.asfortranarray(data), out.geometry.ras_affine())
    hdr = img.header
    hdr.set_data_dtype(np.uint16)
    hdr.set_slope_inter(out.encoded.slope, out.encoded.intercept)
    hdr.set_xyzt_units("mm")
    img.set_qform(out.geometry.ras_affine(), code="scanner")
    img.set_sform(out.geometry.ras_affine(), code="scanner")
    ctx = out.ctx
    hdr["descrip"] = f"SYNTHETIC synthmed {ctx.synthmed_version} seed {out.study.seed}"[:79].encode()
    hdr["aux_file"] = b""
    # mtime=0: gzip would otherwise stamp the current time and the same cohort would differ.
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)


@register_writer
class NiftiWriter(Writer):
    name = "nifti"

    def write(self, out: StudyOutput, root: Path) -> str:
        path = root / self.name / f"{out.folder}.nii.gz"
        write_bytes(path, nifti_bytes(out))
        return path.relative_to(root).as_posix()
