"""How often does the public audit fail a generator that never saw the members? (null splits)

Part `nih` (the membership attacks): real patients from ../shared/data/nih-cxr14-1000: 25 % (by
patient) are the generator's source (it samples mixtures of their images plus noise), the other
75 % are split at random, by patient, into members and non-members, `--splits` times.

Part `identity` (the re-identification rule, issue 10): on ../shared/data/knee-oa-8260, one
network is trained on `--identity-fit-patients` knee patients; the other patients are dealt, per
split, into members / non-members (one knee each, as in a one-knee-per-patient dataset) and a
"synthetic" set (both knees of patients in neither group): nobody's identity leaked, so the
identity rule must fail at most 5 % of the splits (`synthmed.audit.calibration.calibrate_identity`).

Every split is a null case. Each part rewrites its own section of privacy_audits/calibration.md.

    .venv/bin/python privacy_audits/calibration.py [--part nih|identity|all] [--splits 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers_nih import load_nih, mixture_sampler, split_patients  # noqa: E402
from synthmed.audit.calibration import calibrate  # noqa: E402
from synthmed.audit.embeddings import ContrastiveEncoder  # noqa: E402
from synthmed.audit.profile import AuditProfile  # noqa: E402
from synthmed.config import load_config  # noqa: E402
from synthmed.io.atomic import write_text  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nih", type=Path, default=ROOT.parent / "shared" / "data" / "nih-cxr14-1000")
    ap.add_argument("--splits", type=int, default=200)
    ap.add_argument("--encoder-steps", type=int, default=30)
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    ap.add_argument("--profile", type=Path, default=ROOT / "configs" / "audit-public.yaml")
    ap.add_argument("--part", choices=("nih", "identity", "all"), default="all")
    ap.add_argument("--knee", type=Path, default=ROOT.parent / "shared" / "data" / "knee-oa-8260")
    ap.add_argument("--identity-splits", type=int, default=100)
    ap.add_argument("--identity-steps", type=int, default=300)
    ap.add_argument("--identity-fit-patients", type=int, default=1500)
    ap.add_argument("--identity-leak", type=float, default=0.1,
                    help="positive control: share of members whose other knee joins the synthetic set")
    ap.add_argument("--identity-leak-splits", type=int, default=10)
    ap.add_argument("--identity-network", type=Path, default=None,
                    help="a trained identity folder to use instead of training one (it must not "
                         "have seen the pool's patients)")
    args = ap.parse_args(argv)
    if args.part in ("identity", "all"):
        write_section("identity", identity_part(args))
    if args.part in ("nih", "all"):
        write_section("nih", nih_part(args))
    return 0


SECTIONS = ("nih", "identity")


def write_section(name: str, lines: list[str]) -> None:
    """Replace section `name` of calibration.md (between its markers), keeping the others."""
    path = HERE / "calibration.md"
    old = path.read_text() if path.is_file() else ""
    blocks: dict[str, str] = {}
    for sec in SECTIONS:
        start, end = f"<!-- section:{sec} -->", f"<!-- /section:{sec} -->"
        if start in old and end in old:
            blocks[sec] = old[old.index(start):old.index(end) + len(end)]
    if not blocks and old.strip():
        blocks["nih"] = f"<!-- section:nih -->\n{old.strip()}\n<!-- /section:nih -->"  # pre-section file
    blocks[name] = f"<!-- section:{name} -->\n" + "\n".join(lines).strip() + f"\n<!-- /section:{name} -->"
    write_text(path, "\n\n".join(blocks[s] for s in SECTIONS if s in blocks) + "\n")
    print("\n".join(lines))


def identity_part(args) -> list[str]:
    import os

    from synthmed.audit import reid
    from synthmed.audit.calibration import calibrate_identity
    from synthmed.audit.stats import clopper_pearson

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_reid import load_knee

    images, ids = load_knee(args.knee)
    prof = load_config(args.profile, AuditProfile, overrides={"n_bootstrap": args.n_bootstrap})
    t0 = time.perf_counter()
    patients = np.random.default_rng(0).permutation(np.unique(ids))
    fit_p = patients[:args.identity_fit_patients]
    if args.identity_network is not None:
        net = reid.load_reid_network(args.identity_network)
        how = f"loaded from `{args.identity_network}`"
    else:
        fit = np.isin(ids, fit_p)
        net = reid.fit_identity_network(images[fit], ids[fit], reid.IdentitySettings(steps=args.identity_steps), seed=0)
        how = f"trained here, {args.identity_steps} steps"
    pool = ~np.isin(ids, fit_p)
    if net.verification is None or not net.verification.genuine_quantiles:
        # weights without a verification record: verify on the pool (both knees of patients the
        # network never saw; who is a member plays no part in it), which gives the rule its power
        some = np.isin(ids, np.unique(ids[pool])[:500])  # 500 of them: enough for the quantiles
        net.verification = reid.verify_network(net, images[some], ids[some], n_bootstrap=100, seed=0)
        how += "; verified on 500 of the pool's patients (both knees)"
    t1 = time.perf_counter()
    res = calibrate_identity(images[pool], ids[pool], net, prof, n_splits=args.identity_splits, seed=0)
    secs, secs_train = time.perf_counter() - t1, t1 - t0
    leak = None
    if args.identity_leak_splits > 0:
        leak = calibrate_identity(images[pool], ids[pool], net, prof, n_splits=args.identity_leak_splits,
                                  seed=1, leak_fraction=args.identity_leak)
    lo, hi = clopper_pearson(res.n_failed, res.n_splits)
    v = net.verification
    vtext = (f"verification AUC {v.auc:.3f} (95 % CI {v.ci[0]:.3f}-{v.ci[1]:.3f}) on {v.n_patients} of "
             f"its own held-out patients" if v is not None and v.estimable else "verification not estimable")
    return [
        "# Calibration of the identity rule on the knee set (null splits)", "",
        f"Command: `.venv/bin/python privacy_audits/calibration.py --part identity --identity-splits "
        f"{args.identity_splits} --identity-steps {args.identity_steps} --identity-fit-patients "
        f"{args.identity_fit_patients} --identity-leak {args.identity_leak} --identity-leak-splits "
        f"{args.identity_leak_splits} --n-bootstrap {args.n_bootstrap}"
        f"{f' --identity-network {args.identity_network}' if args.identity_network else ''}` (profile "
        f"`{args.profile.relative_to(ROOT) if args.profile.is_relative_to(ROOT) else args.profile}`; "
        f"load {os.getloadavg()[0]:.1f}).", "",
        f"Network: {how}, on {len(fit_p)} knee patients (both knees) that are in none of the splits; {vtext}.",
        f"Pool: the other {np.unique(ids[pool]).size} patients, dealt per split into {res.n_members} members "
        f"and {res.n_holdout} non-members (one random knee each) and a synthetic set of {res.n_synthetic} "
        "images (both knees of the remaining patients: people in neither group, so nothing leaks).", "",
        f"* identity rules (attack AUC, TPR at {prof.attacks.target_fpr:g} FPR and the link-excess test: the "
        f"audit's `auc_rule` / `tpr_rule` / `link_rule` at Bonferroni alpha {res.alpha:.4g}) failed on "
        f"**{res.n_failed} of {res.n_splits}** null splits ({100 * res.fail_rate:.1f} %, 95 % CI "
        f"{100 * lo:.1f}-{100 * hi:.1f} %); target: at most 5 %.",
        f"* rules that failed: {res.failed_rules or 'none'}",
        f"* link-excess test over the null splits: p-value min {min(x['link_p_value'] for x in res.per_split):.3g}, "
        f"median {np.median([x['link_p_value'] for x in res.per_split]):.3g}; outcomes "
        f"{_outcomes(res, 'identity_link_excess')}; power against a leak of "
        f"{100 * prof.identity.rule_out_share:.0f} % of the members: "
        f"{_power(res)} (a pass needs {prof.identity.min_power:g})",
        f"* identity AUC over splits: mean {np.mean(res.aucs):.3f}, sd {np.std(res.aucs):.3f}; "
        f"TPR at {prof.attacks.target_fpr:g} FPR: mean {np.mean(res.tprs):.4f}",
        *([f"* positive control (not null): with the other knee of {100 * leak.leak_fraction:.0f} % of the "
           f"members added to the synthetic set ({leak.n_synthetic} images), the rule failed **{leak.n_failed} "
           f"of {leak.n_splits}** splits ({leak.failed_rules}); identity AUC mean {np.mean(leak.aucs):.3f}, "
           f"TPR at {prof.attacks.target_fpr:g} FPR mean {np.mean(leak.tprs):.3f}; link-excess p-value median "
           f"{np.median([x['link_p_value'] for x in leak.per_split]):.3g}."] if leak is not None else []),
        *([f"* where the positive control is missed, a leaked member's other knee did not out-score the "
           f"best of {leak.n_synthetic} unrelated synthetic knees often enough to crowd the top of the "
           f"ranking; the rule's power figure (above) says so in each audit, which is then inconclusive, "
           f"not a pass."]
          if leak is not None and leak.n_failed < leak.n_splits else []),
        f"* network {secs_train:.0f} s, {res.n_splits} null splits {secs:.0f} s on the shared 2-core CPU.", ""]


def _outcomes(res, prefix: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in res.per_split:
        for rule, outcome in x.get("outcomes", {}).items():
            if rule.startswith(prefix):
                out[outcome] = out.get(outcome, 0) + 1
    return out


def _power(res) -> str:
    p = [x["link_power"] for x in res.per_split if x.get("link_power") is not None]
    return f"median {np.median(p):.3f} (range {min(p):.3f}-{max(p):.3f})" if p else "not known"


def nih_part(args) -> list[str]:
    images, patients, *_ = load_nih(args.nih)
    patients = np.array(patients)
    which = split_patients(list(patients), {"reference": 0.25, "pool": 0.75}, seed=0)
    is_ref = np.array([which[p] == "reference" for p in patients])
    ref, pool, pool_patients = images[is_ref], images[~is_ref], patients[~is_ref]
    prof = load_config(args.profile, AuditProfile, overrides={"n_bootstrap": args.n_bootstrap})
    t0 = time.perf_counter()
    enc = ContrastiveEncoder(2, images.shape[1:], dim=64, seed=0).fit(pool, steps=args.encoder_steps, batch_size=64)
    res = calibrate(pool, pool_patients, mixture_sampler(ref, 300, seed=0), ref, prof, enc,
                    n_splits=args.splits, seed=0)
    secs = time.perf_counter() - t0
    lo, hi = __import__("synthmed.audit.stats", fromlist=["x"]).clopper_pearson(res.n_failed, res.n_splits)
    lines = [
        "# Calibration of the audit on NIH ChestX-ray14 (null splits)", "",
        f"Command: `.venv/bin/python privacy_audits/calibration.py --part nih --splits {args.splits} "
        f"--encoder-steps {args.encoder_steps} --n-bootstrap {args.n_bootstrap}` (profile "
        f"`{args.profile.relative_to(ROOT) if args.profile.is_relative_to(ROOT) else args.profile}`).", "",
        f"Pool: {np.unique(pool_patients).size} patients / {len(pool)} images split 50/50 by patient "
        f"into members / non-members; generator source: {np.unique(patients[is_ref]).size} reference "
        "patients (300 synthetic images, mixtures of two reference images plus noise).", "",
        f"* audit verdict `fail` on **{res.n_failed} of {res.n_splits}** null splits "
        f"({100 * res.fail_rate:.1f} %, 95 % CI {100 * lo:.1f}-{100 * hi:.1f} %); target: at most 5 %.",
        f"* rules that failed: {res.failed_rules or 'none'}",
        f"* a rule 'every AUC upper bound below {prof.attacks.max_auc}' (certify-safety) would have failed "
        f"**{res.n_failed_upper_bound_rule} of {res.n_splits}** ({100 * res.n_failed_upper_bound_rule / res.n_splits:.0f} %).",
        "* attack AUC over splits (mean, sd): " + ", ".join(
            f"{k} {np.mean(v):.3f} ({np.std(v):.3f})" for k, v in res.aucs.items()),
        f"* {secs:.0f} s on a shared 2-core CPU (other jobs running).", ""]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
