"""The re-identification network: does a synthetic image show a real (training) patient?

A copy search asks whether a synthetic image IS a training image, disguised. This module asks the
harder question: whether it shows a training PATIENT, in an image the generator never saw (the
other knee, a later chest radiograph). Chest radiographs identify people like fingerprints
(Packhäuser et al., Sci Rep 2022: siamese verification AUC 0.994), and a generator trained on
several images per patient can learn a person and draw new images of them.

* `ReidNetwork`: a small CNN (MONAI `Convolution` blocks, explicit `spatial_dims`: 2D images, 3D
  volumes) mapping an image to a unit vector; two images of one patient should be close.
  Trained from scratch on SAME-PATIENT PAIRS of the given images only (patients with two or more
  images), contrastively (NT-Xent, `synthmed.audit.embeddings.nt_xent`): two different images of
  one patient, each under the random views the copy search already knows (flips, small
  rotations, shifts, crop-and-resize, gamma, noise; `synthmed.audit.augment`), must be each
  other's nearest neighbour among all images of the batch. Left and right knees are mirror
  images of one person: the flip augmentation covers them, and with `flip_invariant` (default)
  the embedding is the mean of the image's and its left-right mirror's features, so a mirrored
  image embeds exactly like the original.
* `verify_network`: verification AUC on patients NOT used to train: genuine pairs (two images of
  one patient) against impostor pairs (two patients), cosine similarity as the score, with a
  percentile-bootstrap interval that resamples PATIENTS (pairs of one patient are not independent).
* `best_links`: for each real patient, the most similar synthetic image to any of their images;
  the score of the identity attack.
* `fit_identity_network`: split the patients with repeats into fit / validation, train, verify.

Saved as a folder (never pickle):

    reid.json          {"format": "synthmed.reid/1", "architecture": {...}, "spatial_dims",
                        "input_shape", "work_shape", "dim", "flip_invariant", "settings",
                        "training": {...}, "seed", "weights_sha256", "verification": {...}}
    reid.safetensors   the network's state dict (loaded strictly; sha256 must match reid.json)

Deterministic: the same images, settings and seed give the same weights bytes (one torch thread,
one seeded generator for batches and views).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from synthmed.audit.augment import AugmentConfig, random_views
from synthmed.audit.embeddings import _one_thread, _Optimiser, _tensor, _TorchEmbedder, nt_xent
from synthmed.config import StrictConfig
from synthmed.errors import InputError
from synthmed.io.atomic import write_json
from synthmed.progress import make_progress

REID_FORMAT = "synthmed.reid/1"
WEIGHTS_FILE = "reid.safetensors"
CONFIG_FILE = "reid.json"
ARCHITECTURE = "synthmed.reid-cnn"

# (step, total steps, loss) after every optimiser step
StepCallback = Callable[[int, int, float], None]


class IdentitySettings(StrictConfig):
    """The re-identification network and its rule (the audit profile's `identity:` section)."""

    enabled: bool = Field(True, description="run the identity attack")
    steps: int = Field(400, ge=1, description="training steps of the network")
    batch_size: int = Field(64, ge=2, description="patients per step (two images each)")
    dim: int = Field(128, ge=4, description="embedding size")
    channels: tuple[int, ...] = Field((16, 32, 64, 128), min_length=2, max_length=6)
    convs_per_stage: int = Field(1, ge=1, le=3, description="3x3 convolutions per resolution")
    pool: Literal["grid", "avg", "gem"] = Field(
        "grid", description="head: grid (a 4-per-axis average pool, position-sensitive), avg or gem "
                            "(one global average / generalised-mean pool: shift-invariant)")
    work_size: int = Field(64, ge=8, description="images are resized to at most this per axis "
                                                 "(2D; volumes use at most half of it)")
    lr: float = Field(2e-3, gt=0, le=1)
    temperature: float = Field(0.1, gt=0, le=10)
    flip_invariant: bool = Field(True, description="embed an image and its left-right mirror alike")
    min_patients_with_repeats: int = Field(20, ge=2, description="patients with 2+ images needed "
                                                                 "to train the network")
    validation_fraction: float = Field(0.2, gt=0, lt=1, description="share of those patients kept "
                                                                   "out of training to verify it")
    min_validation_patients: int = Field(10, ge=2, description="below this the verification AUC "
                                                               "is not estimable")
    min_verification_auc: float = Field(0.8, gt=0.5, le=1.0,
                                        description="below this (interval's lower bound) the network "
                                                    "cannot tell patients apart: the rule is not "
                                                    "evaluated")
    augment: Literal["copy", "encoder"] = Field(
        "copy", description="copy: the disguises the copy search plants (left-right flip, rotation "
                            "up to 10 deg, shift up to 6 %, crop to 85 %, gamma 0.8-1.25, noise); "
                            "encoder: the contrastive encoder's stronger views (flips on every axis)")
    n_bootstrap: int = Field(200, ge=10, description="bootstrap resamples of the verification AUC")
    weights: str | None = Field(None, description="local folder with reid.json + reid.safetensors "
                                                  "instead of training")


# --------------------------------------------------------------------------------- network
class ReidCNN(nn.Module):
    """Per stage a strided and `convs_per_stage - 1` plain 3x3 convs (MONAI Convolution, group norm, ReLU), then a
    small adaptive pool (4 per axis) flattened into a linear layer.

    Identity lives in the layout of anatomy (the shape of a joint space, of ribs and heart), which
    a global average pool would throw away; the 4-per-axis pool keeps a coarse map of it. Measured
    (knee, 200 steps, 500 held-out patients): grid verification AUC 0.960, planted other-knees
    linked rank-1 17.5 %; one global average pool 0.940 / 6.0 %, shifted copies included. Shifts
    are covered by the training views (up to 6 %, the copy search's range) instead; `pool` keeps
    the shift-invariant heads for experiments.
    """

    def __init__(self, spatial_dims: int, channels: tuple[int, ...] = (16, 32, 64, 128), dim: int = 128,
                 convs_per_stage: int = 1, pool: str = "grid"):
        super().__init__()
        from monai.networks.blocks import Convolution

        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            norm = ("group", {"num_groups": min(8, c)})
            layers.append(Convolution(spatial_dims, c_in, c, strides=2, kernel_size=3, norm=norm, act="relu"))
            layers += [Convolution(spatial_dims, c, c, strides=1, kernel_size=3, norm=norm, act="relu")
                       for _ in range(convs_per_stage - 1)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool_kind = pool
        cells = (4 if spatial_dims == 2 else 2) if pool == "grid" else 1
        self.pool = (nn.AdaptiveAvgPool2d(cells) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(cells))
        self.out = nn.Linear(c_in * cells ** spatial_dims, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        if self.pool_kind == "gem":  # generalised mean (p = 3): between average and max pooling
            return self.out(self.pool(f.clamp(min=1e-6) ** 3).pow(1.0 / 3).flatten(1))
        return self.out(self.pool(f).flatten(1))


def _augmentation(kind: str) -> tuple[AugmentConfig, bool]:
    """(random-view strengths, whether to add a left-right flip with p = 1/2).

    "copy" matches `augment.transform_copy`'s disguises (rotate 5-10 deg, shift 3-6 %, crop to
    85-92 %, gamma 0.8 / 1.25, noise 0.02, left-right flip), a little wider: identity lives in
    fine anatomy, which the encoder's stronger views (crops to 75 %, upside-down flips) blur.
    Left-right only, because a mirrored image is a plausible disguise (and left and right knees
    are mirror images of one person) while an upside-down radiograph is not."""
    if kind == "encoder":
        return AugmentConfig(), False
    return AugmentConfig(flip_p=0.0, max_rotation_deg=10.0, max_shift=0.06, min_crop=0.85,
                         gamma_range=(0.8, 1.25), max_noise_std=0.03), True


def _views(x: torch.Tensor, spatial_dims: int, g: torch.Generator, cfg: AugmentConfig,
           lr_flip: bool) -> torch.Tensor:
    out = random_views(x, spatial_dims, g, cfg)
    if lr_flip:
        flip = torch.rand(x.shape[0], generator=g) < 0.5
        out = torch.where(flip.view(-1, *([1] * (out.ndim - 1))), out.flip(-1), out)
    return out


def _work_shape(shape: tuple[int, ...], spatial_dims: int, work_size: int) -> tuple[int, ...]:
    cap = work_size if spatial_dims == 2 else max(8, work_size // 2)
    return tuple(min(int(s), cap) for s in shape)


class ReidNetwork(_TorchEmbedder):
    """A trained (or loaded) re-identification network; `embed` gives unit vectors."""

    name = "identity"
    embed_batch = 256

    def __init__(self, spatial_dims: int, shape: tuple[int, ...], settings: IdentitySettings,
                 seed: int = 0, *, net: nn.Module | None = None,
                 work_shape: tuple[int, ...] | None = None):
        if spatial_dims not in (2, 3) or len(shape) != spatial_dims:
            raise ValueError(f"spatial_dims must be 2 or 3 and match shape, got {spatial_dims}, {shape}")
        self.spatial_dims = spatial_dims
        self.shape = tuple(int(s) for s in shape)
        self.settings = settings
        self.seed = int(seed)
        self.work_shape = tuple(work_shape) if work_shape else _work_shape(self.shape, spatial_dims,
                                                                            settings.work_size)
        self.arch = {"name": ARCHITECTURE, "kwargs": {"spatial_dims": spatial_dims,
                                                      "channels": list(settings.channels),
                                                      "dim": settings.dim,
                                                      "convs_per_stage": settings.convs_per_stage,
                                                      "pool": settings.pool}}
        if net is None:
            torch.manual_seed(self.seed)
            net = ReidCNN(spatial_dims, tuple(settings.channels), settings.dim, settings.convs_per_stage,
                          settings.pool)
        self.net = net.eval()
        self.training: dict[str, Any] = {}
        self.verification: Verification | None = None
        self.weights_sha256: str | None = None

    # -- embedding (resize, batches, normalisation: the audit encoder's own `embed`)
    @property
    def dim(self) -> int:
        return int(self.settings.dim)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net(x)
        if self.settings.flip_invariant:  # an image and its mirror (left / right knee) alike
            z = z + self.net(x.flip(-1))
        return z

    # -- training
    @_one_thread()
    def fit(self, images: np.ndarray, patient_ids: np.ndarray,
            on_step: StepCallback | None = None) -> "ReidNetwork":
        """Train on same-patient pairs of `images` (patients with 2+ images; others are unused)."""
        s = self.settings
        imgs = np.asarray(images)
        if tuple(imgs.shape[1:]) != self.shape:
            raise ValueError(f"images have shape {tuple(imgs.shape[1:])}, expected {self.shape}")
        groups = repeat_groups(patient_ids)
        if len(groups) < 2:
            raise ValueError(f"the identity network needs at least 2 patients with 2+ images, got {len(groups)}")
        # flat index table: patient k's images are flat[start[k]:start[k] + count[k]]
        count = torch.tensor([len(g) for g in groups], dtype=torch.int64)
        start = torch.cumsum(count, 0) - count
        flat = torch.from_numpy(np.concatenate(groups).astype(np.int64))
        used = np.unique(flat.numpy())
        # resize the images that take part once, up front; `where` maps dataset index -> row
        data = torch.cat([self._prepare(_tensor(imgs[used[i:i + 1024]])) for i in range(0, used.size, 1024)])
        where = torch.full((imgs.shape[0],), -1, dtype=torch.int64)
        where[torch.from_numpy(used)] = torch.arange(used.size)
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        net = self.net
        opt = _Optimiser(net.parameters(), s.lr, s.steps)
        bs = min(s.batch_size, len(groups))
        augment, lr_flip = _augmentation(s.augment)
        net.train()
        losses: list[float] = []
        t0 = time.perf_counter()
        with make_progress() as progress:
            task = progress.add_task("identity network", total=s.steps, loss=float("nan"))
            for step in range(s.steps):
                pk = torch.randperm(len(groups), generator=g)[:bs]
                n = count[pk]
                # two DIFFERENT images of each patient: a, and a shifted by 1..n-1 (mod n)
                a = (torch.rand(bs, generator=g) * n).long().clamp(max=n - 1)
                b = (a + 1 + (torch.rand(bs, generator=g) * (n - 1)).long().clamp(max=n - 2)) % n
                ia, ib = where[flat[start[pk] + a]], where[flat[start[pk] + b]]
                v1 = _views(data[ia], self.spatial_dims, g, augment, lr_flip)
                v2 = _views(data[ib], self.spatial_dims, g, augment, lr_flip)
                z = net(torch.cat([v1, v2]))
                loss = nt_xent(z[:bs], z[bs:], s.temperature)
                losses.append(opt.step(loss))
                progress.update(task, advance=1, loss=losses[-1])
                if on_step is not None:
                    on_step(step + 1, s.steps, losses[-1])
        net.eval()
        n_pairs = int(sum(len(g_) * (len(g_) - 1) // 2 for g_ in groups))
        self.training = {"steps": s.steps, "batch_size": bs, "n_patients": len(groups),
                         "n_images": int(used.size), "n_pairs": n_pairs,
                         "loss_first": losses[0], "loss_last": float(np.mean(losses[-10:]))}
        # Time goes to the log, not the record: the record must be the same bytes on every run.
        self.fit_seconds = time.perf_counter() - t0
        logging.getLogger("synthmed.audit").info("identity network trained: %d steps in %.1f s",
                                                 s.steps, self.fit_seconds)
        self.weights_sha256 = _state_sha256(self.net)
        return self

    # -- records, save, load
    def config(self) -> dict[str, Any]:
        return {"format": REID_FORMAT, "architecture": self.arch, "spatial_dims": self.spatial_dims,
                "input_shape": list(self.shape), "work_shape": list(self.work_shape),
                "dim": self.settings.dim, "flip_invariant": self.settings.flip_invariant,
                "settings": self.settings.model_dump(mode="json", exclude={"weights"}),
                "seed": self.seed, "training": self.training,
                "weights_sha256": self.weights_sha256 or _state_sha256(self.net),
                "verification": None if self.verification is None else self.verification.to_dict()}

    def record(self) -> dict[str, Any]:
        """What an audit record says about the network: settings used, seed, weights hash,
        training patients / pairs counts, verification (no patient ids)."""
        c = self.config()
        return {k: c[k] for k in ("format", "architecture", "input_shape", "work_shape", "dim",
                                  "flip_invariant", "settings", "seed", "training",
                                  "weights_sha256", "verification")}

    def save(self, folder: str | Path, provenance: dict[str, Any] | None = None) -> Path:
        from synthmed.models.checkpoint import save_tensors
        from synthmed.provenance import sha256_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors(folder / WEIGHTS_FILE, dict(self.net.state_dict()))
        self.weights_sha256 = sha256_file(folder / WEIGHTS_FILE)
        write_json(folder / CONFIG_FILE, self.config() | {"provenance": provenance or {}},
                   nan_as_null=True)
        return folder


def _state_sha256(net: nn.Module) -> str:
    """sha256 of the state dict as safetensors bytes: what `save` writes, so the hash in a record
    of a network never saved equals the saved file's."""
    import hashlib

    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    return hashlib.sha256(save(state)).hexdigest()


def load_reid_network(folder: str | Path) -> ReidNetwork:
    """Read reid.json + reid.safetensors; any problem is one InputError line naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from synthmed.provenance import sha256_file

    root = Path(folder)
    if root.suffix == ".json":
        root = root.parent
    meta, weights = root / CONFIG_FILE, root / WEIGHTS_FILE
    if not root.is_dir():
        raise InputError(f"{root}: identity network folder does not exist")
    from synthmed.io import folders

    if (root / folders.MARKER).is_file():
        # written by `synthmed identity train`: every file must be as written; a plain folder of
        # the user's own weights has no marker and is checked by the sha256 in reid.json only
        folders.verify(root, "identity")
    for f in (meta, weights):
        if not f.is_file():
            raise InputError(f"{f}: missing; an identity network folder holds {CONFIG_FILE} + "
                             f"{WEIGHTS_FILE} (`synthmed identity train` writes one)")
    try:
        config = json.loads(meta.read_text(encoding="utf-8"))
    except (ValueError, OSError, UnicodeDecodeError) as err:
        raise InputError(f"{meta}: not readable JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != REID_FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise InputError(f"{meta}: format must be {REID_FORMAT!r}, got {got!r}")
    for key in ("architecture", "spatial_dims", "input_shape", "work_shape", "settings", "weights_sha256"):
        if key not in config:
            raise InputError(f"{meta}: key {key!r} is missing")
    try:
        settings = IdentitySettings.model_validate(config["settings"])
        spatial_dims = int(config["spatial_dims"])
        shape = tuple(int(s) for s in config["input_shape"])
        work = tuple(int(s) for s in config["work_shape"])
        arch = config["architecture"]
        if not isinstance(arch, dict) or arch.get("name") != ARCHITECTURE:
            raise ValueError(f"architecture must be {ARCHITECTURE!r}")
        kw = arch.get("kwargs", {})
        if (int(kw.get("spatial_dims", -1)) != spatial_dims or list(kw.get("channels", [])) != list(settings.channels)
                or int(kw.get("dim", -1)) != settings.dim or len(shape) != spatial_dims
                or len(work) != spatial_dims):
            raise ValueError("architecture, settings and shapes disagree")
    except (ValueError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{meta}: not a valid identity network description ({first})") from None
    digest = sha256_file(weights)
    if digest != config["weights_sha256"]:
        raise InputError(f"{weights}: sha256 differs from the one in {CONFIG_FILE} (corrupt, or "
                         "from another network)")
    torch.manual_seed(0)
    net = ReidCNN(spatial_dims, tuple(settings.channels), settings.dim, settings.convs_per_stage, settings.pool)
    try:
        net.load_state_dict(load_file(str(weights)), strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise InputError(f"{weights}: weights do not fit the architecture in {CONFIG_FILE} "
                         f"({str(err).splitlines()[0]})") from None
    out = ReidNetwork(spatial_dims, shape, settings, int(config.get("seed", 0)), net=net, work_shape=work)
    out.training = dict(config.get("training") or {})
    out.weights_sha256 = digest
    if isinstance(config.get("verification"), dict):
        out.verification = Verification.from_dict(config["verification"])
    return out


# ------------------------------------------------------------------------------- patients
def repeat_groups(patient_ids: np.ndarray) -> list[np.ndarray]:
    """Image indices of every patient with 2+ images, patients in sorted order."""
    ids = np.asarray(patient_ids).astype(str)
    uniq, inv, counts = np.unique(ids, return_inverse=True, return_counts=True)
    order = np.argsort(inv, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [order[bounds[k]:bounds[k + 1]] for k in range(uniq.size) if counts[k] >= 2]


def split_patients_with_repeats(patient_ids: np.ndarray, validation_fraction: float,
                                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit mask, validation mask) over images: patients with 2+ images are dealt to one side by
    a seeded shuffle; patients with one image are on neither side."""
    ids = np.asarray(patient_ids).astype(str)
    repeat = np.array(sorted({ids[g[0]] for g in repeat_groups(ids)}))
    rng = np.random.default_rng(seed)
    n_val = int(round(validation_fraction * repeat.size))
    n_val = min(max(n_val, 1 if repeat.size > 1 else 0), max(repeat.size - 1, 0))
    val = set(rng.permutation(repeat)[:n_val].tolist())
    in_repeat = np.isin(ids, repeat)
    is_val = np.array([p in val for p in ids])
    return in_repeat & ~is_val, in_repeat & is_val


def check_repeats(patient_ids: np.ndarray, minimum: int, what: str = "this dataset") -> int:
    """Number of patients with 2+ images; InputError when below `minimum`."""
    n = len(repeat_groups(patient_ids))
    if n == 0:
        raise InputError(f"the identity network needs patients with at least 2 images; {what} has "
                         "none: the audit falls back to the encoder")
    if n < minimum:
        raise InputError(f"the identity network needs at least {minimum} patients with 2+ images "
                         f"(identity.min_patients_with_repeats); {what} has {n}")
    return n


# ---------------------------------------------------------------------------- verification
@dataclass(frozen=True)
class Verification:
    """How well the network tells patients apart, on patients it was not trained on."""

    auc: float
    ci: tuple[float, float]
    n_patients: int           # patients with 2+ images (the genuine pairs come from them)
    n_pairs: int              # genuine pairs
    n_impostor_pairs: int
    estimable: bool
    note: str = ""
    alpha: float = 0.05
    # cosine similarity of the genuine pairs at probabilities 0, 1/100, ..., 1 (pair-weighted):
    # how strongly a second image of a person links to them, which the identity rule's power
    # needs (synthmed.audit.linktest); empty when not measured (records written before it)
    genuine_quantiles: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = list(self.ci)
        d["genuine_quantiles"] = list(self.genuine_quantiles)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Verification":
        def num(v: Any) -> float:
            return math.nan if v is None else float(v)

        ci = d.get("ci") or [None, None]
        return cls(num(d.get("auc")), (num(ci[0]), num(ci[1])), int(d.get("n_patients", 0)),
                   int(d.get("n_pairs", 0)), int(d.get("n_impostor_pairs", 0)),
                   bool(d.get("estimable", False)), str(d.get("note", "")), float(d.get("alpha", 0.05)),
                   tuple(float(q) for q in (d.get("genuine_quantiles") or ())))

    def tells_apart(self, min_auc: float) -> bool:
        """Evidence that the network separates patients: the interval's lower bound >= min_auc."""
        return self.estimable and self.ci[0] >= min_auc


MAX_IMPOSTOR_PAIRS = 2_000_000
GENUINE_QUANTILES = 101


def verify_network(net: ReidNetwork, images: np.ndarray, patient_ids: np.ndarray, *,
                   n_bootstrap: int = 200, alpha: float = 0.05, seed: int = 0,
                   min_patients: int = 10) -> Verification:
    """Verification AUC of `net` on `images` (patients that did NOT train it; the caller's duty).

    Genuine pairs: every two images of one patient. Impostor pairs: every two images of two
    different patients (a seeded sample of MAX_IMPOSTOR_PAIRS when there are more). Score: cosine
    similarity. Interval: percentile bootstrap over patients (a resampled patient brings all
    their pairs, an impostor pair counts with the product of its two patients' multiplicities).
    """
    ids = np.asarray(patient_ids).astype(str)
    groups = repeat_groups(ids)
    n_rep = len(groups)
    if n_rep < min_patients or np.unique(ids).size < 2:
        return Verification(math.nan, (math.nan, math.nan), n_rep, 0, 0, False,
                            f"{n_rep} held-out patients with 2+ images; at least {min_patients} "
                            "are needed to measure how well the network tells patients apart",
                            alpha)
    from synthmed.audit.stats import _auc_weighted
    from synthmed.stats import roc_auc

    emb = net.embed(images)
    uniq, pidx = np.unique(ids, return_inverse=True)
    gi, gj = [], []
    for g in groups:
        a, b = np.triu_indices(len(g), 1)
        gi.append(g[a])
        gj.append(g[b])
    gi_, gj_ = np.concatenate(gi), np.concatenate(gj)
    n = ids.size
    rng = np.random.default_rng(seed)
    if n * (n - 1) // 2 <= MAX_IMPOSTOR_PAIRS * 1.2:
        ii, jj = np.triu_indices(n, 1)
        keep = pidx[ii] != pidx[jj]
        ii, jj = ii[keep], jj[keep]
    else:
        ii = rng.integers(0, n, MAX_IMPOSTOR_PAIRS)
        jj = rng.integers(0, n, MAX_IMPOSTOR_PAIRS)
        keep = pidx[ii] != pidx[jj]
        ii, jj = ii[keep], jj[keep]
    genuine = np.einsum("ij,ij->i", emb[gi_], emb[gj_]).astype(np.float64)
    impostor = np.einsum("ij,ij->i", emb[ii], emb[jj]).astype(np.float64)
    auc = roc_auc(genuine, impostor)
    gp = pidx[gi_]
    order = np.argsort(impostor, kind="stable")
    imp_sorted, ip, jp = impostor[order], pidx[ii][order], pidx[jj][order]
    pu = np.full(uniq.size, 1.0 / uniq.size)
    boots = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        w = rng.multinomial(uniq.size, pu).astype(np.float64)
        wg, wi = w[gp], w[ip] * w[jp]
        if wg.sum() == 0 or wi.sum() == 0:
            boots[b] = math.nan
            continue
        boots[b] = _auc_weighted(genuine, imp_sorted, wg, wi)
    boots = boots[np.isfinite(boots)]
    lo, hi = (np.quantile(boots, [alpha / 2, 1 - alpha / 2]) if boots.size else (math.nan, math.nan))
    quant = tuple(float(q) for q in np.quantile(genuine, np.linspace(0.0, 1.0, GENUINE_QUANTILES)))
    return Verification(float(auc), (float(lo), float(hi)), n_rep, int(genuine.size),
                        int(impostor.size), True, "", alpha, quant)


# ----------------------------------------------------------------------------------- links
@dataclass
class Links:
    """Per real patient (sorted ids): the best cosine similarity between any of their images and
    any synthetic image, and which synthetic / real image gave it."""

    patients: np.ndarray          # (P,) patient ids, sorted
    score: np.ndarray             # (P,) float64, in [-1, 1]
    synthetic_index: np.ndarray   # (P,) index into the synthetic images
    real_index: np.ndarray        # (P,) index into the real images
    image_score: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # per real image
    image_synthetic: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    # per synthetic image: the most similar real image and its similarity (who it shows, if anyone)
    synthetic_real: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    synthetic_score: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def patient_of_synthetic(self, real_patients: np.ndarray) -> np.ndarray:
        """The real patient each synthetic image links to best (`real_patients` as passed to
        `best_links`)."""
        return np.asarray(real_patients).astype(str)[self.synthetic_real]


def best_links(net: ReidNetwork, real_images: np.ndarray, real_patients: np.ndarray,
               synthetic_images: np.ndarray, *, real_embeddings: np.ndarray | None = None,
               synthetic_embeddings: np.ndarray | None = None, chunk: int = 2048) -> Links:
    """Best match in the network's space of each real patient among the synthetic images.

    Embeddings may be passed in when the caller already has them (the audit embeds each image
    set once)."""
    ids = np.asarray(real_patients).astype(str)
    er = net.embed(real_images) if real_embeddings is None else np.asarray(real_embeddings, np.float32)
    es = net.embed(synthetic_images) if synthetic_embeddings is None else np.asarray(synthetic_embeddings, np.float32)
    if er.shape[0] != ids.size:
        raise ValueError(f"{er.shape[0]} real images but {ids.size} patient ids")
    if es.shape[0] == 0:
        raise ValueError("best_links needs at least one synthetic image")
    img_best = np.empty(er.shape[0], np.float64)
    img_arg = np.empty(er.shape[0], np.int64)
    syn_best = np.full(es.shape[0], -np.inf)
    syn_arg = np.zeros(es.shape[0], np.int64)
    for s in range(0, er.shape[0], chunk):
        sim = er[s:s + chunk] @ es.T
        rows = np.arange(sim.shape[0])
        img_arg[s:s + chunk] = sim.argmax(1)
        img_best[s:s + chunk] = sim[rows, img_arg[s:s + chunk]]
        col = sim.argmax(0)
        better = sim[col, np.arange(sim.shape[1])] > syn_best  # strict: ties keep the first image
        syn_best[better] = sim[col, np.arange(sim.shape[1])][better]
        syn_arg[better] = s + col[better]
    uniq, inv = np.unique(ids, return_inverse=True)
    # per patient: the image with the highest score (ties: the first image)
    order = np.lexsort((np.arange(ids.size), -img_best, inv))
    first = np.concatenate([[0], np.flatnonzero(np.diff(inv[order])) + 1])
    real_index = order[first]
    return Links(uniq, img_best[real_index], img_arg[real_index], real_index, img_best, img_arg,
                 syn_arg, syn_best)


# --------------------------------------------------------------------------- train + verify
def train_reid_network(images: np.ndarray, patient_ids: np.ndarray, settings: IdentitySettings,
                       seed: int = 0, on_step: StepCallback | None = None) -> ReidNetwork:
    """A new network trained on same-patient pairs of `images` only (all patients with 2+
    images; the caller keeps validation patients out). InputError when there are too few."""
    imgs = np.asarray(images)
    if imgs.ndim not in (3, 4):
        raise ValueError(f"images must be (n, H, W) or (n, D, H, W), got {imgs.shape}")
    check_repeats(patient_ids, 2, "the training images")
    net = ReidNetwork(imgs.ndim - 1, tuple(imgs.shape[1:]), settings, seed)
    return net.fit(imgs, np.asarray(patient_ids), on_step)


def fit_identity_network(images: np.ndarray, patient_ids: np.ndarray, settings: IdentitySettings,
                         seed: int = 0, on_step: StepCallback | None = None,
                         what: str = "the train split") -> ReidNetwork:
    """The audit's path: keep `validation_fraction` of the patients with repeats out, train on the
    rest, verify on them; the verification is attached to the network (`net.verification`)."""
    ids = np.asarray(patient_ids).astype(str)
    check_repeats(ids, settings.min_patients_with_repeats, what)
    fit, val = split_patients_with_repeats(ids, settings.validation_fraction, seed)
    net = train_reid_network(np.asarray(images)[fit], ids[fit], settings, seed, on_step)
    net.verification = verify_network(net, np.asarray(images)[val], ids[val],
                                      n_bootstrap=settings.n_bootstrap, seed=seed,
                                      min_patients=settings.min_validation_patients)
    net.training |= {"validation_patients": int(len(repeat_groups(ids[val])))}
    return net


def train_identity_folder(dataset: str | Path, out: str | Path, *, split: str = "train", seed: int = 0,
                          steps: int | None = None, settings: IdentitySettings | None = None,
                          overwrite: bool = False, on_step: StepCallback | None = None) -> ReidNetwork:
    """`synthmed identity train`: fit on one split of an ingested dataset, write an `identity`
    folder atomically (staged, stamped, moved into place)."""
    from synthmed.data.dataset import Dataset
    from synthmed.io import folders
    from synthmed.provenance import provenance

    out = Path(out)
    folders.prepare_output(out, "identity", overwrite)  # before any work
    settings = settings or IdentitySettings()
    if steps is not None:
        settings = settings.model_copy(update={"steps": int(steps)})
    ds = Dataset.open(dataset)
    idx = ds.require_split(split)
    images = np.asarray(ds.images[idx], dtype=np.float32)
    ids = ds.patient_ids[idx]
    net = fit_identity_network(images, ids, settings, seed, on_step,
                               what=f"the '{split}' split of {ds.root}")
    with folders.staged_output(out, "identity", overwrite) as stage:
        net.save(stage, provenance(settings.model_dump(mode="json"), seed=seed,
                                   dataset_fingerprint=ds.fingerprint(), split=split))
    return net


__all__ = ["IdentitySettings", "train_identity_folder", "ReidNetwork", "ReidCNN", "Verification", "Links", "REID_FORMAT",
           "train_reid_network", "fit_identity_network", "load_reid_network", "verify_network",
           "best_links", "repeat_groups", "split_patients_with_repeats", "check_repeats"]
