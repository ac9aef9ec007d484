"""The audit as one self-contained HTML page for a privacy officer.

Everything is inline (figures and images as base64 PNG, CSS in a <style> block): the page opens
from a USB stick on an offline machine and can be archived as one file. Figures are drawn with
matplotlib's Agg backend (no display needed). The page shows indices and ranks, never pseudonyms.
It DOES show the training images closest to synthetic ones (that is the point of the gallery), so
the page itself stays inside the hospital, like the training data.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.io.atomic import write_text
from synthmed.viz import png_bytes, to_uint8, view_2d


@dataclass
class ReportData:
    audit: dict[str, Any]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    distances: dict[str, np.ndarray] = field(default_factory=dict)
    distance_space: str = "encoder"
    gallery: list[dict[str, Any]] = field(default_factory=list)
    filtered: dict[str, Any] | None = None
    # the identity attack's linked pairs: a synthetic image beside the training patient's images
    identity_gallery: list[dict[str, Any]] = field(default_factory=list)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _image_png(img: np.ndarray, scale: int = 2) -> str:
    """One image (2D, or the middle slice of 3D) as a grey PNG, enlarged for viewing."""
    return base64.b64encode(png_bytes(to_uint8(view_2d(img), scale))).decode("ascii")


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, (fpr, tpr) in curves.items():
        axes[0].plot(fpr, tpr, label=name, lw=1.4)
        # log axes: zero rates cannot be drawn; clip to half the smallest non-zero step
        pos = fpr[fpr > 0]
        floor = (pos.min() / 2) if pos.size else 1e-3
        axes[1].plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=name, lw=1.4, drawstyle="steps-post")
    for ax in axes:
        ax.plot([1e-4, 1], [1e-4, 1], ls="--", c="grey", lw=1, label="coin toss")
        ax.set_xlabel("false alarms (share of holdout patients called 'in training')")
        ax.set_ylabel("hits (share of training patients found)")
    axes[0].set_xlim(0, 1)
    axes[0].set_ylim(0, 1)
    axes[0].set_title("ROC, linear axes")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlim(1e-3, 1)
    axes[1].set_ylim(1e-3, 1)
    axes[1].set_title("ROC, log axes (the low-false-alarm corner)")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def distance_figure(distances: dict[str, np.ndarray], space: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    allv = np.concatenate([np.asarray(v, dtype=np.float64) for v in distances.values()])
    bins = np.linspace(0.0, float(allv.max()) * 1.02 + 1e-12, 40)
    for name, v in distances.items():
        ax.hist(np.asarray(v, dtype=np.float64), bins=bins, histtype="step", lw=1.6, density=True, label=name)
    ax.set_xlabel(f"distance to the nearest image ({space} space)")
    ax.set_ylabel("density")
    ax.set_title("Nearest distances: synthetic images should be no closer to training images than "
                 "unseen real images are", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1b1b1b;line-height:1.45}
.banner{padding:1em 1.4em;border-radius:8px;font-size:1.5em;font-weight:700;color:#fff}
.pass{background:#1b7f3b}.fail{background:#b3261e}.inconclusive{background:#9a6700}
table{border-collapse:collapse;width:100%;font-size:.92em}th,td{border:1px solid #ccc;padding:.35em .5em;vertical-align:top;text-align:left}
th{background:#f1f1f1}td.ok{color:#1b7f3b;font-weight:700}td.bad{color:#b3261e;font-weight:700}td.unsure{color:#9a6700;font-weight:700}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.pair{border:1px solid #ccc;border-radius:6px;padding:6px;text-align:center;font-size:.85em}
.pair img{image-rendering:pixelated;margin:2px}.flag{color:#b3261e;font-weight:700}
.note{background:#fff6d6;border-left:4px solid #e0b000;padding:.5em 1em}
code{background:#f4f4f4;padding:0 .2em}
"""

