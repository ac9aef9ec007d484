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

    def cond_of(*roles: str):
        parts = [conds[r] for r in roles]
        n = sum(len(p[1]) for p in parts)
        if not use:
            return target.conditions(n)
        return target.conditions(n, *(np.concatenate([p[i] for p in parts]) for i in range(3)))

    inp = ctx.inputs
    cand = np.concatenate([inp.train, inp.holdout])
    prepared = {
        "target": target,
        "x0": target.encode(cand, settings.batch_size),
        "cond": cond_of("train", "holdout") if use else target.conditions(len(cand)),
        "reference": ((target.encode(inp.reference, settings.batch_size),
                       cond_of("reference") if use else target.conditions(len(inp.reference)))
                      if len(inp.reference) else None),
        "conditions": "each image's own labels, age and sex" if use else "the null condition",
    }
    ctx.extra["whitebox"] = prepared
    return prepared


class WhiteboxAttack(Attack):
    """A membership attack that queries the generator's denoiser (the model in hand)."""

    needs: ClassVar[frozenset[str]] = frozenset({"model"})
    fixed_space: ClassVar[str | None] = "model"

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
        return AttackScores(np.asarray(scores, dtype=np.float64),
                            note=f"{q} denoiser queries per image, in the model's {space} space, "
                                 f"conditioned on {p['conditions']}")


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
