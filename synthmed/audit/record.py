"""What audit.json holds, as a typed record (schema "synthmed.audit/1").

`AuditRecord` is built once by the runner from the measurements; `to_json_dict()` is the exact
content of audit.json (keys are sorted when written, so field order is free). Nothing in it names
a patient: patient lists appear only as sha256 hashes, images only by index.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from synthmed.provenance import hash_id_list

if TYPE_CHECKING:  # pragma: no cover
    from synthmed.audit.inputs import Inputs

AUDIT_SCHEMA = "synthmed.audit/1"

EPSILON_NOTE = ("lower bound on the differential-privacy epsilon the release leaks, from the strongest "
                "attack (TPR lower bound / FPR upper bound); null means unbounded")


@dataclass(frozen=True)
class DataRecord:
    """Who and what was audited, by count and hash."""

    dataset_fingerprint: str
    cohort_fingerprint: str
    member_patients_sha256: str
    nonmember_patients_sha256: str
    n_member_patients: int
    n_nonmember_patients: int
    n_member_images: int
    n_nonmember_images: int
    n_reference_images: int
    reference_source: str
    n_synthetic_images: int
    image_shape: list[int]
    other_dataset: str | None = None  # set when --allow-other-dataset let a mismatch through

    @classmethod
    def from_inputs(cls, inputs: "Inputs", dataset_fingerprint: str, cohort_fingerprint: str) -> "DataRecord":
        return cls(
            dataset_fingerprint=dataset_fingerprint, cohort_fingerprint=cohort_fingerprint,
            member_patients_sha256=hash_id_list(map(str, inputs.train_patients.tolist())),
            nonmember_patients_sha256=hash_id_list(map(str, inputs.holdout_patients.tolist())),
            n_member_patients=len(set(inputs.train_patients.tolist())),
            n_nonmember_patients=len(set(inputs.holdout_patients.tolist())),
            n_member_images=int(inputs.train.shape[0]), n_nonmember_images=int(inputs.holdout.shape[0]),
            n_reference_images=int(inputs.reference.shape[0]),
            reference_source=inputs.extra.get("reference_source", "reference split"),
            n_synthetic_images=int(inputs.synthetic.shape[0]),
            image_shape=list(inputs.train.shape[1:]))

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["other_dataset"] is None:
            del d["other_dataset"]
        return d


@dataclass(frozen=True)
class EncoderRecord:
    source: str          # "given" | "trained on the train split" | "none"
    name: str | None
    steps: int
    dim: int


@dataclass(frozen=True)
class AuditRecord:
    """The content of audit.json."""

    verdict: str
    tier: str
    profile: str
    rules: list[dict[str, Any]]
    thresholds: dict[str, Any]
    attacks: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    memorisation: dict[str, Any]
    distances: dict[str, Any]
    data: DataRecord
    encoder: EncoderRecord
    provenance: dict[str, Any]
    schema: str = AUDIT_SCHEMA
    filter: dict[str, Any] | None = None          # with --filter: what was removed, the re-audit's verdict
    filtered_from: dict[str, Any] | None = None   # on the re-audit: the cohort it was filtered from
    sections: dict[str, Any] = field(default_factory=dict)  # further top-level sections, by name

    @property
    def empirical_epsilon(self) -> float | None:
        """The strongest attack's epsilon lower bound (None: unbounded; 0 when no attack ran)."""
        eps = [a["empirical_epsilon"] for a in self.attacks]
        return None if any(e is None for e in eps) else (max(eps) if eps else 0.0)

    def with_(self, **changes: Any) -> "AuditRecord":
        return replace(self, **changes)

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "sections":
                continue
            if f.name in ("filter", "filtered_from") and v is None:
                continue
            out[f.name] = v.to_json_dict() if hasattr(v, "to_json_dict") else (asdict(v) if isinstance(v, EncoderRecord) else v)
        out["empirical_epsilon"] = self.empirical_epsilon
        out["empirical_epsilon_note"] = EPSILON_NOTE
        out.update(self.sections)
        return out


def quantiles(x: np.ndarray) -> dict[str, float]:
    qs = (0.0, 0.001, 0.01, 0.05, 0.25, 0.5)
    return {f"q{q:g}": float(np.quantile(x, q)) for q in qs}


__all__ = ["AUDIT_SCHEMA", "AuditRecord", "DataRecord", "EncoderRecord", "EPSILON_NOTE", "quantiles"]
