"""A trained model as the user sees it: `load(run)` and `DiffusionModel.sample(...)`.

`RUN/model.safetensors` holds the EMA weights of the denoiser (and the autoencoder for latent
runs); `RUN/model.json` holds everything else needed to rebuild them. Nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from synthmed.config import validate_config
from synthmed.errors import ConfigError, InputError, SynthmedError
from synthmed.io.atomic import write_json
from synthmed.models.autoencoder import build_autoencoder
from synthmed.models.checkpoint import (CheckpointError, load_module_state, load_tensors,
                                        read_json, save_tensors)
from synthmed.models.conditioning import encode_conditions
from synthmed.models.config import TrainConfig
from synthmed.models.network import ConditionalUNet, crop_to
from synthmed.models.sampling import SampleOutput, resolve_sampling
from synthmed.models.schedulers import sampling_scheduler
from synthmed.provenance import sha256_file

MODEL_SCHEMA = "synthmed.model/1"


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device: cuda was asked for but no GPU is visible")
        return torch.device("cuda")
    return torch.device("cpu")


def sample_seed(seed: int, index: int) -> int:
    return int(np.random.default_rng([seed, 2, index]).integers(2**62))


class DiffusionModel:
    """A conditional diffusion model ready to sample. Build with `synthmed.models.load(run)`."""

    def __init__(self, net: ConditionalUNet, config: TrainConfig, info: dict[str, Any],
                 autoencoder: torch.nn.Module | None = None, model_hash: str = "",
                 device: torch.device | None = None):
        self.device = device or torch.device("cpu")
        self.net = net.to(self.device).eval()
        self.autoencoder = autoencoder.to(self.device).eval() if autoencoder is not None else None
        self.config = config
        self.info = info
        self.model_hash = model_hash

    @property
    def spatial_dims(self) -> int:
        return int(self.info["spatial_dims"])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.info["shape"])

    @property
    def label_vocabulary(self) -> list[str]:
        return list(self.info["label_vocabulary"])

    @property
    def condition_priors(self) -> dict[str, Any]:
        return dict(self.info.get("condition_priors", {}))

    def sample(self, n: int, conditions: dict | list[dict] | None = None, steps: int | None = None,
               sampler: str | None = None, guidance_scale: float | None = None, seed: int = 0,
               batch_size: int = 64, on_batch: Callable[[int], None] | None = None) -> SampleOutput:
        """`n` images, float32 (n, *shape) in [0, 1], and the settings that made them.

        sampler / steps / guidance_scale: None means the model's own (`resolve_sampling`).
        Sample i depends only on (seed, i, its condition). `on_batch(k)` is called after each
        batch with the number of images it made (progress)."""
        settings = resolve_sampling(self.config, sampler, steps, guidance_scale)
        if n < 0 or batch_size < 1:
            raise InputError("n must be >= 0 and batch_size >= 1")
        cond = encode_conditions(conditions, n, self.label_vocabulary)
        from synthmed.generate.pipeline import denoise

        latent = self.autoencoder is not None
        model_shape = tuple(self.info["model_shape"])
        out = np.empty((n, *self.shape), dtype=np.float32)
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            gens = [torch.Generator().manual_seed(sample_seed(seed, i)) for i in range(start, stop)]
            sched = sampling_scheduler(settings.sampler, self.config.scheduler, clip=settings.clip)
            x, ran = denoise(self.net, sched, cond.select(slice(start, stop)),
                             (stop - start, self.info["in_channels"], *model_shape), gens,
                             settings.steps, settings.guidance_scale, self.device)
            if ran != settings.steps:  # the record must state what ran; never let them drift
                raise SynthmedError(f"the {settings.sampler} scheduler took {ran} steps where "
                                    f"{settings.steps} were resolved")
            if latent:
                with torch.no_grad():
                    x = self.autoencoder.decode(x / float(self.info["latent"]["scale_factor"]))
            x = crop_to(x[:, 0], self.shape)
            out[start:stop] = ((x.float().clamp(-1, 1) + 1) / 2).cpu().numpy()
            if on_batch is not None:
                on_batch(stop - start)
        return SampleOutput(out, settings)


# -- files --------------------------------------------------------------------------------------

def save_model(run: Path, net: ConditionalUNet, autoencoder: torch.nn.Module | None,
               info: dict[str, Any]) -> str:
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    if autoencoder is not None:
        tensors.update({f"ae.{k}": v for k, v in autoencoder.state_dict().items()})
    save_tensors(run / "model.safetensors", tensors)
    model_hash = sha256_file(run / "model.safetensors")
    write_json(run / "model.json", {**info, "schema": MODEL_SCHEMA, "model_sha256": model_hash})
    return model_hash


def build_network(info: dict[str, Any], config: TrainConfig) -> ConditionalUNet:
    return ConditionalUNet(int(info["spatial_dims"]), int(info["in_channels"]),
                           len(info["label_vocabulary"]), config.network, config.conditioning)


def load(run: str | Path, device: str = "auto") -> DiffusionModel:
    """Load a trained run folder (or its model.safetensors) for sampling."""
    run = Path(run)
    if run.is_file():
        run = run.parent
    if not run.is_dir():
        raise InputError(f"{run}: run folder does not exist")
    from synthmed.io import folders

    info = read_json(run / "model.json", "model description (model.json)")
    if info.get("schema") != MODEL_SCHEMA:
        raise CheckpointError(f"{run / 'model.json'}: not a synthmed model (schema {info.get('schema')!r})")
    try:
        # Runs written before `network.embed_conditions` existed had cross-attention only.
        if isinstance(info.get("config", {}).get("network"), dict):
            info["config"]["network"].setdefault("embed_conditions", False)
        config = validate_config(info["config"], TrainConfig, str(run / "model.json"))
        for key in ("spatial_dims", "shape", "model_shape", "in_channels", "label_vocabulary"):
            info[key]
    except KeyError as err:
        raise CheckpointError(f"{run / 'model.json'}: missing entry {err}") from None
    weights = run / "model.safetensors"
    model_hash = sha256_file(weights) if weights.is_file() else ""
    if info.get("model_sha256") and model_hash != info["model_sha256"]:
        raise CheckpointError(f"{weights}: weights do not match model.json (sha256 differs); "
                              "the file is corrupt or was replaced")
    tensors = load_tensors(weights)
    net = build_network(info, config)
    load_module_state(net, tensors, "net", weights)
    ae = None
    if info.get("latent", {}).get("enabled"):
        ae = build_autoencoder(int(info["spatial_dims"]), config.latent)
        load_module_state(ae, tensors, "ae", weights)
    # Last (a broken file has its own message above): every file as the run's last commit left
    # it; a run killed mid-checkpoint is refused until `--resume` commits it again.
    folders.verify(run, "run")
    return DiffusionModel(net, config, info, ae, model_hash, pick_device(device))
