"""Must-show 2: a generator trained on real chest X-rays, measured.

Phases (each reuses what the earlier ones left in --work):

  ingest      NIH ChestX-ray14 subset (PNG + metadata.csv) -> WORK/dataset (64x64 by default)
  classifier  LabelClassifier on the REAL train split -> WORK/classifier.safetensors (+ holdout
              AUCs); with --clf-split holdout, a second instrument trained on the holdout
              patients only -> WORK/classifier_holdout.safetensors
  train       synthmed.models.train(WORK/dataset, config, WORK/run)
  evaluate    for each --guidance scale: samples conditioned on the most frequent findings and
              on none, read by each instrument: label rate vs chance (thresholds set on real
              images the instrument never saw), the pooled assignment test, and per-condition
              feature distances next to the real floor; then unconditional fidelity and the
              grids benchmarks/figures/cxr_samples.png + cxr_real.png (first guidance scale)

    python benchmarks/run_cxr.py --phase ingest classifier --size 32 --work /work/runs/cxr32
    python benchmarks/run_cxr.py --phase classifier --clf-split holdout --work /work/runs/cxr32
    nohup python benchmarks/run_cxr.py --phase train --config F --work /work/runs/cxr32 > LOG 2>&1 &
    python benchmarks/run_cxr.py --phase evaluate --work /work/runs/cxr32 --n 100 --guidance 4

Results go to WORK/evaluate.json (--out-name; and are printed). Works on a GPU with --device cuda.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.evaluate import LabelClassifier, fit_on_dataset  # noqa: E402
from synthmed.evaluate.runner import finding_labels, label_targets  # noqa: E402
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


def phase_classifier(args) -> None:
    ds = Dataset.open(args.work / "dataset")
    labels = finding_labels(ds.label_vocabulary)
    t0 = time.time()
    fit_split, eval_split = args.clf_split, "train" if args.clf_split == "holdout" else "holdout"
    clf = fit_on_dataset(ds, labels, split=fit_split, seed=args.seed, device=args.device,
                         epochs=args.clf_epochs)
    fit_s = time.time() - t0
    stem = "classifier" if fit_split == "train" else f"classifier_{fit_split}"
    clf.save(args.work / f"{stem}.safetensors")
    fit_idx, eval_idx = ds.require_split(fit_split), ds.require_split(eval_split)
    rec = {"fit_split": fit_split, "fit_seconds": fit_s, "epochs": args.clf_epochs,
           f"n_{fit_split}": int(fit_idx.size), f"n_{eval_split}": int(eval_idx.size),
           f"{eval_split}_auc": clf.score(np.asarray(ds.images[eval_idx]), label_targets(ds, eval_idx, labels)),
           f"{fit_split}_auc": clf.score(np.asarray(ds.images[fit_idx]), label_targets(ds, fit_idx, labels))}
    write_json(args.work / f"{stem}.json", rec)
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


def _print_details(record: dict) -> None:
    for g, entry in record.get("by_guidance", {}).items():
        print(f"guidance {g}:")
        for tag, res in entry.items():
            if tag == "fidelity_by_condition":
                continue
            for lab, r in res["label_rates"].items():
                print(f"  [{tag}] {lab:14s} flagged {r['flagged']}/{r['n']} = {r['rate']:.3f} "
                      f"[{r['rate_ci'][0]:.3f}, {r['rate_ci'][1]:.3f}]  chance {r['chance_rate']:.3f}  "
                      f"no-finding samples {r['contrast_rate']:.3f}  real positives "
                      f"{r['real_positive_rate']:.3f} (n={r['n_real_positive']})  AUC samples "
                      f"{r['sample_auc']:.3f} real {r['real_auc']:.3f}  Fisher p (vs no-finding "
                      f"samples) {r['contrast_p_value']:.3g}")
            for name, a in res["assignment"].items():
                print(f"  [{tag}] assigned the conditioned class ({name}): {a['correct']}/{a['n']} = "
                      f"{a['accuracy']:.3f} [{a['accuracy_ci'][0]:.3f}, {a['accuracy_ci'][1]:.3f}]  "
                      f"chance {a['chance']:.3f}  permutation p {a['p_value']:.2g}  recall " +
                      " ".join(f"{lab}={v:.2f}" for lab, v in a["per_label_recall"].items()) +
                      f"  | real images {a['real_accuracy']:.3f} (n={a['real_n']}, "
                      f"chance {a['real_chance']:.3f})")
        print("  feature Frechet to real train images of the same condition (synthetic / real-holdout "
              "floor): " + "  ".join(
                  f"{lab}={d['synthetic']['feature_frechet']:.2f}/{d['holdout_floor']['feature_frechet']:.2f}"
                  f" (n={d['n']})" for lab, d in entry["fidelity_by_condition"].items() if "synthetic" in d))
    for name, d in record["fidelity"].items():
        if isinstance(d, dict):
            print(f"{name:26s} " + "  ".join(f"{k}={v:.4f}" for k, v in d.items()))


def phase_evaluate(args) -> None:
    """`synthmed.evaluate.evaluate_generator` with the classifiers of the classifier phase."""
    from synthmed.evaluate import evaluate_generator
    from synthmed.models import load

    ds = Dataset.open(args.work / "dataset")
    clf = LabelClassifier.load(args.work / "classifier.safetensors", device=args.device)
    # The second, independent instrument exists where `--phase classifier --clf-split holdout` ran.
    other = args.work / "classifier_holdout.safetensors"
    independent = LabelClassifier.load(other, device=args.device) if other.is_file() else False
    model = load(args.work / "run", device=args.device)
    out = args.work / f"{Path(args.out_name).stem}_files"
    record = evaluate_generator(model, ds, out, top=args.top, n=args.n, guidance=args.guidance,
                                steps=args.sample_steps, sampler=args.sampler, seed=args.seed,
                                batch_size=args.batch, classifier=clf, independent_classifier=independent,
                                device=args.device, real_grid=True, grid_columns=args.grid_cols)
    print("evaluated labels", record.get("labels"), "train counts", record.get("train_label_counts"))
    _print_details(record)
    args.fig_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "samples.png", args.fig_dir / "cxr_samples.png")
    shutil.copyfile(out / "real.png", args.fig_dir / "cxr_real.png")
    record["classifier"] = (json.loads((args.work / "classifier.json").read_text())
                            if (args.work / "classifier.json").is_file() else None)
    record["benchmark_provenance"] = provenance(vars_json(args), seed=args.seed)
    write_json(args.work / args.out_name, record)
    print(f"wrote {args.work / args.out_name} and grids in {args.fig_dir}")


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
    p.add_argument("--clf-split", choices=["train", "holdout"], default="train",
                   help="split the classifier learns from; 'holdout' makes a second, independent "
                        "instrument (classifier_holdout.safetensors) that evaluate also reads")
    p.add_argument("--n", type=int, default=100, help="samples per condition")
    p.add_argument("--top", type=int, default=4, help="evaluate the K most frequent findings")
    p.add_argument("--guidance", type=float, nargs="+", default=[2.0],
                   help="classifier-free guidance scales to evaluate (each one is reported)")
    p.add_argument("--out-name", default="evaluate.json")
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
