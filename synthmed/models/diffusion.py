"""A trained model's files: what `RUN/model.safetensors` and `RUN/model.json` hold, and the
networks they rebuild.

`RUN/model.safetensors` holds the EMA weights of the denoiser (and the autoencoder for latent
runs); `RUN/model.json` holds everything else needed to rebuild them. Nothing is unpickled.
Sampling is not here: `synthmed.generate.pipeline.DiffusionPipeline` owns these components and
a scheduler and samples (`synthmed.models.load(run)` returns one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from synthmed.config import validate_config
from synthmed.errors import ConfigError, InputError
from synthmed.io.atomic import write_json
from synthmed.models.autoencoder import build_autoencoder
from synthmed.models.checkpoint import (CheckpointError, load_module_state, load_tensors,
                                        read_json, save_tensors)
from synthmed.models.config import TrainConfig
from synthmed.models.network import ConditionalUNet
from synthmed.provenance import sha256_file

MODEL_SCHEMA = "synthmed.model/1"


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device: cuda was asked for but no GPU is visible")
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass
class ModelComponents:
    """What a run folder rebuilds: the networks, the training config and the model description."""

    net: ConditionalUNet
    config: TrainConfig
    info: dict[str, Any]
    autoencoder: torch.nn.Module | None
    model_hash: str


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


def load_components(run: str | Path) -> ModelComponents:
    """Rebuild the networks of a trained run folder (or of its model.safetensors), verified."""
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
    return ModelComponents(net, config, info, ae, model_hash)
