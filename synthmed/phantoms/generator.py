"""`make_phantoms`: a cohort of virtual patients written as real DICOM files.

Each patient is generated from its own random stream (SeedSequence of seed and patient index),
so the output is the same whatever the number of worker processes, and patients can be made in
parallel without coordination. A patient has a fake identity, an anatomical fingerprint, optional
findings, and one to a few studies taken on different days with a different pose, breath and
exposure.
"""

from __future__ import annotations

import csv
import ctypes
import datetime as dt
import io
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from synthmed.errors import ConfigError, InputError
from synthmed.io.atomic import write_json, write_text
from synthmed.phantoms import ct, cxr
from synthmed.phantoms.findings import FINDINGS, Findings, sample_effusion
from synthmed.phantoms.dicom_writer import (CtGeometry, StudyHeader, make_uid, write_ct_series,
                                            write_radiograph)
from synthmed.phantoms.identity import (DESCRIPTIONS_CT, DESCRIPTIONS_CXR, REASONS, SITES,
                                        Identity, accession_number, age_on, clock,
                                        make_identity, physician, study_dates)
from synthmed.progress import make_progress
from synthmed.provenance import provenance

Kind = Literal["cxr", "ct3d"]
KINDS = ("cxr", "ct3d")
DEFAULT_SIZE = {"cxr": 256, "ct3d": 128}
DEFAULT_SLICES = 48
METADATA_COLUMNS = ("file", "patient_id", "labels", "age", "sex")
_FIRST_STUDY = dt.date(2012, 1, 1)


@dataclass(frozen=True)
class PhantomSummary:
    """What `make_phantoms` wrote (plain data)."""

    out: Path
    kind: str
    patients: int
    studies: int
    files: int
    findings: dict[str, int] = field(default_factory=dict)  # studies showing each finding
    metadata_csv: Path | None = None

    def summary(self) -> str:
        findings = ", ".join(f"{k} {v}" for k, v in self.findings.items())
        return (f"wrote {self.patients} patients, {self.studies} studies, {self.files} DICOM files "
                f"({self.kind}) to {self.out}\nstudies with findings: {findings}\n"
                f"metadata: {self.metadata_csv}")


@dataclass(frozen=True)
class _Job:
    out: Path
    seed: int
    kind: str
    studies: tuple[int, int]
    size: int
    slices: int
    findings_rate: float


