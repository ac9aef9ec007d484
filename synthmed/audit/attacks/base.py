"""The attack interface: one small class per membership attack, found through one registry.

An attack states what it needs (`needs`: "synthetic", "reference", later "model" or
"identity_network") and turns an `AttackContext` (the audit's images, their vectors in each
space, the profile, the seed, optional model or identity network) into `AttackScores`: one member
score per real candidate image (train images first, then holdout images; higher = more likely a
member). The runner puts every attack through the same statistics (`attacks.measure`) and rules,
so an attack never decides anything itself.

Attacks that work in a vector space (`fixed_space = None`: DCR, DOMIAS, neighbourhood counting)
are run once per space the profile lists; attacks with their own space (`fixed_space = "..."`,
e.g. a re-identification network's embedding or the generator's weights) once.

The registry (`ATTACKS`, `register_attack`, `get_attack`) is what profile.py validates attack
names against and what verdict.py takes an attack's plain-words description from, so a new
attack is one class and one decorator, with no name repeated elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from synthmed.audit.inputs import Inputs
    from synthmed.audit.profile import AuditProfile

NO_REFERENCE = "no real non-member images to calibrate it on (no reference split or holdout half)"


class AttackCannotRun(Exception):
    """Raised by `Attack.score` when the data at hand cannot support the attack (a singular
    density, too few points): the attack is then reported as not evaluated, with this reason."""


@dataclass
class AttackContext:
    """Everything an attack may use, built once by the runner.

    spaces: space name -> {"train", "holdout", "reference", "synthetic"} -> vectors (n, d).
    """

    inputs: "Inputs"
    profile: "AuditProfile"
    seed: int
    spaces: dict[str, dict[str, np.ndarray | None]] = field(default_factory=dict)
    model: Any = None
    identity_network: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def candidate_patients(self) -> np.ndarray:
        """Patient id of each candidate image: the train images', then the holdout images'."""
        return np.concatenate([self.inputs.train_patients, self.inputs.holdout_patients])

    @property
    def member_patients(self) -> set[str]:
        return set(map(str, self.inputs.train_patients.tolist()))

    @property
    def n_reference(self) -> int:
        return int(len(self.inputs.reference))

    @property
    def n_synthetic(self) -> int:
        return int(len(self.inputs.synthetic))


@dataclass
class AttackScores:
    """Member scores per candidate image (train then holdout; higher = more likely a member), a
    note for the record (e.g. a setting the attack adapted), and optional per-image data for the
    report (never written to audit.json unless the attack's `record_extra` says so)."""

    scores: np.ndarray
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # why a PASSING result of this attack cannot count (e.g. an identity network that cannot tell
    # patients apart): its rules are then reported as not evaluated; a failing result still fails
    cannot_pass: str = ""


class Attack:
    """One membership attack. Subclasses set `name`, `describe`, `needs` and implement `score`."""

    name: ClassVar[str] = ""
    # plain words for the rule explanations: "An attacker <describe> (... space) tells ..."
    describe: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset({"synthetic"})
    # None: run in every space the profile lists; a name: the attack's own space, run once
    fixed_space: ClassVar[str | None] = None
    # how a patient's image scores combine (None: the profile's attacks.aggregate)
    aggregate: ClassVar[str | None] = None
    # also judged by the link-excess test (synthmed.audit.linktest): members crowding the top of
    # the ranking, the signature of a leak of a FEW patients (the identity attack's)
    tail_test: ClassVar[bool] = False
    # an AUC far BELOW 0.5 is also membership evidence (synthmed.audit.verdict.auc_rule). Not for
    # the attacks on synthetic images: their scores compare real patients with the synthetic set,
    # and one can sit far below 0.5 with no training patient involved (the holdout's own images
    # released as synthetic: DCR AUC 0.00, privacy_audits/nih-cxr14-reference)
    two_sided: ClassVar[bool] = False

    def __init__(self, space: str | None = None):
        self.space = space if self.fixed_space is None else self.fixed_space
        if self.space is None:
            raise ValueError(f"attack {self.name!r} works in a vector space: give one")

    @property
    def label(self) -> str:
        return f"{self.name}/{self.space}"

    def unavailable(self, ctx: AttackContext) -> str | None:
        """Why the attack cannot run on this context (it is then not evaluated), or None."""
        if "reference" in self.needs and ctx.n_reference == 0:
            return NO_REFERENCE
        return None

    def score(self, ctx: AttackContext) -> AttackScores:  # pragma: no cover - interface
        raise NotImplementedError


class VectorAttack(Attack):
    """An attack on vectors: `vector_scores(candidates, synthetic, reference, seed, **settings)`,
    with `settings(n_reference, n_synthetic)` adapting it to the calibration sizes at hand."""

    @classmethod
    def settings(cls, n_reference: int, n_synthetic: int) -> tuple[dict[str, Any] | None, str]:
        """(keyword arguments for `vector_scores`, note), or (None, why) when it cannot run."""
        if "reference" in cls.needs and n_reference == 0:
            return None, NO_REFERENCE
        return {}, ""

    @classmethod
    def vector_scores(cls, candidates: np.ndarray, synthetic: np.ndarray, reference: np.ndarray | None,
                      seed: int = 0, **settings) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def unavailable(self, ctx: AttackContext) -> str | None:
        settings, note = self.settings(ctx.n_reference, ctx.n_synthetic)
        return note if settings is None else None

    def score(self, ctx: AttackContext) -> AttackScores:
        settings, note = self.settings(ctx.n_reference, ctx.n_synthetic)
        if settings is None:
            raise AttackCannotRun(note)
        v = ctx.spaces[self.space]
        cand = np.concatenate([v["train"], v["holdout"]])
        scores = self.vector_scores(cand, v["synthetic"], v["reference"], ctx.seed, **settings)
        return AttackScores(np.asarray(scores, dtype=np.float64), note=note)


ATTACKS: dict[str, type[Attack]] = {}


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator: make `cls` available to profiles under `cls.name`."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if ATTACKS.get(cls.name, cls) is not cls:
        raise ValueError(f"an attack named {cls.name!r} is already registered ({ATTACKS[cls.name].__qualname__})")
    ATTACKS[cls.name] = cls
    return cls


def get_attack(name: str) -> type[Attack]:
    try:
        return ATTACKS[name]
    except KeyError:
        raise KeyError(f"unknown attack {name!r}; known: {', '.join(sorted(ATTACKS))}") from None


def attack_names() -> tuple[str, ...]:
    return tuple(ATTACKS)


def describe(name: str) -> str:
    """The plain-words description of a registered attack (its name when it is not registered)."""
    cls = ATTACKS.get(name)
    return cls.describe if cls is not None and cls.describe else name


__all__ = ["ATTACKS", "Attack", "AttackCannotRun", "AttackContext", "AttackScores", "VectorAttack",
           "attack_names", "describe", "get_attack", "register_attack", "NO_REFERENCE"]
