"""Release: a synthetic cohort leaves the hospital only with a matching, passing audit, and only
after a scan for every identifier of the real data behind it (see bundle.py)."""

from synthmed.release.bundle import FORMATS, ReleaseRefused, ReleaseResult, cohort_formats, release

__all__ = ["release", "ReleaseResult", "ReleaseRefused", "FORMATS", "cohort_formats"]
