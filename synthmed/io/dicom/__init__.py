"""DICOM reading: find series from headers, then load each series as de-identified images.

Modules: `scan` (pass 1, series grouping, the header cache), `decode` (pixels, modality LUT,
the per-slice fast path), `policy` (modality / burned-in / decodability refusals), `geometry`
(orientation, positions, volume splitting, spacing), `series` (pass 2, `load_series`).

Two passes, and every byte is parsed once:
1. `find_dicom_series` reads only the start of each header (up to the image size tags, before
   the large private groups and the pixel data) to refuse what is not DICOM and to group files
   by series. The partial headers are kept in the scan's `HeaderCache` (bounded).
2. `load_series` continues each file from where the scan stopped (or reads it whole when the
   cache no longer holds it), decodes the pixels, applies the modality LUT (CT in HU) and
   assembles slices into volumes ordered along the slice normal (cross product of the
   ImageOrientationPatient rows). Repeated positions (fMRI, perfusion) become one volume per
   time point; multi-frame files with per-frame positions become volumes, cine multi-frames
   (frame time pointer) become 2D frames, other multi-frames a volume in stored order; projection
   images (CR, DX, MG, ...) and single files stay 2D. Slices 2..n of a native (uncompressed)
   single-frame series whose shape, policy, pixel-module and rescale values are byte-identical
   to the first slice's skip re-checking and re-converting them (see `_FastSlices`); any slice
   that differs takes the full path.

De-identification: the header whose identity values are used (patient, study, series, age, sex)
is run through `Deidentifier.deidentify` before any value is taken from it. The other slices of
the series are only asked for geometry, ordering and pixel-transform attributes (position,
orientation, spacing, rescale, temporal/acquisition/instance numbers, image size), which identify
nobody; walking each of their headers too would add ~7 ms per slice for nothing, since no header
is ever written.

Colour: synthmed models grayscale images. A colour image whose three channels are equal (grey
stored as RGB, common for secondary captures) is kept as one channel; a truly colour image or a
palette (pseudo-colour) image is refused, because any grey conversion would invent intensities
that the model would then learn as anatomy.
"""

from synthmed.io.dicom.decode import _FastSlices
from synthmed.io.dicom.policy import (DEFAULT_REFUSED_MODALITIES, NON_IMAGE_MODALITIES,
                                      PROJECTION_MODALITIES)
from synthmed.io.dicom.scan import DicomScan, DicomSeries, HeaderCache, find_dicom_series
from synthmed.io.dicom.series import load_series

__all__ = ["DEFAULT_REFUSED_MODALITIES", "NON_IMAGE_MODALITIES", "PROJECTION_MODALITIES",
           "DicomScan", "DicomSeries", "HeaderCache", "_FastSlices", "find_dicom_series",
           "load_series"]
