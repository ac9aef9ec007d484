"""Sampling pipeline, cohort specs, virtual patients and cohort generation."""

from synthmed.generate.cohort import draw_conditions, generate_cohort, sample_cohort

__all__ = ["generate_cohort", "sample_cohort", "draw_conditions"]
