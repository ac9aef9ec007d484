"""The statistics every attack goes through: patient aggregation, AUC with a bootstrap interval,
TPR at low FPRs with exact intervals, and the empirical epsilon.

An attack only produces member scores per image (`attacks.base`); this module, the same for all
of them, turns the scores into an `AttackMeasure` for the rules (verdict.py) and a record for
audit.json, so no attack can be judged by a statistic of its own choosing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from synthmed.audit.stats import auc_bootstrap_ci, empirical_epsilon, roc_auc, tpr_at_fpr
from synthmed.audit.verdict import AttackMeasure

if TYPE_CHECKING:  # pragma: no cover
    from synthmed.audit.profile import AuditProfile


@dataclass
class AttackRun:
    """Everything one attack produced (the measure for the rules plus curves for the report)."""

    measure: AttackMeasure
    fpr: np.ndarray
    tpr: np.ndarray
    record: dict[str, Any]


def aggregate_by_patient(scores: np.ndarray, patient_ids: np.ndarray, how: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique patient ids, one score each): max (default: a patient is a member if ANY
    image is) or mean of the patient's image scores."""
    scores = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(patient_ids)
    if scores.shape[0] != ids.shape[0]:
        raise ValueError(f"{scores.shape[0]} scores but {ids.shape[0]} patient ids")
    uniq, inv = np.unique(ids, return_inverse=True)
    if how == "max":
        out = np.full(uniq.size, -np.inf)
        np.maximum.at(out, inv, scores)
    elif how == "mean":
        out = np.bincount(inv, weights=scores, minlength=uniq.size) / np.bincount(inv, minlength=uniq.size)
    else:
        raise ValueError(f"unknown aggregation {how!r}; use 'max' or 'mean'")
    return uniq, out


def split_calibration(patient_ids: np.ndarray, fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split records into (calibration mask, evaluation mask) BY PATIENT: no patient on both sides."""
    ids = np.asarray(patient_ids)
    uniq = np.unique(ids)
    if uniq.size < 2:
        raise ValueError("need at least 2 patients to split into calibration and evaluation")
    rng = np.random.default_rng(seed)
    n_cal = min(uniq.size - 1, max(1, int(round(fraction * uniq.size))))
    cal = set(rng.permutation(uniq)[:n_cal].tolist())
    mask = np.array([p in cal for p in ids])
    return mask, ~mask


def summarise_attack(member_scores: np.ndarray, nonmember_scores: np.ndarray, *, n_boot: int = 1000,
                     alpha: float = 0.05, seed: int = 0, fprs: tuple[float, ...] = (0.01, 0.001)) -> dict[str, Any]:
    """AUC with bootstrap CI, TPR at each FPR with exact intervals and epsilon lower bounds."""
    rates = [tpr_at_fpr(member_scores, nonmember_scores, f, alpha) for f in fprs]
    return {
        "auc": roc_auc(member_scores, nonmember_scores),
        "auc_ci": list(auc_bootstrap_ci(member_scores, nonmember_scores, n_boot, alpha, seed)),
        "n_members": int(np.size(member_scores)), "n_nonmembers": int(np.size(nonmember_scores)),
        "tpr_at_fpr": [r.to_dict() | {"epsilon_lower_bound": empirical_epsilon(r.tpr_ci[0], r.fpr_ci[1])}
                       for r in rates],
    }


def measure_attack(attack: str, space: str, image_scores: np.ndarray, image_patients: np.ndarray,
                   member_patients: set[str], profile: "AuditProfile", alpha: float,
                   seed: int, aggregate: str | None = None, tail_test: bool = False,
                   genuine_quantiles=None) -> AttackRun:
    """Patient-level AUC (bootstrap interval), TPR at low FPRs (exact intervals), epsilon.

    aggregate: how a patient's image scores combine (default: the profile's). tail_test: also the
    link-excess test (synthmed.audit.linktest; the identity attack's), with the profile's
    identity settings; genuine_quantiles (from the network's verification) give its power."""
    from synthmed.audit import stats

    ids, scores = aggregate_by_patient(image_scores, image_patients, how=aggregate or profile.attacks.aggregate)
    ids = np.asarray(ids)
    scores = np.asarray(scores, dtype=np.float64)
    is_member = np.array([str(p) in member_patients for p in ids])
    m, n = scores[is_member], scores[~is_member]
    auc = stats.roc_auc(m, n)
    auc_ci = stats.auc_bootstrap_ci(m, n, n_boot=profile.n_bootstrap, alpha=alpha, seed=seed)
    fpr, tpr = stats.roc_curve(m, n)
    rates = {}
    for target in sorted(set(profile.attacks.report_fprs) | {profile.attacks.target_fpr}, reverse=True):
        r = stats.tpr_at_fpr(m, n, target, alpha=alpha)
        d = r.to_dict()
        eps = stats.epsilon_from_rate(r)
        d["empirical_epsilon"] = eps if math.isfinite(eps) else None
        d["empirical_epsilon_note"] = ("" if math.isfinite(eps) else
                                       "unbounded: the attack is right with no false alarm it could be blamed on")
        rates[f"{target:g}"] = (r, d)
    main = rates[f"{profile.attacks.target_fpr:g}"][0]
    link = None
    if tail_test:
        from synthmed.audit.linktest import link_excess

        ident = profile.identity
        link = link_excess(m, n, alpha, tails=ident.link_tails, rule_out_share=ident.rule_out_share,
                           genuine_quantiles=genuine_quantiles, min_power=ident.min_power, seed=seed)
    measure = AttackMeasure(attack=attack, space=space, auc=auc, auc_ci=tuple(auc_ci), tpr=main.tpr,
                            tpr_ci=tuple(main.tpr_ci), fpr_achieved=main.fpr_achieved,
                            fpr_ci=tuple(main.fpr_ci), estimable=main.estimable, note=main.note, link=link)
    eps_all = [d["empirical_epsilon"] for _, d in rates.values()]
    record = {
        "attack": attack, "space": space, "auc": auc, "auc_ci": list(auc_ci),
        "n_member_patients": int(m.size), "n_nonmember_patients": int(n.size),
        "tpr_at_fpr": {k: d for k, (_, d) in rates.items()},
        "empirical_epsilon": (None if any(e is None for e in eps_all) else max(eps_all)),
    }
    if link is not None:
        record["link_excess"] = link.to_dict()
    return AttackRun(measure, fpr, tpr, record)


__all__ = ["AttackRun", "aggregate_by_patient", "measure_attack", "split_calibration", "summarise_attack"]
