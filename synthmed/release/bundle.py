"""`release`: a cohort, its audit and its model card as one bundle a hospital can hand out.

    release(cohort, audit=A, dataset=D, model=RUN, tier="public", out=BUNDLE,
            formats=None, sources=[...], key=None, override=None) -> ReleaseResult

Nothing is written unless every check passes (synthmed.release.checks: the audit passed at the
tier and is of this cohort, dataset and model; every folder verifies; every file matches
SHA256SUMS) and the assembled bundle passes the scan (synthmed.release.scan: no identifier of
the real data in any byte, no synthetic image equal to a real one, no burned-in text).
Otherwise `ReleaseRefused` lists every reason, one line each. `override` (a reason in words)
accepts the overridable ones; it is written into release.json, DATA_CARD.md and release.html.

Bundle layout (a typed folder of kind "bundle", synthmed/io/folders.py):

    <format>/...          the cohort's images in each chosen format (dicom, nifti, png; npy is
                          the array store images.npy)
    manifest.csv, manifest.parquet, cohort.json, provenance/   as the cohort holds them
    DATA_CARD.md, data_card.json   the cohort's data card, with a release section added
    audit.json            the audit record (never report.html: it shows real training images;
                          never the audit's encoder: it was trained on them)
    model_card.json, model_card.md
    release.json          what was checked and found; the override if any
    release.html          a summary page with no image in it
    SHA256SUMS            every file above (`sha256sum -c SHA256SUMS`)

Same inputs give the same bytes: nothing records a time or a path.
"""

from __future__ import annotations

import html
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from synthmed.errors import InputError, SynthmedError, arg, render
from synthmed.generate.documents import (CARD_JSON, CARD_MD, SUMS, DataCard, SourceSummary,
                                        check_sha256sums, write_data_card,
                                        write_sha256sums)
from synthmed.io.jsonfile import read_json
from synthmed.release.checks import TIER_RANK, Reason, audit_reasons, short

RELEASE_SCHEMA = "synthmed.release/1"
FORMATS = ("dicom", "nifti", "png", "npy")
# audit outputs that stay in the hospital: the report shows real training images, the encoder
# was trained on them, the filtered cohort is another cohort
_NEVER = ("report.html", "encoder", "filtered")
_COHORT_SKIP = {SUMS, CARD_MD, CARD_JSON}  # rewritten for the bundle


class ReleaseRefused(SynthmedError):
    """The release was refused; `reasons` holds one line per reason, arguments spelled for
    Python (`override='why'`); `reasons_for(flags)` the same lines for the command line."""

    def __init__(self, reasons: list[str]):
        # kept with their argument markers (synthmed.errors.arg): whoever shows them later spells
        # the arguments its own way, as the CLI does with the message
        self.marked = list(reasons)
        self.reasons = self.reasons_for(None)
        n = len(self.reasons)
        super().__init__(f"release refused ({n} reason{'s' if n != 1 else ''}):\n"
                         + "\n".join(f"  - {r}" for r in reasons))

    def reasons_for(self, flags: Mapping[str, str] | None) -> list[str]:
        """The reasons with their arguments spelled as the flags in `flags` (synthmed.errors.render;
        None: as in Python)."""
        return [render(r, flags) for r in self.marked]


@dataclass
class ReleaseResult:
    out: Path
    record: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = self.record["scan"]
        lines = [f"warning: {w}" for w in self.warnings]
        lines.append(f"released {self.out} at the '{self.record['tier']}' tier: {s['files']} files "
                     f"scanned ({s['bytes']} bytes, {sum(s['identifier_counts'].values())} "
                     "identifiers searched), none found")
        return "\n".join(lines)


def cohort_formats(cohort: Path) -> list[str]:
    """The image formats a cohort folder holds."""
    have = [f for f in FORMATS[:3] if (cohort / f).is_dir()]
    if (cohort / "images.npy").is_file():
        have.append("npy")
    return have


def _verified(path: Path, kind: str, what: str, reasons: list[Reason]):
    """The folder's FolderInfo, or None with a (not overridable) reason."""
    from synthmed.io import folders

    try:
        return folders.verify(path, kind)
    except InputError as err:
        reasons.append(Reason(f"the {what} does not verify: {err}", False))
        return None


