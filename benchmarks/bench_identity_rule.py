"""Can the identity rule see the knee must-show leak with a network of the public profile's budget?

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_identity_rule.py [--steps 400] --network DIR
        [--set "convs_per_stage=2;batch_size=128"]

On ../shared/data/knee-oa-8260 (both knees of 4,130 patients): a re-identification network with
the public profile's settings (`IdentitySettings` defaults, `--steps`) is trained on 2,000 patients
(saved to / reused from `--network`; `--set` overrides other settings, as in
bench_reid_heads.py); the other 2,130 patients give
* verification AUC on 500 of them (both knees), with its genuine-pair quantiles;
* planted transformed other-knees (flip / shift / gamma / noise in turn) of 200 of them, linked
  rank-1 among the 500: raw cosine, with test-time shift averaging (5 shifts of 2 px), and with
  hubness-corrected scores (CSLS, k = 10);
* the must-show case, three compositions (seeds 0-2): 300 members and 300 holdout patients (one
  random knee each), 300 synthetic knees = the OTHER knee of 30 members (10 %) + 270 unrelated
  knees; and an unrelated cohort of 300 other knees. Each through the link-excess test
  (synthmed.audit.linktest) at the public profile's per-rule alpha (0.05 / 16) with the network's
  genuine-pair quantiles: p-value, members in each tail against chance, sensitivity, power.
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
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_reid import SHARED, load_knee  # noqa: E402
from bench_reid_heads import parse_variant  # noqa: E402
from synthmed.audit import reid  # noqa: E402
from synthmed.audit.augment import transform_copy  # noqa: E402
from synthmed.audit.linktest import link_excess  # noqa: E402
from synthmed.stats import roc_auc  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--network", type=Path, required=True, help="folder to save the network to / reuse it from")
    ap.add_argument("--set", default="", help="other IdentitySettings, key=value;key=value (channels as 16-32-64)")
    args = ap.parse_args(argv)
    settings = reid.IdentitySettings(steps=args.steps, **parse_variant(args.set))
    print(f"bench_identity_rule.py, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; settings steps={args.steps} {args.set or '(defaults)'}",
          flush=True)
    images, ids = load_knee(SHARED / "knee-oa-8260")
    pats = np.random.default_rng(0).permutation(np.unique(ids))
    fit_p, rest = pats[:2000], pats[2000:]
    fit = np.isin(ids, fit_p)
    if (args.network / "reid.json").exists():
        net = reid.load_reid_network(args.network)
        if net.settings.model_dump(exclude={"weights"}) != settings.model_dump(exclude={"weights"}):
            raise SystemExit(f"{args.network}: holds a network with other settings than --steps / --set")
    else:
        t, c = time.time(), time.process_time()
        def tick(step, total, loss):  # progress in the log of a long run
            if step % 200 == 0 or step == total:
                print(f"  step {step}/{total} loss {loss:.3f} {time.time() - t:.0f} s", flush=True)

        net = reid.train_reid_network(images[fit], ids[fit], settings, 0, on_step=tick)
        tt, ct = time.time() - t, time.process_time() - c
        net.save(args.network)
        print("trained", args.steps, "steps", round(tt), "s", round(tt / args.steps, 3), "s/step wall,",
              round(ct / args.steps, 3), "s/step CPU; loss", round(net.training["loss_last"], 3),
              "load", round(os.getloadavg()[0], 1), flush=True)
    by = {p: np.flatnonzero(ids == p) for p in rest}
    val_p = rest[:500]
    vi = np.concatenate([by[p] for p in val_p])
    ver = reid.verify_network(net, images[vi], ids[vi], n_bootstrap=50, seed=0)
    print("verification", round(ver.auc, 4), [round(c, 3) for c in ver.ci], flush=True)

    def tta_embed(x, shifts):
        e = np.mean([net.embed(np.roll(x, (dy, dx), (1, 2))) for dy, dx in shifts], 0)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    kinds = ("flip", "shift", "gamma", "noise")
    real = np.array([by[p][0] for p in val_p])
    other = [by[p][1] for p in val_p[:200]]
    syn = np.stack([transform_copy(images[o:o + 1], kinds[k % 4], seed=k)[0] for k, o in enumerate(other)])
    for lab, emb in (("raw", net.embed),
                     ("tta", lambda x: tta_embed(x, [(0, 0), (2, 0), (-2, 0), (0, 2), (0, -2)]))):
        er, es = emb(images[real]), emb(syn)
        s = er @ es.T
        hit = s.argmax(0) == np.arange(200)
        rr, rs = np.sort(s, 1)[:, -10:].mean(1), np.sort(s, 0)[-10:, :].mean(0)
        hit2 = (2 * s - rr[:, None] - rs[None, :]).argmax(0) == np.arange(200)
        print("plant rank1", lab, round(hit.mean(), 3),
              {k: round(float(hit[i::4].mean()), 2) for i, k in enumerate(kinds)}, "csls", round(hit2.mean(), 3),
              flush=True)
    pool = rest[500:]
    alpha = 0.05 / 16
    for seed in (0, 1, 2):
        r = np.random.default_rng(seed)
        pp = r.permutation(pool)
        mem, hol, oth = pp[:300], pp[300:600], pp[600:1200]
        side = {p: int(r.integers(2)) for p in pp[:1200]}
        real = np.array([by[p][side[p]] for p in np.concatenate([mem, hol])])
        leak = [by[p][1 - side[p]] for p in mem[:30]]
        unrel = [by[p][side[p]] for p in oth]
        er = net.embed(images[real])
        for lab, sy in (("leaky", leak + unrel[:270]), ("unrelated", unrel[300:600])):
            sc = (er @ net.embed(images[np.array(sy)]).T).max(1)
            le = link_excess(sc[:300], sc[300:], alpha, genuine_quantiles=ver.genuine_quantiles)
            print("case", seed, lab, "auc", round(roc_auc(sc[:300], sc[300:]), 3), "p", f"{le.p_value:.3g}",
                  "in_tail", le.members_in_tail, "exp", [round(e) for e in le.expected_members],
                  "sens", le.sensitivity, "power", le.power, "need", le.nonmembers_needed, flush=True)
    print("done, load", round(os.getloadavg()[0], 1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
