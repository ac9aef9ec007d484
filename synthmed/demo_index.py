"""DIR/index.html: one self-contained page for a finished `synthmed demo`.

It links every report the demo wrote (dataset contact sheet, training samples, evaluation,
audit report, the release summary or the refused release), shows small figures inline (PNG as
data: URIs, so the page opens anywhere with nothing to fetch), the audit's verdict with its
rules, a short summary of each stage and the command that re-runs it alone.

The page is INTERNAL: it links pages that show the training patients (here virtual ones), and
its contact-sheet figure shows them. The release bundle, not this page, is what may leave the
building. The page holds no time, so the same demo into the same folder gives the same bytes.
"""

from __future__ import annotations

import base64
import csv
import html
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.io.jsonfile import read_json

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_COLOURS = {"pass": "#1b7f3b", "fail": "#b3261e", "inconclusive": "#b26a00"}
_MAX_WIDTH = 640  # px: figures are shrunk to this, the linked files keep every pixel
_MIN_WIDTH = 160  # px: smaller figures are enlarged by pixel repetition


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _thumbnail(path: Path) -> bytes | None:
    """A PNG file, shrunk to _MAX_WIDTH if wider (deterministic: same file, same bytes)."""
    from PIL import Image

    from synthmed.viz import png_bytes

    if not path.is_file():
        return None
    with Image.open(path) as im:
        im.load()
        if im.width > _MAX_WIDTH:
            h = max(1, round(im.height * _MAX_WIDTH / im.width))
            im = im.resize((_MAX_WIDTH, h), Image.Resampling.LANCZOS)
        elif im.width < _MIN_WIDTH:  # a 2x2 grid of 32 px samples: enlarged, pixels kept sharp
            k = _MIN_WIDTH // im.width + 1
            im = im.resize((im.width * k, im.height * k), Image.Resampling.NEAREST)
        return png_bytes(im.convert("L") if im.mode not in ("L", "RGB") else im, optimize=True)


