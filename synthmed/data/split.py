"""Patient-level train / holdout / reference split, deterministic and stratified.

The patient, not the image, is the unit: all images of a patient fall on one side, so the
audit's members (train) and non-members (holdout) are different people. The order is a keyed
hash of (seed, pseudonym), so the split does not depend on the order files were found in.
Stratification sorts patients by stratum (their most common label set) before that hash, and
assigns splits by running quotas along the whole list: each stratum, and the total, gets its
share to within one patient.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Iterable, Mapping, Sequence

from synthmed.data.ingest_config import SplitConfig


def _order_key(seed: int, patient: str) -> str:
    return hashlib.sha256(f"synthmed-split/{seed}/{patient}".encode()).hexdigest()


def patient_strata(patients: Sequence[str], labels: Sequence[Iterable[str]]) -> dict[str, str]:
    """Each patient's most common label set ('|'-joined, '' for no finding); ties: smallest."""
    counts: dict[str, Counter] = {}
    for pid, labs in zip(patients, labels):
        counts.setdefault(pid, Counter())["|".join(sorted(labs))] += 1
    return {pid: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for pid, c in counts.items()}


def split_patients(patients: Iterable[str], config: SplitConfig,
                   strata: Mapping[str, str] | None = None) -> dict[str, str]:
    """Map each patient to 'train', 'holdout' or 'reference'."""
    unique = sorted(set(patients))
    stratum = strata if (config.stratify and strata) else {}
    ordered = sorted(unique, key=lambda p: (stratum.get(p, ""), _order_key(config.seed, p)))
    out: dict[str, str] = {}
    # Quota accumulators start at one half so rounding is symmetric (a 20 % holdout of 3
    # patients gives 1, of 2 gives 0, of 5 gives 1).
    acc_h = acc_r = 0.5
    for pid in ordered:
        acc_h += config.holdout_fraction
        acc_r += config.reference_fraction
        if acc_h >= 1.0:
            out[pid], acc_h = "holdout", acc_h - 1.0
        elif acc_r >= 1.0:
            out[pid], acc_r = "reference", acc_r - 1.0
        else:
            out[pid] = "train"
    return out


def assert_patient_disjoint(patients: Sequence[str], splits: Sequence[str]) -> None:
    """Raise AssertionError if any patient has images in two splits."""
    seen: dict[str, str] = {}
    for pid, split in zip(patients, splits):
        if seen.setdefault(pid, split) != split:
            raise AssertionError(f"patient {pid} is in both {seen[pid]} and {split}")
