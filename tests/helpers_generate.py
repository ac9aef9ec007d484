"""A population of toy patients and a small generative model fitted to it, for cohort tests.

`toy_population` draws patients whose images carry an identity (a smooth random "anatomy", the
same in every image of a patient, plus a little noise) and findings (one bright blob per label,
at a label-specific place). A tiny network trained for a few CPU steps learns neither, so the
cohort-quality tests use `fit_gaussian_model`: a linear-Gaussian model *fitted to the training
patients only* (a per-label mean shift plus the top principal components of what is left), whose
Bayes-optimal denoiser is closed-form. The sampling pipeline, its conditioning, its SDEdit
follow-ups and the whole cohort machinery run on it unchanged; what it cannot do is learn
anything beyond a Gaussian, which these tests do not ask of it.
"""

from __future__ import annotations

import numpy as np
import torch

from synthmed.generate.pipeline import DiffusionPipeline
from synthmed.models.schedulers import training_scheduler
from test_models import tiny_config

VOCAB = ("Effusion", "Mass")


def _blob(shape: tuple[int, int], j: int) -> np.ndarray:
    h, w = shape
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    cy, cx = [(0.45, -0.4), (-0.4, 0.4)][j]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.18 ** 2))


def toy_population(n_patients: int, per_patient: int, *, shape=(24, 24), seed: int = 0,
                   rate: float = 0.35, cell: int = 4):
    """images (n, H, W) in [0, 1], patient ids (n,), labels (n, 2) multi-hot.

    A patient's anatomy is a coarse random pattern (one value per `cell` x `cell` block, as in
    tests/test_audit_reid.py), the same in every image of them; each image adds its findings
    (one bright blob per label present) and a little noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    blobs = np.stack([_blob(shape, j) for j in range(len(VOCAB))])
    images, pids, labels = [], [], []
    for p in range(n_patients):
        coarse = rng.random((h // cell, w // cell))
        anatomy = 0.2 + 0.4 * np.kron(coarse, np.ones((cell, cell)))
        for _ in range(per_patient):
            y = (rng.random(len(VOCAB)) < rate).astype(np.float32)
            img = anatomy + 0.35 * np.tensordot(y, blobs, axes=1) + rng.normal(0, 0.015, shape)
            images.append(np.clip(img, 0, 1).astype(np.float32))
            pids.append(f"T{p:04d}")
            labels.append(y)
    return np.stack(images), np.array(pids), np.stack(labels)


class GaussianDenoiser(torch.nn.Module):
    """v-prediction of the exact denoiser for x0 ~ N(mean(labels), V diag(lam) V^T) in [-1, 1]."""

    def __init__(self, base, effects, prior_rates, vecs, lam, alphas_cumprod):
        super().__init__()
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
        self.register_buffer("base", t(base))            # (d,)
        self.register_buffer("effects", t(effects))      # (L, d)
        self.register_buffer("prior", t(prior_rates))    # (L,)
        self.register_buffer("vecs", t(vecs))            # (d, d)
        self.register_buffer("lam", t(lam))              # (d,)
        self.register_buffer("acp", t(alphas_cumprod))

    def forward(self, x, t, cond):
        b = x.shape[0]
        xf = x.reshape(b, -1).double()
        a = self.acp[t].sqrt().view(-1, 1)
        s = (1 - self.acp[t]).sqrt().view(-1, 1)
        y = cond.labels.double()
        known = cond.labels_known.view(-1, 1)
        y = torch.where(known, y, self.prior.view(1, -1).expand_as(y))
        mu = self.base.view(1, -1) + y @ self.effects
        proj = (xf - a * mu) @ self.vecs                        # coordinates in the eigenbasis
        gain = a * self.lam.view(1, -1) / (a ** 2 * self.lam.view(1, -1) + s ** 2)
        x0 = mu + (gain * proj) @ self.vecs.T
        eps = (xf - a * x0) / s
        v = a * eps - s * x0
        return v.view_as(x).float()


def fit_gaussian_model(images: np.ndarray, labels: np.ndarray, *, k: int = 36, steps: int = 8):
    """Fit the linear-Gaussian model to (training) images; return a DiffusionPipeline on it."""
    x = images.reshape(len(images), -1).astype(np.float64) * 2 - 1
    y = labels.astype(np.float64)
    design = np.concatenate([np.ones((len(x), 1)), y], axis=1)
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)     # base + per-label effects
    resid = x - design @ coef
    cov = resid.T @ resid / max(1, len(x) - 1)
    lam, vecs = np.linalg.eigh(cov)
    order = np.argsort(lam)[::-1]
    lam, vecs = lam[order], vecs[:, order]
    floor = float(np.mean(lam[k:])) if len(lam) > k else 1e-4
    lam = np.concatenate([lam[:k], np.full(len(lam) - k, floor)])
    cfg = tiny_config(sampling={"steps": steps, "guidance_scale": 1.0})
    net = GaussianDenoiser(coef[0], coef[1:], y.mean(axis=0), vecs, np.maximum(lam, 1e-6),
                           training_scheduler(cfg.scheduler).alphas_cumprod)
    shape = list(images.shape[1:])
    info = {"spatial_dims": 2, "shape": shape, "model_shape": shape, "in_channels": 1,
            "label_vocabulary": list(VOCAB), "latent": {"enabled": False},
            "condition_priors": {"label_rates": dict(zip(VOCAB, map(float, y.mean(axis=0))))},
            "dataset_fingerprint": "toy"}
    return DiffusionPipeline(net, cfg, info, model_hash="gaussian-" + str(k))
