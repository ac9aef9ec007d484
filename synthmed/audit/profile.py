"""What an audit checks and how strictly: the audit profile (YAML, validated at the edge).

A profile fixes the release tier (`public` or `controlled`), the rules a synthetic cohort must
pass, and the knobs of the measurement (encoder training, bootstrap size, quantiles). Two are
shipped: `configs/audit-public.yaml` and `configs/audit-controlled.yaml` (looser limits).

How the rules decide (see privacy_audits/PROTOCOL.md for the full argument):

* Every statistical rule fails only on EVIDENCE: a confidence bound, not a point estimate, must
  cross the line. All intervals used for decisions are simultaneous at the profile's
  `confidence` (Bonferroni over the statistical rules), so an audit of a generator that never saw
  the members fails with probability at most 1 - confidence. That is what "calibrated" means here.
* The attack-AUC rule additionally fails when the best estimate itself reaches `max_auc`, so a
  small audit with a wide interval cannot pass a cohort whose best guess is already leaky.
* A pass must be evidence: every attack's simultaneous AUC interval must lie below
  `attacks.rule_out_auc` (the smallest leak the tier must rule out), every TPR at the target FPR
  must be estimable, every required attack must have run; otherwise, unless a rule fails, the
  verdict is `inconclusive` with the holdout patients needed (synthmed.audit.power).
* TPR at a low FPR (1 %) needs hundreds of non-members before the FPR itself is known (about
  3.7 / FPR at 95 %). When it is not estimable the rule says so and compares the TPR's lower bound
  with the larger of the limit and the FPR's upper bound at that threshold: an attacker is only
  shown to find members when it finds clearly more of them than its own false alarms could.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from synthmed.audit.reid import IdentitySettings
from synthmed.audit.whitebox.settings import WhiteboxSettings
from synthmed.config import StrictConfig, load_config

Tier = Literal["public", "controlled"]
# What a tier requires beyond the profile's own list (see AuditProfile.required_attacks).
TIER_REQUIRES: dict[str, tuple[str, ...]] = {"public": ("identity",)}
Space = Literal["pixel", "encoder"]


class EmbeddingSettings(StrictConfig):
    """The learned embedding the attacks and the memorisation check work in."""

    steps: int = Field(300, ge=0, description="contrastive encoder training steps (0: pixel space only)")
    batch_size: int = Field(64, ge=4)
    dim: int = Field(128, ge=4)


class AttackRules(StrictConfig):
    """Membership-inference rules, applied to every attack in every space."""

    attacks: list[str] = Field(default_factory=lambda: ["dcr", "domias", "mc_neighbourhood"], min_length=1,
                               description="attack names from the registry (synthmed.audit.attacks.ATTACKS)")
    spaces: list[Space] = Field(default_factory=lambda: ["pixel", "encoder"], min_length=1)
    max_auc: float = Field(0.6, gt=0.5, le=1.0,
                           description="an attack's AUC estimate must stay below this")
    rule_out_auc: float | None = Field(
        None, gt=0.5, le=1.0,
        description="the smallest attack AUC (leak) this tier must rule out: a pass needs every "
                    "attack's simultaneous upper bound below it (None: max_auc)")
    auc_evidence_above: float = Field(0.5, ge=0.5, lt=1.0,
                                      description="fail when the AUC's lower bound is above this")
    target_fpr: float = Field(0.01, gt=0.0, lt=0.5, description="the false-alarm rate for the TPR rule")
    max_tpr: float = Field(0.02, gt=0.0, lt=1.0, description="members found at target_fpr must stay below this")
    report_fprs: list[float] = Field(default_factory=lambda: [0.01, 0.001])
    aggregate: Literal["max", "mean"] = "max"

    @field_validator("attacks")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        from synthmed.audit.attacks import ATTACKS, IdentityAttack

        unknown = [n for n in names if n not in ATTACKS]
        if unknown:
            listable = sorted(n for n, c in ATTACKS.items() if not issubclass(c, IdentityAttack))
            raise ValueError(f"unknown attack {unknown[0]!r}; known: {', '.join(listable)} (and the "
                             f"identity attack, turned on by the identity section)")
        return names

    @model_validator(mode="after")
    def _order(self) -> "AttackRules":
        if self.auc_evidence_above >= self.max_auc:
            raise ValueError("auc_evidence_above must be below max_auc")
        if self.rule_out_auc is not None and not (self.auc_evidence_above < self.rule_out_auc <= self.max_auc):
            raise ValueError("rule_out_auc must be above auc_evidence_above and at most max_auc (an "
                             "estimate at max_auc already fails)")
        return self

    @property
    def leak_auc(self) -> float:
        """The AUC a pass must rule out (rule_out_auc, or max_auc when not set)."""
        return float(self.rule_out_auc if self.rule_out_auc is not None else self.max_auc)


class MemorisationRules(StrictConfig):
    """Copies and near-copies of training images."""

    quantile: float = Field(0.001, gt=0.0, lt=0.5,
                            description="flag a synthetic image closer to train than this quantile "
                                        "of real-to-train distances")
    max_hard_copies: int = Field(0, ge=0, description="synthetic images that are copies of a training image")
    hard_copy_bound: float | None = Field(
        None, ge=0.0, description="pixel RMS distance below which an image is a copy (None: core default)")
    aligned: bool = Field(True, description="also search for flipped / rotated / shifted / cropped copies "
                                            "(memorisation.copy_search: image registration)")
    aligned_max_images: int = Field(
        1000, ge=1, description="register at most this many synthetic images (those nearest to train "
                                "before alignment) and this many holdout images (a random sample) "
                                "to calibrate: registration costs ~40 ms per image on a CPU")


class IdentityRules(IdentitySettings):
    """Re-identification of patients (synthmed.audit.reid, attacks/identity.py): the network, and
    how far its evidence goes. Off unless a profile turns it on (the shipped profiles do), so a
    profile written before it keeps its meaning and its hash."""

    enabled: bool = Field(False, description="run the identity attack (the shipped profiles turn it on)")
    fallback_can_pass: bool = Field(
        False, description="when no re-identification network can be trained (no patient with two "
                           "images) the attack falls back to the augmentation-invariant encoder; "
                           "may a pass found that way count? (false: it is reported as not evaluated)")
    link_tails: list[float] = Field(
        default_factory=lambda: [0.01, 0.02, 0.05, 0.1, 0.2], min_length=1, max_length=8,
        description="the link-excess rule looks at these top shares of the pooled training + holdout "
                    "patients, ranked by their best link to a synthetic image (synthmed.audit.linktest)")
    rule_out_share: float = Field(
        0.1, gt=0.0, le=1.0,
        description="the smallest share of training patients whose identity leaks (each as "
                    "recognisable as a second real image of them) that a pass must rule out")
    min_power: float = Field(0.8, gt=0.0, lt=1.0,
                             description="a pass needs the link-excess rule to catch that leak with at "
                                         "least this probability; below it the rule is inconclusive")

    @field_validator("link_tails")
    @classmethod
    def _shares(cls, tails: list[float]) -> list[float]:
        if any(not 0.0 < t < 1.0 for t in tails) or sorted(set(tails)) != list(tails):
            raise ValueError("link_tails must be increasing shares in (0, 1)")
        return tails

    def network_settings(self) -> dict:
        """The re-identification network's own settings (what reid.json records)."""
        return self.model_dump(exclude={"fallback_can_pass", "link_tails", "rule_out_share", "min_power"})


