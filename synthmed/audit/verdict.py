"""Turn audit measurements into rules a privacy officer can read, and a verdict.

`evaluate(profile, attacks, memorisation)` is pure: plain numbers in, a `Verdict` out. The
runner calls it once per audit; the calibration test calls it once per random split, so the
rules checked there are exactly the rules an audit applies.

Three verdicts (synthmed.audit.power says why):

* `fail`: some rule shows a leak (evidence, as before);
* `pass`: no rule shows a leak AND every rule is conclusive: each attack's simultaneous AUC
  interval lies below the smallest leak the tier must rule out (`attacks.rule_out_auc`), each TPR
  at the target FPR is estimable, every required attack ran;
* `inconclusive`: nothing shows a leak, but the audit is too small to rule one out. The verdict
  carries `patients_needed`, the holdout patients that would settle it (from the observed
  interval widths).

Every rule row is {rule, measured, threshold, passed, outcome, explanation}; `outcome` is pass,
fail or inconclusive (`passed` is outcome == "pass"); `explanation` is plain sentences (no
statistics vocabulary beyond "at most", "likely", "range").
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
    # why a passing result cannot count (the attack's evidence is too weak to certify anything);
    # its rules then become one "not evaluated" row, which is not a pass
    cannot_pass: str = ""
    # the link-excess test (synthmed.audit.linktest.LinkExcess) when the attack has one
    link: Any = None
    # an AUC below 0.5 is evidence too (Attack.two_sided: the white-box attacks)
    two_sided: bool = False

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


OUTCOMES = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class Rule:
    rule: str
    measured: Any
    threshold: Any
    passed: bool
    explanation: str
    details: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""  # pass | fail | inconclusive; "" means from `passed`
    # evaluated non-member patients with which an inconclusive rule would be settled (None: no
    # sample size can, or nothing needed)
    nonmembers_needed: int | None = None

    def __post_init__(self) -> None:
        if not self.outcome:
            object.__setattr__(self, "outcome", "pass" if self.passed else "fail")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"rule outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if self.passed != (self.outcome == "pass"):
            raise ValueError("a rule passes exactly when its outcome is 'pass'")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["nonmembers_needed"] is None:
            del d["nonmembers_needed"]
        return d


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "pass" | "fail" | "inconclusive"
    tier: str
    rules: list[Rule]
    patients_needed: int | None = None   # holdout patients for a conclusive audit (inconclusive only)
    power: dict[str, Any] = field(default_factory=dict)  # audit.json "power": sizes and how

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def failed_rules(self) -> list[Rule]:
        return [r for r in self.rules if r.outcome == "fail"]

    def inconclusive_rules(self) -> list[Rule]:
        return [r for r in self.rules if r.outcome == "inconclusive"]

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "tier": self.tier, "rules": [r.to_dict() for r in self.rules],
                "patients_needed": self.patients_needed, "power": self.power}


@dataclass(frozen=True)
class AuditSize:
    """How many holdout patients the audit had, and how many of them it evaluated (the rest
    calibrate the attacks when the dataset has no reference split)."""

    n_holdout: int
    n_evaluated: int

    def holdout_for(self, nonmembers: int) -> int:
        from synthmed.audit.power import holdout_needed

        return holdout_needed(nonmembers, self.n_evaluated, self.n_holdout)


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


def auc_rule(profile: AuditProfile, a: AttackMeasure, n_nonmembers: int | None = None) -> Rule:
    """Fail when the estimate reaches max_auc, or the lower bound shows an edge above the floor;
    pass only when the upper bound rules out `rule_out_auc`; otherwise inconclusive."""
    from synthmed.audit.power import auc_exclusion

    r = profile.attacks
    leak = r.leak_auc
    lo, hi = a.auc_ci
    over_limit = a.auc >= r.max_auc
    evidence = lo > r.auc_evidence_above
    how = _words(a.attack)
    head = (f"An attacker {how} ({a.space} space) tells training patients from others with an AUC "
            f"of {a.auc:.2f} (likely range {lo:.2f} to {hi:.2f}; 0.50 is a coin toss, 1.00 always right).")
    details = {"auc_ci": [lo, hi], "evidence_above": r.auc_evidence_above, "rule_out_auc": leak}
    if a.two_sided:
        details["two_sided"] = True
        # the same limits mirrored below 0.5: a score that ranks members LAST tells them apart as
        # surely as one that ranks them first, once its direction is turned round
        if 1.0 - a.auc >= r.max_auc:
            return Rule(f"attack_auc:{a.name}", a.auc, r.max_auc, False,
                        head + f" That is as far below 0.50 as the limit of {r.max_auc:.2f} is "
                        "above it: the score sets training patients apart the other way round, "
                        "and membership can be inferred by reversing it.", details)
        if hi < 1.0 - r.auc_evidence_above:
            return Rule(f"attack_auc:{a.name}", a.auc, r.max_auc, False,
                        head + f" Even the high end of the range is below {1 - r.auc_evidence_above:.2f}: "
                        "the score sets training patients apart the other way round, better than "
                        "this tier tolerates.", details)
    if over_limit:
        return Rule(f"attack_auc:{a.name}", a.auc, r.max_auc, False,
                    head + f" That reaches the limit of {r.max_auc:.2f}: membership can be inferred.",
                    details)
    if evidence:
        return Rule(f"attack_auc:{a.name}", a.auc, r.max_auc, False,
                    head + f" Even the low end of the range is above {r.auc_evidence_above:.2f}: the "
                    f"attack works better than this tier tolerates.", details)
    ex = auc_exclusion(a.auc, (lo, hi), leak, n_nonmembers or 1)
    details["exclusion"] = ex.to_dict() if n_nonmembers else {**ex.to_dict(), "n_now": None, "n_needed": None}
    if ex.excluded:
        return Rule(f"attack_auc:{a.name}", a.auc, r.max_auc, True,
                    head + f" The whole range is below {leak:.2f}, the smallest leak this tier must "
                    f"rule out: no such leak.", details)
    need = ex.n_needed if n_nonmembers else None
    tail = (f" That shows no leak, but this audit has too few patients to rule out an AUC of "
            f"{leak:.2f} (the range reaches {hi:.2f}): inconclusive.")
    return Rule(f"attack_auc:{a.name}", a.auc, r.max_auc, False, head + tail, details,
                outcome="inconclusive", nonmembers_needed=need)


def tpr_rule(profile: AuditProfile, a: AttackMeasure, alpha: float | None = None) -> Rule:
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
    details = {"tpr_ci": list(a.tpr_ci), "target_fpr": r.target_fpr, "max_tpr": r.max_tpr,
               "fpr_achieved": a.fpr_achieved, "fpr_ci": list(a.fpr_ci), "estimable": a.estimable,
               "note": a.note}
    if not ok:
        tail = (f" That is clearly above {_pct(line)}: some training patients can be singled out "
                f"with few false alarms.")
        return Rule(f"attack_tpr_at_fpr:{a.name}", a.tpr, line, False, head + tail, details)
    tail = (f" That is not clearly above {_pct(line)} (the larger of the {_pct(r.max_tpr)} limit "
            f"and the possible false-alarm rate).")
    if a.estimable:
        return Rule(f"attack_tpr_at_fpr:{a.name}", a.tpr, line, True, head + tail, details)
    from synthmed.audit.power import nonmembers_for_fpr

    need = nonmembers_for_fpr(r.target_fpr, alpha if alpha is not None else profile.decision_alpha())
    tail += (f" But a {_pct(r.target_fpr)} false-alarm rate cannot be measured with this few holdout "
             f"patients ({need} evaluated ones are needed), so a leak at that rate is not ruled out: "
             f"inconclusive.")
    return Rule(f"attack_tpr_at_fpr:{a.name}", a.tpr, line, False, head + tail, details,
                outcome="inconclusive", nonmembers_needed=need)


def link_rule(profile: AuditProfile, a: AttackMeasure, alpha: float) -> Rule:
    """Fail when training patients crowd the top of the identity ranking beyond chance (an exact
    permutation test, synthmed.audit.linktest); pass only when the test had the power to catch the
    leak this tier must rule out; otherwise inconclusive."""
    t = a.link
    j = t.best_tail
    ident = profile.identity
    share = ident.rule_out_share
    head = (f"Ranking every training and holdout patient by how strongly a synthetic image shows them "
            f"({_words(a.attack)}), {t.members_in_tail[j]} of the top {t.tail_sizes[j]} are training "
            f"patients, where chance gives about {t.expected_members[j]:.1f} "
            f"({t.n_members} training and {t.n_nonmembers} holdout patients).")
    details = t.to_dict() | {"alpha": alpha, "min_power": ident.min_power}
    name = f"identity_link_excess:{a.name}"
    if t.p_value <= alpha:
        return Rule(name, t.p_value, alpha, False,
                    head + " That many is very unlikely by chance: synthetic images show training "
                    "patients more than they show people the generator never saw.", details)
    if t.power is None:
        return Rule(name, t.p_value, alpha, False,
                    head + f" That is within chance, but it cannot count as a pass: {t.note}.",
                    details, outcome="inconclusive")
    if t.power >= ident.min_power:
        return Rule(name, t.p_value, alpha, True,
                    head + f" That is within chance, and had {_pct(share)} of the training patients "
                    f"been shown as clearly as a second image of themselves, this audit would have "
                    f"caught it {_pct(t.power)} of the time: no such leak.", details)
    more = (f" About {t.nonmembers_needed} holdout patients would be enough."
            if t.nonmembers_needed is not None else
            " No audit size within reach would be enough with this network: a network that "
            "recognises people better is needed.")
    return Rule(name, t.p_value, alpha, False,
                head + f" That is within chance, but had {_pct(share)} of the training patients been "
                f"shown as clearly as a second image of themselves, this audit would have caught it "
                f"only {_pct(t.power)} of the time (at least {_pct(ident.min_power)} is needed): "
                f"inconclusive." + more, details, outcome="inconclusive",
                nonmembers_needed=t.nonmembers_needed)


def not_evaluated_rule(name: str, reason: str) -> Rule:
    """An attack the profile requires that could not run: inconclusive in every tier. A verdict of
    `pass` certifies that each required attack was tried and failed, and without its evidence the
    audit cannot say so; nor did it show a leak (drop the attack from the profile to accept that)."""
    attack = name.split("/", 1)[0]
    how = _words(attack)
    text = (f"The attack by {how} ({name.split('/', 1)[-1]} space) could not be run: {reason}. "
            f"This profile requires it, so the cohort cannot pass without it: inconclusive. Add real "
            f"non-member images (a larger reference or holdout split) and re-run the audit.")
    return Rule(f"attack_auc:{name}", "not evaluated", "evaluated", False, text,
                {"evaluated": False, "reason": reason}, outcome="inconclusive")


def required_rule(profile: AuditProfile, attack: str) -> Rule:
    """An attack the profile's tier requires that the profile does not list."""
    how = _words(attack)
    text = (f"The '{profile.tier}' tier requires the attack by {how}, and this profile does not run "
            f"it: inconclusive. Add '{attack}' to attacks.attacks and re-run the audit.")
    return Rule(f"attack_auc:{attack}", "not evaluated", "evaluated", False, text,
                {"evaluated": False, "reason": f"required by the {profile.tier} tier, not in the profile"},
                outcome="inconclusive")


