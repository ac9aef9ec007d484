"""Reference audits with the model in hand (`synthmed audit ... --model RUN`), over seeds.

Generators with a known answer, each trained, sampled, audited and evaluated with synthmed's own
API (`synthmed.api.train` / `generate` / `audit(..., model=RUN)` / `evaluate(synthetic=...)`, the
functions behind `synthmed train` / `generate` / `audit --model` / `evaluate`), on toy data
(tests/helpers_nih.py toy_dataset: one 16x16 image per patient, a smooth random pattern plus
per-image noise):

  memorising: the tests' memorising configuration (tests/test_audit_whitebox.py MEMO: 400 steps of
              batch 20 over 20 train patients, 400 epochs): must FAIL;
  normal:     the same network on 100 train patients, 300 steps (60 epochs), EMA 0.999;
  dp:         the memorising configuration, data and seed with patient-level DP-SGD (epsilon 8,
              delta 1e-3, clip 1; batch 20 of 20 patients: sampling rate 1, no amplification by
              subsampling): the audit reports its theoretical epsilon beside the empirical lower
              bound, and its fidelity is read beside the memorising model's (the same
              configuration without DP);
  dp-eps1:    the same at epsilon 1 (epsilon 8 allows an attack far from chance: an (8, delta)-DP
              mechanism may have TPR up to e^8 times its FPR, so an AUC interval off 0.5 at
              epsilon 8 is no contradiction; at epsilon 1 the TPR is at most 2.7 x FPR + delta);
  fidelity-plain / fidelity-dp: what DP costs when there are enough patients for DP-SGD to learn
              anything: 400 train patients, 800 steps of batch 20 (40 epochs), EMA 0.999, without
              and with DP (epsilon 8, delta 1e-3, clip 1, sampling rate 0.05).

Why 800 holdout patients: TPR at 1 % FPR is only a rate when zero false positives could bound the
FPR at 1 % (synthmed.audit.stats.min_nonmembers_for_fpr: 368 non-members for one 95 % interval;
the audit's intervals are simultaneous, Bonferroni over its rules, which with the 7 attack/space
pairs here (17 rules) needs 643). With 800 holdout patients the 1 % threshold lets 8 of them through
and the audit itself marks the rate estimable. The member side stays at 20 patients for the
memorising and DP cases (the tests' configuration), so the TPR intervals are wide
(Clopper-Pearson over 20) but the FPR is a real 1 %. The extra holdout patients cost only scoring
(one 16x16 image each, 9 denoiser queries, and the synthetic-only attacks' distances), not
training.

The cohort has 3 synthetic images per train patient, sampled with the project's default sampler
(DPM++, 25 steps; the tests' tiny_config samples with 4 steps, which would blur the copies and
understate the attacks that see the synthetic images only).

Profile: configs/audit-public.yaml with the encoder space off (pixel space only), the aligned copy
search off and 1,000 bootstrap resamples, to keep the run to minutes on one CPU core. Evaluation:
configs/evaluate.yaml (Fréchet distance, precision / recall / density / coverage and MS-SSIM in
the evaluation encoder's space, each beside its real train-vs-holdout floor); the toy data has no
labels, sex or age, so condition agreement and utility are not evaluated.

Writes privacy_audits/whitebox-reference/<case>/ (seed 0: audit.json, report.html,
evaluation.json), <case>/seed-<s>/audit.json + evaluation.json for the other seeds, results.json
(every number of every (case, seed), merged run by run: a (case, seed) already there is skipped
unless --force) and README.md (the tables, remade from results.json).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python privacy_audits/make_whitebox_audits.py \
        [--cases memorising normal dp fidelity-plain fidelity-dp] [--seeds 0 1 2] [--readme-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers_nih import toy_dataset  # noqa: E402
from test_audit_whitebox import memorising_config  # noqa: E402
from synthmed import api  # noqa: E402
from synthmed.io.atomic import write_json, write_text  # noqa: E402

DP = {"target_epsilon": 8.0, "delta": 1e-3, "max_grad_norm": 1.0}
# (train, holdout, reference) patients, and what differs from the memorising configuration
CASES: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {
    "memorising": ((20, 800, 40), {}),
    "normal": ((100, 800, 40), {"steps": 300, "ema_decay": 0.999}),
    "dp": ((20, 800, 40), {"dp": DP}),
    "dp-eps1": ((20, 800, 40), {"dp": {**DP, "target_epsilon": 1.0}}),
    "fidelity-plain": ((400, 200, 40), {"steps": 800, "ema_decay": 0.999}),
    "fidelity-dp": ((400, 200, 40), {"steps": 800, "ema_decay": 0.999, "dp": DP}),
}
SAMPLING = {"sampler": "dpm++", "steps": 25}  # the project's default (SamplingConfig)
SYNTHETIC_PER_TRAIN_PATIENT = 3
PROFILE_OVERRIDES = {"attacks": {"spaces": ["pixel"]}, "memorisation": {"aligned": False},
                     "embedding": {"steps": 0}, "n_bootstrap": 1000}
FPR = "0.01"
EVAL_CONFIG = "evaluate"


def _rate(a: dict) -> dict:
    r = a["tpr_at_fpr"][FPR]
    return {"tpr": r["tpr"], "tpr_ci": r["tpr_ci"], "fpr": r["fpr_achieved"], "fpr_ci": r["fpr_ci"],
            "estimable": r["estimable"]}


def _fidelity(record: dict) -> dict:
    fid = record.get("fidelity", {})
    if "not_measured" in fid:
        return {"not_measured": fid["not_measured"]}
    out = {}
    for key, metric in (("frechet", "value"), ("prdc", "precision"), ("prdc", "recall"),
                        ("prdc", "density"), ("prdc", "coverage"), ("ms_ssim", "ms_ssim")):
        floor = fid[key]["floor"]["metrics"][metric]
        out[metric if key != "frechet" else "frechet"] = {
            "synthetic": fid[key]["synthetic"][metric], "floor": [floor["low"], floor["high"]]}
    return out


def run_case(case: str, seed: int, tmp: Path, dest: Path) -> dict:
    (n_tr, n_ho, n_ref), train_kw = CASES[case]
    n = n_tr + n_ho + n_ref
    clock: dict[str, float] = {}
    t = time.perf_counter()
    ds = toy_dataset(tmp / "ds", n_patients=n, per_patient=1, size=16, seed=seed,
                     fractions={"train": n_tr / n, "holdout": n_ho / n, "reference": n_ref / n})
    cfg = memorising_config(seed, sampling=SAMPLING, **train_kw)
    run = api.train(ds, tmp / "run", config=cfg).out
    clock["train"] = time.perf_counter() - t
    t = time.perf_counter()
    # 64 patients per batch: one image each, so 25 denoiser calls per 64 images, not per image
    cohort = api.generate(run, tmp / "cohort", n=SYNTHETIC_PER_TRAIN_PATIENT * n_tr, seed=seed,
                          overrides={"batch_patients": 64}).out
    clock["generate"] = time.perf_counter() - t
    t = time.perf_counter()
    res = api.audit(ds, cohort, tmp / "audit", config="public", overrides=PROFILE_OVERRIDES,
                    model=run, seed=seed)
    clock["audit"] = time.perf_counter() - t
    t = time.perf_counter()
    ev = api.evaluate(ds, tmp / "evaluation", synthetic=cohort, config=EVAL_CONFIG, seed=seed)
    clock["evaluate"] = time.perf_counter() - t

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp / "audit" / "audit.json", dest / "audit.json")
    shutil.copy(tmp / "evaluation" / "evaluation.json", dest / "evaluation.json")
    if seed == 0 and (tmp / "audit" / "report.html").stat().st_size < (1 << 20):
        shutil.copy(tmp / "audit" / "report.html", dest / "report.html")
    audit = res.audit
    card = json.loads((run / "model_card.json").read_text())
    attacks = {f"{a['attack']}/{a['space']}": {"auc": a["auc"], "auc_ci": a["auc_ci"], **_rate(a)}
               for a in audit["attacks"]}
    return {
        "case": case, "seed": seed, "patients": {"train": n_tr, "holdout": n_ho, "reference": n_ref},
        "synthetic_images": SYNTHETIC_PER_TRAIN_PATIENT * n_tr,
        "train_config": {k: v for k, v in cfg.model_dump(mode="json").items()
                         if k in ("steps", "batch_size", "lr", "ema_decay", "dp", "seed")},
        "verdict": res.verdict.verdict,
        "failed_rules": sorted(r.rule for r in res.verdict.failed_rules()),
        "attacks": attacks,
        "model_differential_privacy": audit["model"]["differential_privacy"],
        "card_differential_privacy": card["differential_privacy"],
        "fidelity": _fidelity(ev.record),
        "seconds": {k: round(v, 1) for k, v in clock.items()},
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }


def _ci(lo_hi) -> str:
    return f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}"


def _best(attacks: dict, model: bool) -> tuple[str, dict]:
    pool = {k: v for k, v in attacks.items() if k.endswith("/model") == model}
    return max(pool.items(), key=lambda kv: (kv[1]["tpr"], kv[1]["auc"]))


def readme(results: list[dict], cmd: str) -> str:
    by = sorted(results, key=lambda r: (list(CASES).index(r["case"]), r["seed"]))
    wb_names = sorted({k for r in by for k in r["attacks"] if k.endswith("/model")})
    lines = [
        "# Reference audits with the model in hand (white-box attacks)", "",
        f"Made by `{cmd}` (privacy_audits/make_whitebox_audits.py's docstring describes the "
        "generators, the profile and the evaluation). Every number below is in `results.json`; "
        "seed 0's audit.json, report.html and evaluation.json are in `<case>/`, the other "
        "seeds' in `<case>/seed-<s>/`.", "",
        "Protocol: patient-level scores (one 16x16 image per patient); members are the train "
        "patients, non-members 800 holdout patients (200 for the fidelity pair), so that 1 % FPR "
        "is estimable with the audit's simultaneous intervals (643 non-members are needed "
        "for zero false positives to bound the FPR at 1 %; 368 for a single 95 % interval): the "
        "threshold lets at most 8 of 800 holdout patients through. Intervals as audit.json "
        "gives them (simultaneous over the audit's rules, Bonferroni): AUC, percentile bootstrap "
        "over patients; TPR and FPR, Clopper-Pearson. 'Synthetic only' is the best of the attacks that see only the "
        "synthetic images (dcr, domias, mc_neighbourhood, in pixel space), chosen per seed by "
        "TPR at 1 % FPR (then AUC) after the fact, which favours it.", "",
        "## White-box vs synthetic-only: TPR at 1 % FPR, per seed", "",
        "| case | seed | verdict | " + " | ".join(f"{k.split('/')[0]} TPR (CI) / AUC" for k in wb_names)
        + " | best synthetic-only: attack, TPR (CI) / AUC | achieved FPR (best white-box / best synthetic-only) |",
        "|---|---|---|" + "---|" * len(wb_names) + "---|---|",
    ]
    for r in by:
        a = r["attacks"]
        bname, b = _best(a, model=False)
        wname, w = _best(a, model=True)
        lines.append(
            f"| {r['case']} | {r['seed']} | {r['verdict']} | "
            + " | ".join(f"{a[k]['tpr']:.2f} ({_ci(a[k]['tpr_ci'])}) / {a[k]['auc']:.2f}" for k in wb_names)
            + f" | {bname.split('/')[0]} {b['tpr']:.2f} ({_ci(b['tpr_ci'])}) / {b['auc']:.2f} | "
            + f"{w['fpr']:.3f} / {b['fpr']:.3f} |")
    lines += ["", "## AUC intervals (does the DP model's cover 0.5?)", "",
              "| case | seed | " + " | ".join(k for k in wb_names) + " | synthetic-only (all) |",
              "|---|---|" + "---|" * len(wb_names) + "---|"]
    for r in by:
        a = r["attacks"]
        lines.append(f"| {r['case']} | {r['seed']} | "
                     + " | ".join(f"{a[k]['auc']:.2f} ({_ci(a[k]['auc_ci'])})" for k in wb_names) + " | "
                     + ", ".join(f"{k.split('/')[0]} {v['auc']:.2f} ({_ci(v['auc_ci'])})"
                                 for k, v in sorted(a.items()) if not k.endswith("/model")) + " |")
    lines += ["", "## Differential privacy: theoretical epsilon vs the audit's empirical lower bound", "",
              "| case | seed | accountant epsilon (delta) | noise multiplier | sampling rate | steps | "
              "empirical lower bound (strongest attack) | consistent |", "|---|---|---|---|---|---|---|---|"]
    for r in by:
        dp, card = r["model_differential_privacy"], r["card_differential_privacy"]
        if dp is None:
            continue
        lines.append(f"| {r['case']} | {r['seed']} | {dp['theoretical_epsilon']:.3f} ({dp['delta']:g}) | "
                     f"{card['noise_multiplier']:.3f} | {card['sample_rate']:.3f} | {card['steps']} | "
                     f"{dp['empirical_epsilon_lower_bound']:.3f} ({dp['strongest_attack']}) | "
                     f"{dp['consistent']} |")
    lines += ["", "## What DP costs in fidelity (synthmed evaluate, configs/evaluate.yaml)", "",
              "Each cell: the cohort's value [real train-vs-holdout floor]. Fréchet distance: lower is "
              "closer; precision / recall / density / coverage: higher is closer (density ~1 for "
              "real); MS-SSIM between pairs of images: diversity, compare with the floor.", "",
              "| case | seed | epsilon | Fréchet | precision | recall | density | coverage | MS-SSIM |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in by:
        f = r["fidelity"]
        eps = (f"{r['card_differential_privacy']['epsilon']:.2f}" if r["card_differential_privacy"]
               else "none")
        if "not_measured" in f:
            lines.append(f"| {r['case']} | {r['seed']} | {eps} | not measured: {f['not_measured']} |||||| ")
            continue
        lines.append(f"| {r['case']} | {r['seed']} | {eps} | "
                     + " | ".join(f"{f[m]['synthetic']:.3g} [{f[m]['floor'][0]:.3g}, {f[m]['floor'][1]:.3g}]"
                                  for m in ("frechet", "precision", "recall", "density", "coverage", "ms_ssim"))
                     + " |")
    lines += ["", "## Wall time (seconds, one thread, shared 2-core CPU)", "",
              "| case | seed | train | generate | audit | evaluate | 1-min load average at the end |",
              "|---|---|---|---|---|---|---|"]
    for r in by:
        s = r["seconds"]
        lines.append(f"| {r['case']} | {r['seed']} | {s['train']:.0f} | {s['generate']:.0f} | "
                     f"{s['audit']:.0f} | {s['evaluate']:.0f} | {r['load_average_1min_at_end']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=HERE / "whitebox-reference")
    ap.add_argument("--force", action="store_true", help="redo (case, seed) pairs already in results.json")
    ap.add_argument("--readme-only", action="store_true", help="only remake README.md from results.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    path = args.out / "results.json"
    results = json.loads(path.read_text())["results"] if path.exists() else []
    if not args.readme_only:
        for case in args.cases:
            for seed in args.seeds:
                if not args.force and any(r["case"] == case and r["seed"] == seed for r in results):
                    continue
                dest = args.out / case / ("" if seed == 0 else f"seed-{seed}")
                with tempfile.TemporaryDirectory() as tmp:
                    row = run_case(case, seed, Path(tmp), dest)
                results = [r for r in results if not (r["case"] == case and r["seed"] == seed)] + [row]
                write_json(path, {"schema": "synthmed.whitebox-reference/1", "results": results})
                a = row["attacks"]
                print(f"{case} seed {seed}: {row['verdict']}; white-box TPR@1% "
                      + ", ".join(f"{k.split('/')[0]} {v['tpr']:.2f}" for k, v in a.items() if k.endswith("/model"))
                      + "; synthetic-only " + ", ".join(f"{k.split('/')[0]} {v['tpr']:.2f}"
                                                         for k, v in a.items() if not k.endswith("/model"))
                      + f"; {row['seconds']}", flush=True)
    # one command per set of seeds, so that it names exactly the (case, seed) pairs kept
    seeds_of: dict[str, tuple[int, ...]] = {}
    for case in sorted({r["case"] for r in results}, key=list(CASES).index):
        seeds_of[case] = tuple(sorted(r["seed"] for r in results if r["case"] == case))
    cmd = "`, then `".join(
        "PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python privacy_audits/make_whitebox_audits.py --cases "
        + " ".join(c for c in seeds_of if seeds_of[c] == seeds) + " --seeds " + " ".join(map(str, seeds))
        for seeds in dict.fromkeys(seeds_of.values()))
    write_text(args.out / "README.md", readme(results, cmd))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
