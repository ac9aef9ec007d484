"""`synthmed train` under torchrun with 2 CPU processes (gloo) follows the 1-process run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers_dataset import make_toy_dataset
from synthmed.models import train
from synthmed.models.checkpoint import load_tensors
from test_models import tiny_config

# the documented form (README: `torchrun ... synthmed train DATA --config C --out RUN`)
DRIVER = """
import sys
from synthmed.cli import main
main(sys.argv[1:])
"""


def _losses(run: Path) -> np.ndarray:
    rows = (run / "losses.csv").read_text().splitlines()[1:]
    return np.array([float(r.split(",")[1]) for r in rows])


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    ds = make_toy_dataset(tmp_path / "ds", n_patients=10, images_per_patient=2, shape=(8, 8), seed=3)
    cfg = tiny_config(steps=5, batch_size=8)
    before = torch.get_num_threads()
    try:
        one = train(ds, cfg, tmp_path / "one")
    finally:
        torch.set_num_threads(before)
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    (tmp_path / "driver.py").write_text(DRIVER)
    # progress as a batch job's log shows it (lines, not a bar): at the start and the end only
    env = {k: v for k, v in os.environ.items() if k != "SYNTHMED_NO_PROGRESS"}
    env |= {"OMP_NUM_THREADS": "1", "SYNTHMED_PROGRESS_EVERY": "3600"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(tmp_path / "driver.py"), "train", str(ds), "--config", str(tmp_path / "cfg.json"),
         "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one run, reported once: by rank 0 (its summary names the model); the other rank is quiet
    log = proc.stdout + proc.stderr
    assert log.count("synthmed: train: 0/5 (0%)") == 1 and log.count("synthmed: train: 5/5") == 1, log
    assert log.count("trained 5 steps") == 1 and "model  ->" not in log, log
    run_info = (tmp_path / "two" / "run.json").read_text()
    assert '"world_size": 2' in run_info
    np.testing.assert_allclose(_losses(tmp_path / "two"), _losses(one), rtol=1e-4)
    a = load_tensors(one / "model.safetensors")
    b = load_tensors(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    # Gradients are summed in another order across ranks, and Adam turns float noise in
    # near-zero gradients into full-size steps for a few weights: compare the weights as a whole.
    diff = torch.cat([(a[k] - b[k]).flatten() for k in a]).norm()
    total = torch.cat([a[k].flatten() for k in a]).norm()
    assert diff / total < 1e-4, float(diff / total)
