"""Differentially private training: Opacus DP-SGD with the PATIENT as the privacy unit.

Why the patient and not the image. synthmed's promise is patient-level: a membership question is
"was this PERSON in training?", and one patient's images are strongly correlated (the same
anatomy, often the same pathology, follow-ups of one study). Image-level DP-SGD bounds what one
image changes; a patient with k images would then get only about k * epsilon (group privacy), and
the model card's epsilon would overstate the protection exactly for the patients with the most
images. So here the record of DP-SGD is the patient:

* each step samples PATIENTS independently with probability q = batch_size / (train patients)
  (Poisson sampling, the sampling Opacus's accountants assume), from (seed, step);
* a sampled patient contributes up to `images_per_patient` of their images (drawn at random), and
  the per-image gradients are averaged into ONE per-patient gradient, clipped to `max_grad_norm`
  as one record. Adding or removing a patient then changes the summed gradient by at most
  `max_grad_norm`, whatever their number of images: the sensitivity the accountant assumes;
* Opacus's `DPOptimizer` clips, sums, adds Gaussian noise (std noise_multiplier * max_grad_norm)
  and scales by the expected batch (q * patients), and Opacus's accountant turns
  (noise_multiplier, q, steps) into epsilon at delta. A step that samples no patient still adds
  the noise and updates (the batch size must not be observable).

Per-patient gradients are computed with torch.func (vmap of grad over the images, then a sum per
patient), not with Opacus's per-layer hooks: the condition encoder takes a structured batch and
holds raw parameters and a buffer, which those hooks do not support, and the per-patient sum is
direct this way. Everything else (clipping, noise, accounting) is Opacus's.

What the epsilon covers: the denoiser weights (and their EMA, post-processing). Not covered, and
listed in the model card: the condition priors (rounded label rates and age moments of the train
split, stored as sampling defaults) and the training losses in losses.csv. The noise comes from a
seeded torch generator so that runs are reproducible and resumable; Opacus's `secure_mode`
(a cryptographic generator) would make them neither.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from synthmed.errors import ConfigError
from synthmed.models.conditioning import Conditions
from synthmed.models.config import TrainConfig


def noise_multiplier_for(target_epsilon: float, delta: float, sample_rate: float, steps: int,
                         accountant: str) -> float:
    """Opacus's noise multiplier that spends `target_epsilon` in `steps` steps at `sample_rate`."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                      sample_rate=sample_rate, steps=steps, accountant=accountant))


def accountant_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                       accountant: str = "rdp") -> float:
    """Epsilon that Opacus's accountant gives for `steps` steps of DP-SGD at these settings."""
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    return float(acc.get_epsilon(delta=delta))


