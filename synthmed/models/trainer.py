"""`train(dataset, config, out)`: conditional DDPM training on the train split only.

Determinism is by construction, not by saved RNG streams: the data order is a function of
(seed, epoch) and the noise, timesteps and condition drops of a step are a function of
(seed, step), drawn for the whole global batch and then sliced per rank. So a resumed run, or the
same run on N DDP processes, sees exactly what an uninterrupted 1-process run sees.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
import os
import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from rich.progress import TextColumn

from synthmed.data.dataset import Dataset
from synthmed.data.values import check_values, intensity_range
from synthmed.io import folders
from synthmed.errors import ConfigError, InputError, SynthmedError, arg
from synthmed.io.atomic import write_json, write_text
from synthmed.models import autoencoder as ae_mod
from synthmed.models.checkpoint import (CheckpointError, flatten_state, latest_checkpoint,
                                        load_checkpoint, load_module_state, load_tensors,
                                        read_json, restore_rng, rng_state, save_checkpoint,
                                        save_tensors, unflatten_state)
from synthmed.models.conditioning import SEXES, Conditions, conditions_from_arrays
from synthmed.models.config import TrainConfig
from synthmed.models.diffusion import pick_device, save_model
from synthmed.models.network import ConditionalUNet, pad_to, padded_shape
from synthmed.models.sampling import resolve_sampling
from synthmed.models.schedulers import training_scheduler
from synthmed.progress import console, make_progress, progress_enabled
from synthmed.provenance import hash_id_list, provenance, sha256_file, sha256_json
from synthmed.results import TrainResult
from synthmed.viz import save_png, tile, to_uint8, view_2d

if TYPE_CHECKING:
    from synthmed.generate.pipeline import DiffusionPipeline as DiffusionModel

# The autoencoder stage of latent training checkpoints here (the diffusion stage in checkpoint/).
AE_CHECKPOINT = "checkpoint-autoencoder"

# Keys that may change between an interrupted run and its resumption (they do not change what
# is computed, except `steps`, which the user may raise to train longer).
_RESUMABLE_KEYS = {"steps", "checkpoint_every", "sample_every", "sample_grid", "log_every",
                   "threads", "device"}


# -- determinism helpers --------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _epoch_perm(seed: int, n: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, 0, epoch]).permutation(n)


def batch_positions(seed: int, n: int, batch: int, step: int) -> np.ndarray:
    """Rows of the global batch at `step`: consecutive slices of per-epoch permutations."""
    out: list[np.ndarray] = []
    p = step * batch
    need = batch
    while need:
        epoch, off = divmod(p, n)
        take = min(need, n - off)
        out.append(_epoch_perm(seed, n, epoch)[off:off + take])
        p += take
        need -= take
    return np.concatenate(out)


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, 1, step]).integers(2**62)))


# -- distributed ----------------------------------------------------------------------------------

class _Dist:
    def __init__(self, config: TrainConfig):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = pick_device(config.device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", local % max(1, torch.cuda.device_count()))
            torch.cuda.set_device(self.device)
        self.owned = False
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.owned = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> float:
        if self.world > 1:
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.world
        return float(value.detach())

    def close(self) -> None:
        if self.owned:
            dist.destroy_process_group()


# -- the training run ------------------------------------------------------------------------------

def train(dataset: str | Path, config: TrainConfig, out: str | Path, resume: bool = False) -> Path:
    """Train on the train split of `dataset`; write the run folder `out`; return it."""
    return run_training(dataset, config, out, resume=resume).out


def run_training(dataset: str | Path, config: TrainConfig, out: str | Path, *,
                 resume: bool = False) -> TrainResult:
    """`train`, returning what the run wrote (model hash, steps, losses) instead of its folder."""
    if not isinstance(config, TrainConfig):
        raise ConfigError("train: config must be a TrainConfig (use load_config(path, TrainConfig))")
    from synthmed.io import folders

    out = Path(out)
    # A run grows in place (checkpoints, resume): it is committed by its marker, rewritten at
    # each checkpoint and at the end; another kind of folder is refused before any work.
    folders.prepare_output(out, "run", grows_in_place=True)
    threads = torch.get_num_threads()
    d = _Dist(config)
    try:
        with folders.writer_lock(out) if d.main else contextlib.nullcontext():
            if d.main:
                out.mkdir(parents=True, exist_ok=True)
                if folders.read_marker(out) is None:
                    folders.stamp(out, "run")  # a run killed before its first checkpoint is still one
            card = _Run(Path(dataset), config, out, resume, d).run()
        # only rank 0 writes the model card; the other ranks know what they were asked to do
        return TrainResult.from_card(out, card if card is not None else {"steps": config.steps,
                                                                         "world_size": d.world},
                                     rank=d.rank)
    finally:
        d.close()
        torch.set_num_threads(threads)  # `threads` applies to this run only (notebooks, tests)


class _Run:
    def __init__(self, dataset: Path, cfg: TrainConfig, out: Path, resume: bool, d: _Dist):
        self.cfg, self.out, self.d = cfg, out, d
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.batch_size % d.world:
            raise ConfigError(f"batch_size {cfg.batch_size} must be a multiple of the number of "
                              f"processes ({d.world})")
        self.resume_requested = resume
        if not resume and (latest_checkpoint(out / "checkpoint") is not None
                           or latest_checkpoint(out / AE_CHECKPOINT) is not None):
            raise InputError(f"{out}: already holds a training run; pass {arg('resume', True)} to "
                             f"continue it or choose another {arg('out')}")
        self.resume = resume and latest_checkpoint(out / "checkpoint") is not None
        if self.resume:
            _check_resume_steps(out / "checkpoint", cfg.steps)
        # the holdout's pixels are never read, not even to check them: only the train split's are
        ds = Dataset.open(dataset, check_values=False)
        self.ds_summary = ds.summary()
        idx = ds.require_split("train")
        self.row_patients = np.array([ds.records[i].patient for i in idx], dtype=object)
        self.train_patients = sorted(set(self.row_patients.tolist()))
        images = np.asarray(ds.images[idx], dtype=np.float32)
        check_values(images, ds.root / "images.npy", intensity_range(ds.info), index=idx)
        self.fingerprint = ds.fingerprint() or sha256_file(ds.root / "images.npy")
        self.vocab = ds.label_vocabulary
        self.spatial_dims = ds.spatial_dims
        self.shape = tuple(images.shape[1:])
        if len(self.shape) != self.spatial_dims:
            raise InputError(f"{ds.root}: dataset.json says spatial_dims={self.spatial_dims} but "
                             f"images have shape {self.shape}")
        self.cond = conditions_from_arrays(ds.label_matrix()[idx], ds.ages()[idx], ds.sexes()[idx])
        self.priors = _priors(ds.label_matrix()[idx], ds.ages()[idx], ds.sexes()[idx], self.vocab)
        self.n = len(idx)
        self.pixels = torch.from_numpy(np.clip(images, 0, 1))[:, None] * 2 - 1
        del images

    # ---- set-up --------------------------------------------------------------------------------

    def _build(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        unet_down = 2 ** (len(cfg.network.channels) - 1)
        self.ae = None
        if cfg.latent.enabled:
            multiple = unet_down * ae_mod.downsampling(cfg.latent)
            self.pixel_shape = padded_shape(self.shape, multiple)
            self.data, self.scale_factor = self._latents(pad_to(self.pixels, self.pixel_shape, -1.0))
            self.model_shape = tuple(self.data.shape[2:])
        else:
            self.pixel_shape = padded_shape(self.shape, unet_down)
            self.data = pad_to(self.pixels, self.pixel_shape, -1.0)
            self.scale_factor = 1.0
            self.model_shape = self.pixel_shape
        self.in_channels = int(self.data.shape[1])
        torch.manual_seed(cfg.seed)
        self.net = ConditionalUNet(self.spatial_dims, self.in_channels, len(self.vocab),
                                   cfg.network, cfg.conditioning).to(self.d.device)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.lr_sched = get_cosine_schedule_with_warmup(self.opt, cfg.warmup_steps, cfg.steps)
        # diffusers' EMAModel with its warm-up (decay 1 - (1 + step)^-2/3, capped at ema_decay),
        # so short CPU runs still get a useful average.
        self.ema = EMAModel(self.net.parameters(), decay=cfg.ema_decay, use_ema_warmup=True,
                            inv_gamma=1.0, power=2 / 3)
        self.sched = training_scheduler(cfg.scheduler)
        self.dp = None
        if cfg.dp is not None:
            from synthmed.models.dp import PatientDPSGD

            self.dp = PatientDPSGD(self.net, self.opt, cfg, self.row_patients, self.d.world)
        self.model = self.net
        if self.d.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.d.device.index] if self.d.device.type == "cuda" else None)

    def _latents(self, pixels: torch.Tensor) -> tuple[torch.Tensor, float]:
        cfg, run = self.cfg, self.out
        ae = ae_mod.build_autoencoder(self.spatial_dims, cfg.latent)
        file, meta = run / "autoencoder.safetensors", run / "autoencoder.json"
        key = sha256_json({"latent": cfg.latent.model_dump(mode="json"), "seed": cfg.seed,
                           "data": self.fingerprint})
        have = meta.is_file() and read_json(meta, "autoencoder description").get("key") == key
        if not have and self.d.main:
            torch.manual_seed(cfg.seed)
            ae = ae_mod.build_autoencoder(self.spatial_dims, cfg.latent)
            start, opt_state = self._load_ae_checkpoint(ae, key)
            ckpt_root = run / AE_CHECKPOINT

            def save(step: int, opt: torch.optim.Optimizer, l1: float) -> None:
                tensors = {f"ae.{k}": v for k, v in ae.state_dict().items()}
                optim = flatten_state("optim", opt.state_dict(), tensors)
                save_checkpoint(ckpt_root, step, tensors, {"stage": "autoencoder", "key": key,
                                                           "optimizer": optim, "l1": l1})

            with make_progress(TextColumn("L1 {task.fields[loss]:.4f}")) as prog:
                task = prog.add_task("autoencoder", total=cfg.latent.steps, completed=start,
                                     loss=float("nan"))
                l1 = ae_mod.train_autoencoder(
                    ae, pixels, cfg.latent, cfg.seed, self.d.device,
                    on_step=lambda s, v: prog.update(task, advance=1, loss=v),
                    start_step=start, optimizer_state=opt_state,
                    checkpoint_every=cfg.checkpoint_every, on_checkpoint=save)
            save_tensors(file, ae.state_dict())
            write_json(meta, {"key": key, "steps": cfg.latent.steps, "final_l1": l1,
                              "sha256": sha256_file(file)})
            # the finished stage replaces its checkpoint (autoencoder.json is written first)
            shutil.rmtree(ckpt_root, ignore_errors=True)
        self.d.barrier()
        if self.d.world > 1 or have:
            load_module_state(ae, {f"ae.{k}": v for k, v in load_tensors(file).items()}, "ae", file)
        ae.to(self.d.device).eval()
        z = ae_mod.encode_all(ae, pixels, self.d.device)
        # Scale latents to unit variance (as in Stable Diffusion) so the noise schedule fits them.
        scale = float(1.0 / z.std().clamp_min(1e-6))
        self.ae = ae
        return z * scale, scale

    def _load_ae_checkpoint(self, ae: torch.nn.Module, key: str) -> tuple[int, dict[str, Any] | None]:
        """(step, optimiser state) of the autoencoder stage's checkpoint on --resume, else (0, None)."""
        root = self.out / AE_CHECKPOINT
        if not self.resume_requested or latest_checkpoint(root) is None:
            return 0, None
        tensors, state = load_checkpoint(root)
        where = latest_checkpoint(root)
        if state.get("stage") != "autoencoder" or state.get("key") != key:
            raise CheckpointError(f"{where}: autoencoder checkpoint was made with a different "
                                  "latent config, seed or dataset")
        try:
            load_module_state(ae, tensors, "ae", where)
            opt_state = unflatten_state(state["optimizer"], tensors)
            return int(state["step"]), opt_state
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{where}: checkpoint does not fit this run ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0][:200]})") from None

    # ---- checkpoints ---------------------------------------------------------------------------

    def _resume_key(self) -> str:
        cfg = self.cfg.model_dump(mode="json")
        if cfg.get("dp") is None:
            cfg.pop("dp", None)  # runs from before `dp` existed keep their key
        return sha256_json({k: v for k, v in cfg.items() if k not in _RESUMABLE_KEYS})

    def _save(self, step: int) -> None:
        tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in self.net.state_dict().items()}
        for i, p in enumerate(self.ema.shadow_params):
            tensors[f"ema.{i}"] = p
        ema_state = {k: v for k, v in self.ema.state_dict().items() if k != "shadow_params"}
        optim = flatten_state("optim", self.opt.state_dict(), tensors)
        state = {
            "resume_key": self._resume_key(), "config": self.cfg.model_dump(mode="json"),
            "dataset_fingerprint": self.fingerprint, "world_size": self.d.world,
            "optimizer": optim, "lr_scheduler": self.lr_sched.state_dict(), "ema": ema_state,
            "rng": rng_state(tensors), "losses": self.losses,
        }
        save_checkpoint(self.out / "checkpoint", step, tensors, state)

    def _load(self) -> int:
        root = self.out / "checkpoint"
        tensors, state = load_checkpoint(root)
        where = latest_checkpoint(root)
        if state.get("resume_key") != self._resume_key():
            raise CheckpointError(f"{where}: checkpoint was made with a different config "
                                  "(only steps, checkpoint_every, sample_every, log_every, threads "
                                  f"and device may change on {arg('resume', True)})")
        if state.get("dataset_fingerprint") != self.fingerprint:
            raise CheckpointError(f"{where}: checkpoint was made on a different dataset "
                                  "(fingerprint differs)")
        try:
            load_module_state(self.net, tensors, "model", where)
            shadow = [tensors[f"ema.{i}"].to(self.d.device) for i in range(len(self.ema.shadow_params))]
            self.ema.load_state_dict({**state["ema"], "shadow_params": shadow})
            self.opt.load_state_dict(unflatten_state(state["optimizer"], tensors))
            self.lr_sched.load_state_dict(state["lr_scheduler"])
            restore_rng(state["rng"], tensors)
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            raise CheckpointError(f"{where}: checkpoint does not fit this run ({type(err).__name__}: "
                                  f"{str(err).splitlines()[0][:200]})") from None
        self.losses = [dict(r) for r in state.get("losses", [])]
        return int(state["step"])

    def _ema_net(self) -> ConditionalUNet:
        net = copy.deepcopy(self.net)
        self.ema.copy_to(net.parameters())
        return net.eval()

    def _model_info(self, step: int) -> dict[str, Any]:
        return {
            "spatial_dims": self.spatial_dims, "shape": list(self.shape),
            "model_shape": list(self.model_shape), "in_channels": self.in_channels,
            "label_vocabulary": self.vocab, "condition_priors": self.priors,
            "latent": {"enabled": self.cfg.latent.enabled, "scale_factor": self.scale_factor,
                       "pixel_shape": list(self.pixel_shape)},
            "normalisation": "images in [0, 1] are trained as 2x - 1",
            "trained_steps": step, "dataset_fingerprint": self.fingerprint,
            "train_patients_sha256": hash_id_list(self.train_patients),
            "config": self.cfg.model_dump(mode="json"),
            **({"dp": self.dp.record(step)} if self.dp is not None else {}),
        }

    def _write_outputs(self, step: int, final: bool) -> DiffusionModel:
        # The preview grids are drawn by the sampling pipeline itself (as diffusers' training
        # scripts do), so a grid shows exactly what `synthmed sample` gives.
        from synthmed.generate.pipeline import DiffusionPipeline as DiffusionModel

        info = self._model_info(step)
        net = self._ema_net()
        model_hash = save_model(self.out, net, self.ae, info)
        self._write_losses()
        return DiffusionModel(net, self.cfg, info, copy.deepcopy(self.ae) if self.ae is not None else None,
                              model_hash, self.d.device)

    def _write_losses(self) -> None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["step", "loss", "lr", "seconds"])
        for r in self.losses:
            w.writerow([r["step"], f"{r['loss']:.6g}", f"{r['lr']:.6g}", f"{r['seconds']:.2f}"])
        write_text(self.out / "losses.csv", buf.getvalue())

    def _grid(self, model: DiffusionModel, step: int) -> None:
        # The model's own sampling settings, so the grid shows what `sample` gives by default;
        # the JSON beside it says what ran.
        sampled = model.sample(self.cfg.sample_grid, seed=0)
        name = self.out / "samples" / f"step_{step:06d}"
        write_grid(name.with_suffix(".png"), sampled.images)
        write_json(name.with_suffix(".json"), {"step": step, "n": self.cfg.sample_grid, "seed": 0,
                                               "sampling": sampled.settings.as_dict()})

    def _dp_step(self, step: int) -> float:
        """One patient-level DP-SGD step (synthmed.models.dp): the patients are Poisson-sampled,
        so the batch is this step's own, not the fixed-size epoch slice of non-private training."""
        cfg, dev = self.cfg, self.d.device
        rows, slot, k = self.dp.sample(cfg.seed, step)
        sel = rows if rows.size else np.zeros(1, dtype=np.int64)  # a placeholder row, weight 0
        g = torch.Generator().manual_seed(int(np.random.default_rng([cfg.seed, 12, step]).integers(2**62)))
        noise = torch.randn((sel.size, *self.data.shape[1:]), generator=g).to(dev)
        t = torch.randint(0, cfg.scheduler.num_train_timesteps, (sel.size,), generator=g).to(dev)
        u = torch.rand((sel.size, 4), generator=g)
        x0 = self.data[torch.from_numpy(sel)].to(dev)
        cond = _drop(self.cond.select(torch.from_numpy(sel)), u, cfg.conditioning).to(dev)
        x_t = self.sched.add_noise(x0, noise, t)
        target = noise if cfg.scheduler.prediction_type == "epsilon" else self.sched.get_velocity(x0, noise, t)
        noise_gen = torch.Generator(device=dev).manual_seed(
            int(np.random.default_rng([cfg.seed, 13, step]).integers(2**62)))
        return self.dp.step(x_t, t, target, cond, slot, k, noise_gen)

    # ---- the loop ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any] | None:
        """Train; the model card written (on rank 0; None on the other ranks)."""
        cfg, d = self.cfg, self.d
        self._build()
        self.losses: list[dict[str, float]] = []
        start = self._load() if self.resume else 0
        if d.main:
            write_json(self.out / "run.json", {
                "schema": "synthmed.run/1", "dataset_fingerprint": self.fingerprint,
                "train_patients_sha256": hash_id_list(self.train_patients),
                "train_patients": len(self.train_patients), "train_images": self.n,
                "world_size": d.world, "device": d.device.type,
                "provenance": provenance(cfg, seed=cfg.seed)})
        b_local = cfg.batch_size // d.world
        mine = slice(d.rank * b_local, (d.rank + 1) * b_local)
        c = cfg.conditioning
        t_total = cfg.scheduler.num_train_timesteps
        autocast = d.device.type == "cuda" and cfg.bf16
        self.net.train()
        t0 = time.perf_counter() - (self.losses[-1]["seconds"] if self.losses else 0.0)
        window: list[float] = []
        model = None
        # every rank steps in lockstep: rank 0's progress is the run's, the others stay quiet
        with make_progress(TextColumn("loss {task.fields[loss]:.4f}"),
                           TextColumn("{task.fields[rate]:.2f} it/s"), quiet=not d.main) as prog:
            task = prog.add_task("train", total=cfg.steps, completed=start, loss=float("nan"), rate=0.0)
            t_rate, s_rate = time.perf_counter(), start
            for step in range(start, cfg.steps):
                rows = batch_positions(cfg.seed, self.n, cfg.batch_size, step)[mine]
                g = step_generator(cfg.seed, step)
                noise = torch.randn((cfg.batch_size, *self.data.shape[1:]), generator=g)[mine]
                t = torch.randint(0, t_total, (cfg.batch_size,), generator=g)[mine]
                u = torch.rand((cfg.batch_size, 4), generator=g)[mine]
                if self.dp is not None:
                    loss_value = self._dp_step(step)
                else:
                    x0 = self.data[rows]
                    cond = _drop(self.cond.select(torch.from_numpy(rows)), u, c).to(d.device)
                    x0, noise, t = x0.to(d.device), noise.to(d.device), t.to(d.device)
                    x_t = self.sched.add_noise(x0, noise, t)
                    target = noise if cfg.scheduler.prediction_type == "epsilon" else \
                        self.sched.get_velocity(x0, noise, t)
                    with torch.autocast(d.device.type, dtype=torch.bfloat16, enabled=autocast):
                        pred = self.model(x_t, t, cond)
                    loss = F.mse_loss(pred.float(), target)
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
                    self.opt.step()
                    loss_value = d.mean(loss.detach())
                self.lr_sched.step()
                self.ema.step(self.net.parameters())
                if math.isfinite(loss_value) or self.dp is None:
                    window.append(loss_value)  # a DP step that sampled no patient has no loss
                done = step + 1
                if done % cfg.log_every == 0 or done == cfg.steps:
                    if window and not math.isfinite(window[-1]):
                        raise SynthmedError(f"training diverged at step {done} (loss {window[-1]}); "
                                            "lower lr or raise grad clipping")
                    self.losses.append({"step": done,
                                        "loss": float(np.mean(window)) if window else math.nan,
                                        "lr": self.lr_sched.get_last_lr()[0],
                                        "seconds": time.perf_counter() - t0})
                    window = []
                    now = time.perf_counter()
                    rate = (done - s_rate) / max(now - t_rate, 1e-9)
                    prog.update(task, completed=done, loss=self.losses[-1]["loss"], rate=rate)
                    if d.main and done % (cfg.log_every * 10) == 0:
                        self._write_losses()
                ckpt = done % cfg.checkpoint_every == 0 or done == cfg.steps
                grid = cfg.sample_every and done % cfg.sample_every == 0
                if ckpt or grid:
                    if d.main:
                        model = self._write_outputs(done, done == cfg.steps)
                        if ckpt:
                            self._save(done)
                        if grid or done == cfg.steps:
                            self._grid(model, done)
                            self.net.train()
                        folders.stamp(self.out, "run")  # the commit point of this checkpoint
                        if not progress_enabled() and ckpt:
                            console.print(f"train: step {done}/{cfg.steps} loss "
                                          f"{self.losses[-1]['loss'] if self.losses else float('nan'):.4f}")
                    d.barrier()  # other ranks wait while rank 0 writes
        if d.main:
            if model is None:  # resumed a finished run
                model = self._write_outputs(cfg.steps, True)
            card = write_model_card(self.out, self, model)
            folders.stamp(self.out, "run")
        d.barrier()
        return card if d.main else None