def cohort_strip(cohort: Path, patients: int = 6) -> bytes | None:
    """Virtual patients of a generated cohort, one row each, their studies left to right (the
    patients with the most studies first, so follow-ups show)."""
    from synthmed.viz import png_bytes, tile, to_uint8, view_2d

    manifest, store = cohort / "manifest.csv", cohort / "images.npy"
    if not manifest.is_file() or not store.is_file():
        return None
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by.setdefault(r["patient"], []).append(i)
    if not by:
        return None
    chosen = sorted(by, key=lambda p: (-len(by[p]), p))[:patients]
    width = max(len(by[p]) for p in chosen)
    images = np.load(store, mmap_mode="r", allow_pickle=False)
    views = [view_2d(images[i]) for i in by[chosen[0]][:1]]
    blank = np.ones_like(views[0])
    cells = []
    for p in chosen:
        idx = sorted(by[p], key=lambda i: int(rows[i]["study_index"]))
        cells += [view_2d(images[i]) for i in idx] + [blank] * (width - len(idx))
    scale = max(1, min(4, 64 // max(blank.shape)))
    return png_bytes(to_uint8(tile(np.stack(cells), ncol=width, pad=2), scale), optimize=True)


def evaluation_figure(record: dict[str, Any]) -> bytes | None:
    """The cohort evaluation's fidelity and diversity read-outs (dots) beside the range real
    patients give against each other (bars): a dot outside its bar is unlike real data."""
    fid = record.get("fidelity") or {}
    rows = []
    for key, metric, name in (("prdc", "precision", "precision"), ("prdc", "recall", "recall"),
                              ("prdc", "coverage", "coverage"), ("ms_ssim", "ms_ssim", "MS-SSIM"),
                              ("frechet", "value", "Fréchet distance")):
        try:
            v = float(fid[key]["synthetic"][metric])
            iv = fid[key]["floor"]["metrics"][metric]
            rows.append((name, v, float(iv["low"]), float(iv["high"])))
        except (KeyError, TypeError, ValueError):
            continue
    if not rows:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    unit = [r for r in rows if r[0] != "Fréchet distance"]
    dist = [r for r in rows if r[0] == "Fréchet distance"]
    fig, axes = plt.subplots(1, 2 if dist else 1, figsize=(7.5, 2.4),
                             gridspec_kw={"width_ratios": [3, 1.3]} if dist else None, squeeze=False)
    for ax, group in zip(axes[0], (unit, dist)):
        for y, (name, v, lo, hi) in enumerate(group):
            lo = max(lo, 0.0) if name == "Fréchet distance" else lo
            # '|' ends: a range of one value (recall 1 to 1) still shows
            ax.plot([lo, hi], [y, y], lw=9, c="#c8c8d0", solid_capstyle="butt", marker="|", ms=14,
                    mew=2, mec="#8a8a96", label="real vs real" if y == 0 else None)
            ax.plot([v], [y], "o", c="#b3261e", ms=7, label="synthetic" if y == 0 else None)
        ax.set_yticks(range(len(group)), [g[0] for g in group])
        ax.set_ylim(-0.6, len(group) - 0.4)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _latest(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern)) if folder.is_dir() else []
    return found[-1] if found else None


def _figure(uri_bytes: bytes | None, caption: str, link: str | None, internal: bool,
            link_text: str = "full size") -> str:
    if uri_bytes is None:
        return ""
    esc = html.escape
    tag = "<span class='tag'>INTERNAL</span> " if internal else ""
    a = f" <a href='{esc(link)}'>{esc(link_text)}</a>" if link else ""
    return (f"<figure><img src='{_png_uri(uri_bytes)}' alt='{esc(caption)}'>"
            f"<figcaption>{tag}{esc(caption)}{a}</figcaption></figure>")


def _rules_table(audit: dict[str, Any]) -> str:
    esc = html.escape
    out = ["<table><tr><th>rule</th><th>result</th><th>what it means</th></tr>"]
    for r in audit.get("rules", []):
        res = r.get("outcome") or ("pass" if r.get("passed") else "fail")
        out.append(f"<tr class='{esc(res)}'><td><code>{esc(str(r.get('rule')))}</code></td>"
                   f"<td><b>{esc(res)}</b></td><td>{esc(str(r.get('explanation', '')))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def render_index(root: Path, result, final: Path) -> str:
    """The page for the demo folder `root` (the staging folder while the demo runs); texts name
    `final`, the folder the user will open."""
    from synthmed.io.folders import final_text

    esc = html.escape
    root = Path(root)
    records = result.records
    audit = read_json(root / "audit" / "audit.json", "audit record", missing_ok=True)
    refused = read_json(root / "release-refused.json", "refused release record", missing_ok=True)
    released = (root / "release" / "release.json").is_file()
    verdict = str(audit.get("verdict", ""))

    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>synthmed demo</title>",
             f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">",
             "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:1.5em auto;"
             "padding:0 1em;color:#1d1d1f}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}"
             ".internal{background:#5b2a86;color:#fff;padding:.6em 1em;border-radius:6px;font-weight:600}"
             ".banner{padding:1em;border-radius:8px;color:#fff;font-weight:700;font-size:1.15em;margin:1em 0}"
             "figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}"
             "figure img{image-rendering:pixelated;border:1px solid #ddd;max-width:100%}"
             "figcaption{font-size:.9em;max-width:420px}.tag{background:#5b2a86;color:#fff;"
             "padding:0 .3em;border-radius:3px;font-size:.8em}tr.fail td{background:#fbe9e7}"
             "tr.inconclusive td{background:#fff4e0}pre{background:#f4f4f6;padding:.7em;"
             "overflow-x:auto;font-size:.85em}</style></head><body>",
             "<div class='internal'>INTERNAL: this page links pages that show the training "
             "patients (here virtual ones, with fake identities): the dataset contact sheet, the "
             "evaluation and the audit report. Keep it inside the hospital; the release bundle is "
             "what may be handed out.</div>",
             "<h1>synthmed demo</h1>",
             "<p>Built-in virtual patients, de-identified, a generator trained on them, a synthetic "
             "cohort generated from a spec, evaluated and audited for privacy, and released only "
             "if the audit passed. Synthetic images, not for clinical use."
             + (" This is the <b>--quick</b> demo: every stage runs with the smallest settings, "
                "the model is not meant to be good and 80 patients are too few for the public "
                "tier's audit, so its release is refused." if result.quick else "") + "</p>"]
    # the verdict
    if audit:
        from synthmed.audit.report import banner_text

        colour = _COLOURS.get(verdict, "#555")
        rel = ("release bundle written" if released else
               "release REFUSED" if refused else "no release attempted")
        parts.append(f"<div class='banner' style='background:{colour}'>Audit: {banner_text(audit)}"
                     f"<br>Release: {esc(rel)}</div>")
    # summary of each stage
    parts.append("<h2>What each stage did</h2><table><tr><th>stage</th><th>result</th></tr>")
    for rec in records.values():
        parts.append(f"<tr><td>{esc(rec.name)}</td><td>{esc(final_text(rec.summary))}</td></tr>")
    parts.append("</table>")
    # figures
    figs = [
        _figure(_thumbnail(root / "dataset" / "contact_sheet.png"),
                "the ingested dataset (de-identified virtual patients, 32 px)",
                "dataset/contact_sheet.png", True),
        _figure(_thumbnail(_latest(root / "run" / "samples", "step_*.png") or root / "-"),
                "samples drawn during training", _rel(root, _latest(root / "run" / "samples", "step_*.png")),
                False),
        _figure(cohort_strip(root / "cohort"),
                "the synthetic cohort: one virtual patient a row, first study and follow-ups",
                "cohort/DATA_CARD.md" if (root / "cohort" / "DATA_CARD.md").is_file() else None, False,
                "data card"),
        _figure(evaluation_figure(read_json(root / "evaluate" / "evaluation.json", "evaluation record",
                                            missing_ok=True)),
                "the cohort evaluation: each read-out of the synthetic cohort (dot) beside the range "
                "real patients give against each other (bar)",
                _first(root, "evaluate/report.html"), False, "evaluation report"),
    ]
    figs = [f for f in figs if f]
    if figs:
        parts.append("<h2>Figures</h2>" + "".join(figs))
    # reports
    parts.append("<h2>Reports</h2><table><tr><th>report</th><th>what it shows</th></tr>")
    internal = "<span class='tag'>INTERNAL</span> the training patients"
    for rel, what, shows in (
            ("dataset/contact_sheet.png", "dataset contact sheet (inspect)", internal),
            ("dataset/ingest_report.json", "ingest report: every input file accounted for",
             "<span class='tag'>INTERNAL</span> where each input file went"),
            (_rel(root, _latest(root / "run" / "samples", "step_*.png")), "training samples",
             "unaudited synthetic images"),
            ("run/model_card.md", "model card", "no image"),
            ("cohort/DATA_CARD.md", "the cohort's data card", "no image"),
            (_first(root, "evaluate/report.html", "evaluate/evaluation.json"), "evaluation", internal),
            ("audit/report.html", "privacy audit report", internal),
            ("release/release.html", "release summary (in the bundle)", "no image"),
            ("release-refused.json", "the refused release: every reason", "no image")):
        if rel and (root / rel).is_file():
            parts.append(f"<tr><td><a href='{esc(rel)}'>{esc(what)}</a></td><td>{shows}</td></tr>")
    parts.append("</table>")
    # the release, or why not
    if refused:
        parts.append("<h2>Release refused</h2><p>The demo asked for a release at the "
                     f"'{esc(str(refused.get('tier')))}' tier; nothing was written. Reasons:</p><ul>"
                     + "".join(f"<li>{esc(r)}</li>" for r in refused.get("reasons", [])) + "</ul>")
        for key, what in (("failed_rules", "Failed rules"), ("inconclusive_rules", "Inconclusive rules")):
            rows = refused.get(key) or []
            if rows:
                parts.append(f"<h3>{what}</h3><ul>" + "".join(
                    f"<li><code>{esc(r['rule'])}</code>: {esc(r['explanation'])}</li>" for r in rows)
                    + "</ul>")
    elif released:
        rec = read_json(root / "release" / "release.json", "release record", missing_ok=True)
        s = rec.get("scan") or {}
        parts.append("<h2>Release</h2><p>The bundle <a href='release/release.html'>release/</a> "
                     f"holds the cohort in {esc(', '.join(rec.get('formats', [])))}, its data card, "
                     "the audit record and the model card; "
                     f"{esc(str(s.get('files', '?')))} files were scanned for "
                     f"{esc(str(sum((s.get('identifier_counts') or {}).values())))} identifiers of "
                     "the source data, none found, and every file is listed in SHA256SUMS "
                     "(<code>sha256sum -c SHA256SUMS</code>).</p>")
    if audit:
        parts.append("<h2>Audit rules</h2>" + _rules_table(audit))
    # commands
    parts.append("<h2>Run a stage alone</h2><p>Each command reads the demo's folders and writes "
                 "beside them (a finished demo folder is never written into); the configs are the "
                 "settings the demo ran with.</p><pre>"
                 + "\n".join(esc(r.command) for r in records.values() if r.name != "index")
                 + "</pre></body></html>\n")
    return final_text("\n".join(parts))


def _rel(root: Path, path: Path | None) -> str | None:
    return path.relative_to(root).as_posix() if path is not None else None


def _first(root: Path, *rels: str) -> str | None:
    return next((r for r in rels if (root / r).is_file()), None)


def write_index(root: str | Path, result, final: str | Path) -> Path:
    from synthmed.io.atomic import write_text

    root = Path(root)
    path = root / "index.html"
    write_text(path, render_index(root, result, Path(final)))
    return path


__all__ = ["write_index", "render_index", "cohort_strip"]