class PatientDPSGD:
    """One DP-SGD step per call of `step`, over the patients of the train split."""

    def __init__(self, net: torch.nn.Module, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                 row_patients: np.ndarray, world_size: int = 1):
        dp = cfg.dp
        assert dp is not None
        if world_size > 1:
            raise ConfigError("dp: differentially private training runs on one process (the "
                              "per-patient sampling and noise are not split across DDP ranks)")
        self.cfg, self.dp, self.net = cfg, dp, net
        ids = np.asarray(row_patients)
        uniq, inv = np.unique(ids, return_inverse=True)
        self.n_patients = int(uniq.size)
        self.rows_of = [np.nonzero(inv == k)[0] for k in range(self.n_patients)]
        if dp.delta >= 1.0 / self.n_patients:
            raise ConfigError(f"dp.delta = {dp.delta:g} is not below 1 / (train patients) = "
                              f"1/{self.n_patients}: a mechanism that publishes one patient's "
                              f"images whole would meet it; use delta < {1.0 / self.n_patients:.3g}")
        self.sample_rate = min(1.0, cfg.batch_size / self.n_patients)
        self.noise_multiplier = noise_multiplier_for(dp.target_epsilon, dp.delta, self.sample_rate,
                                                     cfg.steps, dp.accountant)
        from opacus.optimizers import DPOptimizer

        self.optimizer = DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier,
                                     max_grad_norm=dp.max_grad_norm,
                                     expected_batch_size=self.sample_rate * self.n_patients,
                                     loss_reduction="mean")
        self._grad_fn = None

    # ---- sampling ---------------------------------------------------------------------------
    def sample(self, seed: int, step: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(dataset rows, the sampled patient each row belongs to (0..k-1), k) of this step:
        Poisson sampling of patients, then up to images_per_patient images of each."""
        rng = np.random.default_rng([seed, 11, step])
        chosen = np.nonzero(rng.random(self.n_patients) < self.sample_rate)[0]
        rows, slot = [], []
        for j, p in enumerate(chosen):
            own = self.rows_of[p]
            take = min(self.dp.images_per_patient, own.size)
            rows.append(np.sort(rng.choice(own, size=take, replace=False)))
            slot.append(np.full(take, j))
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0
        return np.concatenate(rows), np.concatenate(slot), int(chosen.size)

    # ---- per-patient gradients ----------------------------------------------------------------
    def _per_row_grads(self):
        from torch.func import functional_call, grad, vmap

        net = self.net
        names = [k for k, p in net.named_parameters() if p.requires_grad]
        buffers = dict(net.named_buffers())
        fields = list(Conditions.__dataclass_fields__)

        def loss_one(params, x, t, target, *cond_fields):
            cond = Conditions(**{k: v.unsqueeze(0) for k, v in zip(fields, cond_fields)})
            pred = functional_call(net, (params, buffers), (x.unsqueeze(0), t.unsqueeze(0), cond))
            return F.mse_loss(pred.float(), target.unsqueeze(0))

        per_row = vmap(grad(loss_one), in_dims=(None, 0, 0, 0) + (0,) * len(fields))
        return names, fields, per_row, loss_one

    def per_patient_grads(self, x_t: torch.Tensor, t: torch.Tensor, target: torch.Tensor,
                          cond: Conditions, slot: np.ndarray, n_sampled: int) -> dict[str, torch.Tensor]:
        """{parameter name: (n_sampled, *shape)}: the mean of each sampled patient's per-image
        loss gradients (row i belongs to patient slot[i]), before clipping."""
        if self._grad_fn is None:
            self._grad_fn = self._per_row_grads()
        names, fields, per_row, _ = self._grad_fn
        params = {k: p.detach() for k, p in self.net.named_parameters() if p.requires_grad}
        grads = per_row(params, x_t, t, target, *[getattr(cond, k) for k in fields])
        idx = torch.from_numpy(np.asarray(slot)).to(x_t.device)
        counts = torch.bincount(idx, minlength=n_sampled).to(torch.float32)
        out = {}
        for name in names:
            g = grads[name]
            per_patient = torch.zeros((n_sampled, *g.shape[1:]), dtype=g.dtype, device=g.device)
            per_patient.index_add_(0, idx, g)
            out[name] = per_patient / counts.view(-1, *([1] * (g.dim() - 1)))
        return out

    def step(self, x_t: torch.Tensor, t: torch.Tensor, target: torch.Tensor, cond: Conditions,
             slot: np.ndarray, n_sampled: int, noise_generator: torch.Generator) -> float:
        """Clip one gradient per sampled patient, add noise, update. Returns the (non-private,
        diagnostic) mean loss of the sampled rows, nan when none was sampled."""
        plist = [p for p in self.net.parameters() if p.requires_grad]
        if n_sampled == 0:
            for p in plist:  # one all-zero "patient": the step is noise only
                p.grad_sample = torch.zeros((1, *p.shape), dtype=p.dtype, device=p.device)
            loss = math.nan
        else:
            for p, g in zip(plist, self.per_patient_grads(x_t, t, target, cond, slot, n_sampled).values()):
                p.grad_sample = g
            with torch.no_grad():
                pred = self.net(x_t, t, cond)
                loss = float(F.mse_loss(pred.float(), target))
        self.optimizer.generator = noise_generator
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    # ---- the record ---------------------------------------------------------------------------
    def epsilon(self, steps: int) -> float:
        return accountant_epsilon(self.noise_multiplier, self.sample_rate, steps, self.dp.delta,
                                  self.dp.accountant)

    def record(self, steps: int) -> dict[str, Any]:
        """The privacy guarantee of the weights after `steps` steps, for model.json / the card."""
        return {
            "unit": "patient",
            "epsilon": self.epsilon(steps), "delta": self.dp.delta,
            "target_epsilon": self.dp.target_epsilon, "steps": int(steps),
            "sample_rate": self.sample_rate, "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.dp.max_grad_norm, "images_per_patient": self.dp.images_per_patient,
            "expected_patients_per_step": self.sample_rate * self.n_patients,
            "train_patients": self.n_patients, "accountant": self.dp.accountant,
            "mechanism": "DP-SGD (Opacus DPOptimizer), Poisson sampling of patients, one clipped "
                         "gradient per patient",
            "covers": "the denoiser weights (and their EMA)",
            "not_covered": ["condition_priors in model.json (rounded label rates, age moments and "
                            "sex share of the train split, used as sampling defaults)",
                            "losses.csv and the loss figures of the model card"],
        }
