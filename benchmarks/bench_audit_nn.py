"""Audit benchmark: nearest-neighbour search (faiss vs numpy brute force) and the audit's cost.

    .venv/bin/python benchmarks/bench_audit_nn.py                      # everything
    .venv/bin/python benchmarks/bench_audit_nn.py --sizes 1000 2000 --skip-full

Part 1: nearest-neighbour step, query N vs base N, k=1, at N in --sizes, for 64x64 pixel vectors
(4096-d) and 128-d encoder embeddings: `synthmed.audit.neighbours.nearest` (faiss IndexFlatL2 +
exact re-rank) vs `nearest_bruteforce` (numpy, float64), with a check that both agree.
Part 2: the pieces of a 10k synthetic vs 10k train vs 10k holdout audit at 64x64 (images made from
the NIH chest X-rays in ../shared/data by random disguises, so they look like X-rays), and the full
`synthmed.audit.run_audit` on the same data when it is available.
Prints a markdown table; --out writes it to a file.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SYNTHMED_SHARED_DATA", ROOT.parent / "shared" / "data"))


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def nn_rows(sizes: list[int], seed: int = 0) -> list[str]:
    from synthmed.audit.neighbours import nearest, nearest_bruteforce

    rng = np.random.default_rng(seed)
    rows = ["| space | N query = N base | faiss (s) | brute force (s) | speed-up | same indices |",
            "|---|---|---|---|---|---|"]
    for space, dim in (("pixel 64x64", 4096), ("encoder 128-d", 128)):
        for n in sizes:
            base = rng.random((n, dim), dtype=np.float32)
            query = rng.random((n, dim), dtype=np.float32)
            (df, i_f), tf = timed(nearest, query, base, 1)
            (db, i_b), tb = timed(nearest_bruteforce, query, base, 1)
            same = bool(np.array_equal(i_f, i_b))
            rows.append(f"| {space} | {n} | {tf:.2f} | {tb:.2f} | {tb / tf:.1f}x | {same} |")
            print(rows[-1], flush=True)
    return rows


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 64x64 X-ray-like images from the NIH set (random disguises), with fake patient ids."""
    sys.path.insert(0, str(ROOT / "tests"))
    from _audit_data import load_nih

    from synthmed.audit.augment import AugmentConfig, random_views

    import torch

    imgs, _ = load_nih(str(SHARED / "nih-cxr14-1000"))
    rng = np.random.default_rng(seed)
    src = torch.from_numpy(imgs[rng.integers(0, len(imgs), n)]).unsqueeze(1)
    g = torch.Generator().manual_seed(seed)
    out = random_views(src, 2, g, AugmentConfig(flip_p=0.0, max_rotation_deg=20, min_crop=0.6)).squeeze(1).numpy()
    patients = np.array([f"B{seed}-{i // 3:06d}" for i in range(n)])  # 3 images per patient
    return out.astype(np.float32), patients


