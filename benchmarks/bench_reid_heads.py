"""Re-identification network head variants: verification AUC and planted-copy rank-1 per setting.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_reid_heads.py STEPS knee|nih "pool=grid,pool=avg"

Each comma-separated variant is `key=value;key=value` over IdentitySettings fields (channels as
16-32-64). Same split and planted-copy measure as bench_reid.py (knee: 500 validation patients;
NIH: 30 %, single-image patients as distractors).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "benchmarks", ROOT / "tests"):
    sys.path.insert(0, str(_p))

from bench_reid import SHARED, load_knee, load_nih, plant_rank1  # noqa: E402
from synthmed.audit import reid  # noqa: E402

CONVERT = {"pool": str, "convs_per_stage": int, "work_size": int, "dim": int, "batch_size": int,
           "lr": float, "temperature": float}


def parse_variant(variant: str) -> dict:
    """`key=value;key=value` over IdentitySettings fields (channels as 16-32-64) -> keyword dict."""
    kw = dict(x.split("=", 1) for x in variant.split(";") if "=" in x)
    settings = {k: CONVERT.get(k, str)(x) for k, x in kw.items() if k != "channels"}
    if "channels" in kw:
        settings["channels"] = tuple(int(c) for c in kw["channels"].split("-"))
    return settings


def main(argv: list[str]) -> int:
    steps, which, variants = int(argv[0]), argv[1], argv[2].split(",")
    if which == "knee":
        images, ids = load_knee(SHARED / "knee-oa-8260")
        frac, singles = 500 / len(reid.repeat_groups(ids)), []
    else:
        images, ids = load_nih(SHARED / "nih-cxr14-1000")
        frac = 0.3
        uniq, counts = np.unique(ids, return_counts=True)
        singles = [np.flatnonzero(ids == p)[0] for p in uniq[counts == 1]]
    fit, val = reid.split_patients_with_repeats(ids, frac, 0)
    val_p = list(np.random.default_rng(0).permutation(np.array(sorted(set(ids[val])))))
    for v in variants:
        s = reid.IdentitySettings(steps=steps, **parse_variant(v))
        t = time.perf_counter()
        net = reid.train_reid_network(images[fit], ids[fit], s, 0)
        tt = time.perf_counter() - t
        ver = reid.verify_network(net, images[val], ids[val], n_bootstrap=50, seed=0)
        r1 = plant_rank1(net, images, ids, val_p, 200, singles)
        print(which, v, f"steps {steps} train {tt:.0f}s ({tt / steps:.2f}s/step) AUC {ver.auc:.4f} "
              f"[{ver.ci[0]:.3f},{ver.ci[1]:.3f}] rank1 {r1[0]:.3f} of {r1[1]} among {r1[2]} {r1[3]} "
              f"loss {net.training['loss_last']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
