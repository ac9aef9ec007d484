"""The documents a generated cohort carries: DATA_CARD.md / data_card.json, provenance/, and
SHA256SUMS.

The data card says what the cohort is (synthetic, not for clinical use), how it was made, what
it was made from (the source dataset's fingerprint, modality and counts, never a pseudonym or a
source identifier), the spec, and, once audited, the audit summary with its tier and power.
`write_data_card` refuses a card holding anything shaped like a dataset pseudonym: the card
leaves the building with the cohort.
"""

from __future__ import annotations

import collections
import math
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from synthmed.generate.manifest import ManifestRow
from synthmed.generate.study import CohortContext
from synthmed.io.atomic import write_json, write_text
from synthmed.io.folders import MARKER, file_digests
from synthmed.provenance import compute_environment, package_versions, sha256_file, sha256_json

CARD_MD = "DATA_CARD.md"
CARD_JSON = "data_card.json"
SUMS = "SHA256SUMS"
PROVENANCE = "provenance"
DATA_CARD_SCHEMA = "synthmed.data_card/1"
NOTICE = "SYNTHETIC DATA - not for clinical use. No image shows a real patient."

# The de-identifier's pseudonym shapes (synthmed/deid/pseudonyms.py): P-/S-/R- + 12 hex digits.
_PSEUDONYM = re.compile(r"\b[PSR]-[0-9a-f]{12}\b")


@dataclass(frozen=True)
class SourceSummary:
    """What the model was trained on, without identifiers: only counts and a fingerprint."""

    dataset_fingerprint: str
    modality: str
    spatial_dims: int
    image_shape: tuple[int, ...] = ()
    n_patients: int | None = None
    n_images: int | None = None
    label_vocabulary: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataCard:
    """Everything DATA_CARD.md and data_card.json say (`as_dict` is the JSON)."""

    cohort: dict[str, Any]
    generation: dict[str, Any]
    source: SourceSummary
    spec: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] | None = None
    override: str | None = None  # a release made against the rules, and why (filled at release)

    def as_dict(self) -> dict[str, Any]:
        return {"schema": DATA_CARD_SCHEMA, "notice": NOTICE, "synthetic": True,
                "cohort": self.cohort, "generation": self.generation,
                "source": asdict(self.source), "spec": self.spec, "audit": self.audit,
                "override": self.override}


def cohort_summary(rows: Iterable[ManifestRow]) -> dict[str, Any]:
    """Counts over the manifest: patients, studies, images, formats, labels, sex, age."""
    rows = list(rows)
    patients = {r.patient for r in rows}
    per_patient = collections.Counter(collections.Counter(r.patient for r in rows).values())
    first = [r for r in rows if r.study_index == 0]
    ages = [r.age for r in first if r.age is not None and not math.isnan(r.age)]
    return {
        "patients": len(patients), "studies": len({(r.patient, r.study_index) for r in rows}),
        "images": len(rows), "formats": sorted({f for r in rows for f in r.paths}),
        "studies_per_patient": {str(k): v for k, v in sorted(per_patient.items())},
        "label_counts": dict(sorted(collections.Counter(l for r in rows for l in r.labels).items())),
        "sex_counts": dict(sorted(collections.Counter(r.sex or "unknown" for r in first).items())),
        "age_at_first_study": ({"min": min(ages), "max": max(ages),
                                "mean": round(sum(ages) / len(ages), 2)} if ages else None),
        "max_days_since_first": max((r.days_since_first for r in rows), default=0),
    }


def build_data_card(ctx: CohortContext, rows: Iterable[ManifestRow], source: SourceSummary, *,
                    spec: Mapping[str, Any] | None = None,
                    audit: Mapping[str, Any] | None = None) -> DataCard:
    spacing = list(ctx.spacing)
    generation = {
        "synthmed_version": ctx.synthmed_version, "model_sha256": ctx.model_hash,
        "cohort_seed": ctx.cohort_seed, "spec_sha256": ctx.spec_sha256 or None,
        "modality": ctx.modality, "spatial_dims": ctx.spatial_dims,
        "sampling": dict(ctx.sampling),
        "spacing_mm": spacing or None,
        "spacing_note": None if spacing else "unknown in the source: files carry a nominal 1 mm",
        "intensity_window": list(ctx.intensity_window) if ctx.intensity_window else None,
        "method": ("each virtual patient's first study is sampled from the diffusion model with "
                   "its conditions; later studies re-noise and denoise the first (SDEdit) with "
                   "the follow-up's conditions, so they keep the patient's anatomy; dates are "
                   "offsets from a fixed synthetic epoch"),
    }
    return DataCard(cohort=cohort_summary(rows), generation=generation, source=source,
                    spec=dict(spec or {}), audit=dict(audit) if audit is not None else None)


