"""Built-in virtual patients written as real DICOM files.

A new user with no data can run synthmed at once, and every run exercises the DICOM reader and
de-identifier: phantom files carry realistic but invented identifying header fields.

- `make_phantoms(out, patients, seed=0, kind="cxr"|"ct3d", ...) -> PhantomSummary`
- `FINDINGS`: the finding names that can appear as labels.
- `IDENTIFYING_KEYWORDS`: header fields present (and non-empty) in every phantom file.
"""

from synthmed.phantoms.findings import FINDINGS
from synthmed.phantoms.dicom_writer import IDENTIFYING_KEYWORDS
from synthmed.phantoms.generator import KINDS, PhantomSummary, make_phantoms

__all__ = ["FINDINGS", "IDENTIFYING_KEYWORDS", "KINDS", "PhantomSummary", "make_phantoms"]
