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

from synthmed.audit.whitebox import loss, pia, secmi, sima
from synthmed.audit.whitebox.settings import ALL_WHITEBOX, WhiteboxSettings
from synthmed.audit.whitebox.target import ModelTarget

WHITEBOX: dict[str, ModuleType] = {m.NAME: m for m in (loss, pia, secmi, sima)}


def score_images(model: Any, images: np.ndarray, settings: WhiteboxSettings | None = None, *,
                 seed: int = 0, labels: np.ndarray | None = None, ages: np.ndarray | None = None,
                 sexes: np.ndarray | None = None, attacks: list[str] | None = None) -> dict[str, np.ndarray]:
    """{attack name: per-image scores} of `images` (float (n, *shape) in [0, 1]) against `model`
    (a `DiffusionModel`). labels / ages / sexes: the images' conditions (dataset rows), used when
    settings.conditions is "given"; otherwise, or when absent, the null condition."""
    settings = settings or WhiteboxSettings()
    target = model if isinstance(model, ModelTarget) else ModelTarget(model)
    x0 = target.encode(images, settings.batch_size)
    if settings.conditions == "given" and labels is not None:
        cond = target.conditions(len(images), labels, ages, sexes)
    else:
        cond = target.conditions(len(images))
    return {name: WHITEBOX[name].scores(target, x0, cond, settings, seed)
            for name in (attacks or settings.attacks)}


__all__ = ["WHITEBOX", "ALL_WHITEBOX", "WhiteboxSettings", "ModelTarget", "score_images"]
