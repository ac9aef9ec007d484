"""The audit report: one self-contained page that a browser renders with every image decoded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers_browser import CHROMIUM_FLAGS, chromium
from helpers_nih import toy_dataset, write_plain_cohort
from synthmed.audit import run_audit
from synthmed.audit.profile import AuditProfile
from synthmed.config import load_config
from synthmed.data.dataset import Dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    ds = toy_dataset(tmp / "ds", n_patients=100, per_patient=2, size=32)
    d = Dataset.open(ds)
    train = np.asarray(d.images[d.indices("train")])
    ref = np.asarray(d.images[d.indices("reference")])
    rng = np.random.default_rng(0)
    synth = np.clip(ref[rng.integers(0, len(ref), 80)] + rng.normal(0, 0.03, (80, 32, 32)), 0, 1).astype(np.float32)
    synth[:4] = train[:4]  # four copies: the gallery and the fail banner have something to show
    cohort = write_plain_cohort(tmp / "cohort", synth)
    prof = load_config(ROOT / "configs" / "audit-public.yaml", AuditProfile,
                       overrides={"embedding": {"steps": 0}, "attacks": {"spaces": ["pixel"]},
                                  "memorisation": {"aligned_max_images": 16},
                                  # the identity section of the report: tests/test_audit_identity.py
                                  "identity": {"enabled": False}})
    res = run_audit(ds, cohort, prof, tmp / "audit", seed=0)
    assert res.verdict.verdict == "fail"
    return tmp / "audit", d


def test_report_is_self_contained_and_complete(audit_dir):
    out, ds = audit_dir
    html = (out / "report.html").read_text()
    audit = json.loads((out / "audit.json").read_text())
    # no external assets: every src is inline data, no links to fetch, no scripts
    srcs = re.findall(r"src=['\"]([^'\"]+)", html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in html and "https://" not in html and "<script" not in html.lower()
    assert "FAIL" in html and "do not release" in html
    for rule in audit["rules"]:  # every rule row with its plain-language sentence
        assert rule["rule"] in html
        assert rule["explanation"].replace("'", "&#x27;")[:60] in html
    n_img = len(srcs)
    assert n_img == 2 + 2 * min(8, audit["memorisation"]["n_synthetic"])  # ROC + histogram + gallery pairs
    assert "Methods" in html and "DOMIAS" in html
    assert "Aligned copy search" in html and "16 of 80 synthetic images registered" in html
    for p in ds.patients():
        assert p not in html


def test_report_renders_in_headless_chromium(audit_dir, tmp_path):
    exe = chromium()
    out, _ = audit_dir
    html = (out / "report.html").read_text()
    # a copy with a probe script (the real page forbids scripts by its CSP): after load it writes
    # each image's decoded width into the DOM, where --dump-dom can read it
    probe = ("<script>window.addEventListener('load',function(){var o=[];"
             "for(const i of document.images){o.push(i.complete?i.naturalWidth:-1)}"
             "var p=document.createElement('pre');p.id='probe';p.textContent=o.join(',');"
             "document.body.appendChild(p)});</script>")
    page = tmp_path / "probe.html"
    page.write_text(re.sub(r"<meta http-equiv='Content-Security-Policy'[^>]*>", "", html)
                    .replace("</body>", probe + "</body>"))
    common = CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([exe, *common, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    m = re.search(r"<pre id=\"probe\">([^<]*)</pre>", dom)
    assert m, dom[-2000:]
    widths = [int(w) for w in m.group(1).split(",")]
    assert len(widths) == len(re.findall(r"<img ", html)) and all(w > 0 for w in widths), widths
    shot = tmp_path / "shot.png"
    subprocess.run([exe, *common, f"--screenshot={shot}", "--window-size=1200,2400",
                    (out / "report.html").as_uri()], capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.float32)
    assert a.shape[0] >= 2000 and a.std() > 10  # not a blank page
    # the red FAIL banner is at the top
    top = a[: a.shape[0] // 10]
    assert np.any((top[..., 0] > 150) & (top[..., 1] < 80) & (top[..., 2] < 80))
    keep = os.environ.get("SYNTHMED_KEEP_SCREENSHOT")
    if keep:  # for a human to look at
        shutil.copy(shot, keep)
