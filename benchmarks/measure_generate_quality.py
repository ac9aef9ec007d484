"""The spread behind tests/test_generate_quality.py's floors, over several seeds.

For each seed s: the toy population (tests/helpers_generate.py, 160 patients x 3 images, 24x24,
80 training patients), the linear-Gaussian model fitted to the training patients, a 200-patient
cohort with 1-3 studies (the test's spec, seed s), then (a) the evaluate classifier's label rate
and sample AUC on first studies and follow-ups, (b) the re-identification network (test size):
its verification AUC on the real holdout, the share of follow-ups whose nearest first study is
their own patient's (top-1, top-5; chance 1/200), and the links of virtual patients to training
vs holdout patients (AUC, and the share of synthetic images whose best real match is a training
patient).

The follow-ups are the product's (re-noised with their first study's own noise, `fresh_noise` of
it fresh); the baseline, measured in the same run on the same world, is classic SDEdit (all of
the re-noising fresh, `fresh_noise` 1). For both: the re-identification rate and how far a
follow-up moves from its first study outside the findings (RMS, [0, 1] pixels), against a real
holdout patient's second image vs their first; the ratios are product / baseline. `--curve`
adds that table over SDEdit strengths x fresh shares.

    python benchmarks/measure_generate_quality.py --seeds 0,1,2,3,4
    python benchmarks/measure_generate_quality.py --seeds 0,1,2,3,4 --curve 0.1,0.25,0.35:0,0.1,0.25,1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import test_generate_quality as t  # noqa: E402
from helpers_generate import VOCAB, fit_gaussian_model, toy_population  # noqa: E402
from synthmed.audit import reid  # noqa: E402
from synthmed.config import validate_config  # noqa: E402
from synthmed.data.cohort import Cohort  # noqa: E402
from synthmed.evaluate.classifier import LabelClassifier  # noqa: E402
from synthmed.evaluate.conditioning import label_rate  # noqa: E402
from synthmed.generate.manifest import read_manifest_rows  # noqa: E402
from synthmed.generate.runner import generate  # noqa: E402
from synthmed.generate.spec import CohortSpec, FollowupSpec  # noqa: E402
from synthmed.stats import clopper_pearson, roc_auc  # noqa: E402


def _cohort(pipe, seed: int, out: Path, **followup):
    spec = validate_config({
        "patients": 200, "seed": seed, "batch_patients": 25,
        "studies": {"per_patient": t.STUDIES, "interval_days": {"min": 30, "max": 400}},
        "labels": {"prevalence": t.PREVALENCE, "appear": t.APPEAR, "resolve": t.RESOLVE},
        "age": {"mean": 60, "sd": 12, "min": 30, "max": 90}, "sex_ratio": t.FEMALE,
        "followup": {**t.FOLLOWUP, **followup}}, CohortSpec)
    generate(pipe, spec, out)
    return read_manifest_rows(out), np.asarray(Cohort.open(out).images)


def _outside_findings() -> np.ndarray:
    from helpers_generate import _blob

    return np.all([_blob(t.SHAPE, j) < 0.05 for j in range(len(VOCAB))], axis=0)


def _follow_ups(net, rows, imgs) -> tuple[float, float, int]:
    """(top-1 re-identification rate of follow-ups among first studies, RMS follow-up - first
    study outside the findings, number of follow-ups)."""
    patient = np.array([r.patient for r in rows])
    follow = np.array([r.study_index > 0 for r in rows])
    first, fol = np.flatnonzero(~follow), np.flatnonzero(follow)
    own = {patient[i]: i for i in first}
    e = net.embed(imgs)
    top1 = float(np.mean(patient[first[(e[fol] @ e[first].T).argmax(1)]] == patient[fol]))
    d = imgs[fol] - imgs[[own[patient[i]] for i in fol]]
    return top1, float(np.sqrt(np.mean(d[:, _outside_findings()] ** 2))), len(fol)


def _real_repeats(images, pids, train) -> float:
    """RMS of a real holdout patient's second image minus their first, outside the findings."""
    hp, hx = pids[~train], images[~train]
    f1 = np.array([np.flatnonzero(hp == p)[0] for p in np.unique(hp)])
    return float(np.sqrt(np.mean((hx[f1 + 1] - hx[f1])[:, _outside_findings()] ** 2)))


