"""On-disk datasets (what ingestion writes) and synthetic cohorts (what generation writes)."""

from synthmed.data.cohort import Cohort, write_cohort
from synthmed.data.dataset import Dataset, ImageRecord

__all__ = ["Cohort", "Dataset", "ImageRecord", "write_cohort"]
