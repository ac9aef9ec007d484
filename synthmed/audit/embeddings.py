"""Spaces in which the audit compares images: raw pixels, and a contrastive encoder.

* `PixelEmbedder`: the image itself, flattened and divided by sqrt(number of voxels), so the
  Euclidean distance between two embeddings is their root-mean-square intensity difference
  (0.01 = 1 % of the intensity range on average). Catches exact, noisy and re-contrasted copies.
* `ContrastiveEncoder`: a small CNN trained by synthmed, on the real TRAIN split only, with the
  SimCLR objective (NT-Xent, Chen et al. 2020): two random views of an image (flips, small
  rotations, shifts, crop-and-resize, gamma, noise; `synthmed.audit.augment`) must be each other's
  nearest neighbour among all views in the batch. The encoder thus learns to ignore exactly the
  disguises a copied image might wear, and a flipped / shifted / cropped copy of a training image
  lands next to it. Outputs are L2-normalised (distances in [0, 2]). Trained from scratch, no
  pretrained weights, a few thousand images per minute on two CPU cores.
* `load_embedder(path)`: the user's own local weights (see "Weights format" below).

Weights format (what `ContrastiveEncoder.save` writes and `load_embedder` reads): a folder with

    embedder.json          {"format": "synthmed.embedder/1",
                            "architecture": {"name": ..., "kwargs": {...}},
                            "spatial_dims": 2 | 3, "input_shape": [H, W] or [D, H, W],
                            "work_shape": [...],   # images are resized to this before the net
                            "dim": embedding size, "provenance": {...}}
    embedder.safetensors   the network's state dict (loaded strictly: every tensor must match)

`architecture.name` is "synthmed.cnn" (the encoder below: kwargs channels, dim, spatial_dims) or one
of the MONAI networks in `MONAI_ARCHITECTURES` (kwargs passed to its constructor, e.g.
{"name": "ResNet", "kwargs": {"block": "basic", "layers": [2,2,2,2], "block_inplanes": [64,128,256,512],
"spatial_dims": 2, "n_input_channels": 1, "num_classes": 128}}); the network's output for a
(B, 1, *work_shape) batch is the embedding. Only JSON and safetensors are read: no pickle, no code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthmed.audit.augment import AugmentConfig, random_views
from synthmed.errors import InputError
from synthmed.io.atomic import atomic_path, write_json
from synthmed.progress import make_progress

EMBEDDER_FORMAT = "synthmed.embedder/1"
MONAI_ARCHITECTURES = ("ResNet", "DenseNet121", "DenseNet169", "DenseNet201", "SEResNet50",
                       "EfficientNetBN", "Regressor")


def _tensor(images: np.ndarray) -> torch.Tensor:
    """float32 tensor sharing memory with `images` when it can; a read-only array (a memory-mapped
    images.npy) is copied, since torch cannot wrap it safely (and warns)."""
    a = np.ascontiguousarray(images, dtype=np.float32)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


@runtime_checkable
class Embedder(Protocol):
    name: str

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, *shape) images in [0, 1] -> float32 (N, d)."""
        ...


