"""Re-identification as a membership attack: do synthetic images show the training PATIENTS?

The other attacks ask whether a synthetic image is (near) a training IMAGE. A generator trained on
several images per patient can learn a person's anatomy and draw new images of them: each is new,
yet it is that patient. This attack embeds every real image and every synthetic image with a
patient re-identification network (synthmed.audit.reid: trained on same-patient pairs of the train
split, or local weights trained elsewhere), and scores each real image by its best cosine
similarity to any synthetic image. A patient's score is their best-linked image (max), so a
training patient scores high when ANY synthetic image looks like ANY of their images as a person.
Holdout patients get the same score: how strongly an unrelated person links to the cohort by
chance. The runner then measures it like every other attack (AUC by patient, TPR at low FPR,
epsilon), and the AUC / TPR rules fail when synthetic images link to training patients more than
to holdout patients.

An identity network that cannot tell patients apart would link nobody and pass everything, so
its verification AUC on held-out patients gates the rules (`IdentitySpace.cannot_pass`): when it
is below the profile's `identity.min_verification_auc` or cannot be measured, a passing result is
reported as not evaluated (never as a pass); a failing one still fails (a link shown against the
holdout calibration is evidence whatever the network's quality).

A dataset without repeat images per patient cannot train the network: the audit then falls back
to the augmentation-invariant encoder (`FallbackIdentityAttack`, audit/embeddings.py), says so,
and the profile's `identity.fallback_can_pass` decides whether its pass counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from synthmed.audit.attacks.base import Attack, AttackContext, AttackScores, register_attack

NO_NETWORK = "no identity network (the profile's identity section is off)"


@dataclass
class IdentitySpace:
    """The embedding the identity attack works in, and how far its evidence can be trusted."""

    embedder: Any                      # .embed(images) -> (n, d)
    source: str                        # where it came from, in words
    fallback: bool                     # the augmentation-invariant encoder, not a re-id network
    verification: dict[str, Any]       # auc, ci, estimable, n_patients, n_pairs, note, measured_on
    cannot_pass: str = ""              # why a passing result cannot count ("" when it can)
    network: dict[str, Any] = field(default_factory=dict)  # the network's own record (no ids)

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "fallback": self.fallback, "verification": self.verification,
                "evaluated": not self.cannot_pass, "not_evaluated_reason": self.cannot_pass,
                "network": self.network}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def links(embedder, real: np.ndarray, real_patients: np.ndarray, synthetic: np.ndarray):
    """`reid.best_links` in `embedder`'s space (any embedder: vectors are made unit length first)."""
    from synthmed.audit.reid import best_links

    return best_links(embedder, real, real_patients, synthetic,
                      real_embeddings=_unit(embedder.embed(real)), synthetic_embeddings=_unit(embedder.embed(synthetic)))


@register_attack
class IdentityAttack(Attack):
    name = "identity"
    describe = ("matching each real patient's images to the synthetic images with a patient "
                "re-identification network")
    needs = frozenset({"synthetic", "identity_network"})
    fixed_space = "reid"
    aggregate: ClassVar[str] = "max"  # a patient is linked when ANY of their images is
    tail_test: ClassVar[bool] = True

    def unavailable(self, ctx: AttackContext) -> str | None:
        space = ctx.identity_network
        if space is None:
            return NO_NETWORK
        return (space.cannot_pass or NO_NETWORK) if space.embedder is None else None

    def score(self, ctx: AttackContext) -> AttackScores:
        space: IdentitySpace = ctx.identity_network
        real = np.concatenate([ctx.inputs.train, ctx.inputs.holdout])
        found = links(space.embedder, real, ctx.candidate_patients, ctx.inputs.synthetic)
        # per image: its best similarity to any synthetic image (the patient's score is the max);
        # the genuine-pair similarities of the network's verification give the tail test its power
        genuine = None if space.fallback else (space.verification or {}).get("genuine_quantiles")
        return AttackScores(found.image_score, extra={"links": found, "genuine_quantiles": genuine},
                            cannot_pass=space.cannot_pass)


@register_attack
class FallbackIdentityAttack(IdentityAttack):
    name = "identity_fallback"
    describe = ("matching each real patient's images to the synthetic images with the "
                "augmentation-invariant encoder (no re-identification network: the dataset has no "
                "patient with two images to train one on)")
    fixed_space = "encoder"


def identity_attack_for(space: IdentitySpace | None) -> type[IdentityAttack]:
    return FallbackIdentityAttack if space is not None and space.fallback else IdentityAttack


# ------------------------------------------------------------------------ building the space
def patients_with_repeats(patients: np.ndarray) -> int:
    _, counts = np.unique(np.asarray(patients).astype(str), return_counts=True)
    return int(np.sum(counts >= 2))


def _verification_dict(v: Any, measured_on: str) -> dict[str, Any]:
    get = (lambda k, d=None: v.get(k, d)) if isinstance(v, dict) else (lambda k, d=None: getattr(v, k, d))
    auc = get("auc")
    ci = get("ci") or (None, None)
    return {"auc": None if auc is None or not np.isfinite(auc) else float(auc),
            "ci": [None if c is None or not np.isfinite(c) else float(c) for c in ci],
            "estimable": bool(get("estimable", False)), "n_patients": int(get("n_patients", 0) or 0),
            "n_pairs": int(get("n_pairs", 0) or 0), "note": str(get("note", "") or ""),
            "measured_on": measured_on,
            "genuine_quantiles": [float(q) for q in (get("genuine_quantiles") or ()) if q is not None]}


