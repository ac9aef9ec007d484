"""White-box membership attacks: the audit with the model in hand.

The hospital owns the model, so its audit can query the denoiser directly. Each attack is a plain,
batched, seeded scoring function `scores(target, x0, conditions, settings, seed)` returning one
score per image (higher = more likely a member); `score_images` runs the ones the settings list.
The audit aggregates them per patient through the same statistics and rules as every other attack
(`synthmed.audit.whitebox.registry` plugs them into the attack registry).

Modules: `loss` (denoising error, Matsumoto et al. 2023 / Carlini et al. 2023), `pia` (Kong et
al. 2024), `secmi` (SecMI-stat, Duan et al. 2023), `sima` (single-query score norm, SimA manner).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from synthmed.audit.whitebox.settings import ALL_WHITEBOX, WhiteboxSettings


def modules() -> dict[str, ModuleType]:
    """{attack name: its module}; imported on first use (torch), so profiles load fast."""
    from synthmed.audit.whitebox import loss, pia, secmi, sima

    return {m.NAME: m for m in (loss, pia, secmi, sima)}


def score_images(model: Any, images: np.ndarray, settings: WhiteboxSettings | None = None, *,
                 seed: int = 0, labels: np.ndarray | None = None, ages: np.ndarray | None = None,
                 sexes: np.ndarray | None = None, attacks: list[str] | None = None,
                 reference: np.ndarray | None = None, reference_conditions: tuple | None = None,
                 ) -> dict[str, np.ndarray]:
    """{attack name: per-image scores} of `images` (float (n, *shape) in [0, 1]) against `model`
    (a `DiffusionModel`). labels / ages / sexes: the images' conditions (dataset rows), used when
    settings.conditions is "given"; otherwise, or when absent, the null condition. `reference`:
    real non-member images that are not among `images` (SecMI's two-sided score centres on them),
    with their (labels, ages, sexes) in `reference_conditions`."""
    from synthmed.audit.whitebox.target import ModelTarget

    settings = settings or WhiteboxSettings()
    target = model if isinstance(model, ModelTarget) else ModelTarget(model)

    def prepare(x, conds):
        cond = (target.conditions(len(x), *conds) if settings.conditions == "given" and conds
                and conds[0] is not None else target.conditions(len(x)))
        return target.encode(x, settings.batch_size), cond

    if (reference is not None and settings.conditions == "given" and labels is not None
            and (reference_conditions is None or reference_conditions[0] is None)):
        # SecMI centres on the reference's errors: both sides must be queried alike
        raise ValueError("score_images: candidates have conditions but the reference has none; "
                         "pass reference_conditions, or settings.conditions='null'")
    x0, cond = prepare(images, (labels, ages, sexes))
    ref = prepare(reference, reference_conditions) if reference is not None else None
    out = {}
    for name in attacks or settings.attacks:
        kw = {"reference": ref} if name == "secmi" else {}
        out[name] = modules()[name].scores(target, x0, cond, settings, seed, **kw)
    return out


__all__ = ["ALL_WHITEBOX", "WhiteboxSettings", "modules", "score_images"]
