"""Turn audit measurements into rules a privacy officer can read, and a pass / fail verdict.

`evaluate(profile, attacks, memorisation)` is pure: plain numbers in, a `Verdict` out. The
runner calls it once per audit; the calibration test calls it once per random split, so the
rules checked there are exactly the rules an audit applies.

Every rule row is {rule, measured, threshold, passed, explanation}; `explanation` is one plain
sentence (no statistics vocabulary beyond "at most", "likely", "range").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from synthmed.audit.profile import AuditProfile


def _words(attack: str) -> str:
    """The attack's plain-words description, from its class in the registry."""
    from synthmed.audit.attacks import describe

    return describe(attack)


@dataclass(frozen=True)
class AttackMeasure:
    """One membership attack's result at the patient level."""

    attack: str                      # a registered attack's name (synthmed.audit.attacks)
    space: str                       # pixel | encoder | the attack's own space
    auc: float
    auc_ci: tuple[float, float]      # decision interval (simultaneous)
    tpr: float                       # at the profile's target FPR
    tpr_ci: tuple[float, float]
    fpr_achieved: float
    fpr_ci: tuple[float, float]
    estimable: bool
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.attack}/{self.space}"


@dataclass(frozen=True)
class MemorisationMeasure:
    """Near-copies of training images among the synthetic images."""

    n_synthetic: int
    n_flagged: int
    rate_ci: tuple[float, float]
    null_rate: float
    null_ci: tuple[float, float]
    n_hard_copies: int
    threshold: float
    spaces: tuple[str, ...] = ("pixel",)  # flagged / hard copy in ANY of these spaces


@dataclass(frozen=True)
class Rule:
    rule: str
    measured: Any
    threshold: Any
    passed: bool
    explanation: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "pass" | "fail"
    tier: str
    rules: list[Rule]

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def failed_rules(self) -> list[Rule]:
        return [r for r in self.rules if not r.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "tier": self.tier, "rules": [r.to_dict() for r in self.rules]}


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f} %"


def hard_copy_rule(profile: AuditProfile, m: MemorisationMeasure) -> Rule:
    limit = profile.memorisation.max_hard_copies
    ok = m.n_hard_copies <= limit
    if ok and m.n_hard_copies == 0:
        text = (f"None of the {m.n_synthetic} synthetic images is a copy of a training image.")
    elif ok:
        text = (f"{m.n_hard_copies} synthetic images are copies of training images; this tier "
                f"allows up to {limit}.")
    else:
        text = (f"{m.n_hard_copies} of the {m.n_synthetic} synthetic images are copies of a "
                f"training image (at most {limit} allowed): a patient's own image would be released.")
    return Rule("no_hard_copies", m.n_hard_copies, limit, ok, text, {"spaces": list(m.spaces)})


def memorisation_rule(profile: AuditProfile, m: MemorisationMeasure) -> Rule:
    """Fail when the share of near-copies is shown to exceed what unseen real images give."""
    rate = m.n_flagged / m.n_synthetic if m.n_synthetic else 0.0
    limit = m.null_ci[1]
    ok = m.rate_ci[0] <= limit
    if ok and rate <= m.null_rate:
        text = (f"{m.n_flagged} of {m.n_synthetic} synthetic images ({_pct(rate)}) are unusually "
                f"close to a training image; real images the generator never saw are that close "
                f"{_pct(m.null_rate)} of the time, so this is no more than chance.")
    elif ok:
        text = (f"{m.n_flagged} of {m.n_synthetic} synthetic images ({_pct(rate)}) are unusually "
                f"close to a training image, more than the {_pct(m.null_rate)} seen for real images "
                f"the generator never saw, but with this few images the difference is within chance "
                f"(the two likely ranges overlap).")
    else:
        text = (f"{m.n_flagged} of {m.n_synthetic} synthetic images ({_pct(rate)}, at least "
                f"{_pct(m.rate_ci[0])}) are unusually close to a training image, far more than the "
                f"{_pct(m.null_rate)} (at most {_pct(limit)}) seen for real images the generator never "
                f"saw: the generator reproduces its training images.")
    return Rule("memorisation_rate_not_above_null", rate, limit, ok, text,
                {"rate_ci": list(m.rate_ci), "null_rate": m.null_rate, "null_ci": list(m.null_ci),
                 "n_flagged": m.n_flagged, "n_synthetic": m.n_synthetic, "spaces": list(m.spaces)})


