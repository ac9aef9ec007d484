"""The spread behind tests/test_generate_quality.py's floors, over several seeds.

For each seed s: the toy population (tests/helpers_generate.py, 160 patients x 3 images, 24x24,
80 training patients), the linear-Gaussian model fitted to the training patients, a 200-patient
cohort with 1-3 studies (the test's spec, seed s), then (a) the evaluate classifier's label rate
and sample AUC on first studies and follow-ups, (b) the re-identification network (test size):
its verification AUC on the real holdout, the share of follow-ups whose nearest first study is
their own patient's (top-1, top-5; chance 1/200), and the links of virtual patients to training
vs holdout patients (AUC, and the share of synthetic images whose best real match is a training
patient).

    python benchmarks/measure_generate_quality.py --seeds 0,1,2,3,4
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
from synthmed.generate.spec import CohortSpec  # noqa: E402
from synthmed.stats import clopper_pearson, roc_auc  # noqa: E402


def one(seed: int, tmp: Path) -> None:
    images, pids, labels = toy_population(160, 3, shape=t.SHAPE, cell=t.CELL, seed=seed)
    train = np.isin(pids, np.unique(pids)[:80])
    pipe = fit_gaussian_model(images[train], labels[train], k=(t.SHAPE[0] // t.CELL) ** 2)
    spec = validate_config({
        "patients": 200, "seed": seed, "batch_patients": 25,
        "studies": {"per_patient": t.STUDIES, "interval_days": {"min": 30, "max": 400}},
        "labels": {"prevalence": t.PREVALENCE, "appear": t.APPEAR, "resolve": t.RESOLVE},
        "age": {"mean": 60, "sd": 12, "min": 30, "max": 90}, "sex_ratio": t.FEMALE,
        "followup": {"strength": 0.25}}, CohortSpec)
    out = tmp / f"cohort-{seed}"
    generate(pipe, spec, out)
    rows, imgs = read_manifest_rows(out), np.asarray(Cohort.open(out).images)
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
    patient = np.array([r.patient for r in rows])
    first, fol = np.flatnonzero(~follow), np.flatnonzero(follow)
    e = net.embed(imgs)
    sim = e[fol] @ e[first].T
    top1 = np.mean(patient[first[sim.argmax(1)]] == patient[fol])
    top5 = np.mean([patient[fol[i]] in set(patient[first[np.argsort(-sim[i])[:5]]]) for i in range(len(fol))])
    links = reid.best_links(net, images, pids, imgs)
    in_train = np.isin(links.patients, np.unique(pids[train]))
    shown = links.patient_of_synthetic(pids)
    k = int(np.isin(shown, np.unique(pids[train])).sum())
    print(f"seed {seed} reid: verification AUC {v.auc:.3f} [{v.ci[0]:.3f}, {v.ci[1]:.3f}]; "
          f"follow-up -> own first study top-1 {top1:.3f} top-5 {top5:.3f} of {len(fol)} "
          f"(chance {1 / len(first):.3f}); link AUC train vs holdout "
          f"{roc_auc(links.score[in_train], links.score[~in_train]):.3f}; synthetic -> training "
          f"patient {k}/{len(shown)} {clopper_pearson(k, len(shown), 0.001)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2,3,4")
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for s in (int(x) for x in a.seeds.split(",")):
            one(s, Path(tmp))


if __name__ == "__main__":
    main()