def check_inputs(cohort: Path, audit_dir: Path, dataset: Path, model: Path, tier: str,
                 formats: list[str]) -> tuple[list[Reason], dict[str, Any]]:
    """Every precondition of a release; (reasons, what was found)."""
    from synthmed.data.cohort import Cohort
    from synthmed.data.dataset import Dataset
    from synthmed.data.values import intensity_range

    reasons: list[Reason] = []
    found: dict[str, Any] = {}
    # the audit
    audit: dict[str, Any] = {}
    ainfo = _verified(audit_dir, "audit", f"audit {audit_dir}", reasons)
    if ainfo is not None:
        audit = read_json(audit_dir / "audit.json", "audit record")
        reasons += audit_reasons(audit, tier)
        found["audit_folder_fingerprint"] = ainfo.fingerprint
    found["audit"] = audit
    adata = audit.get("data") or {}
    # the dataset
    ds = None
    try:
        ds = Dataset.open(dataset)
    except InputError as err:
        reasons.append(Reason(f"the dataset does not verify: {err}", False))
    if ds is not None:
        found["dataset"] = ds
        found["dataset_fingerprint"] = ds.fingerprint()
        if audit and adata.get("dataset_fingerprint") != ds.fingerprint():
            reasons.append(Reason(
                f"the audit is of another dataset (audit: {short(adata.get('dataset_fingerprint'))}, "
                f"{dataset}: {short(ds.fingerprint())}); audit the cohort against the dataset its "
                "model was trained on", True))
    # the cohort
    co = None
    cinfo = _verified(cohort, "cohort", f"cohort {cohort}", reasons)
    if cinfo is not None:
        try:
            co = Cohort.open(cohort, intensity_range(ds.info) if ds is not None else (0.0, 1.0))
        except InputError as err:
            reasons.append(Reason(f"the cohort cannot be read: {err}", False))
    if (cohort / SUMS).is_file():
        reasons += [Reason(f"{cohort}: {p}", False) for p in check_sha256sums(cohort)]
        found["checksums"] = "SHA256SUMS and the folder marker"
    else:
        found["checksums"] = "the folder marker (the cohort has no SHA256SUMS)"
    if co is not None:
        found["cohort"] = co
        found["cohort_fingerprint"] = co.fingerprint()
        if audit and adata.get("cohort_fingerprint") != co.fingerprint():
            reasons.append(Reason(
                f"the audit is of another cohort (audit: {short(adata.get('cohort_fingerprint'))}, "
                f"{cohort}: {short(co.fingerprint())}); audit this cohort", True))
        trained_on = str(co.info.get("dataset_fingerprint", ""))
        if ds is not None and trained_on and trained_on != ds.fingerprint():
            reasons.append(Reason(f"the cohort's model was trained on another dataset ({short(trained_on)}, "
                                  f"not {dataset}: {short(ds.fingerprint())})", True))
        missing = [f for f in formats if f not in cohort_formats(cohort)]
        if missing:
            reasons.append(Reason(f"the cohort holds no {', '.join(missing)} images (it has "
                                  f"{', '.join(cohort_formats(cohort)) or 'none'}); choose {arg('formats')} "
                                  "among those", False))
    # the model
    rinfo = _verified(model, "run", f"model run {model}", reasons)
    if rinfo is not None:
        if "model.safetensors" not in rinfo.files or not (model / "model_card.json").is_file():
            reasons.append(Reason(f"the run {model} holds no finished model (model.safetensors and "
                                  "model_card.json)", False))
        else:
            mhash = rinfo.sha256("model.safetensors")
            found["model_sha256"] = mhash
            card = read_json(model / "model_card.json", "model card")
            if ds is not None and card.get("dataset_fingerprint") not in (None, "", ds.fingerprint()):
                reasons.append(Reason(f"the model {model} was trained on another dataset "
                                      f"({short(card.get('dataset_fingerprint'))})", True))
            if co is not None and co.info.get("model_sha256") not in (None, "", mhash):
                reasons.append(Reason(f"the cohort was generated by another model (cohort: "
                                      f"{short(co.info.get('model_sha256'))}, {model}: {short(mhash)})",
                                      True))
            audited_model = (audit.get("model") or {}).get("sha256")
            if audit and audited_model not in (None, "", mhash):
                reasons.append(Reason(f"the audit is of another model's cohort (audit: "
                                      f"{short(audited_model)}, {model}: {short(mhash)})", True))
    if tier not in TIER_RANK:
        reasons.append(Reason(f"{arg('tier')} must be public or controlled (got {tier!r})", False))
    return reasons, found