_METHODS = """
<h2>Methods: what was tested</h2>
<p><b>Who counts as a member.</b> The generator was trained on the dataset's <i>training</i>
patients (the members). The dataset's <i>holdout</i> patients come from the same population but the
generator never saw them (the non-members). The patient, not the image, is the unit: an attacker
wins when it can tell which patients were in training, using all of a patient's images.</p>
<p><b>The attacker</b> holds the synthetic images and a sample of other real patients (the
dataset's <i>reference</i> split, or half of the holdout patients when there is none) to know what
"typical" looks like. It scores every real image; a patient's score is
the highest score of their images. If the scores of training patients and holdout patients look
alike, the synthetic images do not reveal who was trained on.</p>
<ul>
<li><b>Distance to closest record (DCR)</b>: a real image that is much closer to a synthetic image
than to any reference image is guessed to be in training. It catches copies and near-copies.</li>
<li><b>DOMIAS</b> (van Breugel et al., 2023): compares how densely the synthetic images crowd around a
real image with how densely the reference patients do. A generator that over-fits puts more mass
around its training images than the population has there.</li>
<li><b>Neighbourhood counting</b> (Monte-Carlo membership inference, Hilprecht et al., 2019): counts
synthetic images inside a small ball around each real image (the ball is sized so that a typical
reference image has about even odds of seeing one).</li>
</ul>
<p>Each attack runs on raw pixels and on the features of a contrastive encoder trained on the
training split (so that near-copies that are shifted or re-contrasted are still close).</p>
<p><b>How success is measured.</b> The <i>AUC</i> is the chance that a random training patient scores
higher than a random holdout patient: 0.5 is a coin toss, 1.0 is a perfect attack. The
<i>hit rate at a 1&nbsp;% false-alarm rate</i> is how many training patients an attacker can name
while wrongly naming only 1 in 100 holdout patients; this matters most, since an attack that is
sure about a few patients is a real breach even when its AUC is low. Holdouts with fewer than a few
hundred patients cannot measure a 1&nbsp;% false-alarm rate; the report then says so and uses the
strictest threshold the holdout allows, with its honest error range. The <i>empirical epsilon</i> is
the smallest differential-privacy budget consistent with the strongest attack.</p>
<p><b>Copies.</b> Every synthetic image is compared with every training image. It is flagged when it
is closer to a training image than all but a tiny share of unseen real images are (memorisation), or
when it is practically identical to one (hard copy).</p>
<p><b>How the rules decide.</b> Every range shown is a <i>simultaneous</i> confidence range: all of
them together hold with the profile's confidence, so an audit of a generator that never saw the
training patients fails at most 5&nbsp;% of the time by chance. A rule fails on evidence (the whole
range is past the line), and an attack rule also fails when the best estimate reaches the limit.
A rule <i>passes</i> only when its range rules out the smallest leak the tier cares about (an
attack AUC of the profile's <code>rule_out_auc</code>): a pass is evidence that no such leak exists.
When nothing shows a leak but the ranges are too wide to rule one out, or a hit rate at the
false-alarm target cannot be measured with this few holdout patients, the rule and the audit are
<i>inconclusive</i>, with the number of holdout patients that would settle them.
<b>Limits:</b> the audit tests these attacks, not every possible attack.</p>
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return html.escape(str(v))


def _outcome(r: dict[str, Any]) -> str:
    return r.get("outcome") or ("pass" if r.get("passed") else "fail")


def banner_text(a: dict[str, Any]) -> str:
    """The verdict in plain words, as the report's banner says it."""
    verdict, tier = a["verdict"], html.escape(str(a["tier"]))
    n = len(a["rules"])
    if verdict == "pass":
        leak = (a.get("power") or {}).get("rule_out_auc")
        return (f"PASS: this synthetic cohort may be released at the '{tier}' tier"
                + (f" (the audit rules out an attack AUC of {leak:.2f} or more)" if leak else ""))
    if verdict == "inconclusive":
        need = (a.get("power") or {}).get("holdout_patients_needed")
        return (f"INCONCLUSIVE: this audit is too small to show that the cohort is safe to release at "
                f"the '{tier}' tier; do not release it yet"
                + (f" (about {need} holdout patients would be needed)" if need else ""))
    n_failed = sum(1 for r in a["rules"] if _outcome(r) == "fail")
    return (f"FAIL: do not release this synthetic cohort at the '{tier}' tier "
            f"({n_failed} of {n} rules failed)")