def _drop(cond: Conditions, u: torch.Tensor, c) -> Conditions:
    """Classifier-free-guidance drops of a batch from its uniform draws u (B, 4)."""
    return cond.drop((u[:, 0] < c.drop_labels) | (u[:, 3] < c.drop_all),
                     (u[:, 1] < c.drop_age) | (u[:, 3] < c.drop_all),
                     (u[:, 2] < c.drop_sex) | (u[:, 3] < c.drop_all))


def _check_resume_steps(root: Path, steps: int) -> None:
    """A resumed run can only train longer: fewer steps than the checkpoint holds would record
    `steps` over weights trained for more."""
    where = latest_checkpoint(root)
    done = read_json(where / "state.json", "checkpoint state").get("step")
    if isinstance(done, int) and steps < done:
        raise ConfigError(f"{where}: the run is already at step {done}; steps = {steps} is below it "
                          f"(a resumed run can only train longer: use steps >= {done}, or a new {arg('out')})")


def _priors(labels: np.ndarray, ages: np.ndarray, sexes: np.ndarray, vocab: list[str]) -> dict[str, Any]:
    """Population summaries of the train split (rates and rounded moments, never rows), used as
    defaults when a cohort is generated without explicit label rates / ages / sex ratio."""
    n = max(len(ages), 1)
    a = ages[~np.isnan(ages)]
    known = [s for s in sexes if s in SEXES]
    return {
        "label_rates": {name: round(float(labels[:, j].sum()) / n, 4) for j, name in enumerate(vocab)},
        "age": ({"mean": round(float(a.mean()), 1), "std": round(float(a.std()), 1),
                 "q05": round(float(np.quantile(a, 0.05)), 0), "q95": round(float(np.quantile(a, 0.95)), 0)}
                if a.size >= 5 else None),
        "female_share": round(sum(s == "F" for s in known) / len(known), 4) if known else None,
    }