# ---------------------------------------------------------------------------- assembling
def _copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _copy_cohort(cohort: Path, stage: Path, formats: list[str]) -> None:
    from synthmed.io.folders import MARKER

    other = [f for f in FORMATS[:3] if f not in formats]
    for src in sorted(cohort.rglob("*")):
        if not src.is_file():
            continue
        rel = src.relative_to(cohort).as_posix()
        top = rel.split("/", 1)[0]
        if rel in _COHORT_SKIP or rel == MARKER or top in other:
            continue
        if rel == "images.npy" and "npy" not in formats:
            continue
        _copy_file(src, stage / rel)


def _data_card(cohort: Path, stage: Path, release: dict[str, Any], found: dict[str, Any]) -> None:
    """The cohort's data card with the release's audit summary and override; a cohort written
    before data cards (images.npy + cohort.json) gets one from its records."""
    a = release["audit"]
    audit = {"verdict": a["verdict"], "tier": a["tier"], "profile": a["profile"],
             "power": {"holdout_patients_needed": a.get("holdout_patients_needed"),
                       "training_patients": a["n_member_patients"],
                       "holdout_patients": a["n_nonmember_patients"]},
             "released_at_tier": release["tier"], "formats": ", ".join(release["formats"])}
    o = release["override"]
    override = (f"{o['reason']} (accepted: {'; '.join(o['accepted'])})" if o else None)
    if (cohort / CARD_JSON).is_file():
        from dataclasses import replace

        from synthmed.generate.documents import read_data_card

        card = replace(read_data_card(cohort), audit=audit, override=override)
    else:
        co, ds = found["cohort"], found["dataset"]
        card = DataCard(
            cohort={"patients": len({r.patient for r in co.records}), "images": len(co.records),
                    "formats": release["formats"]},
            generation={"model_sha256": co.info.get("model_sha256"), "sampling": co.info.get("sampling"),
                        "request": co.info.get("generation")},
            source=SourceSummary(dataset_fingerprint=ds.fingerprint(),
                                 modality=",".join(sorted((ds.info.get("modalities") or {}).keys())) or "unknown",
                                 spatial_dims=ds.spatial_dims, image_shape=tuple(ds.shape),
                                 n_patients=len(ds.patients()), n_images=len(ds)),
            audit=audit, override=override)
    try:
        write_data_card(stage, card)
    except ValueError as err:
        raise ReleaseRefused([f"{CARD_MD}: {err}"]) from None


