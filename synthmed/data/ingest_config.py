"""What `synthmed ingest` makes of its inputs: output geometry, normalisation, split, de-id options.

Loaded with `synthmed.config.load_config(path, IngestConfig)`; every field has a default so
`IngestConfig()` is a working 2D 64x64 radiograph setup.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from synthmed.config import StrictConfig

# Window presets as (low, high) HU. Lung: width 1500, level -600. Soft tissue: width 400, level 40.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "default": (-1000.0, 1000.0),
    "lung": (-1350.0, 150.0),
    "soft_tissue": (-160.0, 240.0),
}


class NormalisationConfig(StrictConfig):
    """How intensities become [0, 1], by modality (CT in HU, MR and radiographs per image)."""

    ct_preset: Literal["default", "lung", "soft_tissue"] = "default"
    ct_window: tuple[float, float] | None = Field(
        default=None, description="explicit (low, high) HU window; overrides ct_preset")
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    radiograph_percentiles: tuple[float, float] = (0.5, 99.5)

    @model_validator(mode="after")
    def _check(self) -> "NormalisationConfig":
        if self.ct_window is not None and not self.ct_window[0] < self.ct_window[1]:
            raise ValueError(f"ct_window low must be below high (got {list(self.ct_window)})")
        for name in ("mr_percentiles", "radiograph_percentiles"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo < hi <= 100.0:
                raise ValueError(f"{name} must satisfy 0 <= low < high <= 100 (got {[lo, hi]})")
        return self

    def ct_range(self) -> tuple[float, float]:
        return tuple(self.ct_window) if self.ct_window is not None else CT_PRESETS[self.ct_preset]

    def describe(self) -> dict:
        lo, hi = self.ct_range()
        return {
            "CT": {"method": "window", "hu_window": [lo, hi], "preset": None if self.ct_window
                   else self.ct_preset},
            "MR": {"method": "percentiles per volume", "percentiles": list(self.mr_percentiles)},
            "radiograph": {"method": "percentiles per image",
                           "percentiles": list(self.radiograph_percentiles)},
            "range": [0.0, 1.0],
        }


class SplitConfig(StrictConfig):
    """Patient-level split: train / holdout (members vs non-members in the audit) / reference."""

    holdout_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    reference_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    seed: int = 0
    stratify: bool = True

    @model_validator(mode="after")
    def _check(self) -> "SplitConfig":
        if self.holdout_fraction + self.reference_fraction >= 1.0:
            raise ValueError("holdout_fraction + reference_fraction must leave patients for training "
                             f"(got {self.holdout_fraction} + {self.reference_fraction})")
        return self


class DeidConfig(StrictConfig):
    """Options handed to the DICOM reader (see synthmed.io.dicom.load_series)."""

    allow_burned_in: bool = False
    allowed_modalities: list[str] | None = Field(
        default=None, description="modalities refused by default (US, SC, OT) to accept anyway")


class MetadataColumns(StrictConfig):
    """Column names of a metadata CSV when it is neither NIH nor canonical format."""

    file: str
    patient_id: str | None = None
    labels: str | None = None
    age: str | None = None
    sex: str | None = None
    label_separator: str = "|"
    no_finding: str = "No Finding"


class IngestConfig(StrictConfig):
    """Everything ingestion decides; the defaults suit 64x64 chest radiographs."""

    spatial_dims: Literal[2, 3] = 2
    shape: tuple[int, ...] = (64, 64)
    spacing: tuple[float, ...] | None = Field(
        default=None, description="resample to this spacing (mm, same order as shape) first")
    fit: Literal["resize", "pad_crop"] = Field(
        default="resize", description="resize: interpolate to shape; pad_crop: centre pad/crop")
    slices: Literal["all", "middle", "non_empty"] = Field(
        default="non_empty", description="how 3D volumes become 2D images when spatial_dims is 2")
    non_empty_fraction: float = Field(
        default=0.05, ge=0.0, le=1.0,
        description="a slice is non-empty when this share of its pixels is above 0.1 after normalisation")
    normalisation: NormalisationConfig = NormalisationConfig()
    split: SplitConfig = SplitConfig()
    deid: DeidConfig = DeidConfig()
    metadata_columns: MetadataColumns | None = None
    nifti_modality: str = Field(default="MR", description="NIfTI has no modality tag: CT or MR")
    raster_modality: str = Field(default="DX", description="modality recorded for PNG/JPEG/NPZ")
    filename_patient_pattern: str | None = Field(
        default=None, description="regex with one group taking the patient ID from a file stem "
                                  "(e.g. '^(\\d+)_\\d+$' for NIH); default: each file its own patient")
    patient_from: list[Literal["metadata", "dicom", "filename", "folder"]] = Field(
        default_factory=lambda: ["metadata", "dicom", "filename", "folder"],
        description="where an image's patient comes from, an ordered preference (one name or a "
                    "list): the first rule that names a patient wins; a file no rule names is "
                    "its own patient, and the report says how many. metadata: the CSV row's "
                    "patient ID; dicom: the DICOM header (always used for DICOM without a "
                    "metadata patient: a header patient is never merged by folder); filename: "
                    "filename_patient_pattern; folder: the patient folder, the first folder "
                    "level under the source where files part ways (a folder holding one DICOM "
                    "patient gives its other files that patient; one holding several refuses them)")
    exclude: list[str] = Field(default_factory=list,
                               description="glob patterns of relative paths to leave out")
    workers: int | None = Field(default=None, ge=1)

    @field_validator("patient_from", mode="before")
    @classmethod
    def _one_rule(cls, value):
        return [value] if isinstance(value, str) else value

    def patient_rules(self) -> list[str]:
        """`patient_from`, with 'dicom' in place for DICOM files (see the field)."""
        return list(self.patient_from)

    @model_validator(mode="after")
    def _check(self) -> "IngestConfig":
        if len(self.shape) != self.spatial_dims:
            raise ValueError(f"shape {list(self.shape)} must have {self.spatial_dims} entries "
                             f"(spatial_dims is {self.spatial_dims})")
        if any(s < 1 for s in self.shape):
            raise ValueError(f"shape entries must be positive (got {list(self.shape)})")
        if self.spacing is not None and (len(self.spacing) != self.spatial_dims
                                         or any(s <= 0 for s in self.spacing)):
            raise ValueError(f"spacing must have {self.spatial_dims} positive entries "
                             f"(got {list(self.spacing)})")
        for name in ("nifti_modality", "raster_modality"):
            if not getattr(self, name).isupper():
                raise ValueError(f"{name} must be a DICOM modality code such as CT, MR, DX")
        if len(set(self.patient_from)) != len(self.patient_from):
            raise ValueError(f"patient_from lists a rule twice (got {list(self.patient_from)})")
        if self.filename_patient_pattern is not None:
            import re
            try:
                if re.compile(self.filename_patient_pattern).groups != 1:
                    raise ValueError
            except (re.error, ValueError):
                raise ValueError("filename_patient_pattern must be a regex with exactly one group") from None
        return self
