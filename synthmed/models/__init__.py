"""Conditional 2D/3D diffusion models: `TrainConfig`, `train`, `load`, `DiffusionModel`.

Imports of torch / MONAI / diffusers happen on first use, so `synthmed --help` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synthmed.models.config import TrainConfig

if TYPE_CHECKING:
    from synthmed.generate.pipeline import DiffusionModel, load
    from synthmed.models.trainer import run_training, train

__all__ = ["TrainConfig", "train", "run_training", "load", "DiffusionModel"]


def __getattr__(name: str) -> Any:
    if name in ("train", "run_training"):
        from synthmed.models import trainer

        return getattr(trainer, name)
    if name in ("load", "DiffusionModel"):
        # The public entry points of a trained model; the object that samples is the pipeline
        # in synthmed.generate (models/ itself holds networks, configs and schedulers only).
        from synthmed.generate import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