def inconclusive_text(a: dict[str, Any]) -> str:
    """Why an audit is inconclusive and what would settle it, in plain words."""
    p = a.get("power") or {}
    unsure = [r["rule"] for r in a["rules"] if _outcome(r) == "inconclusive"]
    text = (f"No rule found a leak, but {len(unsure)} of {len(a['rules'])} rules cannot rule one out "
            f"with {p.get('n_holdout_patients', '?')} holdout patients")
    if p.get("n_evaluated_nonmembers") not in (None, p.get("n_holdout_patients")):
        text += f" ({p['n_evaluated_nonmembers']} of them scored, the others calibrate the attacks)"
    text += "."
    if p.get("holdout_patients_needed"):
        text += (f" An audit with about {p['holdout_patients_needed']} holdout patients (the dataset "
                 "re-ingested at the same split fractions, so the training split grows too) would be "
                 "expected to settle them; this is estimated from the widths of the ranges seen here.")
    if p.get("not_settled_by_size"):
        text += (" More patients alone do not settle " + ", ".join(p["not_settled_by_size"])
                 + ": see those rules.")
    return text


def render(data: ReportData) -> str:
    a = data.audit
    esc = html.escape
    verdict = a["verdict"]
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>synthmed privacy audit</title>",
             "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
             f"<style>{_CSS}</style></head><body>"]
    parts.append(f"<div class='banner {esc(verdict)}'>{banner_text(a)}</div>")
    if verdict == "inconclusive":
        parts.append(f"<p class='note'>{esc(inconclusive_text(a))}</p>")
    d = a["data"]
    parts.append(
        f"<p>Audit of {d['n_synthetic_images']} synthetic images of shape "
        f"{'x'.join(map(str, d['image_shape']))} against {d['n_member_patients']} training patients "
        f"({d['n_member_images']} images) and {d['n_nonmember_patients']} holdout patients "
        f"({d['n_nonmember_images']} images); profile <code>{esc(a['profile'])}</code>, seed "
        f"{a['provenance'].get('seed')}.</p>")
    if data.filtered is not None:
        f = data.filtered
        parts.append(
            f"<p class='note'><b>Filtered cohort:</b> {f['n_removed']} flagged synthetic images were "
            f"removed and the rest re-audited: verdict <b>{esc(f['verdict'])}</b> (see "
            f"<code>filtered/report.html</code> and <code>filtered/removed.csv</code>).</p>")
    parts.append("<p class='note'>This page shows training images next to the synthetic images closest "
                 "to them. Keep it where the training data is kept.</p>")

    parts.append("<h2>Rules</h2><table><tr><th>rule</th><th>measured</th><th>limit</th><th>result</th>"
                 "<th>what it means</th></tr>")
    for r in a["rules"]:
        outcome = r.get("outcome") or ("pass" if r["passed"] else "fail")
        cls, word = {"pass": ("ok", "pass"), "fail": ("bad", "FAIL"),
                     "inconclusive": ("unsure", "inconclusive")}[outcome]
        if (r.get("details") or {}).get("evaluated") is False:
            word = "not evaluated"  # not a pass either: it makes the verdict inconclusive
        parts.append(f"<tr><td>{esc(r['rule'])}</td><td>{_fmt(r['measured'])}</td><td>{_fmt(r['threshold'])}</td>"
                     f"<td class='{cls}'>{word}</td><td>{esc(r['explanation'])}</td></tr>")
    parts.append("</table>")
    for s in a.get("skipped", []):
        parts.append(f"<p>Not run: {esc(s.get('attack', s.get('space', '')))}: {esc(s['reason'])}.</p>")

    parts.append("<h2>Attacks</h2><table><tr><th>attack</th><th>AUC (range)</th><th>hits at 1 % false alarms</th>"
                 "<th>hits at 0.1 % false alarms</th><th>empirical epsilon</th></tr>")
    for at in a["attacks"]:
        cells = []
        for key in ("0.01", "0.001"):
            r = at["tpr_at_fpr"].get(key)
            if r is None:
                cells.append("")
            elif r["estimable"]:
                cells.append(f"{100*r['tpr']:.1f} % ({100*r['tpr_ci'][0]:.1f}–{100*r['tpr_ci'][1]:.1f} %)")
            else:
                cells.append(f"not estimable ({r['n_nonmembers']} holdout patients); at the strictest "
                             f"threshold {100*r['tpr']:.1f} % hits, false alarms ≤ {100*r['fpr_ci'][1]:.1f} %")
        eps = at["empirical_epsilon"]
        parts.append(f"<tr><td>{esc(at['attack'])} / {esc(at['space'])}</td>"
                     f"<td>{at['auc']:.3f} ({at['auc_ci'][0]:.3f}–{at['auc_ci'][1]:.3f})</td>"
                     f"<td>{esc(cells[0])}</td><td>{esc(cells[1])}</td>"
                     f"<td>{'unbounded' if eps is None else f'{eps:.2f}'}</td></tr>")
    parts.append("</table>")
    parts.extend(_model_html(a.get("model") or {}))
    if data.curves:
        parts.append(f"<h3>ROC curves</h3><img alt='ROC curves' src='data:image/png;base64,{roc_figure(data.curves)}'>")
    if data.distances:
        parts.append("<h2>Nearest distances</h2>"
                     f"<img alt='distance histograms' src='data:image/png;base64,{distance_figure(data.distances, data.distance_space)}'>")

    if "identity" in a:
        parts.append(_identity_html(a["identity"], data.identity_gallery))

    m = a["memorisation"]
    parts.append(f"<h2>Closest synthetic / training pairs</h2><p>{m['n_flagged']} of {m['n_synthetic']} "
                 f"synthetic images are flagged as too close to a training image ({m['n_hard_copies']} "
                 f"hard copies); flag threshold {m['threshold']:.4g} (pixel distance). Shown: the "
                 f"{len(data.gallery)} closest pairs, by synthetic index and training-split position "
                 "(no patient identifiers).</p>")
    al = m.get("aligned") or {}
    if "n_registered" in al:
        parts.append(f"<p>Aligned copy search (undoing flips, rotations, shifts and crops by registration): "
                     f"{al['n_registered']} of {al['n_synthetic']} synthetic images registered "
                     f"({esc(al['selection'])}), calibrated on {al['n_holdout_registered']} holdout images; "
                     f"{al['n_flagged']} flagged, {al['n_hard_copies']} hard copies. Counted in the rules above.</p>")
    elif al.get("note"):
        parts.append(f"<p>Aligned copy search: {esc(al['note'])}.</p>")
    share = m.get("closer_to_train") or {}
    if "share" in share and share.get("n"):
        parts.append(f"<p>For context (not a rule): {100 * share['share']:.1f} % of synthetic images have a "
                     f"training image rather than a holdout image as their closest real image; "
                     f"{100 * share['null_rate']:.1f} % would be expected if images were independent, but "
                     "images of one patient resemble each other, so this share varies more than that "
                     "suggests.</p>")
    parts.append("<div class='gallery'>")
    for g in data.gallery:
        flag = "<div class='flag'>flagged</div>" if g["flagged"] else ""
        parts.append(f"<div class='pair'><div>#{g['rank']}: distance {g['distance']:.3g}</div>"
                     f"<img alt='synthetic {g['synthetic_index']}' src='data:image/png;base64,{_image_png(g['synthetic'])}'>"
                     f"<img alt='training {g['train_rank_index']}' src='data:image/png;base64,{_image_png(g['train'])}'>"
                     f"<div>synthetic {g['synthetic_index']} | training {g['train_rank_index']}</div>{flag}</div>")
    parts.append("</div>")
    parts.append(_METHODS)
    parts.append("<h2>Provenance</h2><table>")
    rows = [("schema", a["schema"]), ("dataset fingerprint", d["dataset_fingerprint"]),
            ("cohort fingerprint", d["cohort_fingerprint"]),
            ("training patients (sha256 of pseudonym list)", d["member_patients_sha256"]),
            ("holdout patients (sha256 of pseudonym list)", d["nonmember_patients_sha256"]),
            ("profile sha256", a["provenance"].get("config_sha256", "")),
            ("encoder", a["encoder"]["source"]),
            ("software", ", ".join(f"{k} {v}" for k, v in sorted(a["provenance"]["packages"].items())))]
    for k, v in rows:
        parts.append(f"<tr><th>{esc(k)}</th><td><code>{esc(str(v))}</code></td></tr>")
    parts.append("</table></body></html>\n")
    return "\n".join(parts)


