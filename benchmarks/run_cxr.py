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
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.evaluate import (LabelClassifier, assignment_test, fidelity_report,  # noqa: E402
                               fit_on_dataset, label_rate, save_grid)
from synthmed.evaluate.conditioning import NO_FINDING  # noqa: E402
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
    fit_split, eval_split = args.clf_split, "train" if args.clf_split == "holdout" else "holdout"
    clf = fit_on_dataset(ds, labels, split=fit_split, seed=args.seed, device=args.device,
                         epochs=args.clf_epochs)
    fit_s = time.time() - t0
    stem = "classifier" if fit_split == "train" else f"classifier_{fit_split}"
    clf.save(args.work / f"{stem}.safetensors")
    fit_idx, eval_idx = ds.require_split(fit_split), ds.require_split(eval_split)
    rec = {"fit_split": fit_split, "fit_seconds": fit_s, "epochs": args.clf_epochs,
           f"n_{fit_split}": int(fit_idx.size), f"n_{eval_split}": int(eval_idx.size),
           f"{eval_split}_auc": clf.score(np.asarray(ds.images[eval_idx]), _targets(ds, eval_idx, labels)),
           f"{fit_split}_auc": clf.score(np.asarray(ds.images[fit_idx]), _targets(ds, fit_idx, labels))}
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


def _sample(model, n, cond, args, seed, guidance=None):
    t0 = time.time()
    x = model.sample(n, conditions=cond, steps=args.sample_steps, sampler=args.sampler,
                     seed=seed, batch_size=args.batch, guidance_scale=guidance)
    return np.asarray(x, np.float32), time.time() - t0


def _read_out(clf, none, cond_sets, calib_x, calib_y, args, tag) -> dict:
    """Label rates and assignment tests of one instrument; calib_* = real images it never saw."""
    labels = clf.labels
    rates = {}
    for lab, x in cond_sets.items():
        r = label_rate(clf, lab, x, real_images=calib_x, real_targets=calib_y, contrast_samples=none,
                       base_rate=float(calib_y[:, labels.index(lab)].mean()))
        rates[lab] = r.as_dict()
        print(f"  [{tag}] {lab:14s} flagged {r.flagged}/{r.n} = {r.rate:.3f} "
              f"[{r.rate_ci[0]:.3f}, {r.rate_ci[1]:.3f}]  chance {r.chance_rate:.3f}  "
              f"no-finding samples {r.contrast_rate:.3f}  real positives {r.real_positive_rate:.3f} "
              f"(n={r.n_real_positive})  AUC samples {r.sample_auc:.3f} real {r.real_auc:.3f}  "
              f"Fisher p (vs no-finding samples) {r.contrast_p_value:.3g}")
    assignment = {}
    # With "no finding" as one more class (can the classifier tell a finding was asked for?) and
    # among the findings alone (can it tell which one?).
    for name, sets in (("with_no_finding", {NO_FINDING: none, **cond_sets}), ("findings_only", cond_sets)):
        a = assignment_test(clf, sets, real_images=calib_x, real_targets=calib_y, seed=args.seed)
        assignment[name] = a.as_dict()
        print(f"  [{tag}] assigned the conditioned class ({name}): {a.correct}/{a.n} = {a.accuracy:.3f} "
              f"[{a.accuracy_ci[0]:.3f}, {a.accuracy_ci[1]:.3f}]  chance {a.chance:.3f}  "
              f"permutation p {a.p_value:.2g}  recall " +
              " ".join(f"{lab}={v:.2f}" for lab, v in a.per_label_recall.items()) +
              f"  | real images {a.real_accuracy:.3f} (n={a.real_n}, chance {a.real_chance:.3f})")
    return {"label_rates": rates, "assignment": assignment}