def auc_rule(profile: AuditProfile, a: AttackMeasure) -> Rule:
    """Fail when the estimate reaches max_auc, or the lower bound shows an edge above the floor."""
    r = profile.attacks
    lo, hi = a.auc_ci
    over_limit = a.auc >= r.max_auc
    evidence = lo > r.auc_evidence_above
    ok = not over_limit and not evidence
    how = _words(a.attack)
    head = (f"An attacker {how} ({a.space} space) tells training patients from others with an AUC "
            f"of {a.auc:.2f} (likely range {lo:.2f} to {hi:.2f}; 0.50 is a coin toss, 1.00 always right).")
    if ok:
        tail = (f" That is below the limit of {r.max_auc:.2f} and not clearly better than "
                f"{r.auc_evidence_above:.2f}.")
        if hi >= r.max_auc:
            tail += (f" This audit has too few patients to exclude an AUC up to {hi:.2f}; more "
                     f"holdout patients would narrow the range.")
    elif over_limit:
        tail = f" That reaches the limit of {r.max_auc:.2f}: membership can be inferred."
    else:
        tail = (f" Even the low end of the range is above {r.auc_evidence_above:.2f}: the attack "
                f"works better than this tier tolerates.")
    return Rule(f"attack_auc:{a.name}", a.auc, r.max_auc, ok, head + tail,
                {"auc_ci": [lo, hi], "evidence_above": r.auc_evidence_above})


def tpr_rule(profile: AuditProfile, a: AttackMeasure) -> Rule:
    """Fail when the attack is shown to find more members than both the limit and its own false
    alarms could explain (the FPR's upper bound matters when the FPR is not estimable)."""
    r = profile.attacks
    line = max(r.max_tpr, a.fpr_ci[1])
    ok = a.tpr_ci[0] <= line
    how = _words(a.attack)
    if a.estimable:
        head = (f"Allowing {_pct(r.target_fpr)} false alarms, the attacker ({how}, {a.space} space) "
                f"finds {_pct(a.tpr)} of training patients (at least {_pct(a.tpr_ci[0])}).")
    else:
        head = (f"There are too few holdout patients to measure a {_pct(r.target_fpr)} false-alarm "
                f"rate ({a.note.split(':', 1)[0] if a.note else 'not estimable'}); at the strictest "
                f"threshold they allow, false alarms are at most {_pct(a.fpr_ci[1])} and the attacker "
                f"({how}, {a.space} space) finds {_pct(a.tpr)} of training patients (at least "
                f"{_pct(a.tpr_ci[0])}).")
    if ok:
        tail = (f" That is not clearly above {_pct(line)} (the larger of the {_pct(r.max_tpr)} limit "
                f"and the possible false-alarm rate).")
    else:
        tail = (f" That is clearly above {_pct(line)}: some training patients can be singled out "
                f"with few false alarms.")
    return Rule(f"attack_tpr_at_fpr:{a.name}", a.tpr, line, ok, head + tail,
                {"tpr_ci": list(a.tpr_ci), "target_fpr": r.target_fpr, "max_tpr": r.max_tpr,
                 "fpr_achieved": a.fpr_achieved, "fpr_ci": list(a.fpr_ci), "estimable": a.estimable,
                 "note": a.note})


def not_evaluated_rule(name: str, reason: str) -> Rule:
    """An attack the profile requires that could not run. It fails the rule in every tier: a
    verdict of `pass` certifies that each required attack was tried and failed, and without its
    evidence the audit cannot say so (drop the attack from the profile to accept that)."""
    attack = name.split("/", 1)[0]
    how = _words(attack)
    text = (f"The attack by {how} ({name.split('/', 1)[-1]} space) could not be run: {reason}. "
            f"This profile requires it, so the cohort cannot pass without it; add real non-member "
            f"images (a larger reference or holdout split) and re-run the audit.")
    return Rule(f"attack_auc:{name}", "not evaluated", "evaluated", False, text,
                {"evaluated": False, "reason": reason})


def evaluate(profile: AuditProfile, attacks: list[AttackMeasure],
             memorisation: MemorisationMeasure, not_evaluated: list[tuple[str, str]] = ()) -> Verdict:
    """Apply every rule of `profile`; the verdict is `pass` only if all rules pass.

    not_evaluated: (attack/space, why) for required attacks that could not run; each is a failed
    rule (see `not_evaluated_rule`)."""
    rules = [hard_copy_rule(profile, memorisation), memorisation_rule(profile, memorisation)]
    for a in attacks:
        rules.append(auc_rule(profile, a))
        rules.append(tpr_rule(profile, a))
    rules += [not_evaluated_rule(name, why) for name, why in not_evaluated]
    verdict = "pass" if all(r.passed for r in rules) else "fail"
    return Verdict(verdict, profile.tier, rules)


__all__ = ["AttackMeasure", "MemorisationMeasure", "Rule", "Verdict", "evaluate"]
