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

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthmed.errors import InputError

TIER_RANK = {"controlled": 0, "public": 1}  # a stricter tier's pass covers a looser release
SUMS = "SHA256SUMS"


@dataclass(frozen=True)
class Reason:
    text: str
    overridable: bool

    def __str__(self) -> str:
        return self.text


def short(fp: object) -> str:
    s = str(fp or "")
    return (s[:12] + "...") if len(s) > 12 else (s or "none recorded")


# ------------------------------------------------------------------------------- SHA256SUMS
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def sums_text(root: Path, skip: tuple[str, ...] = ()) -> str:
    """`sha256sum -c` format: '<hex>  <path>' per file, sorted by path."""
    from synthmed.io.folders import MARKER

    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    names = [n for n in names if n not in (SUMS, MARKER, *skip)]
    return "".join(f"{_sha256(root / n)}  {n}\n" for n in names)


def check_sums(root: Path) -> list[str]:
    """Problems of `root/SHA256SUMS` against the files: one line each (none: all match)."""
    from synthmed.io.folders import MARKER

    try:
        lines = (root / SUMS).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        return [f"{root / SUMS}: cannot be read ({err})"]
    listed: dict[str, str] = {}
    problems = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep:
            digest, sep, name = line.partition(" *")
        if not sep or len(digest) != 64:
            problems.append(f"{root / SUMS}: line {i} is not '<sha256>  <file>'")
            continue
        listed[name] = digest.lower()
    for name, digest in sorted(listed.items()):
        p = root / name
        if not p.is_file():
            problems.append(f"{p}: listed in {SUMS} but missing")
        elif _sha256(p) != digest:
            problems.append(f"{p}: changed since {SUMS} was written (sha256 differs)")
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for name in sorted(present - set(listed) - {SUMS, MARKER}):
        problems.append(f"{root / name}: not listed in {SUMS} (added after the cohort was written)")
    return problems


# -------------------------------------------------------------------------------- the audit
def audit_reasons(audit: dict[str, Any], tier: str) -> list[Reason]:
    """The audit must have passed at `tier` (or a stricter one)."""
    out = []
    verdict = str(audit.get("verdict", ""))
    if verdict == "fail":
        failed = [r.get("rule", "?") for r in audit.get("rules", []) if not r.get("passed")]
        out.append(Reason(f"the audit's verdict is FAIL ({len(failed)} rules failed: "
                          f"{', '.join(failed[:4])}{', ...' if len(failed) > 4 else ''}); a failed "
                          "cohort is not released", True))
    elif verdict == "inconclusive":
        power = audit.get("power") or {}
        need = power.get("holdout_patients_needed")
        now = (audit.get("data") or {}).get("n_holdout_patients",
                                            (audit.get("data") or {}).get("n_nonmember_patients"))
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


__all__ = ["Reason", "TIER_RANK", "SUMS", "sums_text", "check_sums", "audit_reasons", "short",
           "InputError"]
