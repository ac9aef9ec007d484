"""Reference audits on the NIH ChestX-ray14 sample (../shared/data/nih-cxr14-1000).

Two cohorts with a known answer, audited with configs/audit-public.yaml:

  (a) holdout-as-synthetic: the holdout patients' real images, released as if synthetic. Nobody in
      them was trained on, so the audit must not FAIL (this is the best a generator can do); with
      66 holdout patients it cannot PASS either (a 1 % false-alarm rate needs ~620 to be
      measured): the expected verdict is INCONCLUSIVE, with the patients that would settle it;
  (b) memorising-generator: a kernel-density sampler with a tiny bandwidth over the TRAIN split
      (a training image plus noise of standard deviation 0.02): the audit must FAIL.

Writes privacy_audits/nih-cxr14-reference/<case>/audit.json (and report.html when it is under
1 MiB). The dataset is built in a temporary folder (images are never copied into the repository):
with `synthmed.data.ingest` when it can read the PNGs + metadata.csv, otherwise with the
test helper that splits the same PNGs by Patient ID.

    .venv/bin/python privacy_audits/make_reference_audits.py [--encoder-steps 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers_nih import kde_sampler, nih_dataset, write_plain_cohort  # noqa: E402
from synthmed.audit import run_audit  # noqa: E402
from synthmed.audit.profile import AuditProfile  # noqa: E402
from synthmed.config import load_config  # noqa: E402
from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.io.atomic import write_text  # noqa: E402


def build_dataset(nih: Path, out: Path) -> tuple[Path, str]:
    """50/25/25 train / holdout / reference by patient, through the real ingestion when present."""
    from helpers_nih import ingest_nih

    try:
        made = ingest_nih(nih, out, holdout=0.25, reference=0.25, seed=0)
        if made is not None:
            return made, "synthmed.data.ingest (split by patient: holdout 0.25, reference 0.25, seed 0)"
    except Exception as err:  # noqa: BLE001 - fall back to the helper, and say so
        print(f"ingest not usable here ({type(err).__name__}: {err}); using tests/helpers_nih.py",
              file=sys.stderr)
        shutil.rmtree(out, ignore_errors=True)
    return (nih_dataset(nih, out, use_ingest=False),
            "tests/helpers_nih.py (50/25/25 train/holdout/reference by Patient ID)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nih", type=Path, default=ROOT.parent / "shared" / "data" / "nih-cxr14-1000")
    ap.add_argument("--out", type=Path, default=HERE / "nih-cxr14-reference")
    ap.add_argument("--encoder-steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    profile = load_config(ROOT / "configs" / "audit-public.yaml", AuditProfile,
                          overrides={"embedding": {"steps": args.encoder_steps}})
    lines = ["# Reference audits on NIH ChestX-ray14 (1,000 images, 264 patients, 64x64)", "",
             f"Made by `.venv/bin/python privacy_audits/make_reference_audits.py --encoder-steps "
             f"{args.encoder_steps} --seed {args.seed}` with `configs/audit-public.yaml`.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ds_dir, how = build_dataset(args.nih, tmp / "dataset")
        ds = Dataset.open(ds_dir)
        lines += [f"Dataset built with {how}: " + ", ".join(
            f"{s} {len(ds.patients(s))} patients / {ds.indices(s).size} images"
            for s in ("train", "holdout", "reference")) + ".", "",
            "| case | expected | verdict | strongest attack AUC (range) | flagged copies | holdout patients needed | seconds |",
            "|---|---|---|---|---|---|---|"]
        train = np.asarray(ds.images[ds.indices("train")])
        cases = [("holdout-as-synthetic", "inconclusive", np.asarray(ds.images[ds.indices("holdout")])),
                 ("memorising-generator", "fail", kde_sampler(train, 2 * train.shape[0], 0.02, seed=args.seed))]
        encoder = None
        for name, expected, images in cases:
            t0 = time.perf_counter()
            cohort = write_plain_cohort(tmp / f"cohort-{name}", images)
            out = tmp / f"audit-{name}"
            res = run_audit(ds_dir, cohort, profile, out, seed=args.seed, encoder=encoder)
            if encoder is None and (out / "encoder").is_dir():
                encoder = tmp / "encoder"  # the same encoder for both cases
                shutil.copytree(out / "encoder", encoder)
            secs = time.perf_counter() - t0
            dest = args.out / name
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(out / "audit.json", dest / "audit.json")
            report = out / "report.html"
            if report.stat().st_size < (1 << 20):
                shutil.copy(report, dest / "report.html")
            best = max(res.audit["attacks"], key=lambda a: a["auc"])
            lines.append(f"| {name} | {expected} | **{res.verdict.verdict}** | {best['attack']}/{best['space']} "
                         f"{best['auc']:.3f} ({best['auc_ci'][0]:.3f}-{best['auc_ci'][1]:.3f}) | "
                         f"{res.audit['memorisation']['n_flagged']} of {res.audit['memorisation']['n_synthetic']} "
                         f"| {res.verdict.patients_needed or '-'} | {secs:.0f} |")
            print(f"{name}: {res.verdict.verdict} (expected {expected})")
    lines += ["", "Seconds are wall time on a shared 2-core CPU (other jobs were running).", ""]
    write_text(args.out / "README.md", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
