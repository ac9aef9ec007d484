"""End to end: no identifying value from an input reaches any output, and the patient is the unit.

The oracle of identifying values is built here with pydicom directly, NOT with synthmed's
de-identifier, so a field the de-identifier forgets (or a stage that copies a header value, a
file stem or a patient ID around it) shows up as a hit. The pipeline runs through the documented
CLI (`synthmed.cli.main`, in process: a dozen interpreter start-ups would cost ~50 s on this box),
with stdout and stderr captured at the file-descriptor level: those are the logs.

Inputs: phantoms (cxr and ct3d, fake identities everywhere a hospital export has them), the shared
real scanner exports (mr-brain-sagittal, mr-fmri-series) and 24 NIH PNGs, when present.
Outputs: datasets, inspect's contact sheet, a training run, a cohort, an audit (with --filter).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import html
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_VR, keyword_dict, keyword_for_tag
from pydicom.tag import Tag
from pydicom.uid import UID_dictionary

from synthmed.cli import main

from conftest import shared_path

# The shared pipeline fixture alone takes > 30 s on the 2-core CI box.
pytestmark = pytest.mark.slow

# --------------------------------------------------------------------------------------------
# The oracle: identifying values read straight from the inputs.
# --------------------------------------------------------------------------------------------

# Header fields (by keyword) whose string values identify a patient, a visit, a person or a place.
# Dates (DA/DT), person names (PN), AE titles and UIDs are taken by VR below, wherever they occur.
IDENTIFYING_FIELDS = frozenset({
    "PatientName", "PatientID", "OtherPatientIDs", "IssuerOfPatientID", "PatientBirthName",
    "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers", "MilitaryRank",
    "AccessionNumber", "StudyID", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "StationName", "PerformedStationName", "PerformedLocation",
    "DeviceSerialNumber", "DeviceID", "CassetteID", "PlateID", "AdmissionID", "ServiceEpisodeID",
    "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID",
    "RequestingService", "ProtocolName", "ImplementationVersionName",
    "EthnicGroup", "Occupation", "AdditionalPatientHistory", "MedicalAlerts", "Allergies",
    "ReasonForTheRequestedProcedure", "ReasonForTheImagingServiceRequest",
})
# ... plus every keyword that holds free text.
FREE_TEXT_SUFFIXES = ("Description", "Comments", "Comment", "History")
STRING_VRS = frozenset({"AE", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "UC", "UI", "UT"})
# Private elements carry free text too (phantoms put names, MRN and DOB in a RIS block).
PRIVATE_TEXT_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT", "DA", "DT", "UI", "AE"})

# Values too short or too generic to search meaningfully: a 1-3 character value ('M', 'F', '02',
# 'PA', the middle initial) matches everywhere by chance, and standard terms or vendor words say
# nothing about a patient. Short all-digit values (< 5 digits) match inside any number. Times of
# day (TM) and ages (AS) are not searched: a time is a 4-6 digit number that only identifies
# together with a date (dates are searched), and age in years is kept by design (it conditions the
# model and is in the manifest). Private creator strings ('SIEMENS MR HEADER') name a vendor's tag
# block, not a patient.
MIN_LEN = 4
MIN_DIGITS = 5
GENERIC = frozenset(s.lower() for s in (
    "ORIGINAL", "PRIMARY", "DERIVED", "SECONDARY", "anonymized", "anonymous", "compose", "normalized",
    "UNKNOWN", "INITIAL", "NONE", "Normal", "Philips", "SIEMENS", "IMAGE NUM 4", "UNDEFINED",
    "MULTI COIL", "MULTI ELEMENT", "Body",
))
# The DICOM standard's own UIDs (SOP classes, transfer syntaxes, ...) identify nothing.
STANDARD_UID_ROOT = "1.2.840.10008."


def _placeholder(value: str, keyword: str) -> bool:
    """Exports often fill a field with its own name ('ReferringPhysicianName', 'Institution')."""
    letters = re.sub(r"[^a-z]", "", value.lower())
    # A placeholder is mostly a word: the lone prefix letter of an ID like 'A0123456789' is also
    # "in" the keyword AccessionNumber, and such an ID must stay in the oracle.
    if len(letters) < 4 or len(letters) < len(re.sub(r"[^a-z0-9]", "", value.lower())) / 2:
        return False
    return letters in keyword.lower() or letters in _KEYWORDS_LOWER


_KEYWORDS_LOWER = frozenset(k.lower() for k in keyword_dict)


def _searchable(value: str) -> bool:
    v = value.strip()
    if len(v) < MIN_LEN or v.lower() in GENERIC:
        return False
    if v.isdigit():
        return len(v) >= MIN_DIGITS
    return any(c.isalnum() for c in v)


class Oracle:
    """field name -> set of identifying values."""

    def __init__(self) -> None:
        self.values: dict[str, set[str]] = defaultdict(set)

    def add(self, field: str, value: object) -> None:
        if value is None:
            return
        if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
            for v in value:
                self.add(field, v)
            return
        text = str(value).strip()
        if _searchable(text):
            self.values[field].add(text)

    def add_date(self, field: str, value: str) -> None:
        digits = re.sub(r"[^0-9]", "", str(value))[:8]
        if len(digits) == 8:
            self.add(field, digits)
            self.add(field, f"{digits[:4]}-{digits[4:6]}-{digits[6:]}")

    def add_name(self, field: str, value: object) -> None:
        text = str(value)
        self.add(field, text)
        parts = [p for p in re.split(r"[\^=_]", text) if p]
        for p in parts:
            self.add(f"{field} component", p)
        if len(parts) >= 2:  # display forms a stage could have rebuilt from the components
            self.add(f"{field} (display)", f"{parts[1]} {parts[0]}")
            self.add(f"{field} (display)", f"{parts[0]}, {parts[1]}")

    def fields(self) -> int:
        return sum(len(v) for v in self.values.values())


def _raw_elements(ds: pydicom.Dataset):
    """(tag, VR, keyword, str values) of every string element, nested sequences included.

    Works on the raw bytes: letting pydicom convert all ~550 elements of each fMRI slice costs
    ~0.2 s a file, a minute for the shared series on this box.
    """
    for raw in ds.elements():
        tag = Tag(raw.tag)
        vr = raw.VR
        if vr is None or vr in ("UN",):
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = "UN"
        if vr == "SQ":
            for item in ds[tag].value:
                yield from _raw_elements(item)
            continue
        if vr not in STRING_VRS:
            continue
        value = raw.value
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                value = value.decode("latin-1")  # ISO_IR 100, what the inputs declare
        elif isinstance(value, (list, pydicom.multival.MultiValue)):
            value = "\\".join(map(str, value))
        elif value is None:
            continue
        parts = [p.strip(" \x00") for p in str(value).split("\\")]
        yield tag, vr, keyword_for_tag(tag), [p for p in parts if p]


def add_dicom_file(oracle: Oracle, path: Path) -> None:
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        oracle.add("MediaStorageSOPInstanceUID", meta.MediaStorageSOPInstanceUID)
    for tag, vr, kw, values in _raw_elements(ds):
        private = tag.is_private
        field = kw or f"private {tag}"
        if private:
            if tag.is_private_creator or vr not in PRIVATE_TEXT_VRS:
                continue
        elif vr == "CS" or (vr not in ("DA", "DT", "PN", "UI", "AE") and not (
                kw in IDENTIFYING_FIELDS or kw.endswith(FREE_TEXT_SUFFIXES))):
            continue
        for text in values:
            if vr == "UI":
                if text.startswith(STANDARD_UID_ROOT) or text in UID_dictionary:
                    continue
                oracle.add(field, text)
            elif vr in ("DA", "DT") or (private and re.fullmatch(r"(19|20)\d{6}", text)):
                oracle.add_date(field, text)
            elif vr == "PN":
                if not _placeholder(text, kw or "name"):
                    oracle.add_name(field, text)
            elif not _placeholder(text, kw or ""):
                oracle.add(field, text)


def add_paths(oracle: Oracle, root: Path, files: list[Path]) -> None:
    """Folder and file names below an input root (phantoms: MRN/accession/SOP-UID.dcm).

    The root's own name ('mr-fmri-series') is the user's choice of folder, not a patient's.
    """
    for f in files:
        rel = f.relative_to(root)
        for part in rel.parts[:-1]:
            oracle.add("input folder name", part)
        oracle.add("input file stem", rel.stem)
        oracle.add("input file name", rel.name)


def add_metadata_csv(oracle: Oracle, path: Path) -> None:
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            oracle.add("metadata.csv patient_id", row["patient_id"])
            oracle.add("metadata.csv file", row["file"])


def build_oracle(inputs: list[Path]) -> Oracle:
    oracle = Oracle()
    for root in inputs:
        files = sorted(p for p in root.rglob("*") if p.is_file())
        dicom = [p for p in files if p.suffix.lower() not in (".csv", ".json", ".md", ".txt")]
        for p in dicom:
            add_dicom_file(oracle, p)
        add_paths(oracle, root, dicom)
        if (root / "metadata.csv").is_file():
            add_metadata_csv(oracle, root / "metadata.csv")
    return oracle


# --------------------------------------------------------------------------------------------
# The scanner.
# --------------------------------------------------------------------------------------------

TEXT_SUFFIXES = {".json", ".csv", ".md", ".html", ".htm", ".txt", ".yaml", ".yml", ".log", ".tsv"}
_DATA_URI = re.compile(rb"data:[a-z/+.-]+;base64,([A-Za-z0-9+/=\s]+)")


def _variants(value: str) -> set[str]:
    """The forms a value takes once written into JSON (\\u escapes) or HTML (&#x27;)."""
    return {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
            html.escape(value), html.escape(value, quote=False)}


def _text_pattern(value: str) -> re.Pattern[str]:
    """Case-insensitive; short values must stand alone so 'Ruth' does not match 'truth' and a
    5-digit study ID does not match inside a float; long values match anywhere."""
    alts = "|".join(re.escape(v) for v in sorted(_variants(value), key=len, reverse=True))
    if value.isdigit():
        return re.compile(rf"(?<![0-9.])(?:{alts})(?![0-9])")
    if len(value) < 8:
        return re.compile(rf"(?<![0-9a-z])(?:{alts})(?![0-9a-z])", re.IGNORECASE)
    return re.compile(alts, re.IGNORECASE)


class Scanner:
    def __init__(self, oracle: Oracle) -> None:
        self.items = [(field, value, _text_pattern(value), {v.encode("utf-8") for v in _variants(value)}
                       | {value.encode("latin-1", "ignore")} - {b""},
                       {v.lower() for v in _variants(value)})
                      for field, values in oracle.values.items() for value in values]

    def scan_text(self, text: str, where: str) -> list[str]:
        low = text.lower()
        # A plain substring test first (fast, in C); the pattern only confirms the candidates.
        return [f"{field} found in {where}" for field, _, pat, _, lows in self.items
                if any(v in low for v in lows) and pat.search(text)]

    def scan_binary(self, data: bytes, where: str) -> list[str]:
        # Exact bytes only: raw weights and compressed pixels are random bytes, where a
        # case-insensitive search for short words would find them by chance. Numbers must stand
        # alone (a safetensors header holds byte offsets, a .npy header the shape).
        return [f"{field} found in {where} (bytes)" for field, value, _, raw, _ in self.items
                if (len(value) >= 5 or not value.isalpha()) and any(
                    r in data and (not value.isdigit() or re.search(
                        rb"(?<![0-9.])" + re.escape(r) + rb"(?![0-9])", data)) for r in raw)]

    def scan_file(self, path: Path, where: str) -> list[str]:
        data = path.read_bytes()
        if path.suffix.lower() not in TEXT_SUFFIXES:
            return self.scan_binary(data, where)
        hits: list[str] = []
        # Embedded images (report.html) are decoded and searched as the bytes they are.
        for i, m in enumerate(_DATA_URI.finditer(data)):
            try:
                blob = base64.b64decode(re.sub(rb"\s", b"", m.group(1)))
            except ValueError:
                continue
            hits += self.scan_binary(blob, f"{where} (embedded data #{i})")
        text = _DATA_URI.sub(b"data:", data).decode("utf-8", errors="replace")
        hits += self.scan_text(text, where)
        return hits

    def scan_tree(self, root: Path) -> tuple[list[str], int]:
        hits: list[str] = []
        n = 0
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            hits += self.scan_text(path.name, f"the name of {rel}")
            if path.is_file():
                n += 1
                hits += self.scan_file(path, rel)
        return hits, n


# --------------------------------------------------------------------------------------------
# Running the CLI with its logs captured.
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _captured_fds():
    """Capture fd 1 and 2 (what worker processes and C code write) and sys.stdout/stderr."""
    sink = tempfile.TemporaryFile(mode="w+b")
    py = io.StringIO()
    saved = [os.dup(1), os.dup(2)]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        with contextlib.redirect_stdout(py), contextlib.redirect_stderr(py):
            yield lambda: (sink.seek(0), sink.read().decode("utf-8", "replace"))[1] + py.getvalue()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


class Cli:
    def __init__(self) -> None:
        self.logs: list[tuple[str, str]] = []
        self.seconds: list[tuple[str, float]] = []

    def __call__(self, *args: object) -> str:
        argv = [str(a) for a in args]
        t0 = time.perf_counter()
        with _captured_fds() as read:
            try:
                main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            text = read()
        self.logs.append((argv[0], text))
        self.seconds.append((argv[0], time.perf_counter() - t0))
        assert code == 0, f"synthmed {argv[0]} exited {code}:\n{text[-3000:]}"
        return text


# --------------------------------------------------------------------------------------------
# The pipeline, once per module.
# --------------------------------------------------------------------------------------------

INGEST_2D = """\
spatial_dims: 2
shape: [32, 32]
fit: resize
split: {holdout_fraction: 0.25, reference_fraction: 0.25, seed: 0, stratify: false}
"""
INGEST_3D = """\
spatial_dims: 3
shape: [8, 16, 16]
fit: resize
split: {holdout_fraction: 0.5, seed: 0}
"""
TRAIN_TINY = """\
seed: 0
steps: 3
batch_size: 4
warmup_steps: 1
checkpoint_every: 3
sample_every: 0
sample_grid: 4
log_every: 1
threads: 1
network: {channels: [8, 16], attention_levels: [false, false], num_res_blocks: 1,
          num_head_channels: 8, norm_num_groups: 8, context_dim: 8}
sampling: {sampler: "dpm++", steps: 2, guidance_scale: 1.0}
"""
# dcr in pixel space only: with 3 reference images DOMIAS and MC-neighbourhood stop with an internal
# error (ValueError, 01:27 UTC), and the encoder would cost time; the audit writes the same files.
AUDIT_TINY = """\
name: tiny
tier: public
n_bootstrap: 50
embedding: {steps: 0}
attacks: {attacks: [dcr], spaces: [pixel]}
sizes: {min_train_patients: 2, min_holdout_patients: 2, min_synthetic_images: 2}
gallery_pairs: 2
# the identity attack too: its network folder, record and linked-pairs gallery are outputs
identity: {enabled: true, steps: 2, batch_size: 4, dim: 8, channels: [8, 16], min_patients_with_repeats: 2,
           min_validation_patients: 2, n_bootstrap: 10, fallback_can_pass: true}
"""


def _audit_usable() -> str | None:
    try:
        from synthmed.audit import run_audit  # noqa: F401
    except Exception as err:  # noqa: BLE001
        return f"synthmed.audit.run_audit is not importable: {err}"
    return None


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("privacy")
    inputs, outputs, keys = base / "in", base / "out", base / "keys"
    for d in (inputs, outputs, keys):
        d.mkdir()
    cfg = base / "cfg"
    cfg.mkdir()
    (cfg / "ingest2d.yaml").write_text(INGEST_2D)
    (cfg / "ingest3d.yaml").write_text(INGEST_3D)
    (cfg / "train.yaml").write_text(TRAIN_TINY)
    (cfg / "audit.yaml").write_text(AUDIT_TINY)
    key1, key2 = keys / "one.key", keys / "two.key"
    key1.write_bytes(bytes(range(32)))
    key2.write_bytes(bytes(range(1, 33)))

    old_home = os.environ.get("SYNTHMED_HOME")
    os.environ["SYNTHMED_HOME"] = str(keys / "home")  # never touch the user's key
    cli = Cli()
    try:
        cxr, ct = inputs / "cxr", inputs / "ct3d"
        cli("phantoms", cxr, "--patients", 12, "--seed", 11, "--kind", "cxr", "--size", 32,
            "--studies", "1-2", "--workers", 1)
        cli("phantoms", ct, "--patients", 2, "--seed", 12, "--kind", "ct3d", "--size", 32,
            "--slices", 8, "--studies", "1-1", "--workers", 1)
        ds = outputs / "dataset"
        cli("ingest", cxr, "--out", ds, "--config", cfg / "ingest2d.yaml",
            "--metadata", cxr / "metadata.csv", "--key", key1, "--workers", 1)
        cli("inspect", ds, "--out", outputs / "contact_sheet.png")
        run_dir = outputs / "run"
        cli("train", ds, "--config", cfg / "train.yaml", "--out", run_dir)
        cohort = outputs / "cohort"
        cli("sample", run_dir, "--n", 6, "--out", cohort, "--steps", 2, "--batch-size", 8)
        audit_missing = _audit_usable()
        if audit_missing is None:
            cli("audit", "--dataset", ds, "--synthetic", cohort, "--profile", cfg / "audit.yaml",
                "--out", outputs / "audit", "--filter")
        # Same patients again: two of them alone, with the same key and with another key.
        two = sorted(p for p in cxr.iterdir() if p.is_dir())[:2]
        cli("ingest", *two, "--out", outputs / "same_key", "--config", cfg / "ingest2d.yaml",
            "--key", key1, "--workers", 1)
        cli("ingest", *two, "--out", outputs / "other_key", "--config", cfg / "ingest2d.yaml",
            "--key", key2, "--workers", 1)
        # A refused input (a truncated file, named by its SOP UID inside MRN/accession folders).
        broken = inputs / "broken"
        for src in sorted(p for p in cxr.iterdir() if p.is_dir())[2:5]:
            shutil.copytree(src, broken / src.name)
        victim = sorted(broken.rglob("*.dcm"))[0]
        victim.write_bytes(victim.read_bytes()[:400])
        refused_log = cli("ingest", broken, "--out", outputs / "with_refusal", "--config",
                          cfg / "ingest2d.yaml", "--key", key1, "--workers", 1)
        cli.logs.pop()  # judged on its own in test_refused_input_console_line
        # NIH-style PNGs whose stems (PATIENT_FOLLOWUP) identify: 24 files of the shared sample.
        nih_files: list[Path] = []
        try:
            nih = shared_path("nih-cxr14-1000")
            nih_files = sorted((nih / "images").glob("*.png"))[:24]
            cli("ingest", *nih_files, "--out", outputs / "nih", "--config", cfg / "ingest2d.yaml",
                "--metadata", nih / "metadata.csv", "--key", key1, "--workers", 1)
        except pytest.skip.Exception:
            pass
        # Real scanner exports (when the shared data is there) plus the CT phantoms, in 3D.
        sources = [ct]
        try:
            sources += [shared_path("dicom", "mr-brain-sagittal"), shared_path("dicom", "mr-fmri-series")]
        except pytest.skip.Exception:
            pass
        cli("ingest", *sources, "--out", outputs / "dataset3d", "--config", cfg / "ingest3d.yaml",
            "--key", key1, "--workers", 1)
    finally:
        if old_home is None:
            os.environ.pop("SYNTHMED_HOME", None)
        else:
            os.environ["SYNTHMED_HOME"] = old_home
    return {"inputs": [cxr, *sources], "outputs": outputs, "logs": cli.logs, "two": two,
            "audit_missing": audit_missing, "seconds": cli.seconds, "refused_log": refused_log,
            "nih_files": nih_files}


def _manifest(ds: Path) -> list[dict]:
    with open(ds / "manifest.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------------------------
# Tests.
# --------------------------------------------------------------------------------------------

def add_nih(oracle: Oracle, files: list[Path]) -> None:
    """NIH file stems, and the CSV's Patient ID (1-4 digit numbers: too short to search; the
    stem carries the same number zero-padded)."""
    for f in files:
        oracle.add("NIH file stem", f.stem)
        oracle.add("NIH file name", f.name)


def test_no_identifying_value_in_any_output_name_or_log(run, tmp_path):
    t0 = time.perf_counter()
    oracle = build_oracle(run["inputs"])
    add_nih(oracle, run["nih_files"])
    print(f"oracle built in {time.perf_counter() - t0:.1f} s")
    # The oracle must hold every kind of value the brief names, or a zero-hit scan proves nothing.
    kinds = set(oracle.values)
    for needed in ("PatientName", "PatientName component", "PatientID", "OtherPatientIDs",
                   "IssuerOfPatientID", "PatientBirthDate", "StudyDate", "AccessionNumber",
                   "StudyID", "InstitutionName", "InstitutionAddress", "ReferringPhysicianName",
                   "OperatorsName", "StationName", "DeviceSerialNumber", "StudyDescription",
                   "ImageComments", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                   "input folder name", "input file stem", "metadata.csv patient_id"):
        assert needed in kinds, f"oracle has no {needed} values: the scan would not test it"
    assert any(k.startswith("private ") for k in kinds), "oracle has no private tag values"
    assert oracle.fields() > 200

    print("stage seconds:", ", ".join(f"{c} {t:.1f}" for c, t in run["seconds"]))
    t0 = time.perf_counter()
    scanner = Scanner(oracle)
    hits, n_files = scanner.scan_tree(run["outputs"])
    for command, text in run["logs"]:
        hits += scanner.scan_text(text, f"the console output (stdout+stderr) of `synthmed {command}`")
    print(f"oracle: {oracle.fields()} values in {len(oracle.values)} fields; scan {time.perf_counter() - t0:.1f} s")
    # The scanner itself must work: a planted value is found (guards against an empty search).
    field, value = next((f, sorted(v)[0]) for f, v in oracle.values.items() if f == "PatientID")
    assert scanner.scan_text(f"x {value} y", "probe"), "scanner misses a planted PatientID"
    assert n_files >= 15
    # Negative control: planted values are found in a file name, raw bytes and escaped JSON.
    uid = sorted(oracle.values["SOPInstanceUID"])[0]
    name = sorted(oracle.values["PatientName"])[0]
    (tmp_path / f"x_{sorted(oracle.values['input folder name'])[0]}").mkdir()
    (tmp_path / "w.safetensors").write_bytes(b"\x00\x17" + uid.encode() + b"\xff")
    (tmp_path / "r.json").write_text(json.dumps({"note": name.lower()}))
    planted, _ = scanner.scan_tree(tmp_path)
    assert {h.split(" found")[0] for h in planted} >= {"input folder name", "SOPInstanceUID",
                                                        "PatientName"}, planted
    assert all(text.strip() for _, text in run["logs"]), "a command's console output was not captured"
    probe = json.dumps({"x": "Dr García^Ruth"}) + "<p>O&#x27;Brien</p>"
    assert scanner.scan_text(probe, "probe") or not {"García", "O'Brien"} & {
        v for f, vals in oracle.values.items() for v in vals}
    assert not hits, "identifying input values reached outputs:\n" + "\n".join(sorted(set(hits)))


def test_splits_are_by_patient(run):
    for name in ("dataset", "dataset3d"):
        sides: dict[str, set[str]] = defaultdict(set)
        for row in _manifest(run["outputs"] / name):
            assert re.fullmatch(r"P-[0-9a-f]{12}", row["patient"]), row["patient"][:2]
            sides[row["patient"]].add(row["split"])
        assert sides, name
        both = [p for p, s in sides.items() if len(s) > 1]
        assert not both, f"{name}: {len(both)} patients on more than one side of the split"
    # The phantoms' 12 patients are 12 pseudonyms (no patient split into several).
    assert len({r["patient"] for r in _manifest(run["outputs"] / "dataset")}) == 12


def test_same_key_same_pseudonym_other_key_different(run):
    out = run["outputs"]
    full = defaultdict(int)
    for row in _manifest(out / "dataset"):
        full[row["patient"]] += 1
    same = defaultdict(int)
    for row in _manifest(out / "same_key"):
        same[row["patient"]] += 1
    other = {r["patient"] for r in _manifest(out / "other_key")}
    assert len(same) == 2 and len(other) == 2
    # Each patient ingested alone keeps the pseudonym (and all images) it had in the full ingest.
    for patient, n in same.items():
        assert full.get(patient) == n, "a patient got another pseudonym in a second ingest"
    assert not other & set(full), "a different key gave the same pseudonym"
    # Studies too are keyed: none of the other key's study pseudonyms occurs in the first ingest.
    assert not {r["study"] for r in _manifest(out / "other_key")} & {r["study"] for r in _manifest(out / "dataset")}


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _walk(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, f"{path}[{i}]")
    else:
        yield path, obj


def test_reports_hold_only_counts_and_hashes_of_patients(run):
    out = run["outputs"]
    rows = _manifest(out / "dataset")
    pseudonyms = {r["patient"] for r in rows} | {r["study"] for r in rows} | {r["series"] for r in rows}
    reports = [out / "run" / "model_card.json", out / "run" / "model_card.md", out / "run" / "model.json",
               out / "run" / "run.json", out / "cohort" / "cohort.json", out / "dataset" / "dataset.json"]
    if run["audit_missing"] is None:
        reports += [out / "audit" / "audit.json", out / "audit" / "report.html",
                    out / "audit" / "identity-network" / "reid.json"]
    checked = patient_fields = 0
    for path in reports:
        if not path.is_file():
            continue
        checked += 1
        text = path.read_text(errors="replace")
        assert not re.search(r"\b[PSR]-[0-9a-f]{12}\b", text), \
            f"{path.relative_to(out)} names a pseudonym (only counts and hashes are allowed)"
        assert not any(p in text for p in pseudonyms), f"{path.relative_to(out)} names a pseudonym"
        if path.suffix == ".json":
            for key, value in _walk(json.loads(text)):
                leaf = key.lower().rsplit(".", 1)[-1]
                name = re.sub(r"(\[\d+\])+$", "", leaf)
                # config vocabulary, not data: the file-name regex and the patient_from rule names
                if "patient" in name and not name.endswith("_pattern") and name != "patient_from":
                    patient_fields += 1
                    assert (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
                        isinstance(value, str) and _HEX64.fullmatch(value)) or value is None, \
                        f"{path.relative_to(out)}: {key} is neither a count nor a hash"
    assert checked >= 5
    assert patient_fields >= 5, "no patient-related fields were found to check"
    # The synthetic cohort's own patients are synthetic identifiers, not real pseudonyms.
    with open(out / "cohort" / "manifest.csv", newline="") as fh:
        synth = {r["patient"] for r in csv.DictReader(fh)}
    assert synth and not synth & pseudonyms


def test_audit_stage_ran(run):
    if run["audit_missing"]:
        pytest.skip(run["audit_missing"])
    audit = json.loads((run["outputs"] / "audit" / "audit.json").read_text())
    assert audit["schema"] == "synthmed.audit/1"
    assert audit["data"]["n_member_patients"] == len(
        {r["patient"] for r in _manifest(run["outputs"] / "dataset") if r["split"] == "train"})
    # the identity attack ran too (its record, links and network folder are scanned like the rest)
    assert audit["identity"]["enabled"] and "source" in audit["identity"]
    assert any(a["attack"].startswith("identity") for a in audit["attacks"]) or audit["skipped"]


def test_refused_input_is_named_by_a_keyed_hash_in_files(run):
    out = run["outputs"] / "with_refusal"
    report = json.loads((out / "ingest_report.json").read_text())
    assert report["counts"]["refused"] == 1
    # The refused file appears (keyed), but neither its UID stem nor its MRN/accession folders do:
    # the full scan in test_no_identifying_value_in_any_output_name_or_log covers this folder too.
    assert len(report["refusals"]) == 1


def test_refused_input_console_line(run):
    # Refused inputs are named by keyed reference on the console too (real paths, which hold
    # MRN/accession folders and SOP-UID stems, only with the opt-in --show-paths).
    scanner = Scanner(build_oracle(run["inputs"][:1]))
    assert not scanner.scan_text(run["refused_log"], "console of the ingest with a refused file")