class PixelEmbedder:
    """The image as a vector, scaled so distances are RMS intensity differences."""

    name = "pixel"

    def embed(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        x = x.reshape(x.shape[0], -1)
        return x / np.float32(np.sqrt(x.shape[1]))


class CoarsePixelEmbedder:
    """The image area-downsampled to `size` per axis and standardised (zero mean, unit variance).

    Shifts of a few % and brightness / contrast changes barely move it, and `flip=True` embeds the
    left-right mirror image: searching with both finds mirrored copies. Used to propose candidates
    for `synthmed.audit.memorisation.copy_search`, not as a distance in its own right.
    """

    def __init__(self, size: int = 8, flip: bool = False):
        self.size, self.flip = size, flip
        self.name = f"coarse{size}" + ("-flipped" if flip else "")

    def embed(self, images: np.ndarray) -> np.ndarray:
        x = _tensor(images).unsqueeze(1)
        if self.flip:
            x = x.flip(-1)
        x = F.interpolate(x, size=tuple(min(self.size, s) for s in x.shape[2:]), mode="area").flatten(1)
        x = (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-6)
        return x.numpy().astype(np.float32)


# --------------------------------------------------------------------------------- networks
class SmallCNN(nn.Module):
    """Strided conv stack -> global average pool -> linear: fast on CPU, 2D or 3D by spatial_dims."""

    def __init__(self, spatial_dims: int, channels: tuple[int, ...] = (32, 64, 128, 128), dim: int = 128):
        super().__init__()
        from monai.networks.blocks import Convolution

        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers.append(Convolution(spatial_dims, c_in, c, strides=2, kernel_size=3,
                                      norm=("group", {"num_groups": min(8, c)}), act="relu"))
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.out = nn.Linear(c_in, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.pool(self.features(x)).flatten(1))


def _build(arch: dict[str, Any]) -> nn.Module:
    name, kwargs = arch.get("name"), dict(arch.get("kwargs", {}))
    if name == "synthmed.cnn":
        return SmallCNN(int(kwargs["spatial_dims"]), tuple(kwargs.get("channels", (32, 64, 128, 128))),
                        int(kwargs.get("dim", 128)))
    if name in MONAI_ARCHITECTURES:
        import monai.networks.nets as nets

        return getattr(nets, name)(**kwargs)
    raise ValueError(f"unknown architecture {name!r}; use 'synthmed.cnn' or one of "
                     f"{', '.join(MONAI_ARCHITECTURES)}")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR loss: each view's positive is its partner; the other 2B - 2 views are negatives."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


@contextlib.contextmanager
def _one_thread():
    """Run torch on one thread: results then do not depend on the machine's core count (intra-op
    reductions are split per thread), and on a shared, oversubscribed CPU one thread is also
    several times faster than two, whose OpenMP barriers spin while the other core is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Optimiser:
    """How both contrastive nets train (this encoder, synthmed.audit.reid's identity network):
    AdamW on a one-cycle learning rate; `step(loss)` takes one optimiser step and returns the
    loss as a float."""

    def __init__(self, params, lr: float, steps: int):
        self.opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
        if steps >= 20:
            self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=lr, total_steps=steps,
                                                             pct_start=0.1)
        else:
            # OneCycleLR's warm-up phase is pct_start * steps long and divides by zero below ~11
            # steps; a run this short is a smoke test, so a constant rate does
            self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda _: 1.0)

    def step(self, loss: torch.Tensor) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return float(loss.detach())


class _TorchEmbedder:
    """Shared embed(): resize to the working shape, run the net in batches, L2-normalise."""

    name = "encoder"
    embed_batch = 512
    net: nn.Module
    spatial_dims: int
    shape: tuple[int, ...]
    work_shape: tuple[int, ...]
    dim: int

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)
        if tuple(x.shape[2:]) != self.work_shape:
            x = F.interpolate(x, size=self.work_shape, mode="area")
        return x

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """The net's output for a prepared batch (before normalisation); subclasses add views."""
        return self.net(x).flatten(1)

    @torch.no_grad()
    @_one_thread()
    def embed(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """(n, *shape) images in [0, 1] -> (n, dim) float32, L2-normalised."""
        imgs = np.asarray(images)
        if tuple(imgs.shape[1:]) != self.shape:
            raise ValueError(f"{self.name}: images have shape {tuple(imgs.shape[1:])}, it "
                             f"was made for {self.shape}")
        self.net.eval()
        step = batch_size or self.embed_batch
        out = []
        for s in range(0, imgs.shape[0], step):
            x = _tensor(imgs[s:s + step])
            out.append(F.normalize(self._features(self._prepare(x)), dim=1).numpy())
        if not out:  # no images: no rows, but the right width for whoever stacks them
            return np.zeros((0, int(getattr(self, "dim", 0) or 0)), np.float32)
        return np.concatenate(out).astype(np.float32)


def _work_shape(shape: tuple[int, ...], spatial_dims: int) -> tuple[int, ...]:
    # the net sees at most 32^2 (2D) / 16^3 (3D) voxels: enough to recognise a copy, and a training
    # step costs ~1 GFLOP, so the encoder trains in about a minute on two CPU cores
    cap = 32 if spatial_dims == 2 else 16
    return tuple(min(int(s), cap) for s in shape)


class ContrastiveEncoder(_TorchEmbedder):
    """SimCLR encoder (NT-Xent) trained on real training images; `embed` gives unit vectors.

    fit / embed / save / load, scikit-learn style. Deterministic for a given seed and data.
    """

    name = "encoder"

    def __init__(self, spatial_dims: int, shape: tuple[int, ...], dim: int = 128, seed: int = 0,
                 channels: tuple[int, ...] = (16, 32, 64, 128), temperature: float = 0.2,
                 augment: AugmentConfig = AugmentConfig()):
        if spatial_dims not in (2, 3) or len(shape) != spatial_dims:
            raise ValueError(f"spatial_dims must be 2 or 3 and match shape, got {spatial_dims}, {shape}")
        self.spatial_dims = spatial_dims
        self.shape = tuple(int(s) for s in shape)
        self.work_shape = _work_shape(self.shape, spatial_dims)
        self.dim, self.seed, self.temperature, self.augment = dim, seed, temperature, augment
        self.arch = {"name": "synthmed.cnn",
                     "kwargs": {"spatial_dims": spatial_dims, "channels": list(channels), "dim": dim}}
        torch.manual_seed(seed)
        self.net = _build(self.arch)
        # projection head (SimCLR): trained with the loss, dropped for embedding
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.history: dict[str, Any] = {}

    @_one_thread()
    def fit(self, images: np.ndarray, steps: int = 300, batch_size: int = 128, lr: float = 3e-3) -> "ContrastiveEncoder":
        imgs = np.asarray(images, dtype=np.float32)
        if tuple(imgs.shape[1:]) != self.shape:
            raise ValueError(f"images have shape {tuple(imgs.shape[1:])}, expected {self.shape}")
        if imgs.shape[0] < 2:
            raise ValueError("a contrastive encoder needs at least 2 training images")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        # resize once up front: every step then works on the small working shape
        data = torch.cat([self._prepare(_tensor(imgs[s:s + 1024]))
                          for s in range(0, imgs.shape[0], 1024)])
        opt = _Optimiser(list(self.net.parameters()) + list(self.head.parameters()), lr, steps)
        bs = min(batch_size, data.shape[0])
        self.net.train()
        losses, t0 = [], time.perf_counter()
        # A 300-step fit takes minutes on a CPU: a batch job's log must show it moving (ETA).
        with make_progress() as progress:
            task = progress.add_task("audit encoder", total=steps, loss=float("nan"))
            for step in range(steps):
                idx = torch.randperm(data.shape[0], generator=g)[:bs]
                x = data[idx]
                v1 = random_views(x, self.spatial_dims, g, self.augment)
                v2 = random_views(x, self.spatial_dims, g, self.augment)
                z = self.head(self.net(torch.cat([v1, v2])))
                loss = nt_xent(z[:bs], z[bs:], self.temperature)
                losses.append(opt.step(loss))
                progress.update(task, advance=1, loss=losses[-1])
        self.net.eval()
        self.history = {"steps": steps, "batch_size": bs, "lr": lr, "temperature": self.temperature,
                        "n_images": int(imgs.shape[0]), "seed": self.seed,
                        "loss_first": losses[0], "loss_last": float(np.mean(losses[-10:]))}
        # The time goes to the log, not into `history`: that is saved in encoder/embedder.json,
        # part of the audit's fingerprint, which must be the same bytes on every run.
        self.fit_seconds = time.perf_counter() - t0
        logging.getLogger("synthmed.audit").info("encoder fitted: %d steps in %.2f s", steps,
                                                 self.fit_seconds)
        return self

    def config(self) -> dict[str, Any]:
        return {"format": EMBEDDER_FORMAT, "architecture": self.arch, "spatial_dims": self.spatial_dims,
                "input_shape": list(self.shape), "work_shape": list(self.work_shape), "dim": self.dim,
                "training": self.history, "augment": self.augment.__dict__ | {"gamma_range": list(self.augment.gamma_range)}}

    def save(self, path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        with atomic_path(folder / "embedder.safetensors") as tmp:
            save_file(state, str(tmp))
        write_json(folder / "embedder.json", self.config() | {"provenance": provenance or {}})
        return folder

    @classmethod
    def load(cls, path: str | Path) -> "LoadedEmbedder":
        return load_embedder(path)


class LoadedEmbedder(_TorchEmbedder):
    """An encoder read from safetensors + JSON (ours or the user's)."""

    def __init__(self, net: nn.Module, config: dict[str, Any]):
        self.net = net.eval()
        self.config = config
        self.spatial_dims = int(config["spatial_dims"])
        self.shape = tuple(int(s) for s in config["input_shape"])
        self.work_shape = tuple(int(s) for s in config.get("work_shape", config["input_shape"]))
        self.name = str(config.get("name", "encoder"))
        self.dim = int(config.get("dim", 0) or 0)


def load_embedder(path: str | Path) -> LoadedEmbedder:
    """Load local weights: a folder holding embedder.json + embedder.safetensors (or the .json)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    meta = p if p.suffix == ".json" else p / "embedder.json"
    weights = meta.with_suffix(".safetensors")
    for f in (meta, weights):
        if not f.is_file():
            raise InputError(f"{f}: embedder file is missing (need embedder.json + embedder.safetensors)")
    try:
        config = json.loads(meta.read_text())
    except (ValueError, OSError) as err:
        raise InputError(f"{meta}: not readable JSON ({err})") from None
    if config.get("format") != EMBEDDER_FORMAT:
        raise InputError(f"{meta}: format must be {EMBEDDER_FORMAT!r}, got {config.get('format')!r}")
    for key in ("architecture", "spatial_dims", "input_shape"):
        if key not in config:
            raise InputError(f"{meta}: key {key!r} is missing")
    try:
        net = _build(config["architecture"])
    except (ValueError, TypeError, KeyError) as err:
        raise InputError(f"{meta}: cannot build the architecture ({err})") from None
    try:
        state = load_file(str(weights))
        net.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise InputError(f"{weights}: weights do not fit the architecture in {meta.name} "
                         f"({str(err).splitlines()[0]})") from None
    return LoadedEmbedder(net, config)