def one(seed: int, tmp: Path, curve: tuple[list[float], list[float]] | None = None) -> None:
    images, pids, labels = toy_population(160, 3, shape=t.SHAPE, cell=t.CELL, seed=seed)
    train = np.isin(pids, np.unique(pids)[:80])
    pipe = fit_gaussian_model(images[train], labels[train], k=(t.SHAPE[0] // t.CELL) ** 2)
    rows, imgs = _cohort(pipe, seed, tmp / f"cohort-{seed}")
    clf = LabelClassifier(2, t.SHAPE, list(VOCAB), channels=(8, 16), seed=0)
    clf.fit(images[train], labels[train], epochs=15, batch_size=32, lr=5e-3)
    follow = np.array([r.study_index > 0 for r in rows])
    for label in VOCAB:
        has = np.array([label in r.labels for r in rows])
        for part, sel in (("first", ~follow), ("follow-up", follow)):
            r = label_rate(clf, label, imgs[sel & has], real_images=images[~train],
                           real_targets=labels[~train], contrast_samples=imgs[sel & ~has])
            print(f"seed {seed} {label} {part}: rate {r.rate:.3f} (chance {r.chance_rate:.3f}, "
                  f"contrast {r.contrast_rate:.3f}) sample AUC {r.sample_auc:.3f} "
                  f"p {r.contrast_p_value:.2g} n {r.n}", flush=True)
    net = reid.train_reid_network(images[train], pids[train], reid.IdentitySettings(**t.REID), seed=0)
    v = reid.verify_network(net, images[~train], pids[~train], n_bootstrap=50, alpha=0.05, seed=0)
    real = _real_repeats(images, pids, train)
    top1_p, rms_p, n_fol = _follow_ups(net, rows, imgs)
    base_rows, base_imgs = _cohort(pipe, seed, tmp / f"baseline-{seed}", fresh_noise=1.0)
    top1_b, rms_b, _ = _follow_ups(net, base_rows, base_imgs)
    fresh = FollowupSpec.model_fields["fresh_noise"].default
    print(f"seed {seed} follow-ups (strength {t.FOLLOWUP['strength']}): product (fresh_noise "
          f"{fresh}) top-1 {top1_p:.3f}, RMS to first study outside findings {rms_p:.4f}; baseline "
          f"classic SDEdit top-1 {top1_b:.3f}, RMS {rms_b:.4f}; ratio top-1 {top1_p / top1_b:.2f}, "
          f"RMS {rms_p / rms_b:.2f}; real repeats RMS {real:.4f} (product / real "
          f"{rms_p / real:.2f}, baseline / real {rms_b / real:.2f}); n {n_fol}", flush=True)
    strengths, shares = curve or ([], [])
    for strength, fr in ((a, b) for a in strengths for b in shares):
        c_rows, c_imgs = _cohort(pipe, seed, tmp / f"curve-{seed}-{strength}-{fr}",
                                 strength=strength, fresh_noise=fr)
        top1, rms, _ = _follow_ups(net, c_rows, c_imgs)
        print(f"seed {seed} curve strength {strength} fresh_noise {fr}: top-1 {top1:.3f} RMS "
              f"{rms:.4f} (/ real {rms / real:.2f})", flush=True)
    patient = np.array([r.patient for r in rows])
    first, fol = np.flatnonzero(~follow), np.flatnonzero(follow)
    e = net.embed(imgs)
    sim = e[fol] @ e[first].T
    top1 = np.mean(patient[first[sim.argmax(1)]] == patient[fol])
    top5 = np.mean([patient[fol[i]] in set(patient[first[np.argsort(-sim[i])[:5]]]) for i in range(len(fol))])
    auc, k_img, n_img, k_pat, n_pat = _links(net, images, pids, train, rows, imgs)
    base = _links(net, images, pids, train, base_rows, base_imgs)
    print(f"seed {seed} reid: verification AUC {v.auc:.3f} [{v.ci[0]:.3f}, {v.ci[1]:.3f}]; "
          f"follow-up -> own first study top-1 {top1:.3f} top-5 {top5:.3f} of {len(fol)} "
          f"(chance {1 / len(first):.3f}); link AUC train vs holdout {auc:.3f} (baseline "
          f"{base[0]:.3f}); virtual patients whose first study's best real match is a training "
          f"patient {k_pat}/{n_pat} {_ci(k_pat, n_pat)} (baseline {base[3]}/{base[4]}); synthetic "
          f"images {k_img}/{n_img} {_ci(k_img, n_img)} (baseline {base[1]}/{base[2]} "
          f"{_ci(base[1], base[2])}; images of one patient are not independent)", flush=True)


def _ci(k: int, n: int) -> str:
    lo, hi = clopper_pearson(k, n, t.ALPHA)
    return f"[{lo:.3f}, {hi:.3f}]"


def _links(net, images, pids, train, rows, imgs) -> tuple[float, int, int, int, int]:
    """(link AUC training vs holdout patients; synthetic images, and virtual patients by their
    first study, whose best real match is a training patient: count, total, count, total)."""
    links = reid.best_links(net, images, pids, imgs)
    in_train = np.isin(links.patients, np.unique(pids[train]))
    shown = np.isin(links.patient_of_synthetic(pids), np.unique(pids[train]))
    firsts = np.array([r.study_index == 0 for r in rows])
    return (roc_auc(links.score[in_train], links.score[~in_train]), int(shown.sum()), len(shown),
            int(shown[firsts].sum()), int(firsts.sum()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--curve", default="", help="STRENGTHS:FRESH_SHARES, e.g. 0.1,0.35:0,1")
    a = ap.parse_args()
    torch.set_num_threads(1)
    curve = None
    if a.curve:
        st, fr = a.curve.split(":")
        curve = ([float(v) for v in st.split(",")], [float(v) for v in fr.split(",")])
    with tempfile.TemporaryDirectory() as tmp:
        for s in (int(x) for x in a.seeds.split(",")):
            one(s, Path(tmp), curve)


if __name__ == "__main__":
    main()