def _strings(obj: Any, key: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(obj, str):
        yield key, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _strings(str(k), f"{key}.{k}" if key else str(k))
            yield from _strings(v, f"{key}.{k}" if key else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _strings(v, f"{key}[{i}]")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "-"
    return "-" if value is None or value == "" else str(value)


def _section(title: str, items: Mapping[str, Any]) -> list[str]:
    return [f"## {title}", ""] + [f"- **{k}**: {_fmt(v)}" for k, v in items.items()] + [""]


def data_card_markdown(card: DataCard) -> str:
    d = card.as_dict()
    lines = ["# Data card: synthetic cohort", "", f"**{NOTICE}**", "",
             "Every image was sampled from a generative model by synthmed. Patient IDs are "
             "`SYN-` numbers, dates are a fixed synthetic epoch plus offsets, and every DICOM "
             "file says SyntheticData = YES with the synthesizing equipment recorded.", ""]
    if card.override:
        lines += [f"> **Released with an override**: {card.override}", ""]
    lines += _section("What the cohort holds", d["cohort"])
    lines += _section("How it was made", d["generation"])
    lines += _section("Source data (no identifiers: counts and a fingerprint only)", d["source"])
    lines += _section("Cohort spec", d["spec"]) if d["spec"] else ["## Cohort spec", "", "-", ""]
    if card.audit is None:
        lines += ["## Privacy audit", "", "Not audited yet. `synthmed release` ships a cohort only "
                  "with a matching, conclusive, passing audit.", ""]
    else:
        audit = dict(card.audit)
        head = {k: audit.pop(k) for k in ("verdict", "tier", "power") if k in audit}
        lines += _section("Privacy audit", {**head, **audit})
    return "\n".join(lines).rstrip() + "\n"


def write_data_card(root: str | Path, card: DataCard) -> tuple[Path, Path]:
    """DATA_CARD.md and data_card.json under `root` (atomic). A ValueError, and nothing written,
    when any value looks like a dataset pseudonym."""
    d = card.as_dict()
    leaks = [k for k, s in _strings(d) if _PSEUDONYM.search(s)]
    if leaks:
        raise ValueError(f"data card: {', '.join(leaks[:3])} hold(s) a dataset pseudonym; a data "
                         "card carries counts and fingerprints only")
    root = Path(root)
    write_json(root / CARD_JSON, d, nan_as_null=True)
    write_text(root / CARD_MD, data_card_markdown(card))
    return root / CARD_MD, root / CARD_JSON


def read_data_card(root: str | Path) -> DataCard:
    """The DataCard a cohort's data_card.json holds (to add a release's audit and override)."""
    import json

    from synthmed.errors import InputError

    path = Path(root) / CARD_JSON
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        src = {k: tuple(v) if isinstance(v, list) else v for k, v in d["source"].items()}
        return DataCard(cohort=dict(d["cohort"]), generation=dict(d["generation"]),
                        source=SourceSummary(**src), spec=dict(d.get("spec") or {}),
                        audit=d.get("audit"), override=d.get("override"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable data card ({err})") from None
    except (KeyError, TypeError, AttributeError) as err:
        raise InputError(f"{path}: not a synthmed data card (bad or missing {err})") from None


def write_provenance(root: str | Path, configs: Mapping[str, Any], **record: Any) -> Path:
    """provenance/: one JSON file per resolved config (pydantic models as data) and
    packages.json (package versions, python, platform). `record` (seed, model hash, ...) goes
    into provenance/generation.json with each config's sha256."""
    folder = Path(root) / PROVENANCE
    hashes = {}
    for name, cfg in sorted(configs.items()):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ValueError(f"provenance: config name {name!r} is not a plain file name")
        data = cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else cfg
        write_json(folder / f"{name}.json", data)
        hashes[name] = sha256_json(data)
    write_json(folder / "packages.json", {"packages": package_versions(),
                                          "platform": {"machine": platform.machine(),
                                                       "system": platform.system()},
                                          "compute": compute_environment()})
    write_json(folder / "generation.json", {**record, "config_sha256": hashes})
    return folder


# ------------------------------------------------------------------------------- SHA256SUMS
def _sums_listing(root: Path) -> dict[str, str]:
    files = file_digests(root)  # every file, the folder marker excluded
    files.pop(SUMS, None)
    for rel in files:
        if "\n" in rel or "\\" in rel:
            raise ValueError(f"{root / rel}: a file name with a newline or backslash cannot be "
                             "listed in SHA256SUMS")
    return {rel: d["sha256"] for rel, d in files.items()}


def write_sha256sums(root: str | Path) -> Path:
    """SHA256SUMS over every file under `root` but itself and the folder marker, in the format
    `sha256sum -c` reads (text mode: two spaces), sorted by path."""
    root = Path(root)
    listing = _sums_listing(root)
    write_text(root / SUMS, "".join(f"{h}  {rel}\n" for rel, h in sorted(listing.items())))
    return root / SUMS


_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


def check_sha256sums(root: str | Path) -> list[str]:
    """Every problem, one line each: changed, missing, unlisted files, malformed lines. Empty
    when every file under `root` is listed and matches."""
    root = Path(root)
    path = root / SUMS
    if not path.is_file():
        return [f"{path}: missing"]
    problems, listed = [], {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return [f"{path}: unreadable ({err})"]
    for n, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        rel = m.group(2) if m else ""
        if not m or rel.startswith("/") or ".." in Path(rel).parts:
            problems.append(f"{path} line {n}: not a sha256sum line for a path inside the folder")
            continue
        listed[rel] = m.group(1)
    for rel, want in sorted(listed.items()):
        f = root / rel
        if not f.is_file():
            problems.append(f"{rel}: listed in {SUMS} but missing")
        elif sha256_file(f) != want:
            problems.append(f"{rel}: changed (sha256 differs from {SUMS})")
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for rel in sorted(present - set(listed) - {SUMS, MARKER}):
        problems.append(f"{rel}: not listed in {SUMS}")
    return problems
