"""A small multi-label CNN trained on real images: the measuring instrument for generated ones.

It answers two questions about a generator without any downloaded network:

- does a sample conditioned on a finding carry that finding? (`predict_proba` on the samples,
  see `synthmed.evaluate.conditioning`)
- do samples sit where real images sit in a feature space that knows about the findings?
  (`features`, the penultimate layer, feeds the Fréchet distance in `synthmed.evaluate.fidelity`)

scikit-learn style: `fit(images, targets)`, `predict_proba(images)`, `score(images, targets)`;
plain numpy in and out. Weights go to one safetensors file whose metadata holds the
architecture, so `load` needs no pickle and no code beyond this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from monai.networks.blocks import Convolution
from scipy.stats import mannwhitneyu
from torch import nn

from synthmed.errors import InputError
from synthmed.io.atomic import atomic_path

_FORMAT = "synthmed.label_classifier/1"


@dataclass(frozen=True)
class ClassifierSpec:
    """Everything needed to rebuild the network (stored in the weights file's metadata)."""

    spatial_dims: int
    shape: tuple[int, ...]
    labels: tuple[str, ...]
    channels: tuple[int, ...] = (16, 32, 64, 64)
    dropout: float = 0.2
    extra: dict = field(default_factory=dict)  # training record: epochs, lr, seed, ...


class _Net(nn.Module):
    """Stride-2 conv stages (MONAI blocks, so 2D and 3D share the code), global pooling, linear head."""

    def __init__(self, spatial_dims: int, n_labels: int, channels: Sequence[int], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers.append(Convolution(spatial_dims, c_in, c, strides=2, kernel_size=3,
                                      act="RELU", norm="BATCH"))
            layers.append(Convolution(spatial_dims, c, c, strides=1, kernel_size=3,
                                      act="RELU", norm="BATCH"))
            c_in = c
        self.body = nn.Sequential(*layers)
        self.pool = (nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, n_labels)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


def _as_batch(images: np.ndarray, spatial_dims: int, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(images, dtype=np.float32)
    if a.ndim == spatial_dims:
        a = a[None]
    if a.ndim != spatial_dims + 1 or tuple(a.shape[1:]) != tuple(shape):
        raise InputError(f"images of shape {a.shape[1:]} do not match the classifier's "
                         f"{tuple(shape)}; give (N, {', '.join(map(str, shape))}) arrays")
    return a


def _random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to `max_shift` voxels per axis (edge-replicated).

    Small translations are the one augmentation that is safe for every modality here: flips
    would swap left and right in a chest film, intensity changes would teach the network to
    ignore the very statistics a generator must get right.
    """
    if max_shift <= 0:
        return x
    nd = x.ndim - 2
    pad = [max_shift] * (2 * nd)
    xp = torch.nn.functional.pad(x, pad, mode="replicate")
    out = torch.empty_like(x)
    offs = torch.randint(0, 2 * max_shift + 1, (x.shape[0], nd), generator=gen)
    for i in range(x.shape[0]):
        sl = tuple(slice(int(o), int(o) + s) for o, s in zip(offs[i], x.shape[2:]))
        out[i] = xp[(i, slice(None), *sl)]
    return out


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve = Mann-Whitney U / (n_pos * n_neg) (ties count 1/2); nan if one class is empty."""
    truth = np.asarray(truth).astype(bool)
    pos, neg = scores[truth], scores[~truth]
    if pos.size == 0 or neg.size == 0:
        return math.nan
    u = mannwhitneyu(pos, neg, alternative="two-sided").statistic
    return float(u / (pos.size * neg.size))


class LabelClassifier:
    """Multi-label CNN on (N, *shape) images in [0, 1].

    Parameters
    ----------
    spatial_dims : 2 or 3.
    shape : image shape, e.g. (64, 64) or (32, 48, 32).
    labels : names of the outputs, in the column order of the target matrix.
    channels : widths of the conv stages; the last one is the feature dimension.
    """

    def __init__(self, spatial_dims: int, shape: Sequence[int], labels: Sequence[str], *,
                 channels: Sequence[int] = (16, 32, 64, 64), dropout: float = 0.2,
                 seed: int = 0, device: str | torch.device = "cpu"):
        if spatial_dims not in (2, 3):
            raise ValueError("spatial_dims must be 2 or 3")
        if len(shape) != spatial_dims:
            raise ValueError(f"shape {tuple(shape)} has not {spatial_dims} dimensions")
        if not labels:
            raise ValueError("give at least one label to predict")
        self.spec = ClassifierSpec(spatial_dims, tuple(int(s) for s in shape),
                                   tuple(labels), tuple(int(c) for c in channels), float(dropout))
        self.seed = seed
        self.device = torch.device(device)
        torch.manual_seed(seed)
        self.net = _Net(spatial_dims, len(labels), self.spec.channels, dropout).to(self.device)
        self.history: list[float] = []

    @property
    def labels(self) -> list[str]:
        return list(self.spec.labels)

    @property
    def feature_dim(self) -> int:
        return self.spec.channels[-1]

    # ------------------------------------------------------------------ training
    def fit(self, images: np.ndarray, targets: np.ndarray, *, epochs: int = 30,
            batch_size: int = 64, lr: float = 2e-3, weight_decay: float = 1e-4,
            max_shift: int = 3, balance: bool = True) -> "LabelClassifier":
        """Train on real images and their multi-hot targets (N, L).

        `balance` weighs each label's positives by (negatives / positives), capped at 10, so rare
        findings are not drowned by 'No Finding'; it changes calibration, not the ranking that the
        label-rate check relies on (its thresholds are set on real images).
        """
        x = _as_batch(images, self.spec.spatial_dims, self.spec.shape)
        y = np.asarray(targets, dtype=np.float32)
        if y.shape != (x.shape[0], len(self.spec.labels)):
            raise InputError(f"targets have shape {y.shape}; expected ({x.shape[0]}, "
                             f"{len(self.spec.labels)}) for labels {list(self.spec.labels)}")
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        xt = torch.from_numpy(x).unsqueeze(1)
        yt = torch.from_numpy(y)
        pos = yt.sum(0)
        pos_weight = ((yt.shape[0] - pos) / pos.clamp(min=1)).clamp(1.0, 10.0) if balance else None
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=None if pos_weight is None
                                       else pos_weight.to(self.device))
        opt = torch.optim.AdamW(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        steps_per_epoch = max(1, math.ceil(x.shape[0] / batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
        self.net.train()
        self.history = []
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=gen)
            total = 0.0
            for s in range(steps_per_epoch):
                idx = order[s * batch_size:(s + 1) * batch_size]
                if idx.numel() < 2:  # BatchNorm needs two samples
                    continue
                xb = _random_shift(xt[idx], max_shift, gen).to(self.device)
                yb = yt[idx].to(self.device)
                loss = loss_fn(self.net(xb), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * idx.numel()
            self.history.append(total / x.shape[0])
        self.net.eval()
        self.spec = ClassifierSpec(**{**asdict(self.spec), "extra": {
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "max_shift": max_shift, "balance": balance, "seed": self.seed, "n_train": int(x.shape[0]),
            "final_loss": self.history[-1] if self.history else None}})
        return self

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def _run(self, images: np.ndarray, batch_size: int, what: str) -> np.ndarray:
        x = _as_batch(images, self.spec.spatial_dims, self.spec.shape)
        self.net.eval()
        out = []
        for s in range(0, x.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size])).unsqueeze(1).to(self.device)
            if what == "proba":
                out.append(torch.sigmoid(self.net(xb)).cpu().numpy())
            else:
                out.append(self.net.features(xb).cpu().numpy())
        width = len(self.spec.labels) if what == "proba" else self.feature_dim
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, width), np.float32)

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, L) probabilities, one column per label."""
        return self._run(images, batch_size, "proba")

    def features(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, d) penultimate-layer features (after global pooling)."""
        return self._run(images, batch_size, "features")

    def score(self, images: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        """Per-label ROC AUC on labelled images, plus their mean over labels that have both classes."""
        p = self.predict_proba(images)
        y = np.asarray(targets)
        aucs = {lab: roc_auc(p[:, j], y[:, j]) for j, lab in enumerate(self.spec.labels)}
        finite = [v for v in aucs.values() if not math.isnan(v)]
        aucs["mean_auc"] = float(np.mean(finite)) if finite else math.nan
        return aucs

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """One .safetensors file; the architecture and training record go in its metadata."""
        from safetensors.torch import save_file

        path = Path(path)
        meta = {"format": _FORMAT,
                "spec": json.dumps(asdict(self.spec), sort_keys=True, allow_nan=False)}
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "LabelClassifier":
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: classifier weights file does not exist")
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            if meta.get("format") != _FORMAT:
                raise ValueError(f"format is {meta.get('format')!r}, not {_FORMAT}")
            spec = json.loads(meta["spec"])
            state = load_file(str(path))
        except Exception as err:  # noqa: BLE001 - any reader failure means a bad file
            raise InputError(f"{path}: not a synthmed label classifier ({err})") from None
        clf = cls(spec["spatial_dims"], spec["shape"], spec["labels"], channels=spec["channels"],
                  dropout=spec["dropout"], device=device)
        clf.net.load_state_dict(state)
        clf.net.eval()
        clf.spec = ClassifierSpec(**{**spec, "shape": tuple(spec["shape"]),
                                     "labels": tuple(spec["labels"]),
                                     "channels": tuple(spec["channels"])})
        return clf


def fit_on_dataset(dataset, labels: Sequence[str] | None = None, *, split: str = "train",
                   seed: int = 0, device: str = "cpu", **fit_kwargs) -> LabelClassifier:
    """Train a LabelClassifier on one split of a `synthmed.data.dataset.Dataset`.

    `labels` defaults to the dataset's whole vocabulary.
    """
    vocab = dataset.label_vocabulary
    labels = list(labels) if labels is not None else vocab
    missing = [lab for lab in labels if lab not in vocab]
    if missing:
        raise InputError(f"{dataset.root}: labels {missing} are not in the dataset's vocabulary "
                         f"({', '.join(vocab)})")
    idx = dataset.require_split(split)
    cols = [vocab.index(lab) for lab in labels]
    y = dataset.label_matrix()[idx][:, cols]
    x = np.asarray(dataset.images[idx], dtype=np.float32)
    clf = LabelClassifier(dataset.spatial_dims, dataset.shape, labels, seed=seed, device=device)
    return clf.fit(x, y, **fit_kwargs)
