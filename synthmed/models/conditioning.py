"""Condition tokens for cross-attention: one per label, one for age, one for sex.

Every attribute has a learned "null" token used when it is unknown or dropped for classifier-free
guidance, so a single network samples any mix of conditions and also unconditionally.

A batch of conditions is plain tensors (see `Conditions`); `encode_conditions` turns the
user-facing dicts (`{"labels": ["Effusion"], "age": 60, "sex": "F"}`) into one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from synthmed.errors import InputError

SEXES = ("F", "M")
_AGE_SCALE = 100.0  # ages enter the network as years / 100


@dataclass
class Conditions:
    """A batch of conditions. `*_known` is False where the attribute is null (unknown or dropped)."""

    labels: torch.Tensor  # (B, L) float 0/1
    labels_known: torch.Tensor  # (B,) bool: the label set is given (all labels, or none)
    age: torch.Tensor  # (B,) float years
    age_known: torch.Tensor  # (B,) bool
    sex: torch.Tensor  # (B,) long index into SEXES
    sex_known: torch.Tensor  # (B,) bool

    def __len__(self) -> int:
        return int(self.age.shape[0])

    def to(self, device: torch.device | str) -> "Conditions":
        return Conditions(**{k: v.to(device) for k, v in self.__dict__.items()})

    def select(self, idx: torch.Tensor | slice | np.ndarray) -> "Conditions":
        if isinstance(idx, np.ndarray):
            idx = torch.from_numpy(idx)
        return Conditions(**{k: v[idx] for k, v in self.__dict__.items()})

    def drop(self, labels: torch.Tensor, age: torch.Tensor, sex: torch.Tensor) -> "Conditions":
        """A copy with the attributes nulled where the boolean masks are True."""
        return Conditions(self.labels, self.labels_known & ~labels, self.age, self.age_known & ~age,
                          self.sex, self.sex_known & ~sex)

    def null(self) -> "Conditions":
        n = len(self)
        f = torch.zeros(n, dtype=torch.bool, device=self.age.device)
        return Conditions(self.labels, f, self.age, f, self.sex, f)

    @staticmethod
    def cat(items: Sequence["Conditions"]) -> "Conditions":
        return Conditions(**{k: torch.cat([getattr(c, k) for c in items]) for k in items[0].__dict__})


def conditions_from_arrays(labels: np.ndarray, ages: np.ndarray, sexes: np.ndarray) -> Conditions:
    """Conditions of dataset rows: NaN age or an empty / unknown sex are null."""
    ages = np.asarray(ages, dtype=np.float32)
    sex_idx = np.array([SEXES.index(s) if s in SEXES else 0 for s in sexes], dtype=np.int64)
    sex_known = np.array([s in SEXES for s in sexes], dtype=bool)
    return Conditions(
        labels=torch.from_numpy(np.asarray(labels, dtype=np.float32)),
        labels_known=torch.ones(len(ages), dtype=torch.bool),
        age=torch.from_numpy(np.nan_to_num(ages, nan=0.0)),
        age_known=torch.from_numpy(~np.isnan(ages)),
        sex=torch.from_numpy(sex_idx),
        sex_known=torch.from_numpy(sex_known),
    )


def encode_conditions(conditions: dict | list[dict] | None, n: int,
                      vocabulary: Sequence[str]) -> Conditions:
    """User condition dicts -> Conditions. One dict applies to all `n`; a list needs `n` entries."""
    if conditions is None:
        items: list[dict] = [{}] * n
    elif isinstance(conditions, dict):
        items = [conditions] * n
    else:
        items = list(conditions)
        if len(items) != n:
            raise InputError(f"conditions: got {len(items)} condition dicts for {n} samples")
    vocab = {name: j for j, name in enumerate(vocabulary)}
    labels = np.zeros((n, len(vocab)), dtype=np.float32)
    labels_known = np.zeros(n, dtype=bool)
    ages = np.full(n, np.nan, dtype=np.float32)
    sexes: list[str] = []
    for i, c in enumerate(items):
        unknown_keys = set(c) - {"labels", "age", "sex"}
        if unknown_keys:
            raise InputError(f"conditions: unknown key(s) {sorted(unknown_keys)}; "
                             "allowed: labels, age, sex")
        if c.get("labels") is not None:
            labels_known[i] = True
            names = [c["labels"]] if isinstance(c["labels"], str) else c["labels"]
            for name in names:
                if name not in vocab:
                    raise InputError(f"conditions: unknown label {name!r}; the model knows "
                                     f"{', '.join(vocabulary) or 'no labels'}")
                labels[i, vocab[name]] = 1.0
        if c.get("age") is not None:
            age = float(c["age"])
            if not math.isfinite(age) or not 0 <= age <= 130:
                raise InputError(f"conditions: age {c['age']!r} is not an age in years (0-130)")
            ages[i] = age
        sex = c.get("sex")
        if sex is not None and sex not in SEXES:
            raise InputError(f"conditions: sex {sex!r} must be one of {', '.join(SEXES)}")
        sexes.append(sex or "")
    out = conditions_from_arrays(labels, ages, np.array(sexes, dtype=object))
    out.labels_known = torch.from_numpy(labels_known)
    return out


class ConditionEncoder(nn.Module):
    """Conditions -> (B, L + 2, dim) context tokens for the UNet's cross-attention."""

    def __init__(self, num_labels: int, dim: int, use_labels: bool = True, use_age: bool = True,
                 use_sex: bool = True):
        super().__init__()
        self.num_labels, self.dim = num_labels, dim
        self.use_labels, self.use_age, self.use_sex = use_labels, use_age, use_sex
        # Per label: [absent, present, null] embeddings; each label has its own, so the token says
        # which label it is without a separate position embedding.
        self.label_tokens = nn.Parameter(torch.randn(max(num_labels, 1), 3, dim))
        self.age_proj = nn.Sequential(nn.Linear(8, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.age_null = nn.Parameter(torch.randn(dim))
        # Unit-scale tokens (like nn.Embedding): at 0.02 the tokens were near-identical to attention.
        self.sex_tokens = nn.Parameter(torch.randn(len(SEXES) + 1, dim))  # F, M, null
        self.register_buffer("_freqs", torch.tensor([1.0, 2.0, 4.0, 8.0]) * math.pi, persistent=False)

    @property
    def num_tokens(self) -> int:
        return max(self.num_labels, 1) + 2

    def forward(self, c: Conditions) -> torch.Tensor:
        b = len(c)
        known_l = c.labels_known & self.use_labels
        known_a = c.age_known & self.use_age
        known_s = c.sex_known & self.use_sex
        if self.num_labels:
            state = c.labels.long()  # 0 absent, 1 present
            state = torch.where(known_l[:, None], state, torch.full_like(state, 2))
            idx = torch.arange(self.num_labels, device=state.device)[None, :].expand(b, -1)
            label_tok = self.label_tokens[idx, state]  # (B, L, dim)
        else:
            label_tok = self.label_tokens[0, 2].expand(b, 1, self.dim)
        a = (c.age / _AGE_SCALE)[:, None] * self._freqs[None, :]
        age_tok = self.age_proj(torch.cat([a.sin(), a.cos()], dim=1))
        age_tok = torch.where(known_a[:, None], age_tok, self.age_null[None, :].expand(b, -1))
        sex_idx = torch.where(known_s, c.sex, torch.full_like(c.sex, len(SEXES)))
        sex_tok = self.sex_tokens[sex_idx]
        return torch.cat([label_tok, age_tok[:, None], sex_tok[:, None]], dim=1)