class Sizes(StrictConfig):
    """The smallest splits an audit will run on (fewer gives intervals too wide to mean anything)."""

    min_train_patients: int = Field(20, ge=2)
    min_holdout_patients: int = Field(20, ge=2)
    min_synthetic_images: int = Field(20, ge=2)
    min_reference_images: int = Field(
        20, ge=2, description="a smaller reference split is not enough to calibrate the attacks; "
                              "half of the holdout patients then join it")


class AuditProfile(StrictConfig):
    """A complete audit specification; `tier` names the release it certifies for."""

    name: str = "public"
    tier: Tier = "public"
    confidence: float = Field(0.95, gt=0.5, lt=1.0,
                              description="family-wise confidence of the decisions (Bonferroni)")
    n_bootstrap: int = Field(2000, ge=50)
    embedding: EmbeddingSettings = EmbeddingSettings()
    attacks: AttackRules = AttackRules()
    memorisation: MemorisationRules = MemorisationRules()
    sizes: Sizes = Sizes()
    identity: IdentityRules = IdentityRules()
    whitebox: WhiteboxSettings = Field(
        default_factory=WhiteboxSettings,
        description="white-box attacks, run when the audit is given the model (--model RUN)")
    gallery_pairs: int = Field(8, ge=0, le=64)

    def required_attacks(self) -> tuple[str, ...]:
        """Attacks this profile's tier requires whether or not the profile runs them: the public
        tier needs the re-identification attack (`identity.enabled`) besides the membership and
        copy rules; without its row the verdict cannot be `pass`."""
        from synthmed.audit.attacks import ATTACKS

        return tuple(a for a in TIER_REQUIRES.get(self.tier, ()) if a in ATTACKS)

    @staticmethod
    def requirement_of(attack: str) -> str:
        """The requirement an attack that ran satisfies (the identity attack's fallback, when a
        profile lets it count, is still the identity attack)."""
        from synthmed.audit.attacks import ATTACKS, IdentityAttack

        cls = ATTACKS.get(attack)
        return "identity" if cls is not None and issubclass(cls, IdentityAttack) else attack

    @model_serializer(mode="wrap")
    def _without_identity_when_off(self, handler):
        # An audit without the identity attack records (and hashes) the profile exactly as
        # before the section existed: its settings were not used, and the defaults say "off".
        data = handler(self)
        if isinstance(data, dict) and not self.identity.enabled:
            data.pop("identity", None)
        return data

    @model_validator(mode="after")
    def _identity_not_listed(self) -> "AuditProfile":
        from synthmed.audit.attacks import IdentityAttack, get_attack

        listed = [a for a in self.attacks.attacks if issubclass(get_attack(a), IdentityAttack)]
        if listed:
            raise ValueError(f"attacks.attacks: {listed[0]!r} is turned on by the identity section "
                             f"(identity.enabled: true), not listed with the attacks")
        return self

    def n_statistical_rules(self, n_attacks: int | None = None) -> int:
        """How many rules decide from an interval (the Bonferroni divisor)."""
        n = n_attacks if n_attacks is not None else (len(self.attacks.attacks) * len(self.attacks.spaces)
                                                     + int(self.identity.enabled))
        # AUC and TPR per attack, plus the memorisation rate, plus the identity attack's
        # link-excess test (synthmed.audit.linktest) when the profile has it. The DCR share (synthetic images
        # nearer to train than to holdout) is reported but not a rule: images cluster within
        # patients, so its binomial interval is too narrow and it failed a generator that never
        # saw the members on NIH (78.5 % vs a 69.2 % null, tests/test_audit_run.py).
        return 2 * n + 1 + int(self.identity.enabled)

    def decision_alpha(self, n_attacks: int | None = None) -> float:
        """Per-interval alpha so that all decisions together hold at `confidence`."""
        return (1.0 - self.confidence) / self.n_statistical_rules(n_attacks)


def load_profile(profile: "AuditProfile | str | Path | None") -> AuditProfile:
    """An AuditProfile from a profile object, a YAML path, or None (the public defaults)."""
    if isinstance(profile, AuditProfile):
        return profile
    return load_config(profile, AuditProfile)


__all__ = ["AuditProfile", "EmbeddingSettings", "AttackRules", "IdentityRules", "MemorisationRules", "Sizes",
           "load_profile"]