def _conditioning_at(model, instruments, top, args, guidance, x_tr, y_tr, x_ho, y_ho) -> tuple[dict, dict]:
    """Samples conditioned on each finding (and on none) at one guidance scale, read by each instrument."""
    timings = {}
    none, timings["no_finding"] = _sample(model, args.n, {"labels": []}, args, args.seed, guidance)
    cond_sets = {}
    for k, lab in enumerate(top):
        cond_sets[lab], timings[lab] = _sample(model, args.n, {"labels": [lab]}, args,
                                               args.seed + 1 + k, guidance)
    record = {"sampling_seconds": timings}
    for tag, (clf, calib_x, calib_y) in instruments.items():
        record[tag] = _read_out(clf, none, cond_sets, calib_x, calib_y, args, tag)

    # Guidance buys condition strength with fidelity: each condition's samples against the real
    # train images that carry it, at the size of the real holdout group, next to that group
    # (real holdout vs real train: the floor at the same n). Features of the main instrument.
    clf = next(iter(instruments.values()))[0]
    labels = clf.labels
    fid = {}
    for lab, x in ((NO_FINDING, none), *cond_sets.items()):
        in_tr = y_tr.sum(1) == 0 if lab == NO_FINDING else y_tr[:, labels.index(lab)] == 1
        in_ho = y_ho.sum(1) == 0 if lab == NO_FINDING else y_ho[:, labels.index(lab)] == 1
        m = int(min(in_ho.sum(), x.shape[0]))
        real_tr = x_tr[in_tr]
        fid[lab] = {"n": m, "synthetic": fidelity_report(real_tr, x[:m], classifier=clf),
                    "holdout_floor": fidelity_report(real_tr, x_ho[in_ho][:m], classifier=clf)}
    print("  feature Frechet to real train images of the same condition (synthetic / real-holdout floor): " +
          "  ".join(f"{lab}={d['synthetic']['feature_frechet']:.2f}/{d['holdout_floor']['feature_frechet']:.2f}"
                    f" (n={d['n']})" for lab, d in fid.items()))
    record["fidelity_by_condition"] = fid
    return record, {"no_finding": none, **cond_sets}


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

    # Every guidance scale is reported (none is picked after the fact); the grids show the first.
    # Two instruments: the classifier trained on the generator's own train split (calibrated on
    # the holdout), and, where `--phase classifier --clf-split holdout` made one, a classifier
    # trained on the holdout patients alone (calibrated on the train split). The second never saw
    # an image the generator learnt from, so a sample it reads right is not read right merely
    # because both networks fit the same training images.
    instruments = {"train-split classifier": (clf, x_ho, y_ho)}
    other = args.work / "classifier_holdout.safetensors"
    if other.is_file():
        instruments["holdout-split classifier"] = (LabelClassifier.load(other, device=args.device),
                                                   x_tr, y_tr)
    by_guidance, grid_sets = {}, None
    for g in args.guidance:
        print(f"guidance {g}:")
        by_guidance[str(g)], sets = _conditioning_at(model, instruments, top, args, g,
                                                     x_tr, y_tr, x_ho, y_ho)
        if grid_sets is None:
            grid_sets = sets
    t0 = time.time()
    unc, _ = _sample(model, args.n, None, args, args.seed + 100)
    unconditional_s = time.time() - t0

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
    rows_s = [unc[:ncol], grid_sets["no_finding"][:ncol]] + [grid_sets[lab][:ncol] for lab in top]
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

    result = {"rows": ["unconditional", "no finding"] + top, "grid_guidance": args.guidance[0],
              "by_guidance": by_guidance, "fidelity": fid,
              "unconditional_sampling_seconds": unconditional_s, "n_per_condition": args.n,
              "sampler": args.sampler, "steps": args.sample_steps, "device": args.device,
              "model_hash": getattr(model, "model_hash", None),
              "classifier": json.loads((args.work / "classifier.json").read_text())
              if (args.work / "classifier.json").is_file() else None,
              "provenance": provenance(vars_json(args), seed=args.seed)}
    write_json(args.work / args.out_name, result)
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
