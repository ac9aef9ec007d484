"""Issue 13, must-shows 2 and 3: evaluate a cohort of the CPU-trained NIH model, and its sweep.

Phases (each reads what the earlier ones left in --work; run them as separate processes where
the machine allows, the encoder before the model is even trained):

  encoder   the audit's contrastive encoder on the real train split, with the shipped evaluate
            config's settings and seed (byte for byte what `evaluate_cohort` would train) -> WORK/encoder
  cohort    `generate_cohort` (the `synthmed sample` path: conditions drawn like the training
            population) -> WORK/cohort
  evaluate  `evaluate_cohort` (fidelity, diversity with floors, condition agreement) -> WORK/evaluation
  utility   `utility` (four regimes on the real holdout) -> WORK/utility.json
  sweep     `sweep_steps` at --sweep-steps -> WORK/sweep.json, benchmarks/figures/sweep_nih.png
  report    everything above -> benchmarks/results_evaluate_nih.json and a markdown table (printed)

    python benchmarks/measure_evaluate_nih.py --phase encoder --work W --dataset D
    python benchmarks/measure_evaluate_nih.py --phase cohort --work W --dataset D --run R
    python benchmarks/measure_evaluate_nih.py --phase evaluate --work W --dataset D   # these two
    python benchmarks/measure_evaluate_nih.py --phase utility --work W --dataset D    # in parallel
    python benchmarks/measure_evaluate_nih.py --phase sweep --work W --dataset D --run R
    python benchmarks/measure_evaluate_nih.py --phase report --work W --dataset D --run R
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.io.atomic import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results_evaluate_nih.json"
FIGURE = ROOT / "benchmarks" / "figures" / "sweep_nih.png"


def _clock(work: Path, name: str, seconds: float) -> None:
    # one file per phase: phases run as parallel processes
    write_json(work / f"clock_{name}.json", {name: round(seconds, 1)})


def phase_encoder(args, ds: Dataset) -> None:
    from synthmed.audit.embeddings import ContrastiveEncoder
    from synthmed.evaluate.config import resolve_eval_config

    cfg = resolve_eval_config("evaluate").encoder
    x_tr = np.asarray(ds.images[ds.require_split("train")], np.float32)
    t0 = time.perf_counter()
    # as evaluate.cohort.feature_space trains it (same settings, same seed)
    e = ContrastiveEncoder(ds.spatial_dims, tuple(ds.shape), dim=cfg.dim, seed=args.seed)
    e.fit(x_tr, steps=cfg.steps, batch_size=cfg.batch_size)
    e.save(args.work / "encoder")
    _clock(args.work, "encoder", time.perf_counter() - t0)
    print(f"encoder: {time.perf_counter() - t0:.0f} s")


def phase_cohort(args, ds: Dataset) -> None:
    from synthmed.generate.cohort import generate_cohort
    from synthmed.generate.pipeline import load

    model = load(args.run, device="cpu")
    t0 = time.perf_counter()
    generate_cohort(model, args.n_cohort, args.work / "cohort", seed=args.seed, steps=args.cohort_steps,
                    batch_size=args.batch, overwrite=True)
    _clock(args.work, "cohort", time.perf_counter() - t0)
    print(f"cohort: {args.n_cohort} images in {time.perf_counter() - t0:.0f} s")


def phase_evaluate(args, ds: Dataset) -> None:
    from synthmed.evaluate.cohort import evaluate_cohort

    t0 = time.perf_counter()
    ev = evaluate_cohort(ds, args.work / "cohort", args.work / "evaluation", encoder=args.work / "encoder",
                         seed=args.seed, overwrite=True)
    _clock(args.work, "evaluate_cohort", time.perf_counter() - t0)
    print(ev.summary())


def phase_utility(args, ds: Dataset) -> None:
    from synthmed.data.cohort import Cohort
    from synthmed.data.values import intensity_range
    from synthmed.evaluate.cohort import _multi_hot
    from synthmed.evaluate.runner import finding_labels, label_targets
    from synthmed.evaluate.utility import UtilityConfig, utility

    co = Cohort.open(args.work / "cohort", intensity_range(ds.info))
    findings = finding_labels(ds.label_vocabulary)
    tr, ho = ds.require_split("train"), ds.require_split("holdout")
    t0 = time.perf_counter()
    cfg = UtilityConfig(steps=args.utility_steps, n_seeds=args.utility_seeds)
    res = utility(np.asarray(ds.images[tr], np.float32), label_targets(ds, tr, findings),
                  np.asarray(co.images, np.float32), _multi_hot(co.records, findings),
                  np.asarray(ds.images[ho], np.float32), label_targets(ds, ho, findings), findings,
                  config=cfg, seed=args.seed, train_patients=ds.patient_ids[tr],
                  holdout_patients=ds.patient_ids[ho])
    _clock(args.work, "utility", time.perf_counter() - t0)
    write_json(args.work / "utility.json", res.to_json())
    print(res.summary())


def phase_sweep(args, ds: Dataset) -> None:
    from synthmed.audit.embeddings import load_embedder
    from synthmed.evaluate.sweep import sweep_steps
    from synthmed.generate.pipeline import load

    model = load(args.run, device="cpu")
    steps = [int(s) for s in args.sweep_steps.split(",")]
    n_at = {int(k): int(v) for k, v in (kv.split(":") for kv in args.sweep_n_at.split(",") if kv)}
    t0 = time.perf_counter()
    res = sweep_steps(model, ds, steps, n=args.sweep_n, n_at=n_at, seed=args.seed,
                      embedder=load_embedder(args.work / "encoder"), batch_size=args.batch)
    _clock(args.work, "sweep", time.perf_counter() - t0)
    write_json(args.work / "sweep.json", res.to_json())
    res.plot(FIGURE)
    print(res.summary())


def phase_report(args, ds: Dataset) -> None:
    from synthmed.provenance import provenance

    ev = json.loads((args.work / "evaluation" / "evaluation.json").read_text())
    ut = json.loads((args.work / "utility.json").read_text())
    sw = json.loads((args.work / "sweep.json").read_text()) if (args.work / "sweep.json").is_file() else None
    clock = {k: v for p in sorted(args.work.glob("clock_*.json")) for k, v in json.loads(p.read_text()).items()}
    run = json.loads((Path(args.run) / "run.json").read_text()) if (Path(args.run) / "run.json").is_file() else {}
    ut_small = {k: v for k, v in ut.items() if k != "roc"}  # the curves stay in WORK/utility.json
    out = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                      f"torch {torch.__version__}, shared (load {os.getloadavg()[0]:.1f} at report time)",
           "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "model": {"hash": ev.get("model_hash"), "train_steps": run.get("config", {}).get("steps"),
                     "run_json_status": run.get("status")},
           "settings": {"n_cohort": args.n_cohort, "cohort_steps": args.cohort_steps,
                        "utility_steps": args.utility_steps, "utility_seeds": args.utility_seeds,
                        "sweep_steps": args.sweep_steps, "sweep_n": args.sweep_n, "sweep_n_at": args.sweep_n_at,
                        "seed": args.seed},
           "wall_seconds": clock,
           "evaluation": {k: ev[k] for k in ("data", "encoder", "fidelity", "conditions") if k in ev},
           "utility": ut_small, "sweep": sw,
           "provenance": provenance({"phase": "report"}, seed=args.seed,
                                    dataset_fingerprint=ds.fingerprint())}
    write_json(RESULTS, out, nan_as_null=True)
    print(markdown(out))


def _iv(d, digits=3):
    if not d:
        return "n/a"
    return f"{d['value']:.{digits}f} [{d['low']:.{digits}f}, {d['high']:.{digits}f}]"


def markdown(out: dict) -> str:
    lines = []
    ev, ut, sw = out["evaluation"], out["utility"], out["sweep"]
    fid = ev.get("fidelity", {})
    if "frechet" in fid:
        lines.append("| metric | cohort | real floor (holdout vs train) 95 % range |")
        lines.append("|---|---|---|")
        for key, m, name in (("frechet", "value", "Fréchet (encoder)"), ("prdc", "precision", "precision"),
                             ("prdc", "recall", "recall"), ("prdc", "density", "density"),
                             ("prdc", "coverage", "coverage"), ("ms_ssim", "ms_ssim", "MS-SSIM (diversity)")):
            iv = fid[key]["floor"]["metrics"][m]
            lines.append(f"| {name} | {fid[key]['synthetic'][m]:.3f} | {iv['mean']:.3f} "
                         f"[{iv['low']:.3f}, {iv['high']:.3f}] |")
    cond = ev.get("conditions", {})
    if isinstance(cond, dict) and "not_evaluated" not in cond:
        lines.append("")
        lines.append("| attribute | agreement with manifest [95 % CI] | chance | kappa | AUC | same classifier on real holdout (agreement / AUC) |")
        lines.append("|---|---|---|---|---|---|")

        def f3(v):
            return "n/a" if v is None else f"{v:.3f}"

        for name, a in cond.items():
            if isinstance(a, dict) and "agreement" in a:
                lines.append(f"| {name} | {a['agreement']:.3f} [{a['low']:.3f}, {a['high']:.3f}] | "
                             f"{a['chance']:.3f} | {a['kappa']:.3f} | {f3(a.get('auc'))} | "
                             f"{f3(a.get('real'))} / {f3(a.get('real_auc'))} |")
            elif isinstance(a, dict):
                lines.append(f"| {name} | not available: {a.get('not_available')} | | | | |")
    lines.append("")
    lines.append(f"Utility, macro AUC over {len(ut['macro_labels'])} findings ({', '.join(ut['macro_labels'])}):")
    lines.append("")
    lines.append("| regime | macro AUC [95 % CI, holdout patients] | optimiser steps |")
    lines.append("|---|---|---|")
    for name, r in ut["regimes"].items():
        lines.append(f"| {name} | {_iv(r['macro_auc'])} | {r['optimiser_steps']} |")
    lines.append(f"| TSTR / TRTR | {_iv(ut['tstr_trtr'])} | |")
    for k, v in ut["differences_to_real"].items():
        lines.append(f"| {k} | {_iv(v)} | |")
    if sw:
        lines.append("")
        lines.append(f"Sweep (unconditional, comparison size n = {sw['size']}, reference {sw['reference_steps']} steps):")
        lines.append("")
        lines.append("| steps | n drawn | Fréchet ± sd | precision | recall | intensity W1 | s / image | costs |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for p in sw["points"]:
            m, s = p["metrics"], p["spread"]
            lines.append(f"| {p['steps']} | {p['n']} | {m['frechet']:.3f} ± {s['frechet']:.3f} | "
                         f"{m['precision']:.2f} | {m['recall']:.2f} | {m['intensity_w1']:.4f} | "
                         f"{p['seconds_per_image']:.2f} | {p['costs']} |")
        fl = sw["floor"]["frechet"]
        lines.append(f"| real floor (n = {sw['floor_size']}) | | {fl['mean']:.3f} [{fl['low']:.3f}, {fl['high']:.3f}] | | | | | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", nargs="+", required=True,
                    choices=["encoder", "cohort", "evaluate", "utility", "sweep", "report"])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--run", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-cohort", type=int, default=853)
    ap.add_argument("--cohort-steps", type=int, default=None, help="sampling steps (default: the model's)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--utility-steps", type=int, default=400)
    ap.add_argument("--utility-seeds", type=int, default=1)
    ap.add_argument("--sweep-steps", default="10,20,50,1000")
    ap.add_argument("--sweep-n", type=int, default=64)
    ap.add_argument("--sweep-n-at", default="", help="fewer images at some step counts: 1000:16")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    ds = Dataset.open(args.dataset)
    for ph in args.phase:
        globals()[f"phase_{ph}"](args, ds)


if __name__ == "__main__":
    main()
