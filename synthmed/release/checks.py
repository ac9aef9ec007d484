"""May this cohort leave the building? The checks `release` makes before it assembles anything.

Each problem is a `Reason`: one readable line, and whether `--override` can accept it.

* Overridable (a person may take responsibility for the audit's evidence, and the override is
  written into the bundle): the audit did not pass, it was made at a weaker tier, it audited
  another cohort, dataset or model.
* Not overridable: a folder that is no longer as synthmed wrote it (cohort, audit, dataset, run),
  a file that does not match SHA256SUMS, and (synthmed.release.scan) identifiers, copies of real
  images or burned-in text in the bundle. An override is a judgement on evidence; it cannot make
  unknown or identifying bytes safe to hand out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


TIER_RANK = {"controlled": 0, "public": 1}  # a stricter tier's pass covers a looser release


@dataclass(frozen=True)
class Reason:
    text: str
    overridable: bool

    def __str__(self) -> str:
        return self.text


def short(fp: object) -> str:
    s = str(fp or "")
    return (s[:12] + "...") if len(s) > 12 else (s or "none recorded")


# -------------------------------------------------------------------------------- the audit
def audit_reasons(audit: dict[str, Any], tier: str) -> list[Reason]:
    """The audit must have passed at `tier` (or a stricter one)."""
    out = []
    verdict = str(audit.get("verdict", ""))
    if verdict == "fail":
        failed = [r.get("rule", "?") for r in audit.get("rules", [])
                  if (r.get("outcome") or ("pass" if r.get("passed") else "fail")) == "fail"]
        out.append(Reason(f"the audit's verdict is FAIL ({len(failed)} rules failed: "
                          f"{', '.join(failed[:4])}{', ...' if len(failed) > 4 else ''}); a failed "
                          "cohort is not released", True))
    elif verdict == "inconclusive":
        power = audit.get("power") or {}
        need = power.get("holdout_patients_needed")
        now = power.get("n_holdout_patients") or (audit.get("data") or {}).get("n_nonmember_patients")
        out.append(Reason("the audit is INCONCLUSIVE: it had too few patients to rule out the leak "
                          "its tier must exclude" + (f" (about {need} holdout patients needed, it had "
                                                     f"{now})" if need else "")
                          + "; audit a larger dataset", True))
    elif verdict != "pass":
        out.append(Reason(f"the audit's verdict is {verdict or 'missing'!r}, not 'pass'", True))
    have = str(audit.get("tier", ""))
    if have not in TIER_RANK:
        out.append(Reason(f"the audit's tier {have!r} is unknown (public or controlled)", True))
    elif TIER_RANK[have] < TIER_RANK[tier]:
        out.append(Reason(f"the audit was made at the '{have}' tier, looser than the '{tier}' "
                          f"release asked for; audit with the {tier} profile", True))
    return out


__all__ = ["Reason", "TIER_RANK", "audit_reasons", "short"]
