"""Reference canary audits: does the audit find planted training images, by number of copies?

For each seed s, through the documented CLI (`synthmed canaries`, run in a subprocess as a user
would run it) on toy data (tests/helpers_nih.py toy_dataset: one 16x16 image per patient, as in
whitebox-reference/): 20 train patients, 415 holdout patients, 20 reference patients. The
canary audit takes 15 of the holdout patients as canaries (5 copied once, 5 ten times, 5 a
hundred times into the train split; `--canaries K` takes K, the holdout grown to K + 400) and
keeps the other 400 as controls, so that a 1 % FPR is estimable (368 controls are needed for
zero false alarms to bound it; the 1 % threshold lets 4 through). The training config is the memorising configuration (tests/test_audit_whitebox.py
MEMO: 400 steps of batch 20), written as YAML.

Writes privacy_audits/canary-reference/seed-<s>/ (canaries.json, canaries.md, canaries.png),
results.json (the detection table of every seed) and README.md.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python privacy_audits/make_canary_audit.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from helpers_nih import toy_dataset  # noqa: E402
from test_audit_whitebox import memorising_config  # noqa: E402
from synthmed.io.atomic import write_json, write_text  # noqa: E402

PATIENTS = {"train": 20, "holdout": 415, "reference": 20}
CANARIES, DUPLICATES = 15, (1, 10, 100)
WHITEBOX = ("loss", "pia", "secmi", "sima")


def run_seed(seed: int, tmp: Path, dest: Path, canaries: int = CANARIES) -> dict:
    patients = {**PATIENTS, "holdout": PATIENTS["holdout"] - CANARIES + canaries}
    n = sum(patients.values())
    ds = toy_dataset(tmp / "ds", n_patients=n, per_patient=1, size=16, seed=seed,
                     fractions={k: v / n for k, v in patients.items()})
    cfg = tmp / "train.yaml"
    cfg.write_text(yaml.safe_dump(memorising_config(seed).model_dump(mode="json"), sort_keys=False))
    out = tmp / "canaries"
    cmd = ["canaries", "--dataset", str(ds), "--config", str(cfg), "--out", str(out),
           "--canaries", str(canaries), "--duplicates", ",".join(map(str, DUPLICATES)), "--seed", str(seed)]
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "synthmed", *cmd], check=True)
    seconds = time.perf_counter() - t
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("canaries.json", "canaries.md", "canaries.png"):
        shutil.copy(out / name, dest / name)
    rec = json.loads((out / "canaries.json").read_text())
    return {"seed": seed, "canaries": canaries, "n_controls": rec["n_controls"], "detection": rec["detection"],
            "seconds": round(seconds, 1), "load_average_1min_at_end": round(os.getloadavg()[0], 2)}


def readme(results: list[dict], out: str = "") -> str:
    seeds = " ".join(str(r["seed"]) for r in results)
    k = results[0].get("canaries", CANARIES)
    attacks = list(results[0]["detection"])
    lines = [
        "# Reference canary audits (issue 12 must-show 4)", "",
        f"Made by `PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python privacy_audits/make_canary_audit.py "
        f"--seeds {seeds}" + (f" --canaries {k}" if k != CANARIES else "")
        + (f" --out {out}" if out else "") + "` (its docstring gives the data and the configuration); each seed's "
        "canaries.json / .md / .png in `seed-<s>/`, every number in `results.json`.", "",
        f"{k} canaries ({k // len(DUPLICATES)} per number of copies) planted into 20 train patients of the "
        "memorising configuration; controls: the other holdout patients, never trained on "
        f"({results[0]['n_controls']}: a 1 % FPR is estimable). Each cell: TPR at 1 % FPR over the "
        f"{k // len(DUPLICATES)} canaries with that many copies (Clopper-Pearson 95 % interval) / AUC against the controls.", "",
        "| seed | attack | " + " | ".join(f"x{d}" for d in DUPLICATES) + " | estimable |",
        "|---|---|" + "---|" * (len(DUPLICATES) + 1),
    ]
    for r in results:
        for a in attacks:
            det = r["detection"][a]
            lines.append(f"| {r['seed']} | {a} | " + " | ".join(
                f"{det[str(d)]['tpr']:.2f} ({det[str(d)]['tpr_ci'][0]:.2f}-{det[str(d)]['tpr_ci'][1]:.2f}) "
                f"/ {det[str(d)]['auc']:.2f}" for d in DUPLICATES)
                + f" | {all(det[str(d)]['estimable'] for d in DUPLICATES)} |")
    best10 = [max(r["detection"][a]["10"]["tpr"] for a in attacks if a in WHITEBOX) for r in results]
    lines += ["", "Best white-box TPR at 1 % FPR for canaries copied 10 times, per seed: "
              + ", ".join(f"{b:.2f}" for b in best10) + " (must-show 4: above 0.50).", "",
              "Wall time per seed (shared 2-core CPU, one thread): "
              + ", ".join(f"seed {r['seed']} {r['seconds']:.0f} s (load {r['load_average_1min_at_end']})"
                          for r in results) + ".", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=HERE / "canary-reference")
    ap.add_argument("--canaries", type=int, default=CANARIES,
                    help="canaries K (shared out among the copy counts); the controls stay 400")
    args = ap.parse_args(argv)
    results = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run_seed(seed, Path(tmp), args.out / f"seed-{seed}", args.canaries))
        print(f"seed {seed}: " + ", ".join(
            f"{a} x10 {results[-1]['detection'][a]['10']['tpr']:.2f}" for a in results[-1]["detection"]),
            flush=True)
        write_json(args.out / "results.json", {"schema": "synthmed.canary-reference/1", "results": results})
    shown = "" if args.out == HERE / "canary-reference" else os.path.relpath(args.out, ROOT)
    write_text(args.out / "README.md", readme(results, shown))
    print((args.out / "README.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
