"""Privacy audit of a synthetic cohort: membership-inference attacks, copy detection, a verdict.

`run_audit(dataset, cohort, profile, out)` is the entry point (see `synthmed.audit.runner`); the
statistics, embeddings, neighbour search, attacks and memorisation check live in their own
modules and are usable on their own.
"""

from synthmed.audit.profile import AuditProfile, load_profile
from synthmed.audit.record import AUDIT_SCHEMA, AuditRecord
from synthmed.audit.runner import AuditResult, run_audit
from synthmed.audit.verdict import Verdict

__all__ = ["AUDIT_SCHEMA", "AuditProfile", "AuditRecord", "AuditResult", "Verdict", "load_profile", "run_audit"]
