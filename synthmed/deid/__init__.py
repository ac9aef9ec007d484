"""De-identification of DICOM headers and of identifiers from any other input.

Follows DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile, with the options
Retain Patient Characteristics and Retain Longitudinal Temporal Information with Modified Dates.
Patient identity becomes a keyed pseudonym (HMAC-SHA256 with a secret key the hospital keeps
outside the output), so the same patient maps to the same pseudonym on every run and no mapping
table is ever stored.

Public API (implemented in the submodules):

- `load_or_create_key(path: Path | None) -> tuple[bytes, Path]`
- `Deidentifier(key: bytes)` with
    `.patient(raw_id: str) -> str`          keyed pseudonym, e.g. 'P-3f9a1c0e2b7d'
    `.study(raw: str) -> str`, `.series(raw: str) -> str`   keyed pseudonyms for grouping
    `.uid(raw_uid: str) -> str`             replacement UID under a synthmed root (2.25.<int>)
    `.date_offset_days(raw_patient_id: str) -> int`   per-patient shift
    `.deidentify(ds: pydicom.Dataset) -> pydicom.Dataset`   in place, returns ds
    `.profile_description() -> dict`        profile, options, what was done, for reports
"""

from synthmed.deid.dicom_deid import Deidentifier, raw_identity
from synthmed.deid.keys import default_key_path, load_or_create_key
from synthmed.deid.pseudonyms import Pseudonymiser

__all__ = ["Deidentifier", "Pseudonymiser", "default_key_path", "load_or_create_key", "raw_identity"]