def unproven_rule(a: AttackMeasure, rules: list[Rule]) -> Rule:
    """An attack that found nothing, run with a tool too weak to certify that (an identity network
    that cannot tell patients apart): not evaluated, inconclusive like a missing attack (never a
    pass)."""
    text = (f"The attack by {_words(a.attack)} ({a.space} space) found no sign of leakage (AUC "
            f"{a.auc:.2f}, likely range {a.auc_ci[0]:.2f} to {a.auc_ci[1]:.2f}), but that cannot count "
            f"as a pass: {a.cannot_pass}.")
    return Rule(f"attack_auc:{a.name}", "not evaluated", "evaluated", False, text,
                {"evaluated": False, "reason": a.cannot_pass, "auc": a.auc, "auc_ci": list(a.auc_ci),
                 "would_pass": [r.rule for r in rules if r.passed]}, outcome="inconclusive")


def evaluate(profile: AuditProfile, attacks: list[AttackMeasure],
             memorisation: MemorisationMeasure, not_evaluated: list[tuple[str, str]] = (),
             size: AuditSize | None = None, alpha: float | None = None) -> Verdict:
    """Apply every rule of `profile`: `fail` when any rule fails, else `inconclusive` when any
    rule is, else `pass`.

    not_evaluated: (attack/space, why) for required attacks that could not run; each is an
    inconclusive rule (see `not_evaluated_rule`). An attack whose measure says it `cannot_pass`
    keeps its failing rules, and otherwise becomes one not-evaluated row (`unproven_rule`,
    inconclusive). size: the audit's holdout (for the number of patients an inconclusive verdict
    needs; without it that number is not given). alpha: the per-interval level the intervals were
    computed at (default: the profile's for these attacks).
    """
    alpha = alpha if alpha is not None else profile.decision_alpha(max(1, len(attacks)))
    n_eval = size.n_evaluated if size is not None else None
    rules = [hard_copy_rule(profile, memorisation), memorisation_rule(profile, memorisation)]
    for a in attacks:
        pair = [auc_rule(profile, a, n_eval), tpr_rule(profile, a, alpha)]
        if a.link is not None:
            pair.append(link_rule(profile, a, alpha))
        if a.cannot_pass and not any(r.outcome == "fail" for r in pair):
            pair = [unproven_rule(a, pair)]
        rules += pair
    rules += [not_evaluated_rule(name, why) for name, why in not_evaluated]
    ran = {m.attack for m in attacks} | {name.split("/", 1)[0] for name, _ in not_evaluated}
    ran |= {profile.requirement_of(name) for name in ran}
    rules += [required_rule(profile, name) for name in profile.required_attacks() if name not in ran]
    if any(r.outcome == "fail" for r in rules):
        verdict = "fail"
    elif any(r.outcome == "inconclusive" for r in rules):
        verdict = "inconclusive"
    else:
        verdict = "pass"
    needs = [r.nonmembers_needed for r in rules if r.outcome == "inconclusive"]
    unsettled = [r.rule for r in rules if r.outcome == "inconclusive" and r.nonmembers_needed is None]
    patients = None
    if verdict == "inconclusive" and size is not None and any(n is not None for n in needs):
        patients = size.holdout_for(max(n for n in needs if n is not None))
    power = {
        "rule_out_auc": profile.attacks.leak_auc, "target_fpr": profile.attacks.target_fpr,
        "per_interval_alpha": alpha,
        "n_holdout_patients": size.n_holdout if size else None,
        "n_evaluated_nonmembers": n_eval,
        "evaluated_nonmembers_needed": max((n for n in needs if n is not None), default=None),
        "holdout_patients_needed": patients,
        "not_settled_by_size": unsettled,
        "how": ("holdout patients for every attack's simultaneous AUC upper bound to fall below "
                "rule_out_auc, with interval half-widths scaling as 1/sqrt(n) at the same split "
                "fractions and the estimates where they are now, and for TPR at target_fpr to be "
                "estimable (synthmed.audit.power); a planning figure, not a promise"),
    }
    return Verdict(verdict, profile.tier, rules, patients, power)


__all__ = ["AttackMeasure", "AuditSize", "MemorisationMeasure", "OUTCOMES", "Rule", "Verdict", "evaluate",
           "link_rule", "unproven_rule"]
