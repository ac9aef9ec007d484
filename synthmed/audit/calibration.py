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


# --------------------------------------------------------------------------------- identity
@dataclass
class IdentityCalibration:
    """Null splits of the identity rule: how often it fails when nobody's identity leaked."""

    n_splits: int
    n_failed: int
    failed_rules: dict[str, int]
    aucs: list[float]
    tprs: list[float]
    n_members: int
    n_holdout: int
    n_synthetic: int
    alpha: float
    leak_fraction: float = 0.0
    per_split: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fail_rate(self) -> float:
        return self.n_failed / self.n_splits if self.n_splits else 0.0


class _Lookup:
    """An embedder over vectors computed once: its "images" are row indices. The identity attack
    then runs its own code (`IdentityAttack.score`) on every split without re-embedding."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.asarray(vectors, dtype=np.float32)

    def embed(self, rows: np.ndarray) -> np.ndarray:
        return self.vectors[np.asarray(rows, dtype=np.int64)]


def calibrate_identity(images: np.ndarray, patients: np.ndarray, network, profile: AuditProfile, *,
                       n_splits: int = 50, fractions: tuple[float, float, float] = (0.35, 0.35, 0.30),
                       one_image_per_patient: bool = True, n_attacks: int | None = None,
                       leak_fraction: float = 0.0, seed: int = 0) -> IdentityCalibration:
    """Run the audit's identity attack and rules over `n_splits` null splits of a pool of patients.

    The pool's patients must be disjoint from the ones `network` was trained on (the caller's
    duty; then no split is favoured). Each split deals the patients at random into members,
    non-members and "synthetic" (`fractions`); the synthetic set is the images of the third group,
    people neither in training nor in the holdout, so no identity can leak and a correct rule
    fails at most 1 - confidence of the splits. With `one_image_per_patient`, members and
    non-members keep one random image each (a dataset of one knee per patient, the case the
    identity attack exists for).

    Per split, exactly the audit's path: `IdentityAttack.score` (best cosine similarity of each
    real image to any synthetic image, `reid.best_links`), `measure_attack` with the attack's
    patient aggregation, and `verdict.evaluate`'s rules for that attack (the identity rows of its
    verdict), at the audit's Bonferroni alpha for `n_attacks` attacks (default: the profile's
    attacks and spaces plus the identity attack). The network's embeddings are computed once.

    `leak_fraction` > 0 is the positive control (not a null case): the synthetic set also holds
    the OTHER images of that share of the members (needs `one_image_per_patient`), i.e. new
    images of training patients, which the rule should catch.
    """
    from synthmed.audit.attacks import AttackContext, IdentityAttack, measure_attack
    from synthmed.audit.attacks.identity import IdentitySpace
    from synthmed.audit.inputs import Inputs
    from synthmed.audit.verdict import MemorisationMeasure

    if leak_fraction > 0 and not one_image_per_patient:
        raise ValueError("leak_fraction needs one_image_per_patient (the leaked images are the "
                         "members' other images)")
    ids = np.asarray(patients).astype(str)
    space = IdentitySpace(_Lookup(network.embed(images)), "calibration: embeddings computed once",
                          False, {"estimable": True})
    ver = getattr(network, "verification", None)
    genuine = list(getattr(ver, "genuine_quantiles", ()) or ()) or None
    attack = IdentityAttack()
    uniq = np.unique(ids)
    if n_attacks is None:
        n_attacks = len(profile.attacks.attacks) * len(profile.attacks.spaces) + 1
    alpha = profile.decision_alpha(n_attacks)
    fr = np.asarray(fractions, dtype=np.float64) / np.sum(fractions)
    rng = np.random.default_rng(seed)
    by_patient = {p: np.flatnonzero(ids == p) for p in uniq}
    empty = np.zeros(0, dtype=np.int64)
    failed_rules: dict[str, int] = {}
    aucs, tprs, per_split = [], [], []
    n_failed = n_m = n_h = n_s = 0
    for k in range(n_splits):
        perm = rng.permutation(uniq)
        a, b = int(round(fr[0] * uniq.size)), int(round((fr[0] + fr[1]) * uniq.size))
        members, holdout, source = perm[:a], perm[a:b], perm[b:]

        def pick(group):
            if one_image_per_patient:
                return np.array([rng.choice(by_patient[p]) for p in group], dtype=np.int64)
            return np.concatenate([by_patient[p] for p in group])

        pm, ph = pick(members), pick(holdout)
        syn = np.concatenate([by_patient[p] for p in source])
        if leak_fraction > 0:
            leaked = rng.permutation(members.size)[:int(round(leak_fraction * members.size))]
            other = [i for j in leaked for i in by_patient[members[j]] if i != pm[j]]
            syn = np.concatenate([syn, np.asarray(other, dtype=np.int64)])
        inputs = Inputs(train=pm, holdout=ph, reference=empty, synthetic=syn, train_patients=ids[pm],
                        holdout_patients=ids[ph], spatial_dims=2)
        ctx = AttackContext(inputs=inputs, profile=profile, seed=seed, identity_network=space)
        scored = attack.score(ctx)
        run = measure_attack(attack.name, attack.space, scored.scores, ctx.candidate_patients,
                             ctx.member_patients, profile, alpha, seed + 7919 * k,
                             aggregate=attack.aggregate, tail_test=attack.tail_test, genuine_quantiles=genuine)
        # the verdict's own rules for this attack; the copy rules get a measure that cannot fail
        # them, and are dropped: only the identity rows are this calibration's subject
        no_copies = MemorisationMeasure(len(syn), 0, (0.0, 0.0), 0.0, (0.0, 1.0), 0, 0.0)
        rules = [r for r in evaluate(profile, [run.measure], no_copies).rules
                 if r.rule.endswith(run.measure.name)]
        # a false alarm is a FAIL; an inconclusive row (e.g. a TPR not estimable at this size) is
        # not evidence either way, and the verdict never passes on it
        failed = [r.rule for r in rules if r.outcome == "fail"]
        n_failed += bool(failed)
        for r in failed:
            failed_rules[r] = failed_rules.get(r, 0) + 1
        aucs.append(run.measure.auc)
        tprs.append(run.measure.tpr)
        n_m, n_h, n_s = members.size, holdout.size, syn.size
        link = run.measure.link
        per_split.append({"split": k, "failed": failed, "auc": run.measure.auc,
                          "auc_ci": list(run.measure.auc_ci), "tpr": run.measure.tpr,
                          "outcomes": {r.rule: r.outcome for r in rules},
                          "link_p_value": link.p_value, "link_power": link.power})
    return IdentityCalibration(n_splits, n_failed, failed_rules, aucs, tprs, n_m, n_h, n_s, alpha,
                               leak_fraction, per_split)


__all__ = ["CalibrationResult", "calibrate", "IdentityCalibration", "calibrate_identity"]