_IDENTITY_METHODS = """
<p><b>Patient re-identification.</b> A generator trained on several images per patient can draw a
new image of a training patient: not a copy, yet that person. A re-identification network, trained
on pairs of images of one patient (never on the holdout), maps images of one person close together.
Every real image is matched with its most similar synthetic image; a patient's score is their best
match. If synthetic images match training patients more closely than holdout patients, the cohort
shows who was trained on. The network's own skill (its <i>verification AUC</i>: how often two images
of one person look more alike to it than images of two people, on patients it never trained on)
decides whether a clean result means anything: a network that cannot tell people apart finds
nobody, so its pass is reported as <i>not evaluated</i>.</p>
"""


def _model_html(model: dict[str, Any]) -> list[str]:
    """The model in hand (--model): for a DP model its formal epsilon beside what the attacks
    showed, so a reader sees both on the page and not only in audit.json."""
    if "whitebox_attacks" not in model:
        return []
    esc = html.escape
    dp = model.get("differential_privacy")
    if dp is None:
        return [f"<p>Model in hand: {esc(model.get('differential_privacy_note', 'no differential privacy'))}.</p>"]
    lb = dp["empirical_epsilon_lower_bound"]
    shown = "unbounded (an attack was right with no false alarm)" if lb is None else f"{lb:.3g}"
    said = ("consistent: the attacks show no more leakage than the bound allows" if dp["consistent"] else
            "INCONSISTENT: the attacks show more leakage than the bound allows, so the training or "
            "its accounting is not what the model card claims")
    return ["<h3>Differential privacy</h3>",
            f"<p>Theoretical epsilon {dp['theoretical_epsilon']:.3g} at delta {dp['delta']:g} per "
            f"{esc(str(dp['unit']))} (the accountant's, from the model card); empirical lower bound "
            f"from the attacks {shown} ({esc(str(dp['strongest_attack']))}): {esc(said)}. "
            f"{esc(dp['note'])}.</p>"]


