"""synthmed: synthetic virtual-patient cohorts from medical images, audited for privacy."""

__version__ = "0.1.0"
