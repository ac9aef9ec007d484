"""How often does the public audit fail a generator that never saw the members? (NIH sample)

Real patients from ../shared/data/nih-cxr14-1000: 25 % (by patient) are the generator's source
(it samples mixtures of their images plus noise), the other 75 % are split at random, by patient,
into members and non-members, `--splits` times. Every split is a null case. Writes
privacy_audits/calibration.md.

    .venv/bin/python privacy_audits/calibration.py [--splits 200] [--encoder-steps 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers_nih import load_nih, mixture_sampler, split_patients  # noqa: E402
from synthmed.audit.calibration import calibrate  # noqa: E402
from synthmed.audit.embeddings import ContrastiveEncoder  # noqa: E402
from synthmed.audit.profile import AuditProfile  # noqa: E402
from synthmed.config import load_config  # noqa: E402
from synthmed.io.atomic import write_text  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nih", type=Path, default=ROOT.parent / "shared" / "data" / "nih-cxr14-1000")
    ap.add_argument("--splits", type=int, default=200)
    ap.add_argument("--encoder-steps", type=int, default=30)
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    ap.add_argument("--profile", type=Path, default=ROOT / "configs" / "audit-public.yaml")
    args = ap.parse_args(argv)
    images, patients, *_ = load_nih(args.nih)
    patients = np.array(patients)
    which = split_patients(list(patients), {"reference": 0.25, "pool": 0.75}, seed=0)
    is_ref = np.array([which[p] == "reference" for p in patients])
    ref, pool, pool_patients = images[is_ref], images[~is_ref], patients[~is_ref]
    prof = load_config(args.profile, AuditProfile, overrides={"n_bootstrap": args.n_bootstrap})
    t0 = time.perf_counter()
    enc = ContrastiveEncoder(2, images.shape[1:], dim=64, seed=0).fit(pool, steps=args.encoder_steps, batch_size=64)
    res = calibrate(pool, pool_patients, mixture_sampler(ref, 300, seed=0), ref, prof, enc,
                    n_splits=args.splits, seed=0)
    secs = time.perf_counter() - t0
    lo, hi = __import__("synthmed.audit.stats", fromlist=["x"]).clopper_pearson(res.n_failed, res.n_splits)
    lines = [
        "# Calibration of the audit on NIH ChestX-ray14 (null splits)", "",
        f"Command: `.venv/bin/python privacy_audits/calibration.py --splits {args.splits} "
        f"--encoder-steps {args.encoder_steps} --n-bootstrap {args.n_bootstrap}` (profile "
        f"`{args.profile.relative_to(ROOT) if args.profile.is_relative_to(ROOT) else args.profile}`).", "",
        f"Pool: {np.unique(pool_patients).size} patients / {len(pool)} images split 50/50 by patient "
        f"into members / non-members; generator source: {np.unique(patients[is_ref]).size} reference "
        "patients (300 synthetic images, mixtures of two reference images plus noise).", "",
        f"* audit verdict `fail` on **{res.n_failed} of {res.n_splits}** null splits "
        f"({100 * res.fail_rate:.1f} %, 95 % CI {100 * lo:.1f}-{100 * hi:.1f} %); target: at most 5 %.",
        f"* rules that failed: {res.failed_rules or 'none'}",
        f"* a rule 'every AUC upper bound below {prof.attacks.max_auc}' (certify-safety) would have failed "
        f"**{res.n_failed_upper_bound_rule} of {res.n_splits}** ({100 * res.n_failed_upper_bound_rule / res.n_splits:.0f} %).",
        "* attack AUC over splits (mean, sd): " + ", ".join(
            f"{k} {np.mean(v):.3f} ({np.std(v):.3f})" for k, v in res.aucs.items()),
        f"* {secs:.0f} s on a shared 2-core CPU (other jobs running).", ""]
    write_text(HERE / "calibration.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
