"""The demo's model audited with the model in hand: the reference audit of `synthmed demo`'s run.

Two documented commands, run as a user would run them (the `synthmed` CLI in a subprocess):

    synthmed demo --out DEMO --seed S
    synthmed audit --dataset DEMO/dataset --synthetic DEMO/cohort --model DEMO/run \
        --profile DEMO/configs/audit.yaml --encoder DEMO/audit/encoder --seed S --out AUDIT

The profile is the demo's own (configs/audit-public.yaml with the demo's copy-search cap), so the
audit differs from the demo's only by `--model`: the four white-box attacks (loss, PIA, SecMI-stat,
SimA) are added to the synthetic-only ones, with the same rules and statistics. The encoder is the
one the demo's audit trained (same seed: the same weights, not retrained).

Writes privacy_audits/demo-reference/: audit.json and report.html of the white-box audit, and
README.md (the table of every attack beside the demo's own audit, from the two audit.json files).

    PYTHONPATH=. .venv/bin/python privacy_audits/make_demo_audit.py [--demo DIR] [--seed 0] [--readme-only]

A DIR that already holds a finished demo (DIR/index.html) is reused, not remade.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from synthmed.io.atomic import write_json, write_text  # noqa: E402

FPR = "0.01"


def synthmed(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "synthmed", *args], check=True)
    return time.perf_counter() - t


def _rows(audit: dict) -> dict[str, dict]:
    return {f"{a['attack']}/{a['space']}": a for a in audit["attacks"]}


def _cells(a: dict | None) -> tuple[str, str]:
    """(AUC with its interval, TPR at 1 % FPR with its interval) of one attack row."""
    if a is None:
        return "not run", ""
    if a.get("auc") is None:
        return "not evaluated", ""
    r = a["tpr_at_fpr"][FPR]
    est = "" if r["estimable"] else "; 1 % FPR not estimable"
    return (f"{a['auc']:.3f} ({a['auc_ci'][0]:.2f}-{a['auc_ci'][1]:.2f})",
            f"{r['tpr']:.3f} ({r['tpr_ci'][0]:.3f}-{r['tpr_ci'][1]:.3f}) at FPR {r['fpr_achieved']:.3f}{est}")


def _why_inconclusive(wb: dict, bb: dict) -> list[str]:
    """Each inconclusive rule beside the same rule in the demo's own audit: the white-box attacks
    add rules, and the audit's simultaneous intervals give each rule a smaller alpha."""
    own = {r["rule"]: r for r in bb["rules"]}
    lines = []
    for r in wb["rules"]:
        if r.get("outcome") != "inconclusive":
            continue
        d, o = r.get("details", {}), own.get(r["rule"], {})
        line = f"- `{r['rule']}`: {r['explanation']}"
        if "alpha" in d and "alpha" in o.get("details", {}):
            line += (f" Its alpha is {d['alpha']:.5f} over the {len(wb['rules'])} rules of this audit, "
                     f"against {o['details']['alpha']:.5f} over the {len(bb['rules'])} rules of the "
                     f"demo's own, where the same rule was '{o.get('outcome')}'"
                     + (f" (power {o['details']['power']:.3f} there, {d['power']:.3f} here)"
                        if "power" in d and "power" in o["details"] else "") + ".")
        lines.append(line)
    return lines + [""] if lines else []


