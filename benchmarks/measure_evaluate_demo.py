"""Wall time of `evaluate_cohort` on a demo-sized dataset and cohort (issue 13, must-show 4).

    python benchmarks/measure_evaluate_demo.py DEMO_DIR [--config evaluate] [--encoder PATH|train]
        [--out /tmp/eval]

DEMO_DIR is a `synthmed demo` folder (dataset/, cohort/, audit/encoder/). The demo trains the
audit's encoder once; `--encoder DEMO_DIR/audit/encoder` (the default) measures what the
evaluation adds on top, `--encoder train` includes training the same encoder here. Prints the
seconds of each stage and the summary; the numbers go to benchmarks/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from synthmed.evaluate.cohort import evaluate_cohort


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("demo", type=Path)
    ap.add_argument("--config", default="evaluate")
    ap.add_argument("--encoder", default=None, help="an embedder folder, or 'train'")
    ap.add_argument("--out", type=Path, default=Path("/tmp/measure-evaluate-demo"))
    a = ap.parse_args()
    enc = None if a.encoder == "train" else Path(a.encoder or a.demo / "audit" / "encoder")
    shutil.rmtree(a.out, ignore_errors=True)
    t0 = time.perf_counter()
    res = evaluate_cohort(a.demo / "dataset", a.demo / "cohort", a.out, config=a.config, encoder=enc,
                          seed=0)
    wall = time.perf_counter() - t0
    print(res.summary())
    print("config", a.config, "encoder", "trained here" if enc is None else "given",
          "load average", " ".join(f"{v:.1f}" for v in os.getloadavg()))
    print("seconds:", ", ".join(f"{k} {v:.1f}" for k, v in res.seconds.items()), f"| wall {wall:.1f}")


if __name__ == "__main__":
    main()
