"""`Deidentifier`: keyed pseudonyms plus the PS3.15 Annex E header walk (see `profile.py`)."""

from __future__ import annotations

import datetime as _dt
import logging
import warnings
from contextlib import contextmanager

import pydicom
from pydicom import config
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID_dictionary

from synthmed.deid import profile
from synthmed.deid.pseudonyms import MAX_SHIFT_DAYS, MIN_SHIFT_DAYS, Pseudonymiser

_ACTION_BY_TAG: dict[int, str] = {int(tag_for_keyword(k)): a for k, a in profile.ACTIONS.items()}
_TAG_PATIENT_ID = Tag(0x0010, 0x0020)
_TAG_PATIENT_NAME = Tag(0x0010, 0x0010)
_IDENTITY_FALLBACKS = ("StudyInstanceUID", "FrameOfReferenceUID", "SeriesInstanceUID", "SOPInstanceUID")
_AGE_DATES = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")


@contextmanager
def quiet_pydicom():
    """pydicom's validation warnings quote raw header values (UIDs, names): never let them reach
    stderr or logs. Truncation is still detected, from the end-of-file warnings caught here.

    pydicom's settings are process-wide, so this is not thread-safe; synthmed parallelises with
    processes, never threads, around pydicom.
    """
    old = config.settings.reading_validation_mode, config.settings.writing_validation_mode
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    logger = logging.getLogger("pydicom")
    was_disabled, logger.disabled = logger.disabled, True
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = old
        logger.disabled = was_disabled


def raw_identity(ds: Dataset) -> str:
    """The raw value the patient pseudonym and date shift derive from.

    PatientID when present; otherwise name + birth date; otherwise the study (or frame of
    reference) UID, so anonymous exports still group per study rather than all falling into one
    'unknown' patient. Empty string when nothing identifies the patient at all: such images then
    share one pseudonym, which keeps them together on one side of any split.
    """
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return pid
    name = str(ds.get("PatientName", "") or "").strip()
    if name:
        return "name:" + name + "|" + str(ds.get("PatientBirthDate", "") or "").strip()
    for kw in _IDENTITY_FALLBACKS:
        v = str(ds.get(kw, "") or "").strip()
        if v:
            return f"{kw}:{v}"
    return ""


def _parse_da(value: str) -> _dt.date | None:
    value = value.strip()
    if len(value) == 10 and value[4] == "." and value[7] == ".":  # ACR-NEMA style
        value = value.replace(".", "")
    try:
        return _dt.date(int(value[0:4]), int(value[4:6]), int(value[6:8])) if len(value) == 8 else None
    except ValueError:
        return None


def _age_string(birth: _dt.date, when: _dt.date) -> str:
    """DICOM AS ('057Y', '011M', '020D'), as PS3.5 recommends by age range."""
    days = (when - birth).days
    years = when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))
    if years >= 2:
        return f"{min(years, 999):03d}Y"
    months = (when.year - birth.year) * 12 + when.month - birth.month - (when.day < birth.day)
    if months >= 1:
        return f"{months:03d}M"
    return f"{max(days, 0):03d}D"


