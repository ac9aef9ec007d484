"""Must-show 2: a generator trained on real chest X-rays, measured.

Phases (each reuses what the earlier ones left in --work):

  ingest      NIH ChestX-ray14 subset (PNG + metadata.csv) -> WORK/dataset (64x64 by default)
  classifier  LabelClassifier on the REAL train split -> WORK/classifier.safetensors (+ holdout AUCs)
  train       synthmed.models.train(WORK/dataset, config, WORK/run)
  evaluate    samples conditioned on the most frequent findings -> label rate vs chance
              (classifier thresholds set on real holdout images), pixel / feature distances of
              unconditional samples to the real train split next to the real-vs-real floor,
              and grids benchmarks/figures/cxr_samples.png + cxr_real.png

    python benchmarks/run_cxr.py --phase ingest classifier --work /work/runs/cxr64
    nohup python benchmarks/run_cxr.py --phase train --steps 3000 --work /work/runs/cxr64 > LOG 2>&1 &
    python benchmarks/run_cxr.py --phase evaluate --work /work/runs/cxr64 --n 120

Results go to WORK/evaluate.json (and are printed). Works on a GPU with --device cuda.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.evaluate import (LabelClassifier, fidelity_report, fit_on_dataset,  # noqa: E402
                               label_rate, save_grid)
from synthmed.io.atomic import write_json  # noqa: E402
from synthmed.provenance import provenance  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "nih-cxr14-1000"
FIG = ROOT / "benchmarks" / "figures"


def phase_ingest(args) -> None:
    from synthmed.data.ingest import ingest
    from synthmed.data.ingest_config import IngestConfig

    out = args.work / "dataset"
    if (out / "dataset.json").is_file():
        print(f"ingest: {out} exists, kept")
        return
    cfg = IngestConfig(spatial_dims=2, shape=(args.size, args.size))
    t0 = time.time()
    # The de-identification key of this run lives beside it, not in the user's config folder.
    os.environ.setdefault("SYNTHMED_HOME", str(args.work / "home"))
    ingest([args.data / "images"], out, config=cfg, metadata_csv=args.data / "metadata.csv")
    ds = Dataset.open(out)
    print(f"ingest: {time.time() - t0:.1f}s", json.dumps(ds.summary()["splits"], indent=1)[:1500])


def _eval_labels(ds: Dataset) -> list[str]:
    # 'No Finding' is the absence of labels, not a finding the generator is asked for.
    return [lab for lab in ds.label_vocabulary if lab.lower() != "no finding"]


def _targets(ds: Dataset, idx: np.ndarray, labels: list[str]) -> np.ndarray:
    vocab = ds.label_vocabulary
    return ds.label_matrix()[idx][:, [vocab.index(lab) for lab in labels]]


def phase_classifier(args) -> None:
    ds = Dataset.open(args.work / "dataset")
    labels = _eval_labels(ds)
    t0 = time.time()
    clf = fit_on_dataset(ds, labels, seed=args.seed, device=args.device, epochs=args.clf_epochs)
    fit_s = time.time() - t0
    clf.save(args.work / "classifier.safetensors")
    hold = ds.require_split("holdout")
    scores = clf.score(np.asarray(ds.images[hold]), _targets(ds, hold, labels))
    tr = ds.require_split("train")
    train_scores = clf.score(np.asarray(ds.images[tr]), _targets(ds, tr, labels))
    rec = {"fit_seconds": fit_s, "epochs": args.clf_epochs, "n_train": int(tr.size),
           "n_holdout": int(hold.size), "holdout_auc": scores, "train_auc": train_scores}
    write_json(args.work / "classifier.json", rec)
    print(json.dumps(rec, indent=1))


def phase_train(args) -> None:
    from synthmed.config import load_config
    from synthmed.models import TrainConfig, train

    overrides = {"steps": args.steps} if args.steps else {}
    if args.device != "cpu":
        overrides["device"] = args.device
    cfg = load_config(args.config, TrainConfig, overrides=overrides)
    t0 = time.time()
    run = train(args.work / "dataset", cfg, args.work / "run", resume=args.resume)
    print(f"train: {run} in {time.time() - t0:.0f}s")


def _sample(model, n, cond, args, seed):
    t0 = time.time()
    x = model.sample(n, conditions=cond, steps=args.sample_steps, sampler=args.sampler,
                     seed=seed, batch_size=args.batch)
    return np.asarray(x, np.float32), time.time() - t0


def phase_evaluate(args) -> None:
    from synthmed.models import load

    ds = Dataset.open(args.work / "dataset")
    clf = LabelClassifier.load(args.work / "classifier.safetensors", device=args.device)
    model = load(args.work / "run", device=args.device)
    labels = clf.labels
    tr, hold = ds.require_split("train"), ds.require_split("holdout")
    x_tr, x_ho = np.asarray(ds.images[tr]), np.asarray(ds.images[hold])
    y_tr, y_ho = _targets(ds, tr, labels), _targets(ds, hold, labels)
    counts = y_tr.sum(0)
    top = [labels[j] for j in np.argsort(-counts)[:args.top]]
    print("evaluating labels", top, "train counts", {l: int(counts[labels.index(l)]) for l in top})

    timings = {}
    none, timings["no_finding"] = _sample(model, args.n, {"labels": []}, args, args.seed)
    rates = {}
    cond_sets = {}
    for k, lab in enumerate(top):
        x, timings[lab] = _sample(model, args.n, {"labels": [lab]}, args, args.seed + 1 + k)
        cond_sets[lab] = x
        r = label_rate(clf, lab, x, real_images=x_ho, real_targets=y_ho, contrast_samples=none,
                       base_rate=float(y_ho[:, labels.index(lab)].mean()))
        rates[lab] = r.as_dict()
        print(f"{lab:14s} flagged {r.flagged}/{r.n} = {r.rate:.3f} "
              f"[{r.rate_ci[0]:.3f}, {r.rate_ci[1]:.3f}]  chance {r.chance_rate:.3f}  "
              f"no-finding samples {r.contrast_rate:.3f}  real positives {r.real_positive_rate:.3f} "
              f"(n={r.n_real_positive})  AUC samples {r.sample_auc:.3f} real {r.real_auc:.3f}  "
              f"Fisher p (vs no-finding samples) {r.contrast_p_value:.3g}")
    unc, timings["unconditional"] = _sample(model, args.n, None, args, args.seed + 100)

    # Fidelity of unconditional samples to the real train split, next to the floor (real holdout
    # vs real train at the same set size) and a crude ceiling (uniform noise).
    rng = np.random.default_rng(args.seed)
    n_ref = min(args.n, x_ho.shape[0])
    fid = {"synthetic_vs_train": fidelity_report(x_tr, unc[:n_ref], classifier=clf),
           "holdout_vs_train (floor)": fidelity_report(x_tr, x_ho[rng.permutation(x_ho.shape[0])[:n_ref]],
                                                       classifier=clf),
           "noise_vs_train": fidelity_report(x_tr, rng.random(unc[:n_ref].shape).astype(np.float32),
                                             classifier=clf),
           "n": n_ref}
    for name, d in fid.items():
        if isinstance(d, dict):
            print(f"{name:26s} " + "  ".join(f"{k}={v:.4f}" for k, v in d.items()))

    # Grids: one row per condition (unconditional, no finding, top findings), real rows alike.
    ncol = args.grid_cols
    rows_s = [unc[:ncol], none[:ncol]] + [cond_sets[lab][:ncol] for lab in top]
    scale = max(1, 64 // max(ds.shape))  # 32x32 images are enlarged to be seen
    save_grid(np.concatenate(rows_s), args.fig_dir / "cxr_samples.png", ncol=ncol, scale=scale)
    real_rows = [x_ho[rng.permutation(x_ho.shape[0])[:ncol]],
                 x_ho[np.flatnonzero(y_ho.sum(1) == 0)[:ncol]]]
    for lab in top:
        pos = np.flatnonzero(y_ho[:, labels.index(lab)] == 1)
        if pos.size < ncol:  # few holdout positives: fill the row from train
            extra = np.flatnonzero(y_tr[:, labels.index(lab)] == 1)[:ncol - pos.size]
            real_rows.append(np.concatenate([x_ho[pos], x_tr[extra]]))
        else:
            real_rows.append(x_ho[pos[:ncol]])
    save_grid(np.concatenate(real_rows), args.fig_dir / "cxr_real.png", ncol=ncol, scale=scale)

    result = {"rows": ["unconditional", "no finding"] + top, "label_rates": rates,
              "fidelity": fid, "sampling_seconds": timings, "n_per_condition": args.n,
              "sampler": args.sampler, "steps": args.sample_steps,
              "model_hash": getattr(model, "model_hash", None),
              "classifier": json.loads((args.work / "classifier.json").read_text())
              if (args.work / "classifier.json").is_file() else None,
              "provenance": provenance(vars_json(args), seed=args.seed)}
    write_json(args.work / "evaluate.json", result)
    print(f"wrote {args.work / 'evaluate.json'} and grids in {args.fig_dir}")


def vars_json(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", nargs="+", choices=["ingest", "classifier", "train", "evaluate"], required=True)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "cxr64")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "cxr-64.yaml")
    p.add_argument("--steps", type=int, default=None, help="override the config's training steps")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clf-epochs", type=int, default=30)
    p.add_argument("--n", type=int, default=100, help="samples per condition")
    p.add_argument("--top", type=int, default=4, help="evaluate the K most frequent findings")
    p.add_argument("--sampler", default="dpm++")
    p.add_argument("--sample-steps", type=int, default=None)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--grid-cols", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--fig-dir", type=Path, default=FIG)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    for phase in ("ingest", "classifier", "train", "evaluate"):
        if phase in args.phase:
            globals()[f"phase_{phase}"](args)


if __name__ == "__main__":
    main()