def _identity_html(ident: dict[str, Any], gallery: list[dict[str, Any]]) -> str:
    esc = html.escape
    out = ["<h2>Patient re-identification</h2>"]
    v = ident.get("verification") or {}
    if v.get("estimable") and v.get("auc") is not None and None not in (v.get("ci") or [None]):
        ver = (f"verification AUC {v['auc']:.3f} (range {v['ci'][0]:.3f}–{v['ci'][1]:.3f}) on "
               f"{v.get('n_patients', 0)} patients with repeat images ({esc(v.get('measured_on', ''))})")
    else:
        ver = f"verification AUC not measurable: {esc(v.get('note') or 'no patient with two images to test it on')}"
    out.append(f"<p>Identity network: {esc(ident.get('source', 'none'))}; {ver}.</p>")
    if ident.get("fallback"):
        out.append("<p class='note'><b>Fallback:</b> no re-identification network could be trained on this "
                   "dataset (no patient has two images), so the identity attack used the "
                   "augmentation-invariant encoder, which was never shown to recognise people.</p>")
    if not ident.get("evaluated", True):
        out.append(f"<p class='note'><b>Not evaluated:</b> {esc(ident.get('not_evaluated_reason', ''))}. "
                   "This is not a pass.</p>")
    if gallery:
        out.append("<p class='note'><b>Internal:</b> the pairs below show real training patients' images. "
                   "Keep this page where the training data is kept.</p>")
        out.append(f"<p>The {len(gallery)} training patients most strongly linked to a synthetic image "
                   "(by synthetic index and training-split positions; no patient identifiers):</p>")
        out.append("<div class='gallery'>")
        for g in gallery:
            imgs = "".join(f"<img alt='training {i}' src='data:image/png;base64,{_image_png(t)}'>"
                           for i, t in zip(g["train_positions"], g["train"]))
            share = g.get("holdout_share_as_strong")
            ctx = ("" if share is None or share != share else
                   f"<div>{100 * share:.1f} % of holdout patients link as strongly</div>")
            out.append(f"<div class='pair'><div>#{g['rank']}: similarity {g['similarity']:.3f}</div>"
                       f"<img alt='synthetic {g['synthetic_index']}' src='data:image/png;base64,{_image_png(g['synthetic'])}'>"
                       f" | {imgs}<div>synthetic {g['synthetic_index']} | training "
                       f"{', '.join(map(str, g['train_positions']))}</div>{ctx}</div>")
        out.append("</div>")
    out.append(_IDENTITY_METHODS)
    return "\n".join(out)


def write_report(path: str | Path, data: ReportData) -> Path:
    write_text(path, render(data))
    return Path(path)


__all__ = ["ReportData", "render", "write_report", "roc_figure", "distance_figure"]