class Deidentifier(Pseudonymiser):
    """Keyed pseudonyms and in-place de-identification of pydicom datasets.

    Picklable (it holds only the key), so it can be sent to worker processes.
    """

    # -- dates ----------------------------------------------------------------------------------
    def _shift_da(self, value: str, days: int) -> str:
        # A range ('20100101-20101231') or an unparseable date: nothing meaningful can be kept.
        d = _parse_da(value)
        return (d + _dt.timedelta(days=days)).strftime("%Y%m%d") if d else ""

    def _shift_dt(self, value: str, days: int) -> str:
        value = value.strip()
        date_part, rest = value[:8], value[8:]
        for sign in "+-":  # drop the UTC offset: it hints at the site's location
            if sign in rest:
                rest = rest[: rest.index(sign)]
        if len(date_part) < 8:
            return ""  # year or year-month only: too coarse to shift meaningfully, too identifying to keep
        shifted = self._shift_da(date_part, days)
        return shifted + rest if shifted else ""

    # -- the walk -------------------------------------------------------------------------------
    def deidentify(self, ds: Dataset) -> Dataset:
        """Apply the profile to `ds` in place (file meta, every element, every sequence item)."""
        with quiet_pydicom():
            return self._deidentify(ds)

    def _deidentify(self, ds: Dataset) -> Dataset:
        raw_id = raw_identity(ds)
        pseudonym = self.patient(raw_id)
        shift = self.date_offset_days(raw_id)

        # Retain Patient Characteristics: derive the age before the birth date goes.
        age = str(ds.get("PatientAge", "") or "").strip()
        if not age:
            birth = _parse_da(str(ds.get("PatientBirthDate", "") or ""))
            when = next((d for d in (_parse_da(str(ds.get(k, "") or "")) for k in _AGE_DATES) if d), None)
            if birth and when and when >= birth:
                ds.PatientAge = _age_string(birth, when)

        self._walk(ds, shift, pseudonym)
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            self._walk(meta, shift, pseudonym)
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]

        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = ["synthmed", "PS3.15 E.1 Basic", "Retain Patient Chars",
                                     "Retain Longitudinal Modified Dates"]
        items = []
        for code, meaning in profile.PROFILE_CODES:
            item = Dataset()
            item.CodeValue = code
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        return ds

    def _walk(self, ds: Dataset, shift: int, pseudonym: str) -> None:
        for tag in list(ds.keys()):
            group = tag >> 16
            if group & 1 or 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
                del ds[tag]  # private, curve, overlay (overlay comments and burned-in text)
                continue
            action = _ACTION_BY_TAG.get(int(tag))
            if action == profile.X:
                del ds[tag]
                continue
            elem = ds[tag]
            vr = elem.VR
            if action == profile.D:
                elem.value = pseudonym if tag in (_TAG_PATIENT_ID, _TAG_PATIENT_NAME) else ""
            elif action == profile.Z:
                elem.value = [] if vr == "SQ" else ""
            elif vr == "SQ":
                for item in elem.value:
                    self._walk(item, shift, pseudonym)
            elif action == profile.K:
                continue
            elif vr == "UI":
                self._replace_uids(elem, force=action == profile.U)
            elif vr in ("DA", "DT"):
                shift_one = self._shift_da if vr == "DA" else self._shift_dt
                vals = elem.value if elem.VM > 1 else [elem.value]
                shifted = [shift_one(str(v), shift) for v in vals if v is not None]
                elem.value = shifted if len(shifted) > 1 else (shifted[0] if shifted else "")
            elif action == profile.C:
                del ds[tag]  # free text the standard would "clean": removed (see profile.py)
            elif vr in ("PN", "AE"):
                del ds[tag]
            elif action is None and vr in profile.TEXT_VRS and group in profile.TEXT_SCRUB_GROUPS:
                del ds[tag]

    def _replace_uids(self, elem, force: bool) -> None:
        vals = elem.value if elem.VM > 1 else [elem.value]
        out = []
        for v in vals:
            s = str(v or "").strip()
            # Registered UIDs (SOP classes, transfer syntaxes, coding schemes) name a standard,
            # not a patient or a site, and readers need them.
            out.append(s if not s or (s in UID_dictionary and not force) else self.uid(s))
        elem.value = out if len(out) > 1 else out[0] if out else ""

    def profile_description(self) -> dict:
        """Plain data describing what de-identification did, for reports and model cards."""
        return {
            "profile": profile.PROFILE_NAME,
            "codes": [{"code": c, "scheme": "DCM", "meaning": m} for c, m in profile.PROFILE_CODES],
            "options": list(profile.OPTIONS),
            "actions": {k: a for k, a in sorted(profile.ACTIONS.items())},
            "action_codes": {"D": "dummy (keyed pseudonym)", "Z": "zero length", "X": "remove",
                             "K": "keep", "C": "clean (dates shifted per patient; text removed)",
                             "U": "keyed UID replacement under 2.25"},
            "generic_rules": list(profile.GENERIC_RULES),
            "pseudonyms": "HMAC-SHA256(secret key, domain + raw value); no mapping is stored",
            "date_shift_days": [-MAX_SHIFT_DAYS, -MIN_SHIFT_DAYS],
        }
