"""The white-box attacks on the audit's attack interface (`synthmed.audit.attacks`).

Each is an `Attack` with `needs = {"model"}` and its own space, "model" (the denoiser's input
space: pixels, or the run's latent space), so it runs once, and only when the audit is given the
model (`synthmed audit ... --model RUN`). It scores every candidate image (train, then holdout);
the runner aggregates the scores per patient and puts them through the same statistics and rules
as every other attack. Images are encoded once per audit and shared by the four attacks.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from synthmed.audit.attacks.base import NO_REFERENCE, Attack, AttackContext, AttackScores, register_attack

NO_MODEL = "no model was given (synthmed audit ... --model RUN)"


def scored_subset(patients: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """Indices (sorted) of the images the white-box attacks score: every image, or at most `cap`
    of each patient, chosen from (seed, the patient's images) alone, so a patient's choice does
    not depend on who else is audited."""
    patients = np.asarray(patients)
    if cap is None:
        return np.arange(patients.size)
    import hashlib

    uniq, inv = np.unique(patients, return_inverse=True)
    keep = []
    for k in range(uniq.size):
        rows = np.nonzero(inv == k)[0]
        if rows.size > cap:
            key = int.from_bytes(hashlib.sha256(str(uniq[k]).encode()).digest()[:8], "little")
            rows = np.sort(np.random.default_rng([int(seed), 29, key]).permutation(rows)[:cap])
        keep.append(rows)
    return np.sort(np.concatenate(keep)) if keep else np.arange(0)


def expand_to_all(sub_scores: np.ndarray, subset: np.ndarray, patients: np.ndarray, how: str) -> np.ndarray:
    """Per-image scores for every candidate from those of the scored subset: an unscored image
    takes its patient's aggregate (max or mean) over the scored ones, so the patient-level score
    the audit computes is exactly that of the scored images."""
    from synthmed.audit.attacks.measure import aggregate_by_patient

    patients = np.asarray(patients)
    if subset.size == patients.size:
        return np.asarray(sub_scores, dtype=np.float64)
    ids, agg = aggregate_by_patient(sub_scores, patients[subset], how=how)
    full = agg[np.searchsorted(ids, patients)]
    full[subset] = sub_scores
    return full


def _prepared(ctx: AttackContext) -> dict[str, Any]:
    """Target, candidate and reference images in the model's space, with their conditions,
    computed once per audit (kept in ctx.extra)."""
    if "whitebox" in ctx.extra:
        return ctx.extra["whitebox"]
    from synthmed.audit.whitebox.target import ModelTarget

    settings = ctx.profile.whitebox
    target = ctx.model if isinstance(ctx.model, ModelTarget) else ModelTarget(ctx.model)
    conds = ctx.inputs.extra.get("conditions") or {}
    use = settings.conditions == "given" and bool(conds)

    def cond_of(rows: np.ndarray, *roles: str):
        if not use:
            return target.conditions(rows.size)
        parts = [conds[r] for r in roles]
        return target.conditions(rows.size, *(np.concatenate([p[i] for p in parts])[rows] for i in range(3)))

    inp = ctx.inputs
    patients = ctx.candidate_patients
    subset = scored_subset(patients, settings.max_images_per_patient, ctx.seed)
    cand = np.concatenate([inp.train, inp.holdout])[subset]
    n_ref = len(inp.reference)
    ref_rows = (np.arange(n_ref) if settings.max_reference_images is None or n_ref <= settings.max_reference_images
                else np.sort(np.random.default_rng([int(ctx.seed), 31]).permutation(n_ref)[:settings.max_reference_images]))
    prepared = {
        "target": target,
        "x0": target.encode(cand, settings.batch_size),
        "cond": cond_of(subset, "train", "holdout"),
        "subset": subset,
        "patients": patients,
        "reference": ((target.encode(inp.reference[ref_rows], settings.batch_size), cond_of(ref_rows, "reference"))
                      if n_ref else None),
        "conditions": "each image's own labels, age and sex" if use else "the null condition",
        "n_reference": int(ref_rows.size),
    }
    ctx.extra["whitebox"] = prepared
    return prepared


class WhiteboxAttack(Attack):
    """A membership attack that queries the generator's denoiser (the model in hand)."""

    needs: ClassVar[frozenset[str]] = frozenset({"model"})
    fixed_space: ClassVar[str | None] = "model"
    # The denoiser saw the train patients and nobody else, so a score that sets members apart in
    # either direction is about membership. Measured: PIA on canaries copied 100 times has AUC
    # 0.02-0.38 (privacy_audits/canary-reference): the model knows them, and PIA's
    # consistency reads the wrong way round; one-sided, that counted as "no such leak".
    two_sided: ClassVar[bool] = True

    def unavailable(self, ctx: AttackContext) -> str | None:
        return NO_MODEL if ctx.model is None else None

    def score(self, ctx: AttackContext) -> AttackScores:
        from synthmed.audit.whitebox import modules

        p = _prepared(ctx)
        settings = ctx.profile.whitebox
        kw = {"reference": p["reference"]} if self.name == "secmi" else {}
        scores = modules()[self.name].scores(p["target"], p["x0"], p["cond"], settings, ctx.seed, **kw)
        q = settings.queries_per_image()[self.name]
        space = "latent" if p["target"].latent else "pixel"
        subset, patients = p["subset"], p["patients"]
        how = self.aggregate or ctx.profile.attacks.aggregate
        queries = "1 denoiser query" if q == 1 else f"{q} denoiser queries"
        note = (f"{queries} per image, in the model's {space} space, conditioned on "
                f"{p['conditions']}; {subset.size} of {patients.size} candidate images scored")
        if subset.size < patients.size:
            note += (f" (at most {settings.max_images_per_patient} per patient, a seeded choice; "
                     f"every one of the {np.unique(patients).size} patients scored)")
        if self.name == "secmi" and p["reference"] is not None and settings.secmi_direction == "two-sided":
            note += f"; centred on {p['n_reference']} reference images"
        return AttackScores(expand_to_all(scores, subset, patients, how), note=note)


@register_attack
class LossAttack(WhiteboxAttack):
    name = "loss"
    describe = ("holding the model, adding noise to a real image and asking the model to remove it "
                "(it removes noise from its own training images better)")


@register_attack
class PIAAttack(WhiteboxAttack):
    name = "pia"
    describe = ("holding the model, asking it which noise a real image holds, adding that noise back "
                "and checking that its answer stays the same (it does for its training images)")


@register_attack
class SecMIAttack(WhiteboxAttack):
    name = "secmi"
    describe = ("holding the model, running a real image a few steps into noise and one step back "
                "(the round trip behaves differently for its training images)")

    def unavailable(self, ctx: AttackContext) -> str | None:
        if ctx.model is None:
            return NO_MODEL
        if ctx.profile.whitebox.secmi_direction == "two-sided" and ctx.n_reference == 0:
            return NO_REFERENCE
        return None


@register_attack
class SimAAttack(WhiteboxAttack):
    name = "sima"
    describe = ("holding the model, asking it once how much noise a clean real image holds (it sees "
                "almost none in its own training images)")


WHITEBOX_ATTACKS = (LossAttack, PIAAttack, SecMIAttack, SimAAttack)


def load_target(run, dataset, allow_other_dataset: bool = False):
    """The model of `run` (a run folder) for the white-box attacks; refused when it was trained
    on another dataset than the audited one (its members would not be this dataset's train
    split), unless allowed."""
    from synthmed.data.dataset import check_trained_on
    from synthmed.models import load

    model = load(run)
    check_trained_on(dataset, str(model.info.get("dataset_fingerprint", "")), f"the model {run}",
                     allow_other_dataset)
    return model


def model_section(model, record) -> dict[str, Any]:
    """audit.json's `model` section: which model was attacked, and for a DP model its theoretical
    epsilon beside the empirical lower bound of every attack (at the model's delta)."""
    from synthmed.audit.stats import empirical_epsilon

    dp = model.info.get("dp")
    section: dict[str, Any] = {
        "model_sha256": model.model_hash, "trained_steps": model.info.get("trained_steps"),
        "latent": bool(model.info.get("latent", {}).get("enabled")),
        "whitebox_attacks": [a["attack"] for a in record.attacks if a.get("space") == "model"],
        "differential_privacy": None,
    }
    if dp is None:
        section["differential_privacy_note"] = "trained without differential privacy: no theoretical bound"
        return section
    delta = float(dp["delta"])
    lower, strongest = 0.0, None
    for a in record.attacks:
        for rate in a.get("tpr_at_fpr", {}).values():
            e = empirical_epsilon(rate["tpr_ci"][0], rate["fpr_ci"][1], delta)
            if e > lower or (strongest is None and e == lower):
                lower, strongest = e, f"{a['attack']}/{a['space']} at {rate['target_fpr']:g} FPR"
    section["differential_privacy"] = {
        "theoretical_epsilon": dp["epsilon"], "delta": delta, "unit": dp.get("unit", "patient"),
        "empirical_epsilon_lower_bound": lower if np.isfinite(lower) else None,
        "strongest_attack": strongest,
        "consistent": bool(lower <= dp["epsilon"]),
        "note": ("empirical lower bound: from each attack's TPR lower bound and FPR upper bound at "
                 "the model's delta (Kairouz et al. 2015); it must not exceed the theoretical "
                 "epsilon, and an audit this size can only show a much smaller one"),
    }
    return section
