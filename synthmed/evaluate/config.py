"""`CohortEvalConfig`: every setting of a cohort evaluation, validated at the edge.

Shipped as `synthmed/configs/evaluate.yaml` (the default) and `evaluate-quick.yaml` (the demo's
`--quick`: the same read-outs on a smaller budget). Every number a reader compares across
cohorts (the encoder's training, the classifiers' budgets, the bootstrap sizes) is fixed here, so
two evaluations with one config are comparable and evaluation.json records the config it ran.

The encoder's settings are the audit's own (`synthmed.audit.profile.EmbeddingSettings`, same
defaults as audit-public.yaml): with the same seed the encoder trained here is the audit's, byte
for byte, so fidelity and privacy are read in one feature space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from synthmed.audit.profile import EmbeddingSettings
from synthmed.config import StrictConfig, load_config, resolve_config_path
from synthmed.evaluate.utility import UtilityConfig

CONFIG_KIND = "evaluate"
DEFAULT_NAME = "evaluate"


class FidelitySettings(StrictConfig):
    """Fréchet distance, precision / recall / density / coverage, MS-SSIM diversity, floors."""

    k: int = Field(5, ge=1, description="nearest neighbours for PRDC (Naeem et al. 2020)")
    n_pairs: int = Field(200, ge=10, description="random image pairs for MS-SSIM diversity")
    n_boot: int = Field(15, ge=2, description="resamples of the holdout patients for each floor")
    min_group: int = Field(20, ge=2, description="fewest images per side to score a condition")
    max_holdout_images: int = Field(1000, ge=8, description=(
        "holdout images the floors are measured on (whole patients, drawn with the seed); never "
        "more than the cohort has images, since a cohort is compared at the floor's size"))
    per_condition: bool = True


class ConditionSettings(StrictConfig):
    """Classifiers trained on real train images predict each cohort image's finding, sex, age group."""

    enabled: bool = True
    channels: tuple[int, ...] = Field((8, 16, 32, 32), min_length=1, description=(
        "LabelClassifier conv stage widths (half the default widths train ~2.7x faster on a CPU)"))
    epochs: int = Field(6, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(2e-3, gt=0)
    age_edges: list[float] = Field(default_factory=lambda: [40.0, 60.0], description=(
        "age group boundaries in years: [40, 60] gives <40, 40-60, >=60"))
    min_images: int = Field(20, ge=2, description="fewest images per class (real train, cohort)")
    n_boot: int = Field(200, ge=10, description="bootstrap resamples of cohort patients per interval")

    @field_validator("age_edges")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if not v or any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("give at least one boundary, strictly increasing")
        return v


class ReportSettings(StrictConfig):
    grid_columns: int = Field(8, ge=1, le=32, description="images per row in the sample grids")
    real_grids: bool = Field(True, description=(
        "show real images beside the synthetic grids (the page is then INTERNAL: it shows patients)"))


class CohortEvalConfig(StrictConfig):
    encoder: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    fidelity: FidelitySettings = Field(default_factory=FidelitySettings)
    conditions: ConditionSettings = Field(default_factory=ConditionSettings)
    # the utility classifier and its budget (synthmed.evaluate.utility); null: not measured. The
    # default budget is sized so that the demo's cohort is evaluated in about two minutes on a
    # loaded 2-core CPU (benchmarks/measure_evaluate_demo.py); raise `steps` for real data.
    utility: UtilityConfig | None = Field(default_factory=lambda: UtilityConfig(
        channels=(8, 16, 32, 32), steps=50, lr=5e-3))
    report: ReportSettings = Field(default_factory=ReportSettings)


def resolve_eval_config(config: Any = None, overrides: dict[str, Any] | None = None) -> CohortEvalConfig:
    """A CohortEvalConfig from an object, a path, a shipped name ("evaluate", "evaluate-quick")
    or None (the shipped default); `overrides` are merged into the file's data before validation."""
    if isinstance(config, CohortEvalConfig):
        if not overrides:
            return config
        from synthmed.config import _deep_merge, validate_config

        return validate_config(_deep_merge(config.model_dump(mode="json"), overrides),
                               CohortEvalConfig, "<config>")
    path = resolve_config_path(DEFAULT_NAME if config is None else config, CONFIG_KIND)
    return load_config(Path(path), CohortEvalConfig, overrides=overrides)


__all__ = ["CohortEvalConfig", "FidelitySettings", "ConditionSettings", "ReportSettings",
           "resolve_eval_config"]
