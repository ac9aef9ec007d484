"""`--filter`: drop the synthetic patients the audit flagged, write the rest, audit them again.

A flagged synthetic image (a hard copy or a near-copy of a training image) is removed with every
other image of the same synthetic patient: a synthetic patient is released or withheld as a
whole, like a real one. What was removed and why goes to `removed.csv` (synthetic indices and
the reason; synthetic patient ids are generator-made, but we still list indices only, like the
report). The filtered cohort is then audited with the same profile, seed and encoder, because
removing the closest images can leave the next-closest ones just as close (filtering is not a
guarantee; the second verdict says whether it was enough).

Layout::

    out/filtered/cohort/        the filtered cohort (synthmed.cohort/1)
    out/filtered/removed.csv    synthetic_index, reason, nearest_train_distance
    out/filtered/audit.json     the re-audit (and report.html)
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.data.cohort import Cohort, write_cohort
from synthmed.data.records import CohortRecord
from synthmed.io.atomic import write_text


def flagged_indices(audit: dict[str, Any]) -> dict[int, tuple[str, float]]:
    return {int(f["synthetic_index"]): (str(f["reason"]), float(f["nearest_train_distance"]))
            for f in audit["memorisation"]["flagged"]}


def removal_plan(audit: dict[str, Any], synthetic_patients: np.ndarray) -> list[dict[str, Any]]:
    """Rows of removed.csv: flagged images and the other images of their synthetic patients."""
    flagged = flagged_indices(audit)
    bad_patients = {str(synthetic_patients[i]) for i in flagged}
    rows = []
    for i, p in enumerate(map(str, synthetic_patients)):
        if i in flagged:
            reason, dist = flagged[i]
            rows.append({"synthetic_index": i, "reason": reason, "nearest_train_distance": dist})
        elif p in bad_patients:
            rows.append({"synthetic_index": i, "reason": "same synthetic patient as a flagged image",
                         "nearest_train_distance": ""})
    return rows


def _removed_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["synthetic_index", "reason", "nearest_train_distance"],
                       lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "nearest_train_distance": (f"{r['nearest_train_distance']:.6g}"
                                                    if r["nearest_train_distance"] != "" else "")})
    return buf.getvalue()


def filter_and_reaudit(result, inputs, cohort: Cohort, prof, *, seed: int, embedder,
                       dataset_fingerprint: str, identity=None):
    """Write out/filtered/ (the filtered cohort, removed.csv, its re-audit) and return a NEW result:
    `result` with the re-audit attached and a "filter" section in its record. `result` itself is
    left as it was (the audit of the unfiltered cohort). The re-audit uses the same encoder and
    identity network (`identity`), so only the cohort differs. Only flagged copies are removed:
    a synthetic image linked to a patient by the identity attack is not a copy and stays (the
    re-audit's identity rule says whether that is acceptable)."""
    from synthmed.audit.runner import audit_inputs, write_outputs

    out = Path(result.out) / "filtered"
    rows = removal_plan(result.audit, cohort.patient_ids())
    removed = {r["synthetic_index"] for r in rows}
    keep = np.array([i for i in range(len(cohort)) if i not in removed], dtype=np.int64)
    write_text(out / "removed.csv", _removed_csv(rows))
    images = np.asarray(inputs.synthetic[keep], dtype=np.float32)
    records = [CohortRecord(index=j, patient=r.patient, labels=r.labels, age=r.age, sex=r.sex)
               for j, r in enumerate(cohort.records[i] for i in keep)]
    info = {k: v for k, v in cohort.info.items() if k not in ("schema", "spatial_dims", "shape", "n_images")}
    info["filtered"] = {"from_cohort_fingerprint": cohort.fingerprint(), "removed": len(removed),
                        "reason": "flagged by the privacy audit as copies or near-copies of training images"}
    write_cohort(out / "cohort", images, records, info)
    filtered_fp = Cohort.open(out / "cohort").fingerprint()

    summary: dict[str, Any] = {"n_removed": len(removed), "n_kept": int(keep.size),
                               "cohort_fingerprint": filtered_fp}
    again = None
    if keep.size < prof.sizes.min_synthetic_images:
        summary["verdict"] = "not audited"
        summary["note"] = (f"only {keep.size} synthetic images remain; the audit needs at least "
                           f"{prof.sizes.min_synthetic_images}")
    else:
        sub = replace(inputs, synthetic=images)
        again = audit_inputs(sub, prof, out, seed=seed, embedder=embedder,
                             dataset_fingerprint=dataset_fingerprint, cohort_fingerprint=filtered_fp,
                             identity=identity)
        again = again.with_record(again.record.with_(filtered_from={
            "cohort_fingerprint": result.record.data.cohort_fingerprint, "n_removed": len(removed)}))
        write_outputs(again)
        summary["verdict"] = again.verdict.verdict
        summary["failed_rules"] = [r.rule for r in again.verdict.failed_rules()]
    new = result.with_record(result.record.with_(filter=summary))
    if new.report is not None:
        new = replace(new, report=replace(new.report, filtered=summary))
    return replace(new, filtered=again)


__all__ = ["filter_and_reaudit", "removal_plan"]