def readme(wb: dict, bb: dict, cmds: list[str], seconds: dict[str, float], load: float) -> str:
    rw, rb = _rows(wb), _rows(bb)
    # white-box rows first, then the synthetic-only ones
    names = sorted(set(rw) | set(rb), key=lambda k: (not k.endswith("/model"), k))
    d = wb["data"]
    failed = [r["rule"] for r in wb["rules"] if r.get("outcome") == "fail"]
    unsure = [r["rule"] for r in wb["rules"] if r.get("outcome") == "inconclusive"]
    lines = [
        "# The demo's model, audited with the model in hand", "",
        "Made by `PYTHONPATH=. .venv/bin/python privacy_audits/make_demo_audit.py` "
        "(its docstring says why each option), that is by these commands:", "",
        "```", *cmds, "```", "",
        "The demo's model: configs/demo.yaml (32x32 DX, 300 steps) trained on the demo's virtual "
        "patients; the cohort is the demo's own. As audit.json counts them: "
        f"{d['n_member_patients']} member patients ({d['n_member_images']} images), "
        f"{d['n_nonmember_patients']} holdout patients ({d['n_nonmember_images']} images), "
        f"{d['n_reference_images']} reference images, {d['n_synthetic_images']} synthetic images.", "",
        f"**Verdict with the model: {wb['verdict']}** (the demo's own audit, synthetic images only: "
        f"{bb['verdict']})."
        + (f" Failed rules: {', '.join(failed)}." if failed else "")
        + (f" Inconclusive rules: {', '.join(unsure)}." if unsure else ""), "",
        *_why_inconclusive(wb, bb),
        "| attack / space | AUC (interval), with the model | TPR at 1 % FPR (interval), with the model "
        "| AUC, demo's own audit | TPR at 1 % FPR, demo's own audit |",
        "|---|---|---|---|---|",
    ]
    for k in names:
        (a1, a2), (b1, b2) = _cells(rw.get(k)), _cells(rb.get(k))
        lines.append(f"| {k} | {a1} | {a2} | {b1} | {b2} |")
    lines += ["", "Intervals as audit.json gives them (simultaneous over the audit's rules): AUC, "
              "percentile bootstrap over patients; TPR, Clopper-Pearson.", "",
              "Wall time on the shared 2-core CPU: "
              + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
              + f" (1-min load average at the end {load:.1f}).", "",
              "What a pass promises and what it does not: privacy_audits/README.md.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", type=Path, default=None, help="demo folder (made if it holds no finished demo)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "demo-reference")
    ap.add_argument("--readme-only", action="store_true",
                    help="only remake README.md from the kept audit.json, run.json and --demo's audit")
    args = ap.parse_args(argv)
    if args.readme_only:
        run = json.loads((args.out / "run.json").read_text())
        wb = json.loads((args.out / "audit.json").read_text())
        bb = json.loads((args.demo / "audit" / "audit.json").read_text())
        write_text(args.out / "README.md", readme(wb, bb, run["commands"], run["seconds"],
                                                  run["load_average_1min_at_end"]))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        demo = args.demo or Path(tmp) / "demo"
        seconds: dict[str, float] = {}
        cmds = [f"synthmed demo --out DEMO --seed {args.seed}"]
        if not (demo / "index.html").exists():
            seconds["demo"] = synthmed("demo", "--out", str(demo), "--seed", str(args.seed))
        audit = Path(tmp) / "audit"
        inputs = {"--dataset": "dataset", "--synthetic": "cohort", "--model": "run",
                  "--profile": "configs/audit.yaml", "--encoder": "audit/encoder"}
        cmds.append("synthmed audit " + " ".join(f"{o} DEMO/{v}" for o, v in inputs.items())
                    + f" --seed {args.seed} --out AUDIT")
        full = [x for o, v in inputs.items() for x in (o, str(demo / v))]
        seconds["audit --model"] = synthmed("audit", *full, "--seed", str(args.seed), "--out", str(audit))
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copy(audit / "audit.json", args.out / "audit.json")
        if (audit / "report.html").stat().st_size < (1 << 20):
            shutil.copy(audit / "report.html", args.out / "report.html")
        wb = json.loads((audit / "audit.json").read_text())
        bb = json.loads((demo / "audit" / "audit.json").read_text())
        run = {"commands": cmds, "seconds": seconds, "load_average_1min_at_end": os.getloadavg()[0]}
        write_json(args.out / "run.json", run)
        write_text(args.out / "README.md", readme(wb, bb, cmds, seconds, run["load_average_1min_at_end"]))
    print((args.out / "README.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
