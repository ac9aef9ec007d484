"""Conditional 2D/3D diffusion models: `TrainConfig`, `train`, `load`, `DiffusionModel`.

Imports of torch / MONAI / diffusers happen on first use, so `synthmed --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synthmed.models.config import TrainConfig

if TYPE_CHECKING:
    from synthmed.models.diffusion import DiffusionModel, load
    from synthmed.models.trainer import train

__all__ = ["TrainConfig", "train", "load", "DiffusionModel"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from synthmed.models.trainer import train

        return train
    if name in ("load", "DiffusionModel"):
        from synthmed.models import diffusion

        return getattr(diffusion, name)
    raise AttributeError(name)