def make_phantoms(out: Path, patients: int, seed: int = 0, kind: Kind = "cxr",
                  studies_per_patient: tuple[int, int] = (1, 3), size: int | None = None,
                  findings_rate: float = 0.3, workers: int | None = None, *,
                  slices: int | None = None) -> PhantomSummary:
    """Write `patients` virtual patients as DICOM under `out`, plus `out/metadata.csv`.

    kind: "cxr" (frontal chest radiographs, `size` px square, default 256) or "ct3d" (torso CT
    series of `slices` axial slices of `size` px, defaults 48 x 128 x 128).
    studies_per_patient: (min, max) studies per patient, drawn uniformly.
    findings_rate: share of patients with at least one finding (Cardiomegaly, Effusion, Nodule).
    workers: processes (default: CPU count); the output does not depend on it.
    """
    out = Path(out)
    job = _validate(out, patients, seed, kind, studies_per_patient, size, findings_rate, workers,
                    slices)
    workers = min(workers or os.cpu_count() or 1, patients)
    out.mkdir(parents=True, exist_ok=True)

    results: list[_PatientResult] = []
    chunk = max(1, min(16, patients // (workers * 8) or 1))
    batches = [list(range(i, min(i + chunk, patients))) for i in range(0, patients, chunk)]
    description = f"phantoms ({kind})"
    if workers == 1:
        _keep_freed_memory()
        with make_progress() as progress:
            task = progress.add_task(description, total=patients)
            for batch in batches:
                results.extend(_run_batch(job, batch))
                progress.advance(task, len(batch))
    else:
        # fork: workers start in milliseconds and inherit the imports; the output does not
        # depend on the start method because every patient owns its random stream.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                 initializer=_keep_freed_memory) as pool:
            # Submitting starts the workers: do it before the progress bar starts its refresh
            # thread, so no thread is running when the process forks.
            futures = {pool.submit(_run_batch, job, batch): len(batch) for batch in batches}
            with make_progress() as progress:
                task = progress.add_task(description, total=patients)
                for fut in as_completed(futures):
                    results.extend(fut.result())
                    progress.advance(task, futures[fut])

    rows = sorted((row for r in results for row in r.rows), key=lambda row: row[0])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(METADATA_COLUMNS)
    writer.writerows(rows)
    metadata_csv = out / "metadata.csv"
    write_text(metadata_csv, buf.getvalue())

    findings = {name: sum(r.findings.get(name, 0) for r in results) for name in FINDINGS}
    summary = PhantomSummary(out=out, kind=kind, patients=patients,
                             studies=sum(r.studies for r in results), files=len(rows),
                             findings=findings, metadata_csv=metadata_csv)
    config = {"kind": kind, "patients": patients, "studies_per_patient": list(job.studies),
              "size": job.size, "slices": job.slices if kind == "ct3d" else None,
              "findings_rate": findings_rate}
    write_json(out / "phantoms.json", {
        "schema": "synthmed.phantoms/1",
        "counts": {"patients": patients, "studies": summary.studies, "files": summary.files,
                   "findings": findings},
        "note": "Virtual patients: every name, ID, date and address is invented.",
        "provenance": provenance(config, seed=seed, compute=False),
    })
    return summary


def _keep_freed_memory() -> None:
    """Let glibc keep freed image-sized buffers for reuse instead of unmapping them.

    Rendering allocates and frees dozens of 256 KB temporaries per image; by default glibc
    serves those with fresh mmap pages, and the page faults cost about as much system time as
    a fifth of the rendering itself. Elsewhere (no glibc) this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 128 << 20)


def _validate(out: Path, patients: int, seed: int, kind: str, studies: tuple[int, int],
              size: int | None, findings_rate: float, workers: int | None,
              slices: int | None) -> _Job:
    def bad(msg: str) -> ConfigError:
        return ConfigError(f"phantoms: {msg}")

    if kind not in KINDS:
        raise bad(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if not isinstance(patients, int) or isinstance(patients, bool) or patients < 1:
        raise bad(f"patients must be an integer >= 1, got {patients!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise bad(f"seed must be an integer >= 0, got {seed!r}")
    try:
        lo, hi = (int(v) for v in studies)
    except (TypeError, ValueError):
        raise bad(f"studies_per_patient must be (min, max), got {studies!r}") from None
    if not 1 <= lo <= hi <= 50:
        raise bad(f"studies_per_patient must satisfy 1 <= min <= max <= 50, got {lo}-{hi}")
    size = DEFAULT_SIZE[kind] if size is None else size
    limits = (32, 2048) if kind == "cxr" else (32, 512)
    if not isinstance(size, int) or not limits[0] <= size <= limits[1]:
        raise bad(f"size for {kind} must be an integer in {limits[0]}..{limits[1]}, got {size!r}")
    slices = DEFAULT_SLICES if slices is None else slices
    if not isinstance(slices, int) or not 8 <= slices <= 512:
        raise bad(f"slices must be an integer in 8..512, got {slices!r}")
    if not 0.0 <= float(findings_rate) <= 1.0:
        raise bad(f"findings_rate must be in [0, 1], got {findings_rate!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise bad(f"workers must be an integer >= 1, got {workers!r}")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out}: output folder is not empty; phantoms go into a new or empty "
                         "folder so that no stale files mix with the new cohort")
    return _Job(out=out, seed=seed, kind=kind, studies=(lo, hi), size=size, slices=slices,
                findings_rate=float(findings_rate))


@dataclass
class _PatientResult:
    rows: list[tuple[str, str, str, int, str]]
    studies: int
    findings: dict[str, int]


def _run_batch(job: _Job, indices: list[int]) -> list[_PatientResult]:
    return [_make_patient(job, i) for i in indices]


def _make_patient(job: _Job, index: int) -> _PatientResult:
    streams = np.random.SeedSequence([job.seed, index]).spawn(4)
    r_id, r_anat, r_find, r_study = (np.random.default_rng(s) for s in streams)

    sex = "M" if r_id.random() < 0.5 else "F"
    age0 = float(r_id.uniform(3, 16)) if r_id.random() < 0.05 else \
        float(np.clip(r_id.normal(56, 17), 18, 92))
    first = _FIRST_STUDY + dt.timedelta(days=int(r_id.integers(0, 12 * 365)))
    birth = first - dt.timedelta(days=int(age0 * 365.25))
    person = make_identity(r_id, index, job.seed, sex, birth)
    n_studies = int(r_id.integers(job.studies[0], job.studies[1] + 1))
    dates = study_dates(r_id, n_studies, first)

    # Findings: cardiomegaly and a nodule persist across a patient's studies; an effusion
    # comes and goes (but shows in at least one study).
    has = set()
    if r_find.random() < job.findings_rate:
        while not has:
            has = {name for name in FINDINGS if r_find.random() < 0.45}
    effusion_in = set()
    if "Effusion" in has:
        effusion_in = {k for k in range(n_studies) if r_find.random() < 0.6} or \
            {int(r_find.integers(n_studies))}

    if job.kind == "cxr":
        anat = cxr.sample_anatomy(r_anat, age0, sex)
        detail = cxr.build_detail(r_anat, anat, age0, job.size)
        nodule = cxr.sample_nodule(r_anat, anat) if "Nodule" in has else None
    else:
        anat_ct = ct.sample_anatomy(r_anat, age0, sex)
        texture = ct.build_texture(r_anat, job.slices, job.size)
        nodule = ct.sample_nodule(r_anat, anat_ct) if "Nodule" in has else None

    rows: list[tuple[str, str, str, int, str]] = []
    counts = {name: 0 for name in FINDINGS}
    for k, day in enumerate(dates):
        findings = Findings(cardiomegaly="Cardiomegaly" in has,
                            effusion=sample_effusion(r_find) if k in effusion_in else (),
                            nodule=nodule)
        for name in findings.labels:
            counts[name] += 1
        header = _study_header(job, person, index, k, day, r_id)
        folder = job.out / person.patient_id / header.accession
        labels = "|".join(findings.labels)
        if job.kind == "cxr":
            study = cxr.sample_study(r_study)
            pixels = cxr.render(anat, detail, study, findings, job.size, r_study)
            sop = make_uid(job.seed, index, k, "sop", 0)
            path = folder / f"{sop}.dcm"
            write_radiograph(path, pixels, person, header, sop,
                             pixel_mm=round(430.0 / job.size, 4),
                             exposure_mas=2.5 / study.exposure)
            paths = [path]
        else:
            study_ct = ct.sample_study(r_study)
            vol = ct.render(anat_ct, texture, study_ct, findings, job.slices, job.size, r_study)
            pixel_mm = ct.FOV_MM / job.size
            slice_mm = round(ct.Z_EXTENT_MM / job.slices, 3)
            table = float(r_study.uniform(-80.0, 20.0))
            origin = (-ct.FOV_MM / 2 + pixel_mm / 2, -ct.FOV_MM / 2 + pixel_mm / 2, table)
            site = SITES[person.site]
            geometry = CtGeometry(pixel_mm=round(pixel_mm, 4), slice_mm=slice_mm,
                                  origin=origin,
                                  # sites differ, so readers must really apply the rescale
                                  intercept=-1024 if site.cxr_modality == "DX" else -1000)
            paths = write_ct_series(folder, vol, person, header, geometry, job.seed,
                                    (index, k))
        age = age_on(person.birth_date, day)
        for path in paths:
            rows.append((path.relative_to(job.out).as_posix(), person.patient_id, labels, age,
                         sex))
    return _PatientResult(rows=rows, studies=n_studies, findings=counts)


def _study_header(job: _Job, person: Identity, index: int, k: int, day: dt.date,
                  rng: np.random.Generator) -> StudyHeader:
    # Mostly the patient's usual hospital, now and then another one.
    site = SITES[person.site if rng.random() < 0.85 else int(rng.integers(len(SITES)))]
    descriptions = DESCRIPTIONS_CXR if job.kind == "cxr" else DESCRIPTIONS_CT
    referring = physician(rng)
    reason = str(rng.choice(REASONS))
    return StudyHeader(
        date=day, time=clock(rng), age=age_on(person.birth_date, day),
        accession=accession_number(index, k, job.seed),
        study_id=f"{int(rng.integers(1000, 99999))}",
        study_uid=make_uid(job.seed, index, k, "study"),
        series_uid=make_uid(job.seed, index, k, "series"),
        frame_uid=make_uid(job.seed, index, k, "frame"),
        referring=referring, performing=physician(rng),
        operator=physician(rng).removesuffix("^^Dr"),
        description=str(rng.choice(descriptions)),
        series_description="PA" if job.kind == "cxr" else
        f"Axial {ct.Z_EXTENT_MM / job.slices:.1f}mm STD",
        comment=f"{person.display_name}, {reason}; ref. {referring.split('^')[0]} "
                f"({day.isoformat()})",
        site=site,
    )
