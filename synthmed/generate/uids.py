"""DICOM UIDs of a generated cohort, derived from its seed: the same cohort gets the same UIDs.

A UID is `2.25.<the integer of a name-based UUID>` (PS3.5 B.2). The name is the cohort's
identity (model hash, spec hash, cohort seed) plus the object's place in it (patient, study,
role, instance); name-based (version 5) UUIDs are the standard's way to derive one from a name.
Nothing from a real patient goes into a name, so no UID can be linked to a source UID.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

# Fixed namespace: changing it changes every UID synthmed has ever written.
_NAMESPACE = uuid.UUID("6f1c2a4e-8d3b-5e7f-9a10-53796e74686d")

# The Implementation Class UID of every file the cohort writers write (file meta group).
IMPLEMENTATION_UID = "2.25." + str(uuid.uuid5(_NAMESPACE, '["synthmed-generate-implementation"]').int)


def uid_from(*parts: object) -> str:
    """`2.25.<int>` from a name-based UUID of `parts` (strings and numbers); at most 44 chars."""
    for p in parts:
        if not isinstance(p, (str, int, float)) or isinstance(p, bool):
            raise TypeError(f"uid_from: parts must be strings or numbers, not {type(p).__name__}")
    # JSON keeps the parts apart: ("1", "23") and ("12", "3") give different names.
    return "2.25." + str(uuid.uuid5(_NAMESPACE, json.dumps(list(parts))).int)


@dataclass(frozen=True)
class StudyUids:
    """The UIDs of one synthetic study: one study, one series, one frame of reference."""

    study: str
    series: str
    frame_of_reference: str
    _base: tuple

    def sop(self, instance: int) -> str:
        """SOP Instance UID of instance `instance` (0-based) of the series."""
        return uid_from(*self._base, "sop", int(instance))


def study_uids(model_hash: str, spec_sha256: str, cohort_seed: int, patient_id: str,
               study_index: int) -> StudyUids:
    base = ("synthmed-cohort", str(model_hash), str(spec_sha256), int(cohort_seed), str(patient_id),
            int(study_index))
    return StudyUids(study=uid_from(*base, "study"), series=uid_from(*base, "series"),
                     frame_of_reference=uid_from(*base, "frame-of-reference"), _base=base)


__all__ = ["IMPLEMENTATION_UID", "StudyUids", "study_uids", "uid_from"]
