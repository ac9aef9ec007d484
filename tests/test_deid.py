"""De-identification: keys, keyed pseudonyms, and the PS3.15 Annex E header walk."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary, ExplicitVRLittleEndian, generate_uid

from synthmed.deid import Deidentifier, load_or_create_key
from synthmed.deid.profile import ACTIONS
from synthmed.errors import InputError

from conftest import shared_path

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
SERIES = ("mr-fmri-series", "mr-brain-sagittal", "ct-chest-jpeg2000")
TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
# Identifying attributes of the raw headers (PS3.15 Annex E), searched for after de-identification.
IDENTIFYING = (
    "PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StationName", "DeviceSerialNumber",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName",
    "PhysiciansOfRecord", "PerformingPhysicianName", "OperatorsName", "RequestingPhysician", "StudyID",
    "StudyDescription", "SeriesDescription", "ProtocolName", "PatientComments", "ImageComments",
    "StudyComments", "RequestingService", "RequestedProcedureDescription", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "PerformedStationAETitle", "IssuerOfPatientID", "OtherPatientIDs",
)


def _files(name: str) -> list[Path]:
    return sorted(p for p in shared_path("dicom", name).iterdir() if p.is_file())


def _walk(ds: Dataset):
    for elem in ds:
        yield elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)


def _strings(elem) -> list[str]:
    vals = elem.value if elem.VM > 1 else [elem.value]
    return [str(v).strip() for v in vals if v is not None and str(v).strip()]


def _oracle(ds: Dataset) -> set[str]:
    """Every identifying string in a raw header: names, IDs, dates, UIDs, free text, private text."""
    found: set[str] = set()
    private: set[str] = set()
    technical: set[str] = set()  # public scanner settings, e.g. ImageType 'ORIGINAL', kept on purpose
    for elem in list(_walk(ds)) + list(ds.file_meta):
        if elem.tag.is_private and elem.VR in TEXT_VRS:
            private.update(v for v in _strings(elem) if len(v) >= 4)
        elif elem.VR == "UI" and not elem.keyword.endswith(("SOPClassUID", "TransferSyntaxUID")):
            found.update(v for v in _strings(elem) if v not in UID_dictionary)
        elif elem.VR in ("DA", "DT"):
            found.update(v for v in _strings(elem) if len(v) >= 8)
        elif elem.keyword in IDENTIFYING:
            found.update(v for v in _strings(elem) if len(v) >= 4)
        elif elem.VR in TEXT_VRS and elem.VR != "PN":
            technical.update(_strings(elem))
    # A private copy of a public technical value (vendors duplicate e.g. the imaging frequency)
    # is not an identifier; every other private string is.
    return found | (private - technical)


def _written(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("name", SERIES)
def test_no_identifying_value_survives(name):
    files = _files(name)
    raw_headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in (files[0], files[len(files) // 2])]
    deid = Deidentifier(KEY)
    for raw in raw_headers:
        oracle = _oracle(raw)
        assert len(oracle) >= 5, "the fixture should carry identifying values"
        ds = pydicom.dcmread(raw.filename, stop_before_pixels=True)
        deid.deidentify(ds)
        data = _written(ds)
        leaked = sorted(v for v in oracle if v.encode() in data)
        assert not leaked, f"{name}: identifying values survived: {leaked[:5]}"
        assert not any(e.tag.is_private for e in _walk(ds))
        # Dates are shifted, consistently, by the patient's offset; times are kept.
        if raw.get("StudyDate"):
            import datetime as dt
            raw_date = dt.datetime.strptime(raw.StudyDate, "%Y%m%d").date()
            new_date = dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date()
            assert new_date != raw_date
            from synthmed.deid import raw_identity
            assert (new_date - raw_date).days == deid.date_offset_days(raw_identity(raw))
            assert ds.StudyTime == raw.StudyTime
        assert ds.PatientID.startswith("P-") and ds.PatientName == ds.PatientID
        assert ds.PatientIdentityRemoved == "YES"
        codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
        assert codes == {"113100", "113107", "113108"}
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        # Retained patient characteristics.
        for kw in ("PatientSex", "PatientAge", "PatientWeight", "PatientSize"):
            if raw.get(kw) not in (None, ""):
                assert str(ds.get(kw)) == str(raw.get(kw)), kw
        assert ds.SOPClassUID == raw.SOPClassUID
        assert ds.file_meta.TransferSyntaxUID == raw.file_meta.TransferSyntaxUID
        # The written file is still valid DICOM.
        back = pydicom.dcmread(io.BytesIO(data))
        assert back.PatientID == ds.PatientID


def test_uids_consistent_across_files_and_runs():
    files = _files("mr-brain-sagittal")
    raw = [pydicom.dcmread(f, stop_before_pixels=True) for f in files[:2]]
    a = [Deidentifier(KEY).deidentify(pydicom.dcmread(f, stop_before_pixels=True)) for f in files[:2]]
    b = Deidentifier(KEY).deidentify(pydicom.dcmread(files[0], stop_before_pixels=True))
    c = Deidentifier(OTHER_KEY).deidentify(pydicom.dcmread(files[0], stop_before_pixels=True))
    assert raw[0].SeriesInstanceUID == raw[1].SeriesInstanceUID
    assert a[0].SeriesInstanceUID == a[1].SeriesInstanceUID  # same raw UID -> same replacement
    assert a[0].SOPInstanceUID != a[1].SOPInstanceUID
    for kw in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert a[0].get(kw) == b.get(kw), kw  # same key, another run
        assert a[0].get(kw) != c.get(kw), kw  # another key
    assert a[0].SOPInstanceUID == a[0].file_meta.MediaStorageSOPInstanceUID
    for ds in a:
        for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            uid = str(ds.get(kw))
            assert uid.startswith("2.25.") and len(uid) <= 64 and set(uid) <= set("0123456789.")


def _synthetic() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7"
    ds.PatientName = "Doe^Johnathan"
    ds.PatientID = "MRN-998877"
    ds.PatientBirthDate = "19600315"
    ds.PatientSex = "F"
    ds.StudyDate = "20170610"
    ds.AcquisitionDateTime = "20170610101112.5+0100"
    ds.OtherPatientIDs = "ALT-556677"
    ds.EthnicGroup = "Klingon"
    ds.Occupation = "Lighthouse crew"
    ds.AdditionalPatientHistory = "fell from ladder in Springfield"
    ds.PatientAddress = "742 Evergreen Terrace"
    ds.PatientTelephoneNumbers = "555-0134"
    ds.InstitutionName = "St Elsewhere Hospital"
    ds.StationName = "CTROOM7"
    ds.DeviceSerialNumber = "SN-4411"
    ds.Modality = "CT"
    ds.Manufacturer = "ACME"
    ds.ConversionType = "WSD"
    ds.add_new(0x00091010, "LO", "private secret value")
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.6.8"
    item.add_new(0x00291001, "LO", "nested private value")
    item.ScheduledPerformingPhysicianName = "Dr^Nested"
    ds.ReferencedImageSequence = Sequence([item])
    ds.add_new(0x60004000, "LT", "overlay comment with name")
    ds.add_new(0x50000000, "US", 1)
    return ds


def test_synthetic_header_profile():
    deid = Deidentifier(KEY)
    ds = deid.deidentify(_synthetic())
    data = _written(ds)
    for secret in ("Doe^Johnathan", "MRN-998877", "19600315", "20170610", "ALT-556677", "Klingon",
                   "Lighthouse", "Springfield", "Evergreen", "555-0134", "Elsewhere", "CTROOM7", "SN-4411",
                   "private secret", "nested private", "Dr^Nested", "overlay comment", "1.2.3.4.5.6.7",
                   "1.2.3.4.5.6.8", "+0100"):
        assert secret.encode() not in data, secret
    assert ds.PatientAge == "057Y"  # derived from birth and study date before the birth date went
    assert ds.PatientBirthDate == ""
    assert ds.PatientSex == "F" and ds.Manufacturer == "ACME"
    assert ds.PatientID == deid.patient("MRN-998877")
    shifted = ds.AcquisitionDateTime
    assert shifted.endswith("101112.5") and not shifted.startswith("20170610")
    ref = ds.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == deid.uid("1.2.3.4.5.6.8")
    assert ref.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # registered: kept
    assert not [e for e in ds if (e.tag >> 16) in (0x5000, 0x6000)]


def test_pseudonyms_keyed_and_stable():
    a, b, c = Deidentifier(KEY), Deidentifier(KEY), Deidentifier(OTHER_KEY)
    p = a.patient("00000001")
    assert p == b.patient("00000001") and p != c.patient("00000001") and p != a.patient("00000002")
    assert p.startswith("P-") and len(p) == 14 and int(p[2:], 16) >= 0
    assert a.study("x").startswith("S-") and a.series("x").startswith("R-")
    assert a.study("x")[2:] != a.series("x")[2:] != a.patient("x")[2:]  # separate domains
    offsets = {a.date_offset_days(str(i)) for i in range(200)}
    assert all(-3650 <= o <= -30 for o in offsets) and len(offsets) > 150
    assert a.date_offset_days("42") == b.date_offset_days("42") != c.date_offset_days("42")
    # Ingestion sends the de-identifier to worker processes: do exactly that.
    import multiprocessing
    import operator
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        assert pool.submit(operator.methodcaller("patient", "00000001"), a).result() == p
    assert "k" * 32 not in repr(a)


def test_profile_description_is_plain_data():
    desc = Deidentifier(KEY).profile_description()
    json.dumps(desc)
    assert "Basic Application Level Confidentiality Profile" in desc["profile"]
    assert {"Retain Patient Characteristics", "Retain Longitudinal Temporal Information with Modified Dates"} <= set(desc["options"])
    assert desc["actions"]["PatientName"] == "D" and desc["actions"]["PatientSex"] == "K"
    assert {c["code"] for c in desc["codes"]} == {"113100", "113107", "113108"}
    # Every attribute the brief names is covered by the table.
    for kw in ("AccessionNumber", "StudyID", "StationName", "DeviceSerialNumber", "InstitutionName",
               "OperatorsName", "ReferringPhysicianName", "OtherPatientIDs", "OtherPatientNames", "EthnicGroup",
               "Occupation", "AdditionalPatientHistory", "RequestAttributesSequence", "StudyDescription",
               "PatientAddress", "PatientTelephoneNumbers", "ReferencedSOPInstanceUID", "StudyInstanceUID"):
        assert kw in ACTIONS, kw


def test_key_file_handling(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    key, path = load_or_create_key(None)
    assert path == tmp_path / "home" / "deid.key" and len(key) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, _ = load_or_create_key(None)
    assert again == key
    given, gpath = load_or_create_key(path)
    assert given == key and gpath == path
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 10)
    with pytest.raises(InputError, match="at least 32"):
        load_or_create_key(short)
    with pytest.raises(InputError, match="does not exist"):
        load_or_create_key(tmp_path / "missing.key")


def test_new_uid_root_is_never_the_raw_uid():
    deid = Deidentifier(KEY)
    raw = generate_uid()
    assert deid.uid(raw) != raw and deid.uid(raw) == deid.uid(raw + " ")
