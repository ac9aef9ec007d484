"""Re-identification network benchmark: how well it tells patients apart, and what it costs.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_reid.py [--steps 600] [--out FILE]

Part 1 (issue 10, must-show 3), on ../shared/data knee-oa-8260 (left / right knee of 4,130
patients) and nih-cxr14-1000 (264 patients, 136 with follow-ups):
* the patients with 2+ images are split into fit / validation (knee: `--val-patients`; NIH: 30 %);
  the network trains on the fit patients only, timed (`--steps`);
* verification AUC (with its patient-bootstrap interval) on the validation patients, against two
  baselines measured in the same run: the untrained network (same initialisation) and pixel
  space (cosine of the standardised image);
* planted copies: for up to `--plants` validation patients, a transformed OTHER image (flip,
  shift, gamma, noise in turn) is the synthetic set; the real set is one image of every
  validation patient (NIH: plus every single-image patient, as distractors); the share of plants
  whose best-linked real patient is the right one (rank-1), for the three spaces.
Part 2 (must-show 6): the identity attack's cost for `--n-synthetic` synthetic images against
the whole knee set (8,260 images): embedding both sets and `best_links`; ratio to embedding alone
and to the network's training time.

Part 3 (`--audit`, must-show 6 end to end): a knee dataset folder (all 8,260 images; train /
holdout / reference = 50 / 25 / 25 % of the patients, both knees each) and a 2,000-image
synthetic cohort (mixtures of reference knees); `synthmed identity train` on its train split
(timed), then `run_audit` with the shipped public profile twice: identity attack off (the
baseline, same run) and on with that network (`--identity-network`).

Prints a markdown table; --out writes it to a file.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SYNTHMED_SHARED_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from synthmed.audit import reid  # noqa: E402
from synthmed.audit.augment import transform_copy  # noqa: E402

PLANT_KINDS = ("flip", "shift", "gamma", "noise")


def load_nih(root: Path) -> tuple[np.ndarray, np.ndarray]:
    from _audit_data import load_nih as _load

    return _load(str(root))


def load_knee(root: Path) -> tuple[np.ndarray, np.ndarray]:
    from _audit_data import load_knee as _load

    return _load(root)


class PixelCosine:
    """Pixel space as a verification baseline: the standardised image as a unit vector."""

    def embed(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float32).reshape(len(images), -1)
        x = x - x.mean(1, keepdims=True)
        return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


def plant_rank1(net, images, ids, val_patients, n_plants, distractors=()):
    """Share of planted transformed other-images whose best-linked real patient is theirs."""
    first = {p: np.flatnonzero(ids == p)[0] for p in val_patients}
    real = np.array([first[p] for p in val_patients] + list(distractors))
    syn, truth = [], []
    for k, p in enumerate(val_patients[:n_plants]):
        other = np.flatnonzero(ids == p)[-1]
        syn.append(transform_copy(images[other:other + 1], PLANT_KINDS[k % 4], seed=k)[0])
        truth.append(p)
    links = reid.best_links(net, images[real], ids[real], np.stack(syn))
    hit = links.patient_of_synthetic(ids[real]) == np.array(truth)
    per_kind = {kind: float(hit[k::4].mean()) for k, kind in enumerate(PLANT_KINDS)}
    return float(hit.mean()), len(truth), len(real), per_kind


def measure(name, images, ids, settings, seed, val_patients_n, val_fraction, n_plants, rows, with_singles):
    groups = reid.repeat_groups(ids)
    repeat = np.array(sorted({ids[g[0]] for g in groups}))
    frac = val_fraction if val_patients_n is None else min(0.5, val_patients_n / repeat.size)
    fit, val = reid.split_patients_with_repeats(ids, frac, seed)
    t0 = time.perf_counter()
    net = reid.train_reid_network(images[fit], ids[fit], settings, seed)
    train_s = time.perf_counter() - t0
    untrained = reid.ReidNetwork(images.ndim - 1, images.shape[1:], settings, seed)
    val_p = np.array(sorted(set(ids[val])))
    rng = np.random.default_rng(seed)
    val_p = rng.permutation(val_p)
    singles = []
    if with_singles:
        uniq, counts = np.unique(ids, return_counts=True)
        singles = [np.flatnonzero(ids == p)[0] for p in uniq[counts == 1]]
    out = {}
    for label, model in (("network", net), ("untrained", untrained), ("pixel", PixelCosine())):
        v = reid.verify_network(model, images[val], ids[val], n_bootstrap=200, seed=seed)
        r1 = plant_rank1(model, images, ids, list(val_p), n_plants, singles)
        out[label] = (v, r1)
    v, r1 = out["network"]
    vu, r1u = out["untrained"]
    vp, r1p = out["pixel"]
    rows.append(f"| {name} | {net.training['n_patients']} patients / {net.training['n_pairs']} pairs, "
                f"{settings.steps} steps: **{train_s:.0f} s** ({train_s / settings.steps:.2f} s/step) | "
                f"{v.n_patients} | **{v.auc:.3f}** [{v.ci[0]:.3f}, {v.ci[1]:.3f}] | "
                f"{vu.auc:.3f} / {vp.auc:.3f} | "
                f"**{100 * r1[0]:.1f} %** of {r1[1]} among {r1[2]} "
                f"({', '.join(f'{k} {100 * x:.0f}' for k, x in r1[3].items())}) | "
                f"{100 * r1u[0]:.1f} % / {100 * r1p[0]:.1f} % |")
    print(rows[-1], flush=True)
    return net, train_s


def attack_cost(net, images, n_synthetic, seed, rows, train_s):
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), n_synthetic, replace=False)
    synthetic = np.concatenate([transform_copy(images[pick[i::4]], k, seed=i)
                                for i, k in enumerate(PLANT_KINDS)])
    ids = np.array([f"p{i}" for i in range(len(images))])
    t0 = time.perf_counter()
    er = net.embed(images)
    es = net.embed(synthetic)
    t_embed = time.perf_counter() - t0
    t1 = time.perf_counter()
    reid.best_links(net, images, ids, synthetic, real_embeddings=er, synthetic_embeddings=es)
    t_links = time.perf_counter() - t1
    total = t_embed + t_links
    rows.append(f"| identity attack, {n_synthetic} synthetic vs {len(images)} knee images | "
                f"**{total:.1f} s** (embed {t_embed:.1f} s, best_links {t_links:.2f} s) | "
                f"{total / train_s:.2f}x the network's training time ({train_s:.0f} s) |")
    print(rows[-1], flush=True)


def audit_cost(images, ids, n_synthetic, steps, seed, rows):
    import tempfile

    import yaml

    from helpers_nih import mixture_sampler, split_patients, write_dataset, write_plain_cohort
    from synthmed.audit import run_audit

    which = split_patients(list(ids), {"train": 0.5, "holdout": 0.25, "reference": 0.25}, seed=seed)
    splits = [which[p] for p in ids]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ds = write_dataset(tmp / "ds", images, list(ids), splits)
        ref = images[np.array([s == "reference" for s in splits])]
        co = write_plain_cohort(tmp / "co", mixture_sampler(ref, n_synthetic, seed=seed))
        t0 = time.perf_counter()
        net = reid.train_identity_folder(ds, tmp / "net", steps=steps, seed=seed)
        t_train = time.perf_counter() - t0
        public = yaml.safe_load((ROOT / "synthmed" / "configs" / "audit-public.yaml").read_text())
        off = public | {"identity": public["identity"] | {"enabled": False}}
        (tmp / "off.yaml").write_text(yaml.safe_dump(off))
        t1 = time.perf_counter()
        r_off = run_audit(ds, co, tmp / "off.yaml", tmp / "audit-off", seed=seed)
        t_off = time.perf_counter() - t1
        t2 = time.perf_counter()
        r_on = run_audit(ds, co, ROOT / "synthmed" / "configs" / "audit-public.yaml", tmp / "audit-on",
                         seed=seed, identity_network=tmp / "net")
        t_on = time.perf_counter() - t2
        ident = "; ".join(r.rule + (" pass" if r.passed else " FAIL")
                          for r in r_on.verdict.rules if "identity" in r.rule)
    v = net.verification
    rows.append(f"| `synthmed identity train` on the knee train split ({net.training['n_patients']} patients, "
                f"{steps} steps) | **{t_train:.0f} s** ({t_train / steps:.2f} s/step); verification AUC "
                f"{v.auc:.3f} on {v.n_patients} held-out patients | |")
    rows.append(f"| `run_audit`, public profile, {n_synthetic} synthetic vs the knee set, identity attack on "
                f"(network loaded) | **{t_on:.0f} s**; verdict {r_on.verdict.verdict} (identity rules: "
                f"{ident}) | "
                f"{t_on / t_off:.2f}x the same audit with the identity attack off ({t_off:.0f} s, "
                f"verdict {r_off.verdict.verdict}) |")
    print("\n".join(rows[-2:]), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--val-patients", type=int, default=500, help="knee validation patients")
    ap.add_argument("--plants", type=int, default=200)
    ap.add_argument("--n-synthetic", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-nih", action="store_true")
    ap.add_argument("--skip-knee", action="store_true")
    ap.add_argument("--audit", action="store_true", help="only part 3: the end-to-end audit cost")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.audit:
        rows = ["| end to end | measured | ratio (same run) |", "|---|---|---|"]
        images, ids = load_knee(SHARED / "knee-oa-8260")
        audit_cost(images, ids, args.n_synthetic, args.steps, args.seed, rows)
        if args.out:
            args.out.write_text("\n".join(rows) + "\n")
        return 0
    settings = reid.IdentitySettings(steps=args.steps, batch_size=args.batch_size)
    load = os.getloadavg()[0]
    head = [f"bench_reid.py, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, load {load:.1f}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; settings "
            f"steps={args.steps} batch_size={args.batch_size} (others default), seed {args.seed}", "",
            "| dataset | training (fit patients only) | validation patients | verification AUC [95 % CI] | "
            "untrained / pixel AUC (same run) | planted other-images linked to their patient (rank-1; per kind %) | "
            "untrained / pixel rank-1 |",
            "|---|---|---|---|---|---|---|"]
    rows: list[str] = []
    print("\n".join(head), flush=True)
    knee_net = knee_images = None
    train_s = float("nan")
    if not args.skip_knee and (SHARED / "knee-oa-8260").is_dir():
        knee_images, kid = load_knee(SHARED / "knee-oa-8260")
        knee_net, train_s = measure("knee-oa-8260 (other knee)", knee_images, kid, settings, args.seed,
                                    args.val_patients, None, args.plants, rows, False)
    if not args.skip_nih and (SHARED / "nih-cxr14-1000").is_dir():
        ni, nid = load_nih(SHARED / "nih-cxr14-1000")
        measure("nih-cxr14-1000 (other follow-up)", ni, nid, settings, args.seed, None, 0.3,
                args.plants, rows, True)
    cost = ["", "| cost | measured | ratio |", "|---|---|---|"]
    if knee_net is not None:
        attack_cost(knee_net, knee_images, args.n_synthetic, args.seed, cost, train_s)
    text = "\n".join(head + rows + cost) + "\n"
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
