"""Reference audits with the model in hand (`synthmed audit ... --model RUN`).

Three generators with a known answer, each trained, sampled and audited with synthmed's own API
(`synthmed.models.train`, `DiffusionModel.sample`, `synthmed.audit.run_audit(..., model=RUN)`,
the functions behind `synthmed train` / `sample` / `audit --model`), on a small dataset of 60
patients with one 16x16 image each (tests/helpers_nih.py toy_dataset: smooth random patterns plus
per-image noise; 20 train, 20 holdout, 20 reference patients):

  memorising: the tests' memorising configuration (tests/test_audit_whitebox.py MEMO: 1,000
              steps of batch 8 over 20 images, ~400 epochs): must FAIL;
  normal:     the same network on 200 patients (67 train), 300 steps (~36 epochs), EMA 0.999;
  dp:         the memorising configuration with patient-level DP-SGD (epsilon 8, delta 1e-3):
              the audit reports its theoretical epsilon beside the empirical lower bound.

Profile: configs/audit-public.yaml with the encoder space off (pixel space only) and the aligned
copy search off, to keep the run to minutes on a CPU. Writes
privacy_audits/whitebox-reference/<case>/audit.json (+ report.html) and README.md.

    PYTHONPATH=. .venv/bin/python privacy_audits/make_whitebox_audits.py [--cases memorising normal dp]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers_nih import toy_dataset, write_plain_cohort  # noqa: E402
from test_audit_whitebox import FRACTIONS, memorising_config  # noqa: E402
from synthmed.audit import run_audit  # noqa: E402
from synthmed.audit.profile import AuditProfile  # noqa: E402
from synthmed.config import load_config  # noqa: E402
from synthmed.io.atomic import write_text  # noqa: E402
from synthmed.models import load, train  # noqa: E402

CASES = {
    "memorising": ({"n_patients": 60}, {}),
    "normal": ({"n_patients": 200}, {"steps": 300, "ema_decay": 0.999}),
    "dp": ({"n_patients": 60}, {"dp": {"target_epsilon": 8.0, "delta": 1e-3, "max_grad_norm": 1.0}}),
}


def _tpr(a: dict) -> float:
    return a["tpr_at_fpr"]["0.01"]["tpr"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--out", type=Path, default=HERE / "whitebox-reference")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    profile = load_config(ROOT / "synthmed" / "configs" / "audit-public.yaml", AuditProfile,
                          overrides={"attacks": {"spaces": ["pixel"]}, "memorisation": {"aligned": False},
                                     "embedding": {"steps": 0}})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for case in args.cases:
            data_kw, train_kw = CASES[case]
            t0 = time.perf_counter()
            ds = toy_dataset(tmp / f"ds-{case}", per_patient=1, size=16, seed=args.seed,
                             fractions=FRACTIONS, **data_kw)
            run = train(ds, memorising_config(args.seed, **train_kw), tmp / f"run-{case}")
            cohort = write_plain_cohort(tmp / f"cohort-{case}", load(run).sample(60, seed=args.seed).images)
            res = run_audit(ds, cohort, profile, tmp / f"audit-{case}", seed=args.seed, model=run)
            secs = time.perf_counter() - t0
            dest = args.out / case
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp / f"audit-{case}" / "audit.json", dest / "audit.json")
            if (tmp / f"audit-{case}" / "report.html").stat().st_size < (1 << 20):
                shutil.copy(tmp / f"audit-{case}" / "report.html", dest / "report.html")
            audit = res.audit
            wb = [a for a in audit["attacks"] if a["space"] == "model"]
            bb = [a for a in audit["attacks"] if a["space"] != "model"]
            best_wb, best_bb = max(wb, key=_tpr), max(bb, key=_tpr)
            dp = audit["model"]["differential_privacy"]
            eps = (f"{dp['theoretical_epsilon']:.2f} vs {dp['empirical_epsilon_lower_bound']:.2f}"
                   if dp else "no DP")
            rows.append(
                f"| {case} | **{res.verdict.verdict}** | "
                + ", ".join(f"{a['attack']} {a['auc']:.2f}" for a in wb) + " | "
                + ", ".join(f"{a['attack']} {a['auc']:.2f}" for a in bb) + " | "
                + f"{best_wb['attack']} {_tpr(best_wb):.2f} | {best_bb['attack']}/{best_bb['space']} "
                + f"{_tpr(best_bb):.2f} | {eps} | {secs:.0f} |")
            print(rows[-1], flush=True)
    cmd = ("PYTHONPATH=. .venv/bin/python privacy_audits/make_whitebox_audits.py --cases "
           + " ".join(args.cases) + f" --seed {args.seed}")
    write_text(args.out / "README.md", "\n".join([
        "# Reference audits with the model in hand (white-box attacks)", "",
        f"Made by `{cmd}` (see the script's docstring for the three generators and the profile).", "",
        "Patient-level numbers, 20 member and 20 holdout patients. TPR at 1 % FPR: with 20 holdout "
        "patients this is the strictest threshold (no holdout patient above it); the audit marks it "
        "not estimable at 1 %.", "",
        "| case | verdict | white-box AUC | synthetic-only AUC (pixel) | best white-box TPR@1% | "
        "best synthetic-only TPR@1% | DP epsilon: theoretical vs empirical lower bound | seconds |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        "Seconds are wall time on the shared 2-core CPU (other jobs were running).", ""]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