def prepare_identity(inputs, profile, seed: int, weights=None, encoder=None, make_encoder=None,
                     on_step=None) -> IdentitySpace:
    """The identity attack's embedding for this audit, with its verification and its gate.

    weights: a local folder (reid.safetensors + reid.json) trained elsewhere (`synthmed identity
    train`); else the network is trained here on same-patient pairs of the TRAIN split; with too
    few repeat patients there, the augmentation-invariant `encoder` (the audit's) is the fallback.
    Verification uses the non-member images (holdout and reference), never a training patient."""
    from synthmed.audit import reid

    ident = profile.identity
    alpha = 1.0 - profile.confidence
    fallback, network = False, {}
    weights = weights if weights is not None else ident.weights
    n_rep = patients_with_repeats(inputs.train_patients)
    net, why_not = None, ""
    if weights is None and n_rep >= ident.min_patients_with_repeats:
        # a share of the repeat patients is kept out of training to verify it (reid.fit_identity_network)
        from synthmed.errors import InputError

        settings = reid.IdentitySettings(**ident.network_settings())
        try:
            net = reid.fit_identity_network(inputs.train, inputs.train_patients, settings, seed, on_step=on_step)
        except InputError as err:  # too few left to train on once the validation patients are out
            why_not = f"; training one failed: {err}"
    if weights is not None:
        net = reid.load_reid_network(weights)
        source = "local weights (trained elsewhere; loaded with --identity-network or identity.weights)"
    elif net is not None:
        source = (f"trained by this audit on same-patient pairs of the train split ({n_rep} patients "
                  f"with repeat images, {int(round(ident.validation_fraction * 100))} % of them kept out to verify it)")
    else:
        net = encoder if encoder is not None else (make_encoder() if make_encoder is not None else None)
        fallback = True
        source = (f"fallback: the augmentation-invariant encoder (the train split has {n_rep} patients with "
                  f"repeat images, fewer than identity.min_patients_with_repeats = "
                  f"{ident.min_patients_with_repeats}, so no re-identification network could be trained)"
                  if not why_not else
                  f"fallback: the augmentation-invariant encoder (no re-identification network{why_not})")
    if net is None:
        return IdentitySpace(None, source, True, _verification_dict({}, "nothing"),
                             "no re-identification network could be trained and the audit has no encoder "
                             "to fall back on (embedding.steps is 0)")
    if not fallback:
        network = dict(net.record())
    want = tuple(inputs.train.shape[1:])
    shape = getattr(net, "shape", None) or network.get("input_shape")
    if shape is not None and tuple(shape) != want:
        from synthmed.errors import InputError

        raise InputError(f"{weights}: the identity network was made for {'x'.join(map(str, shape))} images "
                         f"but the dataset's are {'x'.join(map(str, want))}")

    # verification on patients the network never saw: the audit's non-members
    ref_p = inputs.reference_patients if inputs.reference_patients is not None else np.array([], dtype=str)
    images = np.concatenate([inputs.holdout, inputs.reference]) if len(ref_p) == len(inputs.reference) else inputs.holdout
    pids = np.concatenate([inputs.holdout_patients, ref_p]) if len(ref_p) == len(inputs.reference) else inputs.holdout_patients
    ver = _verification_dict(reid.verify_network(net, images, pids, n_bootstrap=ident.n_bootstrap,
                                                 alpha=alpha, seed=seed,
                                                 min_patients=ident.min_validation_patients),
                             "the audit's non-member patients (holdout and reference) with repeat images")
    stored = network.get("verification") if isinstance(network.get("verification"), dict) else None
    if not ver["estimable"] and stored is not None:
        # a dataset with one image per patient cannot verify the network: the weights carry the
        # verification measured where they were trained, on patients held out from that training
        ver = _verification_dict(stored, ("held-out patients of the train split, kept out of the network's training"
                                          if weights is None else
                                          "held-out patients where the weights were trained (recorded with the weights)"))

    cannot = ""
    if fallback and not ident.fallback_can_pass:
        cannot = ("the identity attack ran on the augmentation-invariant encoder, not a re-identification "
                  "network, and this profile does not let that pass (identity.fallback_can_pass is false)")
    elif not ver["estimable"] or ver["ci"][0] is None:
        if not (fallback and ident.fallback_can_pass):
            why = ver["note"] or "no non-member patient with two images"
            cannot = (f"the identity network's verification AUC could not be measured ({why}), so it "
                      f"is not shown to tell patients apart")
    elif ver["ci"][0] < ident.min_verification_auc and not fallback:
        cannot = (f"the identity network tells patients apart with a verification AUC of {ver['auc']:.2f} "
                  f"(likely range {ver['ci'][0]:.2f} to {ver['ci'][1]:.2f}), not shown to reach "
                  f"identity.min_verification_auc = {ident.min_verification_auc:.2f}")
    return IdentitySpace(net, source, fallback, ver, cannot, network)


__all__ = ["FallbackIdentityAttack", "IdentityAttack", "IdentitySpace", "identity_attack_for", "links", "prepare_identity"]
