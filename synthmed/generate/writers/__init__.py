"""Writers of a generated cohort's images, one per format, found by name in `WRITERS`.

`write_study(study, ctx, root, formats)` writes one study in every requested format (each file
atomically) and returns its manifest rows. The formats of a study share one `StudyOutput`, so
their pixels, UIDs and geometry agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from synthmed.generate.manifest import ManifestRow
from synthmed.generate.study import CohortContext, SyntheticStudy
from synthmed.generate.writers.base import (WRITERS, Geometry, StudyOutput, Writer, get_writer,
                                            register_writer)
from synthmed.generate.writers import dicom, nifti, png  # noqa: F401  (register the formats)


def manifest_row(out: StudyOutput, paths: dict[str, str]) -> ManifestRow:
    study, ctx, s = out.study, out.ctx, out.ctx.sampling
    return ManifestRow(
        patient=study.patient.patient_id, patient_index=study.patient.index,
        study_index=study.study_index, days_since_first=study.days_since_first,
        study_date=study.date.isoformat(), study_uid=out.uids.study, series_uid=out.uids.series,
        sop_uid=out.uids.sop(0), instances=out.instances, labels=tuple(study.labels),
        age=None if study.age is None else float(study.age), sex=study.patient.sex,
        seed=study.seed, patient_seed=study.patient.seed, cohort_seed=ctx.cohort_seed,
        model_hash=ctx.model_hash, sampler=str(s.get("sampler", "")), steps=int(s.get("steps", 0)),
        guidance_scale=float(s.get("guidance_scale", 0.0)),
        followup_strength=study.followup_strength, paths=dict(paths))


def write_study(study: SyntheticStudy, ctx: CohortContext, root: str | Path,
                formats: Iterable[str]) -> list[ManifestRow]:
    """Write `study` under `root/<format>/<patient_id>/…` in each format; one row per image."""
    writers = [get_writer(name) for name in dict.fromkeys(formats)]  # unknown names fail first
    out = StudyOutput.build(study, ctx)
    for w in writers:
        w.check(out)
    root = Path(root)
    paths = {w.name: w.write(out, root) for w in writers}
    return [manifest_row(out, paths)]


__all__ = ["WRITERS", "Writer", "register_writer", "get_writer", "write_study", "StudyOutput",
           "Geometry", "manifest_row"]
