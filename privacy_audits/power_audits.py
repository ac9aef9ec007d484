"""Is the audit big enough to be evidence? The new verdict on three sizes of real data.

Issue 11, build 7: a pass needs every attack's simultaneous AUC range below the tier's smallest
leak to rule out (0.6 for public) and the hit rate at 1 % false alarms to be measurable;
otherwise the verdict is inconclusive with the holdout patients that would settle it
(synthmed/audit/power.py). This script audits, with configs/audit-public.yaml:

  knee   ../shared/data/knee-oa-8260 (4,130 patients, 2 knees each, 64x64), split by patient
         60/20/20 train / holdout / reference (written directly from the PNGs with the test
         helper, the ingestion is not what is measured here); cohort: a generator that never saw
         the members (mixtures of two reference images plus noise, tests/helpers_nih.py);
  nih    ../shared/data/nih-cxr14-1000 through the real ingestion at its default split (holdout
         0.2, no reference: 53 holdout patients, half of whom then calibrate the attacks); cohort:
         mixtures of holdout images (the only real non-members there are);
  demo   (optional, --demo DIR) the audit.json of a finished `synthmed demo`.

and writes privacy_audits/power.md. Run once (minutes); the numbers go in the closing note:

    .venv/bin/python privacy_audits/power_audits.py [--encoder-steps 100] [--aligned-max 300]
        [--demo DIR] [--only knee,nih]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers_nih import ingest_nih, mixture_sampler, split_patients, write_dataset, write_plain_cohort  # noqa: E402
from synthmed.audit import run_audit  # noqa: E402
from synthmed.audit.profile import AuditProfile  # noqa: E402
from synthmed.config import load_config  # noqa: E402
from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.io.atomic import write_text  # noqa: E402


def knee_dataset(src: Path, out: Path) -> Path:
    from PIL import Image

    rows = list(csv.DictReader(open(src / "metadata.csv", newline="")))
    images, patients, labels = [], [], []
    for row in rows:
        with Image.open(src / "images" / row["file"]) as im:
            images.append(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)
        # a keyed-looking pseudonym, never the OAI id itself
        import hashlib

        patients.append("P-" + hashlib.sha256(f"power:{row['patient_id']}".encode()).hexdigest()[:12])
        labels.append(tuple(x for x in row["labels"].split("|") if x))
    which = split_patients(patients, {"train": 0.6, "holdout": 0.2, "reference": 0.2}, seed=0)
    return write_dataset(out, np.stack(images), patients, [which[p] for p in patients], labels=labels)


def summary(name: str, how: str, audit: dict, secs: float | None) -> dict:
    p = audit.get("power") or {}
    best = max(audit["attacks"], key=lambda a: a["auc_ci"][1])
    unsure = [r["rule"] for r in audit["rules"] if r.get("outcome") == "inconclusive"]
    failed = [r["rule"] for r in audit["rules"] if r.get("outcome") == "fail"]
    d = audit["data"]
    return {"case": name, "how": how, "verdict": audit["verdict"],
            "train": d["n_member_patients"], "holdout": p.get("n_holdout_patients"),
            "scored": p.get("n_evaluated_nonmembers"),
            "widest": f"{best['attack']}/{best['space']} {best['auc']:.3f} "
                      f"({best['auc_ci'][0]:.3f}-{best['auc_ci'][1]:.3f})",
            "inconclusive": unsure, "failed": failed,
            "needed": p.get("holdout_patients_needed"),
            "scored_needed": p.get("evaluated_nonmembers_needed"), "seconds": secs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--encoder-steps", type=int, default=100)
    ap.add_argument("--aligned-max", type=int, default=300,
                    help="memorisation.aligned_max_images (registration costs ~40 ms an image)")
    ap.add_argument("--demo", type=Path, default=None, help="a finished demo folder")
    ap.add_argument("--only", default="knee,nih")
    ap.add_argument("--out", type=Path, default=HERE / "power.md")
    args = ap.parse_args(argv)
    profile = load_config(ROOT / "configs" / "audit-public.yaml", AuditProfile,
                          overrides={"embedding": {"steps": args.encoder_steps},
                                     "memorisation": {"aligned_max_images": args.aligned_max}})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for case in [c for c in args.only.split(",") if c]:
            t0 = time.perf_counter()
            if case == "knee":
                ds_dir = knee_dataset(args.data / "knee-oa-8260", tmp / "knee")
                ds = Dataset.open(ds_dir)
                ref = np.asarray(ds.images[ds.indices("reference")])
                images = mixture_sampler(ref, 2000, seed=1)
                how = "60/20/20 by patient; mixtures of reference images"
            elif case == "nih":
                ds_dir = ingest_nih(args.data / "nih-cxr14-1000", tmp / "nih", holdout=0.2, reference=0.0)
                ds = Dataset.open(ds_dir)
                hold = np.asarray(ds.images[ds.indices("holdout")])
                images = mixture_sampler(hold, 400, seed=1)
                how = "real ingestion, default split (holdout 0.2, no reference); mixtures of holdout images"
            else:
                raise SystemExit(f"unknown case {case!r}")
            cohort = write_plain_cohort(tmp / f"cohort-{case}", images)
            res = run_audit(ds_dir, cohort, profile, tmp / f"audit-{case}", seed=0)
            rows.append(summary(case, how, res.audit, time.perf_counter() - t0))
            print(json.dumps(rows[-1]), flush=True)
    if args.demo is not None:
        audit = json.loads((args.demo / "audit" / "audit.json").read_text())
        rows.append(summary("demo", "`synthmed demo` (1,560 virtual patients, default settings)", audit, None))
        print(json.dumps(rows[-1]), flush=True)
    lines = ["# Audit power: is a pass evidence? (issue 11, build 7)", "",
             f"Made by `.venv/bin/python privacy_audits/power_audits.py --encoder-steps {args.encoder_steps} "
             f"--aligned-max {args.aligned_max}"
             + (f" --demo {args.demo}" if args.demo else "") + f" --only {args.only}` with "
             "`configs/audit-public.yaml` (rule_out_auc 0.6, TPR at 1 % FPR).", "",
             "| case | data | verdict | train / holdout (scored) patients | widest AUC range | rules inconclusive | holdout patients needed | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        secs = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(f"| {r['case']} | {r['how']} | **{r['verdict']}** | {r['train']} / {r['holdout']} "
                     f"({r['scored']}) | {r['widest']} | {len(r['inconclusive'])}"
                     f"{' (' + ', '.join(r['inconclusive'][:3]) + (', ...' if len(r['inconclusive']) > 3 else '') + ')' if r['inconclusive'] else ''} "
                     f"| {r['needed'] or '-'} | {secs} |")
    lines += ["", "Holdout patients needed: the dataset re-ingested at the same split fractions (members "
              "grow too), from the observed interval widths (synthmed/audit/power.py); a planning "
              "figure. Seconds: wall time on the shared 2-core CPU (other jobs running).", ""]
    write_text(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
