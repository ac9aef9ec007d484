"""The cohort evaluation as one self-contained HTML page (report.html).

Like the audit report (synthmed/audit/report.py, whose figure helpers and style it shares):
everything inline (figures and images as base64 PNG, CSS in a <style> block, no script), so it
opens offline and archives as one file. It shows, in order: the metric table with each number's
real-versus-real floor, per condition; condition agreement; the utility classifiers' table and
ROC curves and the sampler sweep when they were measured; and sample grids per condition, next to
grids of REAL train images. Those show patients, so the page is then marked INTERNAL and stays
where the training data is kept. No patient identifier appears on it.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from synthmed.audit.report import _CSS, _png
from synthmed.io.atomic import write_text
from synthmed.viz import png_bytes, tile, to_uint8

_EXTRA_CSS = """
.internal{background:#b3261e;color:#fff;padding:.6em 1em;border-radius:6px;font-weight:700}
.grids{display:flex;flex-wrap:wrap;gap:18px}.grid{border:1px solid #ccc;border-radius:6px;padding:6px}
.grid img{image-rendering:pixelated}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.in{color:#1b7f3b}td.out{color:#b3261e}
"""


@dataclass
class Grid:
    name: str
    synthetic: np.ndarray              # (n, *shape) images of this condition from the cohort
    real: np.ndarray | None = None     # (m, *shape) real train images of this condition (INTERNAL)


@dataclass
class ReportData:
    record: dict[str, Any]
    grids: list[Grid] = field(default_factory=list)
    # regime -> label -> (fpr, tpr): the utility classifiers on the real holdout (UtilityResult.roc)
    roc: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]] | None = None
    sweep_png: bytes | None = None     # SweepResult.plot's PNG


def sample_grids(x_tr: np.ndarray, y_tr: np.ndarray, x_sy: np.ndarray, y_sy: np.ndarray,
                 findings: Sequence[str], ncol: int, seed: int, real: bool = True) -> list[Grid]:
    """One grid per condition ('all', 'No Finding', each finding), `ncol` images each: the cohort's
    images asked for it (in manifest order) and, with `real`, seeded random train images with it."""
    rng = np.random.default_rng(seed)
    sets = [("all images", np.ones(len(x_tr), bool), np.ones(len(x_sy), bool))]
    if findings:
        sets.append(("No Finding", y_tr.sum(1) == 0, y_sy.sum(1) == 0))
        sets += [(f, y_tr[:, j] > 0, y_sy[:, j] > 0) for j, f in enumerate(findings)]
    out = []
    for name, m_tr, m_sy in sets:
        if not m_sy.any():
            continue
        syn = x_sy[np.flatnonzero(m_sy)[:ncol]]
        rows = np.flatnonzero(m_tr)
        re = x_tr[np.sort(rng.permutation(rows)[:ncol])] if real and rows.size else None
        out.append(Grid(name, syn, re))
    return out


def _grid_png(images: np.ndarray, ncol: int) -> str:
    side = max(images.shape[1:])
    scale = max(1, 96 // side)  # small images are enlarged to be seen
    return base64.b64encode(png_bytes(to_uint8(tile(images, ncol=ncol), scale))).decode("ascii")


def roc_figure(roc: dict[str, dict[str, tuple[Sequence[float], Sequence[float]]]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({lab for curves in roc.values() for lab in curves})
    n = max(1, len(labels))
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.1 * rows), squeeze=False)
    for k, lab in enumerate(labels):
        ax = axes[k // cols][k % cols]
        for regime, curves in roc.items():
            if lab in curves:
                fpr, tpr = curves[lab]
                ax.plot(fpr, tpr, lw=1.3, label=regime)
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel("false positive rate", fontsize=8)
        ax.set_ylabel("true positive rate", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        if k == 0:
            ax.legend(fontsize=7, loc="lower right")
    for k in range(len(labels), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout()
    return _png(fig)


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    return f"{v:.3g}" if isinstance(v, float) else html.escape(str(v))


# metric key in the record, number, label, how to read it
_METRICS = [("frechet", "value", "Fréchet distance", "lower is closer to real; 0 only for identical sets"),
            ("prdc", "precision", "precision", "share of synthetic images inside the real manifold (fidelity)"),
            ("prdc", "density", "density", "~1 when synthetic images sit where real ones crowd"),
            ("prdc", "recall", "recall", "share of real images inside the synthetic manifold (diversity)"),
            ("prdc", "coverage", "coverage", "share of real neighbourhoods that hold a synthetic image"),
            ("ms_ssim", "ms_ssim", "MS-SSIM", "mean over image pairs: higher = less diverse (mode collapse), "
                                              "lower than real = noise")]


def _metric_rows(fid: dict[str, Any], with_help: bool) -> list[str]:
    from synthmed.evaluate.cohort import place

    rows = []
    for key, metric, name, help_text in _METRICS:
        block = fid[key]
        v = block["synthetic"][metric]
        iv = block["floor"]["metrics"][metric]
        where = place(v, iv["low"], iv["high"])
        low = max(iv["low"], 0.0) if key == "frechet" else iv["low"]  # a distance is >= 0
        cls = "in" if where.startswith("within") else "out"
        rows.append(f"<tr><td>{name}</td><td class='num'>{_num(v)}</td><td class='num'>{_num(iv['value'])}"
                    f"</td><td class='num'>{_num(low)} – {_num(iv['high'])}</td>"
                    f"<td class='{cls}'>{where}</td>"
                    + (f"<td>{html.escape(help_text)}</td>" if with_help else "") + "</tr>")
    return rows


def _metric_table(fid: dict[str, Any], with_help: bool, title: str = "") -> list[str]:
    """The metrics beside their real floor: overall (with what each measures) and per condition
    (under `title`, on the table's first line)."""
    head = "".join(f"<th>{h}</th>" for h in ("metric", "cohort", "real floor", "real range (95 %)",
                                             "reading") + (("what it measures",) if with_help else ()))
    return [f"{title}<table><tr>{head}</tr>", *_metric_rows(fid, with_help), "</table>"]


def _fidelity_html(fid: dict[str, Any]) -> list[str]:
    esc = html.escape
    parts = ["<h2>Fidelity and diversity</h2>"]
    if "not_measured" in fid:
        return parts + [f"<p class='note'>Not measured: {esc(fid['not_measured'])}.</p>"]
    used = fid.get("holdout_used", {})
    fl = fid["prdc"]["floor"]
    parts.append(f"<p>In the feature space of the encoder trained on the real train split. The "
                 f"<i>real floor</i> is the same metric between the real holdout patients "
                 f"({used.get('patients', '?')} patients, {used.get('images', '?')} images) and the "
                 f"train split, and its 95&nbsp;% range over {fl['n_boot']} resamples of those "
                 f"patients: a cohort as good as fresh real patients lands inside it. PRDC and MS-SSIM "
                 f"are compared at {fl['size']} synthetic images (the resamples' size), the Fréchet "
                 f"distance at {fid['frechet']['floor']['n_candidate']}.</p>")
    parts += _metric_table(fid, with_help=True)
    by = fid.get("by_condition") or {}
    if by:
        parts.append("<h3>Per condition</h3><p>Each condition's cohort images against the real train "
                     "images that carry it, beside that condition's own floor.</p>")
        for name, sub in by.items():
            if "not_scored" in sub:
                parts.append(f"<p><b>{esc(name)}</b>: not scored, {esc(sub['not_scored'])}.</p>")
                continue
            parts += _metric_table(sub, with_help=False, title=f"<p><b>{esc(name)}</b></p>")
    return parts


def _conditions_html(cond: dict[str, Any]) -> list[str]:
    esc = html.escape
    parts = ["<h2>Condition agreement</h2>"]
    if "not_evaluated" in cond:
        return parts + [f"<p class='note'>Not evaluated: {esc(cond['not_evaluated'])}.</p>"]
    parts.append("<p>Classifiers trained on real train images read each cohort image's finding, sex "
                 "and age group; <i>agreement</i> is the share of images where the reading matches "
                 "what the manifest says the image should be; <i>chance</i> what independent readings "
                 "would reach; the range is over resampled virtual patients; <i>real</i> is the same "
                 "classifier on real holdout images (its ceiling; findings are thresholded there).</p>")
    parts.append("<table><tr><th>attribute</th><th>agreement</th><th>range (95 %)</th><th>chance</th>"
                 "<th>kappa</th><th>real</th><th>AUC (cohort / real)</th><th>images</th></tr>")
    for name, a in cond.items():
        if "not_available" in a:
            parts.append(f"<tr><td>{esc(name)}</td><td colspan='7'>not available: "
                         f"{esc(a['not_available'])}</td></tr>")
            continue
        auc = "" if a.get("auc") is None and a.get("real_auc") is None else \
            f"{_num(a.get('auc'))} / {_num(a.get('real_auc'))}"
        parts.append(f"<tr><td>{esc(name)}</td><td class='num'>{_num(a['agreement'])}</td>"
                     f"<td class='num'>{_num(a['low'])} – {_num(a['high'])}</td>"
                     f"<td class='num'>{_num(a['chance'])}</td><td class='num'>{_num(a['kappa'])}</td>"
                     f"<td class='num'>{_num(a.get('real'))}</td><td class='num'>{auc}</td>"
                     f"<td class='num'>{a['n_images']}</td></tr>")
    parts.append("</table>")
    return parts


def _iv(iv: dict | None) -> tuple[str, str]:
    if not iv:
        return "n/a", ""
    return _num(iv.get("value")), f"{_num(iv.get('low'))} – {_num(iv.get('high'))}"


def _utility_html(util: dict[str, Any], roc) -> list[str]:
    esc = html.escape
    parts = ["<h2>Utility: does a model trained on the cohort work on real patients?</h2>"]
    if "regimes" not in util:
        why = util.get("not_measured") or util.get("not_evaluated") or "not run"
        return parts + [f"<p class='note'>Not measured: {esc(str(why))}.</p>"]
    s = util.get("settings") or {}
    labels = util.get("macro_labels") or []
    parts.append("<p>The same small classifier, with the same training budget (fixed in the config), "
                 "trained four ways and tested on the real holdout patients. Macro AUC over "
                 f"{esc(', '.join(labels)) or 'no label'}; ranges resample holdout patients.</p>")
    head = "".join(f"<th>AUC {esc(lab)}</th>" for lab in util.get("labels", []))
    parts.append(f"<table><tr><th>trained on</th><th>macro AUC</th><th>range (95 %)</th>"
                 f"<th>minus real</th>{head}<th>optimiser steps</th></tr>")
    diffs = util.get("differences_to_real") or {}
    for name, r in util["regimes"].items():
        v, rng = _iv(r.get("macro_auc"))
        d = diffs.get(f"{name} - real")
        dv = "" if name == "real" else (f"{_iv(d)[0]} ({_iv(d)[1]})" if d else "n/a")
        cells = "".join(f"<td class='num'>{_num(r['per_label_auc'].get(lab))}</td>"
                        for lab in util.get("labels", []))
        parts.append(f"<tr><td>{esc(name)}</td><td class='num'>{v}</td><td class='num'>{rng}</td>"
                     f"<td class='num'>{dv}</td>{cells}<td class='num'>{r.get('optimiser_steps')}</td></tr>")
    parts.append("</table>")
    v, rng = _iv(util.get("tstr_trtr"))
    parts.append(f"<p>TSTR / TRTR (macro AUC trained on synthetic over trained on real): <b>{v}</b>"
                 + (f" (range {rng})" if rng else "") + ".</p>")
    if util.get("note"):
        parts.append(f"<p class='note'>{esc(util['note'])}</p>")
    from synthmed.evaluate.cohort import CHANCE_BASELINE, baseline_at_chance

    if baseline_at_chance(util):
        parts.append(f"<p class='note'>Caution: {esc(CHANCE_BASELINE)}.</p>")
    for lab, why in (util.get("not_evaluable") or {}).items():
        parts.append(f"<p>{esc(lab)}: not evaluable, {esc(str(why))}.</p>")
    if roc:
        parts.append(f"<img alt='ROC curves of the utility classifiers' src='data:image/png;base64,"
                     f"{roc_figure(roc)}'>")
    if s:
        parts.append(f"<p class='note'>Settings: {esc(', '.join(f'{k} {v}' for k, v in s.items() if not isinstance(v, dict)))}</p>")
    return parts


def render(data: ReportData) -> str:
    r = data.record
    esc = html.escape
    internal = any(g.real is not None for g in data.grids)
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>synthmed cohort evaluation</title>",
             "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
             "style-src 'unsafe-inline'\">", f"<style>{_CSS}{_EXTRA_CSS}</style></head><body>"]
    if "data" not in r:  # a sampler sweep of a generator, alone
        return "\n".join(parts + ["<h1>Sampler sweep</h1>"] + _sweep_html(r, data.sweep_png)
                          + _provenance_html(r) + ["</body></html>\n"])
    d = r["data"]
    if internal:
        parts.append("<div class='internal'>INTERNAL: this page shows real patients' images next to "
                     "synthetic ones. Keep it where the training data is kept.</div>")
    parts.append("<h1>Cohort evaluation</h1>")
    parts.append(f"<p>{d['synthetic_images']} synthetic images ({d['synthetic_patients']} virtual patients) "
                 f"of shape {'x'.join(map(str, d['shape']))} against the real train split "
                 f"({d['train_patients']} patients, {d['train_images']} images) and holdout split "
                 f"({d['holdout_patients']} patients, {d['holdout_images']} images); encoder: "
                 f"{esc(r['encoder']['source'])}; seed {r['provenance'].get('seed')}.</p>")
    for n in r.get("notes", []):
        parts.append(f"<p class='note'>{esc(n)}</p>")
    if r.get("other_dataset"):
        parts.append(f"<p class='note'>{esc(r['other_dataset'])}</p>")
    parts += _fidelity_html(r.get("fidelity", {"not_measured": "not run"}))
    if "conditions" in r:
        parts += _conditions_html(r["conditions"])
    if "utility" in r:
        parts += _utility_html(r["utility"], data.roc)
    if data.sweep_png is not None:
        parts.append("<h2>Sampler sweep</h2>")
        parts += _sweep_html(r, data.sweep_png)
    if data.grids:
        ncol = max(len(g.synthetic) for g in data.grids)
        parts.append("<h2>Samples per condition</h2>")
        if internal:
            parts.append("<p class='note'><b>Internal:</b> each synthetic grid stands next to real train "
                         "images of the same condition.</p>")
        parts.append("<div class='grids'>")
        for g in data.grids:
            cells = [f"<div>synthetic</div><img alt='synthetic: {esc(g.name)}' "
                     f"src='data:image/png;base64,{_grid_png(g.synthetic, ncol)}'>"]
            if g.real is not None:
                cells.append(f"<div>real (train)</div><img alt='real: {esc(g.name)}' "
                             f"src='data:image/png;base64,{_grid_png(g.real, ncol)}'>")
            parts.append(f"<div class='grid'><b>{esc(g.name)}</b>{''.join(cells)}</div>")
        parts.append("</div>")
    parts += _provenance_html(r)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _sweep_html(r: dict[str, Any], png: bytes | None) -> list[str]:
    sw = r.get("sweep") or {}
    parts = []
    if sw:
        cf = sw.get("costs_from")
        parts.append(f"<p>Fidelity (Fréchet distance to the real train split, {sw.get('size')} images per "
                     f"setting) against sampling steps and wall time; the reference is "
                     f"{sw.get('reference_steps')} steps. Fewer steps start to cost at "
                     f"<b>{f'{cf} steps' if cf else 'none of the settings'}</b>.</p>")
        parts.append("<table><tr><th>steps</th><th>Fréchet</th><th>± sd</th><th>s / image</th>"
                     "<th>costs</th><th>within real floor</th></tr>")
        for p in sw.get("points", []):
            parts.append(f"<tr><td>{p['steps']}</td><td class='num'>{_num(p['metrics'].get('frechet'))}</td>"
                         f"<td class='num'>{_num(p['spread'].get('frechet'))}</td>"
                         f"<td class='num'>{_num(p['seconds_per_image'])}</td>"
                         f"<td>{'' if p.get('costs') is None else ('yes' if p['costs'] else 'no')}</td>"
                         f"<td>{'yes' if p.get('in_floor') else 'no'}</td></tr>")
        parts.append("</table>")
    if png is not None:
        parts.append(f"<img alt='sampler sweep' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>")
    return parts


def _provenance_html(r: dict[str, Any]) -> list[str]:
    esc = html.escape
    p = r["provenance"]
    parts = ["<h2>Provenance</h2><table>"]
    for k, v in (("schema", r["schema"]), ("dataset fingerprint", r.get("dataset_fingerprint")),
                 ("cohort fingerprint", r.get("cohort_fingerprint", "")), ("model hash", r.get("model_hash")),
                 ("encoder sha256", (r.get("encoder") or {}).get("sha256", "")),
                 ("config sha256", p.get("config_sha256", "")),
                 ("software", ", ".join(f"{k2} {v2}" for k2, v2 in sorted(p["packages"].items())))):
        parts.append(f"<tr><th>{esc(k)}</th><td><code>{esc(str(v))}</code></td></tr>")
    parts.append("</table>")
    return parts


def write_report(path: str | Path, data: ReportData) -> Path:
    write_text(path, render(data))
    return Path(path)


__all__ = ["Grid", "ReportData", "render", "write_report", "sample_grids", "roc_figure"]