def write_grid(path: Path, images: np.ndarray) -> None:
    """Tile images (3D: middle slice of the first axis) into one PNG, black gaps."""
    imgs = np.stack([view_2d(im) for im in np.asarray(images)])
    sheet = tile(imgs, ncol=int(math.ceil(math.sqrt(len(imgs)))), pad=2, border=1, pad_value=0.0)
    save_png(to_uint8(sheet), path)


def _dp_card_lines(dp: dict[str, Any] | None) -> list[str]:
    if dp is None:
        return ["- differential privacy: none (trained without DP; no formal bound)"]
    return [f"- differential privacy: ({dp['epsilon']:.3g}, {dp['delta']:g})-DP per PATIENT "
            f"(Opacus {dp['accountant']} accountant: noise multiplier {dp['noise_multiplier']:.3g}, "
            f"patient sampling rate {dp['sample_rate']:.3g}, {dp['steps']} steps, clipping norm "
            f"{dp['max_grad_norm']:g}); covers {dp['covers']}; not covered: "
            + "; ".join(dp["not_covered"])]


def write_model_card(out: Path, run: _Run, model: DiffusionModel) -> dict[str, Any]:
    """Model card (JSON + markdown): counts, hashes, losses, resolved sampler defaults; nothing
    identifying."""
    cfg = run.cfg
    sampling = resolve_sampling(cfg)  # what `sample` runs when nothing else is asked for
    tail = [r["loss"] for r in run.losses[-max(1, len(run.losses) // 10):]]
    splits = {k: {"patients": v["patients"], "images": v["images"]}
              for k, v in run.ds_summary["splits"].items()}
    card = {
        "schema": "synthmed.model_card/1",
        "model_sha256": model.model_hash,
        "dataset_fingerprint": run.fingerprint,
        "train_patients_sha256": hash_id_list(run.train_patients),
        "split_sizes": splits,
        "trained_on": "train split only",
        "spatial_dims": run.spatial_dims, "shape": list(run.shape),
        "label_vocabulary": run.vocab,
        "steps": cfg.steps, "batch_size": cfg.batch_size, "world_size": run.d.world,
        "final_loss": float(np.mean(tail)) if tail else None,
        "first_loss": run.losses[0]["loss"] if run.losses else None,
        "training_seconds": run.losses[-1]["seconds"] if run.losses else None,
        "objective": cfg.scheduler.prediction_type, "noise_schedule": cfg.scheduler.beta_schedule,
        "latent": cfg.latent.enabled,
        "sampler_defaults": sampling.as_dict(),
        "differential_privacy": model.info.get("dp"),
        "provenance": provenance(cfg, seed=cfg.seed),
    }
    write_json(out / "model_card.json", card)
    lines = [
        "# synthmed model card", "",
        f"- model sha256: `{card['model_sha256']}`",
        f"- dataset fingerprint: `{card['dataset_fingerprint']}`",
        f"- training patients (hash of pseudonym set): `{card['train_patients_sha256']}`",
        f"- trained on: train split only ({splits.get('train', {}).get('patients', 0)} patients, "
        f"{splits.get('train', {}).get('images', 0)} images); holdout never read",
        f"- data: {run.spatial_dims}D, shape {list(run.shape)}, labels: {', '.join(run.vocab) or 'none'}",
        f"- training: {cfg.steps} steps, global batch {cfg.batch_size}, {run.d.world} process(es), "
        f"{cfg.scheduler.prediction_type} objective, {cfg.scheduler.beta_schedule} schedule, "
        f"latent={'yes' if cfg.latent.enabled else 'no'}",
        f"- loss: first {card['first_loss']:.4f}, final {card['final_loss']:.4f}" if tail else "- loss: n/a",
        f"- sampler defaults: {sampling.sampler}, {sampling.steps} steps, guidance "
        f"{sampling.guidance_scale}",
        *_dp_card_lines(model.info.get("dp")),
        "", "Split sizes:", "", "| split | patients | images |", "|---|---|---|",
        *[f"| {k} | {v['patients']} | {v['images']} |" for k, v in splits.items()], "",
    ]
    write_text(out / "model_card.md", "\n".join(lines))
    return card
