"""The denoiser: MONAI DiffusionModelUNet with condition tokens fed to its cross-attention."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from synthmed.models.conditioning import ConditionEncoder, Conditions
from synthmed.models.config import ConditioningConfig, NetworkConfig


class ConditionalUNet(nn.Module):
    def __init__(self, spatial_dims: int, in_channels: int, num_labels: int, net: NetworkConfig,
                 cond: ConditioningConfig):
        super().__init__()
        self.spatial_dims = spatial_dims
        self.unet = DiffusionModelUNet(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=in_channels,
            channels=tuple(net.channels), attention_levels=tuple(net.attention_levels),
            num_res_blocks=net.num_res_blocks, num_head_channels=net.num_head_channels,
            norm_num_groups=net.norm_num_groups, with_conditioning=True,
            cross_attention_dim=net.context_dim,
            num_class_embeds=1 if net.embed_conditions else None,
        )
        self.conditioner = ConditionEncoder(num_labels, net.context_dim, use_labels=cond.labels,
                                            use_age=cond.age, use_sex=cond.sex)
        self.embed_conditions = net.embed_conditions
        if net.embed_conditions:
            # MONAI adds `class_embedding(class_labels)` to the timestep embedding; a linear map of
            # the flattened condition tokens takes the place of its single-label lookup table.
            self.unet.class_embedding = nn.Linear(self.conditioner.num_tokens * net.context_dim,
                                                  net.channels[0] * 4)

    @property
    def downsampling(self) -> int:
        """Spatial sizes must be multiples of this."""
        return 2 ** (len(self.unet.block_out_channels) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Conditions) -> torch.Tensor:
        ctx = self.conditioner(cond)
        extra = ctx.flatten(1) if self.embed_conditions else None
        return self.unet(x, timesteps=t, context=ctx, class_labels=extra)


def padded_shape(shape: Sequence[int], multiple: int) -> tuple[int, ...]:
    return tuple(int(math.ceil(s / multiple) * multiple) for s in shape)


def pad_to(x: torch.Tensor, shape: Sequence[int], value: float) -> torch.Tensor:
    """Pad the trailing spatial axes (at the end) up to `shape`; the UNet needs multiples of 2^k."""
    extra = [t - s for s, t in zip(x.shape[-len(shape):], shape)]
    if not any(extra):
        return x
    pad: list[int] = []
    for e in reversed(extra):
        pad += [0, e]
    return F.pad(x, pad, value=value)


def crop_to(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    sl = (Ellipsis,) + tuple(slice(0, s) for s in shape)
    return x[sl]
