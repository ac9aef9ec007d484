"""Run every benchmark script in benchmarks/ in a quick form, as a check that each one still runs.

    make bench                                   # all of them, quick form, into bench-out/
    make bench BENCH_ARGS="--only ingest dicom"  # some of them (parts of script names)
    python benchmarks/run_all.py [--out bench-out] [--only NAME ...] [--skip NAME ...]
                                 [--timeout 900] [--list]

`--list` prints each script with the quick arguments it would get, and runs nothing.

Each script runs as its own process with small arguments (a few patients, a few steps, one
repeat), so the whole set takes minutes on a laptop CPU. Its output goes under --out
(default bench-out/, one log per script, plus any file the script writes): the committed results
(benchmarks/RESULTS.md, results_*.md, figures/) are never touched. Quick numbers are not the
project's measured figures: those come from each script's own command line, given at the top of
the script and next to each figure in RESULTS.md.

Scripts that read ../shared/data are skipped (with a line saying so) when it is absent. The two
that need a trained model (bench_training, bench_sampling) get a tiny one trained here on toy
images. Exit status: 1 when any script failed or a script in benchmarks/ has no quick form here,
else 0. The quick runs are not part of the test suite (tests/test_docs.py only checks that every
script has a quick form).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
SHARED = Path(os.environ.get("SYNTHMED_SHARED_DATA", ROOT.parent / "shared" / "data"))


@dataclass(frozen=True)
class Bench:
    script: str
    args: list[str]
    needs: tuple[str, ...] = ()  # paths under the shared data folder
    needs_model: bool = False
    # Set for a measurement whose input is itself hours of work (a trained NIH model, a finished
    # full demo): listed, and skipped with this reason, rather than run on a stand-in that would
    # measure nothing.
    manual: str = ""


def benches(out: Path, toy: Path, run: Path) -> list[Bench]:
    """Quick arguments for each script (read from each script's argparse options)."""
    demo_cfg = str(ROOT / "synthmed" / "configs" / "demo.yaml")
    return [
        Bench("bench_phantoms.py", ["--patients", "20", "--workers", "2"]),
        Bench("bench_dicom.py", [str(SHARED / "dicom" / "ct-chest-jpeg2000"), "--repeats", "1"],
              needs=("dicom/ct-chest-jpeg2000",)),
        Bench("bench_ingest.py", ["--repeats", "1", "--only", "ct-chest-jpeg2000",
                                  "--out", str(out / "results_ingest.md")], needs=("dicom/ct-chest-jpeg2000",)),
        Bench("bench_audit_nn.py", ["--sizes", "500", "1000", "--n", "500", "--skip-full",
                                    "--out", str(out / "results_audit_nn.md")], needs=("nih-cxr14-1000",)),
        Bench("bench_models.py", ["--size", "16", "--steps", "20", "--batch", "8", "--n", "8",
                                  "--patients", "30", "--channels", "16,16,32", "--only-default",
                                  "--device", "cpu", "--out", str(out / "bench_models")]),
        Bench("bench_models_3d.py", ["--shape", "8,16,8", "--steps", "3", "--ae-steps", "3",
                                     "--device", "cpu", "--out", str(out / "bench_models_3d")]),
        Bench("bench_training.py", ["--dataset", str(toy), "--config", demo_cfg, "--steps", "5",
                                    "--matmul", "256", "--threads", "1",
                                    "--json", str(out / "bench_training.json")], needs_model=True),
        Bench("bench_sampling.py", ["--run", str(run), "--dataset", str(toy), "--n", "8",
                                    "--fast-steps", "5", "--ddpm-steps", "50", "--floor-draws", "2",
                                    "--bootstrap", "5", "--threads", "1",
                                    "--json", str(out / "bench_sampling.json")], needs_model=True),
        Bench("run_mri3d.py", ["--work", str(out / "mri3d"), "--volumes", "8", "--shape", "16", "16", "16",
                               "--steps", "4", "--batch", "2", "--samples", "2", "--threads", "1",
                               "--grid", str(out / "mri3d" / "slices.png")], needs=("msd-hippocampus",)),
        Bench("run_cxr.py", ["--phase", "ingest", "classifier", "train", "evaluate", "--work", str(out / "cxr"),
                             "--size", "32", "--config", demo_cfg, "--steps", "10", "--clf-epochs", "1",
                             "--n", "4", "--top", "2", "--batch", "8", "--sample-steps", "5",
                             "--threads", "1", "--fig-dir", str(out / "cxr" / "figures")],
              needs=("nih-cxr14-1000",)),
        Bench("bench_pixels.py", ["--n-text", "20", "--n-time", "3"], needs=("nih-cxr14-1000",)),
        Bench("bench_open.py", ["--repeats", "1"]),
        Bench("bench_verify.py", ["--repeats", "1", "--skip-knee"], needs=("nih-cxr14-1000",)),
        Bench("bench_writers.py", ["--patients", "8", "--repeats", "1", "--train-steps", "2",
                                   "--figure", str(out / "writers_first_dx.png")]),
        # NIH only: the knee part embeds all 8,260 knee images for its cost figure (15 min on a
        # loaded 2-core CPU even at 3 steps), too long for a quick check.
        Bench("bench_reid.py", ["--steps", "3", "--batch-size", "8", "--plants", "8", "--skip-knee",
                                "--out", str(out / "results_reid.md")], needs=("nih-cxr14-1000",)),
        Bench("bench_whitebox.py", ["--n", "2", "--threads", "1", "--json", str(out / "bench_whitebox.json")]),
        Bench("measure_generate_quality.py", ["--seeds", "0"]),
        Bench("bench_identity_rule.py", ["--steps", "3", "--network", str(out / "identity-net")],
              needs=("knee-oa-8260",)),
        Bench("bench_reid_heads.py", ["3", "nih", "pool=grid"], needs=("nih-cxr14-1000",)),
        Bench("measure_evaluate_demo.py", ["DEMO", "--out", str(out / "evaluate-demo")],
              manual="needs a finished full `synthmed demo` folder as DEMO"),
        Bench("measure_evaluate_nih.py", ["--phase", "encoder", "cohort", "evaluate", "utility", "sweep",
                                          "report", "--work", str(out / "evaluate-nih"),
                                          "--dataset", "DATASET", "--run", "RUN"],
              manual="needs the NIH dataset and model trained as in RESULTS.md, 'Evaluation of a cohort'"),
    ]


def scripts() -> list[str]:
    """Every benchmark script in benchmarks/ (helpers start with `_`; this runner is not one)."""
    return sorted(p.name for p in HERE.glob("*.py")
                  if not p.name.startswith("_") and p.name != Path(__file__).name)


def tiny_model(out: Path) -> tuple[Path, Path]:
    """A toy 32x32 dataset and a model trained on it for a few steps (inputs, not a measurement)."""
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    from helpers_dataset import make_toy_dataset

    from synthmed.config import load_config, resolve_config_path
    from synthmed.models import TrainConfig, train

    toy, run = out / "toy-dataset", out / "toy-run"
    if not (toy / "dataset.json").is_file():
        make_toy_dataset(toy, n_patients=40, images_per_patient=2, shape=(32, 32), seed=0)
    if not (run / "model_card.json").is_file():
        cfg = load_config(resolve_config_path("demo", "train"), TrainConfig,
                          overrides={"steps": 10, "warmup_steps": 2, "checkpoint_every": 10, "sample_grid": 4})
        train(toy, cfg, run)
    return toy, run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--only", nargs="+", default=None, help="script names (or parts of them) to run")
    ap.add_argument("--skip", nargs="+", default=None, help="script names (or parts of them) not to run")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per script")
    ap.add_argument("--list", action="store_true", help="print the scripts and their quick arguments; run nothing")
    args = ap.parse_args()
    out = args.out.resolve()
    env = dict(os.environ, SYNTHMED_NO_PROGRESS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    todo = benches(out, out / "toy-dataset", out / "toy-run")
    if args.only:
        todo = [b for b in todo if any(o in b.script for o in args.only)]
    if args.skip:
        todo = [b for b in todo if not any(o in b.script for o in args.skip)]
    missing = sorted(set(scripts()) - {b.script for b in benches(out, out, out)})
    if missing:  # a new script must get quick arguments here
        print(f"error: no quick form for {', '.join(missing)}; add it to benches() in run_all.py",
              flush=True)
    if args.list:
        for b in todo:
            print(f"{b.script} {' '.join(b.args)}")
        return 1 if missing else 0
    out.mkdir(parents=True, exist_ok=True)

    results = []
    t_all = time.perf_counter()
    for b in todo:
        if b.manual:
            results.append((b.script, "skipped", 0.0, b.manual))
            print(f"- {b.script}: skipped ({b.manual})", flush=True)
            continue
        absent = [n for n in b.needs if not (SHARED / n).exists()]
        if absent:
            results.append((b.script, "skipped", 0.0, f"needs {SHARED / absent[0]}"))
            print(f"- {b.script}: skipped (needs {SHARED / absent[0]})", flush=True)
            continue
        if b.needs_model:
            tiny_model(out)
        log = out / f"{Path(b.script).stem}.log"
        print(f"- {b.script} {' '.join(b.args)}", flush=True)
        t0 = time.perf_counter()
        try:
            with log.open("w") as fh:
                rc = subprocess.run([sys.executable, str(HERE / b.script), *b.args], cwd=ROOT, env=env,
                                    stdout=fh, stderr=subprocess.STDOUT, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        secs = time.perf_counter() - t0
        status = "ok" if rc == 0 else f"FAILED ({rc})"
        results.append((b.script, status, secs, str(log)))
        print(f"  {status} in {secs:.0f} s; log {log}", flush=True)

    print(f"\n{'script':<20} {'result':<12} {'seconds':>8}  output")
    for script, status, secs, where in results:
        print(f"{script:<20} {status:<12} {secs:8.0f}  {where}")
    print(f"all in {time.perf_counter() - t_all:.0f} s; results under {out}")
    return 1 if missing or any(s.startswith("FAILED") for _, s, _, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
