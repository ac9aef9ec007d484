"""Training throughput of `synthmed.models.train` against a bare PyTorch loop, and FLOP/s.

Measured in one process, same network, batch, data and device:

1. bare loop: sample a batch, add noise (diffusers DDPMScheduler), v-prediction MSE, backward,
   AdamW step; once without and once with the extras synthmed's trainer also does per step
   (gradient clipping, LR schedule, EMA), so the framework's own overhead is separated from
   what the algorithm costs;
2. `synthmed.models.train` for --steps steps; its per-step time comes from the `seconds` column
   of losses.csv between the first and the last log point, so set-up, the final checkpoint and
   the sample grid are excluded;
3. FLOPs of one training step (forward + backward) counted with torch.utils.flop_counter, and the
   FLOP/s of a large matmul on the same device and thread count, as the attainable reference.

    python benchmarks/bench_training.py --dataset runs/cxr64/dataset [--config configs/cxr-64.yaml]
    python benchmarks/bench_training.py --dataset DATA --device cuda --steps 200

Prints ratios; --json writes them. The CPU figures in results_models.md came from a 2-core
machine shared with other jobs: absolute rates vary between runs, ratios less.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthmed.config import load_config  # noqa: E402
from synthmed.data.dataset import Dataset  # noqa: E402
from synthmed.models import TrainConfig, train  # noqa: E402
from synthmed.models.conditioning import conditions_from_arrays  # noqa: E402
from synthmed.models.network import ConditionalUNet, pad_to, padded_shape  # noqa: E402
from synthmed.models.schedulers import training_scheduler  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bare:
    """The hand-written loop a user would start from (no synthmed code in the step)."""

    def __init__(self, cfg: TrainConfig, ds: Dataset, device: torch.device, extras: bool):
        idx = ds.require_split("train")
        images = torch.from_numpy(np.asarray(ds.images[idx], np.float32))[:, None] * 2 - 1
        down = 2 ** (len(cfg.network.channels) - 1)
        self.x = pad_to(images, padded_shape(images.shape[2:], down), -1.0)
        self.cond = conditions_from_arrays(ds.label_matrix()[idx], ds.ages()[idx], ds.sexes()[idx])
        torch.manual_seed(cfg.seed)
        self.net = ConditionalUNet(ds.spatial_dims, 1, len(ds.label_vocabulary), cfg.network,
                                   cfg.conditioning).to(device)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr)
        self.sched = training_scheduler(cfg.scheduler)
        self.cfg, self.device, self.extras = cfg, device, extras
        self.autocast = device.type == "cuda" and cfg.bf16
        if extras:
            from diffusers.optimization import get_cosine_schedule_with_warmup
            from diffusers.training_utils import EMAModel

            self.lr_sched = get_cosine_schedule_with_warmup(self.opt, cfg.warmup_steps, 10**6)
            self.ema = EMAModel(self.net.parameters(), decay=cfg.ema_decay, use_ema_warmup=True,
                                power=2 / 3)
        self.gen = torch.Generator().manual_seed(0)

    def step(self) -> None:
        b, dev = self.cfg.batch_size, self.device
        rows = torch.randint(0, self.x.shape[0], (b,), generator=self.gen)
        x0 = self.x[rows].to(dev)
        noise = torch.randn(x0.shape, generator=self.gen).to(dev)
        t = torch.randint(0, self.cfg.scheduler.num_train_timesteps, (b,), generator=self.gen).to(dev)
        cond = self.cond.select(rows).to(dev)
        x_t = self.sched.add_noise(x0, noise, t)
        target = self.sched.get_velocity(x0, noise, t)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.autocast):
            pred = self.net(x_t, t, cond)
        loss = F.mse_loss(pred.float(), target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.extras:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
        self.opt.step()
        if self.extras:
            self.lr_sched.step()
            self.ema.step(self.net.parameters())

    def seconds_per_step(self, steps: int, warmup: int = 2) -> float:
        for _ in range(warmup):
            self.step()
        sync(self.device)
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        sync(self.device)
        return (time.perf_counter() - t0) / steps


def trainer_seconds_per_step(ds_path: Path, cfg: TrainConfig, steps: int, log_every: int) -> float:
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        run_cfg = cfg.model_copy(update={"steps": steps, "log_every": log_every, "sample_every": 0,
                                         "checkpoint_every": steps, "sample_grid": 1})
        train(ds_path, run_cfg, work / "run")
        import csv

        rows = list(csv.DictReader(open(work / "run" / "losses.csv")))
        first, last = rows[0], rows[-1]
        return (float(last["seconds"]) - float(first["seconds"])) / (int(last["step"]) - int(first["step"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def step_flops(bare: Bare) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        bare.step()
    return int(counter.get_total_flops())


def matmul_flops_per_s(device: torch.device, n: int, dtype: torch.dtype, repeats: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):  # best of: the shared CPU makes single timings noisy
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "cxr-64.yaml")
    p.add_argument("--steps", type=int, default=30, help="steps per measurement")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--matmul", type=int, default=2048)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(args.config, TrainConfig) if args.config.is_file() else TrainConfig()
    cfg = cfg.model_copy(update={"device": args.device, "threads": args.threads})
    ds = Dataset.open(args.dataset)
    print(f"config: {args.config if args.config.is_file() else 'TrainConfig() defaults'}; "
          f"data {ds.shape}, batch {cfg.batch_size}, device {device}, threads {torch.get_num_threads()}")

    bare = Bare(cfg, ds, device, extras=False)
    full = Bare(cfg, ds, device, extras=True)
    flops = step_flops(bare)
    # Interleave so a change in the machine's load hits all variants alike.
    b1 = bare.seconds_per_step(args.steps)
    f1 = full.seconds_per_step(args.steps)
    log_every = max(1, args.steps // 6)
    tr = trainer_seconds_per_step(args.dataset, cfg, args.steps + log_every, log_every)
    b2 = bare.seconds_per_step(args.steps)
    f2 = full.seconds_per_step(args.steps)
    bare_s, full_s = (b1 + b2) / 2, (f1 + f2) / 2
    dtype = torch.bfloat16 if device.type == "cuda" and cfg.bf16 else torch.float32
    mm = matmul_flops_per_s(device, args.matmul, dtype, repeats=5)
    res = {
        "device": str(device), "threads": torch.get_num_threads(), "batch": cfg.batch_size,
        "shape": list(ds.shape), "steps": args.steps,
        "bare_s_per_step": [b1, b2], "bare_plus_ema_clip_lr_s_per_step": [f1, f2],
        "trainer_s_per_step": tr,
        "trainer_overhead_vs_bare": tr / bare_s - 1,
        "trainer_overhead_vs_same_algorithm": tr / full_s - 1,
        "images_per_s_trainer": cfg.batch_size / tr, "images_per_s_bare": cfg.batch_size / bare_s,
        "flops_per_step": flops, "achieved_flops_per_s": flops / tr,
        f"matmul{args.matmul}_{str(dtype).split('.')[-1]}_flops_per_s": mm,
        "fraction_of_matmul": flops / tr / mm,
    }
    print(json.dumps(res, indent=1))
    print(f"trainer {tr:.3f} s/step vs bare {bare_s:.3f} (overhead {100 * res['trainer_overhead_vs_bare']:+.1f} %), "
          f"vs bare+EMA/clip/LR {full_s:.3f} ({100 * res['trainer_overhead_vs_same_algorithm']:+.1f} %); "
          f"{res['images_per_s_trainer']:.1f} img/s; {flops / 1e9:.2f} GFLOP/step -> "
          f"{flops / tr / 1e9:.2f} GFLOP/s = {100 * res['fraction_of_matmul']:.1f} % of matmul {mm / 1e9:.1f} GFLOP/s")
    if args.json:
        from synthmed.io.atomic import write_json

        write_json(args.json, res)


if __name__ == "__main__":
    main()