def _summary_page(release: dict[str, Any]) -> str:
    esc = html.escape
    a = release["audit"]
    o = release["override"]
    colour = "#b3261e" if o else "#1b7f3b"
    head = (f"Released at the '{esc(release['tier'])}' tier UNDER AN OVERRIDE" if o else
            f"Released at the '{esc(release['tier'])}' tier: the audit passed")
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>synthmed release</title>",
             "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
             "<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .5em;text-align:left}"
             f".b{{padding:1em;border-radius:8px;color:#fff;font-weight:700;background:{colour}}}</style>",
             "</head><body>", f"<div class='b'>{head}</div>",
             "<p>Synthetic images, not for clinical use. This page holds no image; the audit's own "
             "report (which shows real training images) stays with the hospital.</p>"]
    if o:
        parts.append(f"<p><b>Override:</b> {esc(o['reason'])}</p><ul>"
                     + "".join(f"<li>{esc(r)}</li>" for r in o["accepted"]) + "</ul>")
    parts.append("<h2>Audit</h2><table>")
    for k, v in (("verdict", a["verdict"]), ("tier", a["tier"]), ("profile", a["profile"]),
                 ("training patients", a["n_member_patients"]),
                 ("holdout patients", a["n_nonmember_patients"]),
                 ("holdout patients needed", a.get("holdout_patients_needed") or "")):
        parts.append(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>")
    parts.append("</table><h2>Rules</h2><table><tr><th>rule</th><th>result</th><th>what it means</th></tr>")
    for r in a["rules"]:
        parts.append(f"<tr><td>{esc(str(r.get('rule')))}</td><td>{esc(str(r.get('result')))}</td>"
                     f"<td>{esc(str(r.get('explanation', '')))}</td></tr>")
    parts.append("</table><h2>Checks before sealing</h2><table>")
    s = release["scan"]
    for k, v in (("files scanned", s["files"]), ("bytes scanned", s["bytes"]),
                 ("identifiers searched", ", ".join(f"{n} {k2}" for k2, n in s["identifier_counts"].items())),
                 ("source files read", s["sources_read"]),
                 ("synthetic images equal to a real image", s["equal_to_real"]),
                 ("synthetic images with burned-in text", s["pixel_text"]),
                 ("checksums", release["checksums"])):
        parts.append(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>")
    parts.append("</table><h2>Fingerprints</h2><table>")
    for k in ("cohort_fingerprint", "dataset_fingerprint", "model_sha256", "audit_folder_fingerprint"):
        parts.append(f"<tr><th>{esc(k)}</th><td><code>{esc(str(release[k]))}</code></td></tr>")
    parts.append("</table></body></html>\n")
    return "\n".join(parts)


def _audit_summary(audit: dict[str, Any]) -> dict[str, Any]:
    d = audit.get("data") or {}
    rules = [{"rule": r.get("rule"), "result": r.get("outcome") or ("pass" if r.get("passed") else "fail"),
              "explanation": r.get("explanation", "")} for r in audit.get("rules", [])]
    return {"verdict": audit.get("verdict"), "tier": audit.get("tier"), "profile": audit.get("profile"),
            "n_member_patients": d.get("n_member_patients"),
            "n_nonmember_patients": d.get("n_nonmember_patients"),
            "holdout_patients_needed": (audit.get("power") or {}).get("holdout_patients_needed"),
            "rules": rules}


def release(cohort: str | Path, *, audit: str | Path, dataset: str | Path, model: str | Path,
            out: str | Path, tier: str = "public", formats: list[str] | None = None,
            sources: list[str | Path] | None = None, key: str | Path | None = None,
            override: str | None = None, overwrite: bool = False,
            pixel_checker=None) -> ReleaseResult:
    """Check, assemble, scan and seal a release bundle; ReleaseRefused lists every reason."""
    from synthmed.data.values import intensity_range
    from synthmed.io import folders
    from synthmed.io.atomic import write_json, write_text
    from synthmed.release import scan
    from synthmed.release.identifiers import collect_identifiers

    cohort, audit_dir, dataset, model, out = map(Path, (cohort, audit, dataset, model, out))
    if override is not None and not override.strip():
        raise InputError(f"{arg('override')} needs a reason in words (it is written into the bundle)")
    folders.prepare_output(out, "bundle", overwrite)
    have = cohort_formats(cohort) if cohort.is_dir() else []
    # by default the viewer formats a cohort has; its array store (images.npy) only when it has
    # nothing else (a cohort written by `synthmed sample`)
    default = [f for f in have if f != "npy"] or have
    chosen = sorted(set(formats or default), key=FORMATS.index) if all(
        f in FORMATS for f in (formats or default)) else None
    if chosen is None:
        raise InputError(f"{arg('formats')}: unknown format in {formats} (choose among {', '.join(FORMATS)})")
    reasons, found = check_inputs(cohort, audit_dir, dataset, model, tier, chosen)
    if not sources:
        reasons.append(Reason(f"name the folders the dataset was ingested from ({arg('sources')}): the bundle "
                              "is scanned for their UIDs, dates and identifiers before it is sealed", False))
    key_bytes = _key(key, dataset, reasons)
    hard = [r for r in reasons if not r.overridable]
    soft = [r for r in reasons if r.overridable]
    if hard or (soft and override is None):
        lines = [r.text for r in reasons]
        if soft and not hard:
            lines.append(f"(a person may accept the reasons above with {arg('override', 'why')}; it is "
                         "written into the bundle)")
        raise ReleaseRefused(lines)
    ds, co = found["dataset"], found["cohort"]
    ids = collect_identifiers(ds, [Path(s) for s in sources], key_bytes)
    warnings = []
    if soft:
        warnings.append(f"released under an override ({override.strip()}): "
                        + "; ".join(render(r.text) for r in soft))
    # image checks on the cohort's images (what every format was written from)
    real = ds.images
    equal = scan.equal_to_real(co.images, real, intensity_range(ds.info))
    text = scan.pixel_text(co.images, pixel_checker)
    problems = [f"synthetic image {i} ({co.records[i].patient}) equals a real image of the dataset"
                for i in equal[:20]]
    problems += [f"synthetic image {i} ({co.records[i].patient}) carries burned-in text: {why}"
                 for i, why in text[:20]]
    if len(equal) > 20 or len(text) > 20:
        problems.append(f"... {max(0, len(equal) - 20) + max(0, len(text) - 20)} more images like these")
    audit_rec = found["audit"]
    record: dict[str, Any] = {
        "schema": RELEASE_SCHEMA, "tier": tier, "formats": chosen,
        "audit": _audit_summary(audit_rec),
        "cohort_fingerprint": found["cohort_fingerprint"],
        "dataset_fingerprint": found["dataset_fingerprint"],
        "model_sha256": found["model_sha256"],
        "audit_folder_fingerprint": found["audit_folder_fingerprint"],
        "checksums": found["checksums"],
        "override": ({"reason": override.strip(), "accepted": [render(r.text) for r in soft]}
                     if soft else None),
    }
    from synthmed import __version__

    record["synthmed_version"] = __version__
    with folders.staged_output(out, "bundle", overwrite) as stage:
        _copy_cohort(cohort, stage, chosen)
        _copy_file(audit_dir / "audit.json", stage / "audit.json")
        for name in ("model_card.json", "model_card.md"):
            if (model / name).is_file():
                _copy_file(model / name, stage / name)
        # scan what will be released, before the records that describe the scan are added
        hits, stats = scan.scan_folder(stage, ids)
        record["scan"] = {"files": stats["files"], "bytes": stats["bytes"],
                          "identifier_counts": ids.counts(), "sources_read": ids.sources_scanned,
                          "equal_to_real": len(equal), "pixel_text": len(text),
                          "images_checked": int(co.images.shape[0]), "hits": len(hits),
                          "what": "every byte and file name of every file above (gzip, PNG, "
                                  "deflated DICOM and Parquet contents decompressed)"}
        _data_card(cohort, stage, record, found)
        write_json(stage / "release.json", record)
        write_text(stage / "release.html", _summary_page(record))
        # the records themselves go through the same scan
        more, _ = scan.scan_folder(stage, ids)
        hits = sorted(set(hits) | set(more), key=lambda h: (h.where, h.kind))
        problems += [f"{p.relative_to(stage).as_posix()}: an audit output that shows or was trained "
                     "on real images may not be released" for p in sorted(stage.rglob("*"))
                     if p.name in _NEVER]
        problems += [h.line() for h in hits[:30]]
        if len(hits) > 30:
            problems.append(f"... and {len(hits) - 30} more identifier findings")
        if problems:
            raise ReleaseRefused(problems)
        write_sha256sums(stage)
    return ReleaseResult(out=out, record=record, warnings=warnings)


def _key(key: str | Path | None, dataset: Path, reasons: list[Reason]) -> bytes | None:
    """The de-identification key: --key, else where the dataset's ingest report says it was."""
    path = Path(key) if key else None
    if path is None and (dataset / "ingest_report.json").is_file():
        try:
            report = read_json(dataset / "ingest_report.json", "ingest report")
            recorded = (report.get("deid") or {}).get("key_path")
        except InputError:
            recorded = None
        if recorded and Path(recorded).is_file():
            path = Path(recorded)
    if path is None or not path.is_file():
        reasons.append(Reason("the de-identification key is needed to check that no key bytes are in "
                              f"the bundle: pass {arg('key')} (the dataset does not record where it is, or it "
                              "is not there)", False))
        return None
    return path.read_bytes()


__all__ = ["release", "ReleaseResult", "ReleaseRefused", "check_inputs", "cohort_formats", "FORMATS",
           "RELEASE_SCHEMA"]
