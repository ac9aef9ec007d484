"""How often does the audit cry wolf? Re-run its rules over many random member / non-member splits.

Take real patients that a generator NEVER saw (the pool) and a synthetic set from that
generator. Any split of the pool into "members" and "non-members" is then a null case: nobody was
trained on, so a correct audit should fail at most 1 - confidence of these splits.

Attack scores of a real image depend only on the synthetic set (and the reference sample), not
on who is called a member, so they are computed once; each split re-labels the patients and runs
the audit's own measurement (`measure_attack`, `measure_memorisation`) and rules
(`verdict.evaluate`). Only the encoder is shared across splits (it is fitted once, on data the
caller chooses), which is the one shortcut against a full audit per split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synthmed.audit.profile import AuditProfile
from synthmed.audit.verdict import evaluate


@dataclass
class CalibrationResult:
    n_splits: int
    n_failed: int
    failed_rules: dict[str, int]
    aucs: dict[str, list[float]]
    n_failed_upper_bound_rule: int  # splits an "AUC upper bound < max_auc" rule would fail
    per_split: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fail_rate(self) -> float:
        return self.n_failed / self.n_splits if self.n_splits else 0.0


def calibrate(pool: np.ndarray, pool_patients: np.ndarray, synthetic: np.ndarray,
              reference: np.ndarray | None, profile: AuditProfile, embedder=None, *,
              n_splits: int = 50, member_fraction: float = 0.5, seed: int = 0) -> CalibrationResult:
    """Audit `n_splits` random patient-level splits of `pool` (all null cases)."""
    from synthmed.audit.embeddings import PixelEmbedder
    from synthmed.audit.runner import attack_scores, attack_settings, measure_attack, measure_memorisation

    pix = PixelEmbedder()
    spaces = {"pixel": (pix.embed(pool), pix.embed(synthetic),
                        None if reference is None else pix.embed(reference))}
    if embedder is not None and "encoder" in profile.attacks.spaces:
        spaces["encoder"] = tuple(None if x is None else np.asarray(embedder.embed(x), np.float32)
                                  for x in (pool, synthetic, reference))
    n_ref = 0 if reference is None else len(reference)
    settings = {a: attack_settings(a, n_ref, len(synthetic))[0] for a in profile.attacks.attacks}
    jobs = [(a, s) for s in profile.attacks.spaces if s in spaces for a in profile.attacks.attacks
            if settings[a] is not None]
    scores = {(a, s): attack_scores(a, spaces[s][0], spaces[s][1], spaces[s][2], seed, **settings[a])
              for a, s in jobs}
    alpha = profile.decision_alpha(len(jobs))
    patients = np.asarray(pool_patients).astype(str)
    uniq = np.unique(patients)
    rng = np.random.default_rng(seed)
    failed_rules: dict[str, int] = {}
    aucs: dict[str, list[float]] = {f"{a}/{s}": [] for a, s in jobs}
    n_failed = n_upper = 0
    per_split = []
    pix_pool, pix_syn = spaces["pixel"][0], spaces["pixel"][1]
    for k in range(n_splits):
        perm = rng.permutation(uniq)
        members = set(perm[: int(round(member_fraction * uniq.size))].tolist())
        is_m = np.array([p in members for p in patients])
        runs = [measure_attack(a, s, scores[(a, s)], patients, members, profile, alpha, seed + 7919 * k + j)
                for j, (a, s) in enumerate(jobs)]
        _, mem = measure_memorisation(pix_syn, pix_pool[is_m], pix_pool[~is_m], profile, alpha)
        verdict = evaluate(profile, [r.measure for r in runs], mem)
        if verdict.verdict == "fail":  # a false alarm; inconclusive is not crying wolf
            n_failed += 1
        for r in verdict.failed_rules():
            failed_rules[r.rule] = failed_rules.get(r.rule, 0) + 1
        for r in runs:
            aucs[r.measure.name].append(r.measure.auc)
        if any(r.measure.auc_ci[1] >= profile.attacks.max_auc for r in runs):
            n_upper += 1
        per_split.append({"split": k, "verdict": verdict.verdict,
                          "max_auc": max(r.measure.auc for r in runs),
                          "max_auc_upper": max(r.measure.auc_ci[1] for r in runs)})
    return CalibrationResult(n_splits, n_failed, failed_rules, aucs, n_upper, per_split)


__all__ = ["CalibrationResult", "calibrate"]
