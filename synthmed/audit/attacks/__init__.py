"""Membership-inference attacks on one interface (`base.Attack`), found through one registry.

`blackbox` holds the attacks that need only the synthetic images (DCR, DOMIAS, Monte-Carlo
neighbourhood); `identity` re-identification of patients (the profile's `identity` section turns
it on, not `attacks.attacks`); `measure` the statistics they all go through. Importing this package registers
every attack that ships with synthmed; a module adding an attack registers it with
`register_attack` and is imported here, so profiles can name it.
"""

from synthmed.audit.attacks.base import (ATTACKS, NO_REFERENCE, Attack, AttackCannotRun, AttackContext,
                                         AttackScores, VectorAttack, attack_names, describe, get_attack,
                                         register_attack)
from synthmed.audit.attacks.blackbox import (DCR, DOMIAS, DOMIAS_PCA_DIMS, MCNeighbourhood, dcr_scores,
                                             domias_scores, mc_neighbourhood_scores, median_heuristic_eps)
from synthmed.audit.attacks.identity import (FallbackIdentityAttack, IdentityAttack, IdentitySpace,
                                             identity_attack_for)
from synthmed.audit.attacks.measure import (AttackRun, aggregate_by_patient, measure_attack,
                                            split_calibration, summarise_attack)


def attack_settings(name: str, n_reference: int, n_synthetic: int):
    """(keyword arguments for `attack_scores`, note) for the calibration sizes at hand, or
    (None, why) when the attack cannot run on them: it is then reported as not evaluated."""
    cls = get_attack(name)
    if not issubclass(cls, VectorAttack):
        raise ValueError(f"attack {name!r} does not work on vectors")
    return cls.settings(n_reference, n_synthetic)


def attack_scores(name: str, candidates, synthetic, reference, seed: int = 0, **settings):
    """Per-image member scores of one vector attack, calibrated on `reference`: real non-members
    that are not among the candidates. `settings` from `attack_settings`."""
    cls = get_attack(name)
    if not issubclass(cls, VectorAttack):
        raise ValueError(f"attack {name!r} does not work on vectors")
    return cls.vector_scores(candidates, synthetic, reference, seed, **settings)


__all__ = ["ATTACKS", "Attack", "AttackCannotRun", "AttackContext", "AttackRun", "AttackScores", "DCR",
           "DOMIAS", "FallbackIdentityAttack", "IdentityAttack", "IdentitySpace", "identity_attack_for", "DOMIAS_PCA_DIMS", "MCNeighbourhood", "NO_REFERENCE", "VectorAttack",
           "aggregate_by_patient", "attack_names", "attack_scores", "attack_settings", "dcr_scores",
           "describe", "domias_scores", "get_attack", "mc_neighbourhood_scores", "measure_attack",
           "median_heuristic_eps", "register_attack", "split_calibration", "summarise_attack"]
