"""`generate_cohort`: the quick path (`synthmed sample`): population targets -> a one-study
cohort spec -> the same sampling, files and assembly as `synthmed generate` (generate/runner.py).

Every patient's conditions and noise come from (seed, patient index), so the same model +
arguments + seed give the same cohort, file for file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from synthmed.generate.patients import draw_conditions, quick_spec
from synthmed.generate.runner import GenerateResult, run_once


def generate_cohort(model, n: int, out: str | Path, *, label_rates: dict[str, float] | None = None,
                    age_range: tuple[float, float] | None = None, sex_ratio: float | None = None,
                    seed: int = 0, steps: int | None = None, sampler: str | None = None,
                    guidance_scale: float | None = None, batch_size: int = 64,
                    overwrite: bool = False, formats: Sequence[str] = ()) -> Path:
    """Sample `n` one-study virtual patients matching the targets and write them as a Cohort
    folder. Unset targets follow the training population (`match: training`); sampler / steps /
    guidance_scale: None means the model's own; cohort.json's `sampling` says what ran.
    `batch_size` patients are sampled together (and regenerate together byte for byte);
    `formats` (dicom, nifti, png) are written beside images.npy."""
    return sample_cohort(model, n, out, label_rates=label_rates, age_range=age_range,
                         sex_ratio=sex_ratio, seed=seed, steps=steps, sampler=sampler,
                         guidance_scale=guidance_scale, batch_size=batch_size,
                         overwrite=overwrite, formats=formats).out


def sample_cohort(model, n: int, out: str | Path, *, label_rates: dict[str, float] | None = None,
                  age_range: tuple[float, float] | None = None, sex_ratio: float | None = None,
                  seed: int = 0, steps: int | None = None, sampler: str | None = None,
                  guidance_scale: float | None = None, batch_size: int = 64,
                  overwrite: bool = False, formats: Sequence[str] = ()) -> GenerateResult:
    """`generate_cohort`, returning what it did (the sampler settings used among it)."""
    spec = quick_spec(n, label_rates=label_rates, age_range=age_range, sex_ratio=sex_ratio,
                      seed=seed, sampler=sampler, steps=steps, guidance_scale=guidance_scale,
                      batch_patients=batch_size, formats=formats)
    return run_once(model, spec, out, overwrite=overwrite)


__all__ = ["generate_cohort", "sample_cohort", "draw_conditions"]