def pieces_rows(n: int) -> list[str]:
    import torch

    from synthmed.audit.attacks import dcr_scores, domias_scores, mc_neighbourhood_scores
    from synthmed.audit.embeddings import ContrastiveEncoder, PixelEmbedder
    from synthmed.audit.memorisation import copy_search, memorisation

    torch.manual_seed(0)
    (train, _), t_make = timed(make_images, n, 1)
    holdout, _ = make_images(n, 2)
    synth, _ = make_images(n, 3)
    rows = ["| step (N = %d each) | seconds |" % n, "|---|---|"]

    def add(name, secs):
        rows.append(f"| {name} | {secs:.1f} |")
        print(rows[-1], flush=True)

    add("make 3 x N images (not part of an audit)", t_make * 3)
    pe = PixelEmbedder()
    (pix, t) = timed(lambda: [pe.embed(x) for x in (synth, train, holdout)])
    add("pixel vectors", t)
    enc, t = timed(lambda: ContrastiveEncoder(2, (64, 64), seed=0).fit(train, steps=300, batch_size=64))
    add("contrastive encoder, 300 steps x 64 (profile default)", t)
    emb, t = timed(lambda: [enc.embed(x) for x in (synth, train, holdout)])
    add("encoder embeddings (3 x N)", t)
    _, t = timed(memorisation, pix[0], pix[1], pix[2])
    add("memorisation, pixel space (3 exact searches)", t)
    _, t = timed(memorisation, emb[0], emb[1], emb[2])
    add("memorisation, encoder space", t)
    half = n // 2
    for name, fn in (("dcr", lambda c, s, r: dcr_scores(c, s, r)),
                     ("domias", lambda c, s, r: domias_scores(c, s, r)),
                     ("mc_neighbourhood", lambda c, s, r: mc_neighbourhood_scores(c, s, r))):
        cands = np.concatenate([emb[1], emb[2][half:]])
        _, t = timed(fn, cands, emb[0], emb[2][:half])
        add(f"attack {name}, encoder space, {len(cands)} candidates", t)
    _, t = timed(copy_search, synth, train, holdout, [(emb[0], emb[1], emb[2])])
    add("copy_search (aligned; synthetic + holdout calibration)", t)
    return rows


def full_audit_row(n: int) -> list[str]:
    try:
        from synthmed.audit import run_audit
    except ImportError:
        return ["full audit: synthmed.audit.run_audit not available"]
    from synthmed.data.cohort import CohortRecord, write_cohort
    from synthmed.data.records import ImageRecord, write_records
    from synthmed.io.atomic import save_npy, write_json

    train, pt = make_images(n, 1)
    holdout, ph = make_images(n, 2)
    synth, _ = make_images(n, 3)
    with tempfile.TemporaryDirectory() as tmp:
        ds, co = Path(tmp) / "ds", Path(tmp) / "co"
        ds.mkdir()
        images = np.concatenate([train, holdout])
        save_npy(ds / "images.npy", images)
        recs = [ImageRecord(index=i, patient=p, split=s, modality="DX")
                for i, (p, s) in enumerate(zip(np.concatenate([pt, ph]), ["train"] * n + ["holdout"] * n))]
        write_records(ds / "manifest.csv", recs, ImageRecord)
        write_json(ds / "dataset.json", {"schema": "synthmed.dataset/1", "spatial_dims": 2, "shape": [64, 64],
                                         "spacing": [1.0, 1.0], "normalisation": {}, "label_vocabulary": [],
                                         "splits": {"train": n, "holdout": n}, "fingerprint": "bench",
                                         "provenance": {}})
        write_cohort(co, synth, [CohortRecord(index=i, patient=f"SYN-{i:06d}") for i in range(n)],
                     {"spatial_dims": 2, "shape": [64, 64]})
        _, t = timed(run_audit, ds, co, None, Path(tmp) / "audit", seed=0)
    return [f"full `run_audit` (default profile), {n} synthetic vs {n} train vs {n} holdout: "
            f"**{t:.0f} s** ({t / 60:.1f} min; goal < 5 min)"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    ap.add_argument("--n", type=int, default=10000, help="images per set for parts 2 and 3")
    ap.add_argument("--skip-nn", action="store_true")
    ap.add_argument("--skip-pieces", action="store_true")
    ap.add_argument("--skip-full", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    head = [f"# Audit benchmark ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs: "
            f"load average at start {os.getloadavg()[0]:.1f}), Python {platform.python_version()}.",
            f"Command: `{' '.join(sys.argv)}`", ""]
    body: list[str] = []
    if not args.skip_nn:
        body += ["## Nearest neighbour, k = 1", ""] + nn_rows(args.sizes) + [""]
    if not args.skip_pieces:
        body += ["## Audit pieces", ""] + pieces_rows(args.n) + [""]
    if not args.skip_full:
        body += ["## Full audit", ""] + full_audit_row(args.n) + [""]
    text = "\n".join(head + body)
    print(text)
    if args.out:
        from synthmed.io.atomic import write_text

        write_text(args.out, text)


if __name__ == "__main__":
    main()
