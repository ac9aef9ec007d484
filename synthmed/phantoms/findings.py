"""Findings a phantom can show; their names become the labels in metadata.csv."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FINDINGS = ("Cardiomegaly", "Effusion", "Nodule")  # the NIH ChestX-ray14 spellings


@dataclass(frozen=True)
class Findings:
    """What one study shows, for either kind of phantom.

    Cardiomegaly and a nodule persist across a patient's studies; an effusion comes and goes.
    """

    cardiomegaly: bool = False
    effusion: tuple[tuple[int, float], ...] = ()   # (side, fluid height) per affected side
    # canonical position: cxr (x, y, radius), ct3d (x, y, z)
    nodule: tuple[float, float, float] | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        names = []
        if self.cardiomegaly:
            names.append("Cardiomegaly")
        if self.effusion:
            names.append("Effusion")
        if self.nodule is not None:
            names.append("Nodule")
        return tuple(names)


def sample_effusion(rng: np.random.Generator) -> tuple[tuple[int, float], ...]:
    """Right (-1), left (+1) or both sides, each with a fluid height in canonical units."""
    r = rng.random()
    sides = (-1,) if r < 0.4 else (1,) if r < 0.8 else (-1, 1)
    return tuple((s, float(rng.uniform(0.07, 0.2))) for s in sides)
