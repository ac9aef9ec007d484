"""Keyed pseudonyms: HMAC-SHA256(key, domain + raw value).

A plain hash of a patient ID can be reversed by hashing every plausible ID; a keyed hash cannot
without the key. The domain prefix keeps the patient, study, series, UID and date-shift spaces
apart, so equal raw strings in different roles do not give related outputs.
"""

from __future__ import annotations

import hashlib
import hmac

# Shift range for dates (Retain Longitudinal Temporal Information with Modified Dates):
# always into the past and never zero, so a shifted date never equals the original.
MIN_SHIFT_DAYS = 30
MAX_SHIFT_DAYS = 3650


def _digest(key: bytes, domain: str, raw: str) -> bytes:
    return hmac.new(key, domain.encode() + b"\x00" + str(raw).encode("utf-8", "surrogateescape"),
                    hashlib.sha256).digest()


class Pseudonymiser:
    """The keyed functions alone (no DICOM); `Deidentifier` adds the header walk."""

    def __init__(self, key: bytes):
        if not isinstance(key, (bytes, bytearray)) or len(key) < 32:
            raise ValueError("de-identification key must be at least 32 bytes")
        self._key = bytes(key)

    def __repr__(self) -> str:  # never show the key
        return f"{type(self).__name__}(key=<{len(self._key)} bytes>)"

    def patient(self, raw_id: str) -> str:
        return "P-" + _digest(self._key, "patient", raw_id).hex()[:12]

    def study(self, raw: str) -> str:
        return "S-" + _digest(self._key, "study", raw).hex()[:12]

    def series(self, raw: str) -> str:
        return "R-" + _digest(self._key, "series", raw).hex()[:12]

    def uid(self, raw_uid: str) -> str:
        """A replacement UID under the UUID-derived root 2.25 (PS3.5 B.2): 128 bits, <= 44 chars."""
        return "2.25." + str(int.from_bytes(_digest(self._key, "uid", raw_uid.strip())[:16], "big"))

    def date_offset_days(self, raw_patient_id: str) -> int:
        """Per-patient shift in days (negative), the same for every study of that patient."""
        n = int.from_bytes(_digest(self._key, "date", raw_patient_id)[:8], "big")
        return -(MIN_SHIFT_DAYS + n % (MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1))
