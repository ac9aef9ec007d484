"""Is a synthetic cohort useful? Train the same classifier four ways and test each on real patients.

`utility(real_train_x, real_train_y, synthetic_x, synthetic_y, holdout_x, holdout_y, labels,
config=UtilityConfig())` trains the project's one `LabelClassifier`
(`synthmed.evaluate.classifier`; no second classifier) in four regimes:

- ``real``: real train images (TRTR, the baseline);
- ``synthetic``: the synthetic cohort only (TSTR);
- ``real+synthetic``: both sets pooled;
- ``synthetic->real``: pretrained on the synthetic cohort, then fine-tuned on real train images;

and tests every one on the same real holdout: macro ROC AUC with a bootstrap interval that
resamples holdout *patients* (one patient's images go in or out together), per-label AUC, the
TSTR / TRTR ratio and the differences to ``real`` (paired: every replicate scores all regimes on
the same resampled patients), and ROC curves for the report.

The budget, so that the comparison is fair: every regime trains for the same number of
**optimiser steps** (`UtilityConfig.steps`, batches of `batch_size`), whatever the size of its
set. Epochs over each set would hand ``real+synthetic`` twice the updates of ``real`` and reward
compute, not data. `LabelClassifier.fit` counts in epochs, so each set gets
round(steps / batches per epoch) epochs (at least one): the budget is met to within half an epoch
of that set, and the steps that really ran are recorded per regime. ``synthetic->real`` is the
``synthetic`` budget followed by `finetune_steps` (default: the same `steps`) on the real set, at
`finetune_lr`: it asks whether synthetic pretraining adds anything on top of real training, so
it is the one regime that trains longer, and the record says so.

Evaluability, never a silent drop: a label is scored only where the holdout holds at least
`min_holdout_positives` positives and one negative; a regime scores it only where its training
set has a positive. The macro AUC of every regime is the mean over the labels that all four
regimes can score (`macro_labels`), so TSTR and TRTR compare the same labels; every other label
is listed in `not_evaluable` with the reason. With no such label there is no macro AUC and no
ratio (None, with the reason) rather than a number.

Seeds: classifier k of a regime (`n_seeds` of them, predictions averaged) starts from
seed + 1000 k, the same weights in every regime; the bootstrap draws from `seed`. Same inputs
and seed give the same result.

Arrays: x float32 (N, *spatial) or (N, 1, *spatial) in [0, 1] (a channel axis of length 1 is
dropped: the classifier reads one channel); y (N, L) multi-hot {0, 1}, columns in `labels`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from pydantic import Field

from synthmed.config import StrictConfig
from synthmed.errors import InputError
from synthmed.evaluate.classifier import LabelClassifier
from synthmed.evaluate.floor import Interval, patient_groups
from synthmed.stats import roc_auc_of_labels

REGIMES = ("real", "synthetic", "real+synthetic", "synthetic->real")
UTILITY_SCHEMA = "synthmed.utility/1"


class UtilityConfig(StrictConfig):
    """The classifier and its training budget, fixed for all four regimes."""

    channels: tuple[int, ...] = (16, 32, 64, 64)   # LabelClassifier conv stage widths
    dropout: float = Field(0.2, ge=0, lt=1)
    steps: int = Field(400, ge=1)                   # optimiser steps per regime (the budget)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    max_shift: int = Field(3, ge=0)                 # random-translation augmentation, voxels
    balance: bool = True                            # positive-class weighting (LabelClassifier.fit)
    finetune_steps: int | None = Field(None, ge=1)  # synthetic->real fine-tune; None: `steps`
    finetune_lr: float | None = Field(None, gt=0)   # None: `lr`
    n_seeds: int = Field(1, ge=1)                   # classifiers per regime, predictions averaged
    n_bootstrap: int = Field(200, ge=10)            # holdout-patient resamples
    min_holdout_positives: int = Field(3, ge=1)     # fewer: the label is not evaluable
    max_roc_points: int = Field(200, ge=10)         # ROC curves thinned to this many points


@dataclass(frozen=True)
class RegimeResult:
    """One regime tested on the real holdout."""

    name: str
    macro_auc: Interval | None          # over `UtilityResult.macro_labels`; None: nothing evaluable
    per_label: dict[str, float | None]  # every label; None where this regime cannot score it
    not_evaluable: dict[str, str]       # label -> why (this regime)
    n_train: int                        # images it trained on (pretraining + fine-tuning for ->)
    optimiser_steps: int                # steps that really ran (both stages for synthetic->real)
    epochs: list[int]                   # per stage

    def to_json(self) -> dict:
        return {"macro_auc": _interval_json(self.macro_auc), "per_label_auc": self.per_label,
                "not_evaluable": self.not_evaluable, "n_train_images": self.n_train,
                "optimiser_steps": self.optimiser_steps, "epochs": self.epochs}


@dataclass(frozen=True)
class UtilityResult:
    labels: list[str]
    macro_labels: list[str]                 # the labels every regime's macro AUC averages
    regimes: dict[str, RegimeResult]
    tstr_trtr: Interval | None              # macro AUC synthetic / real, paired bootstrap
    differences: dict[str, Interval | None]  # "<regime> - real": macro AUC difference
    not_evaluable: dict[str, str]           # labels outside macro_labels, with the reason
    roc: dict[str, dict[str, tuple[list[float], list[float]]]]  # regime -> label -> (fpr, tpr)
    settings: dict[str, Any] = field(default_factory=dict)  # what actually ran
    note: str | None = None                 # why there is no macro AUC / ratio, when there is none

    def to_json(self) -> dict:
        """Plain JSON (NaN never appears: a missing number is None)."""
        return {"schema": UTILITY_SCHEMA, "labels": self.labels, "macro_labels": self.macro_labels,
                "regimes": {k: r.to_json() for k, r in self.regimes.items()},
                "tstr_trtr": _interval_json(self.tstr_trtr),
                "differences_to_real": {k: _interval_json(v) for k, v in self.differences.items()},
                "not_evaluable": self.not_evaluable, "note": self.note,
                "roc": {reg: {lab: {"fpr": c[0], "tpr": c[1]} for lab, c in curves.items()}
                        for reg, curves in self.roc.items()},
                "settings": self.settings}

    def summary(self) -> str:
        """A few plain lines: each regime's macro AUC, the ratio."""
        lines = []
        for name, r in self.regimes.items():
            m = r.macro_auc
            lines.append(f"{name:>16}: macro AUC " + (f"{m.value:.3f} [{m.low:.3f}, {m.high:.3f}]"
                                                      if m else "not evaluable"))
        t = self.tstr_trtr
        lines.append("TSTR/TRTR: " + (f"{t.value:.3f} [{t.low:.3f}, {t.high:.3f}]" if t else
                                      f"not evaluable ({self.note})"))
        return "\n".join(lines)


def _interval_json(iv: Interval | None) -> dict | None:
    if iv is None:
        return None
    return {k: (None if not math.isfinite(v) else float(v)) for k, v in
            (("value", iv.value), ("mean", iv.mean), ("std", iv.std), ("low", iv.low), ("high", iv.high))}


# ------------------------------------------------------------------ input checks
def _images(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim >= 4 and a.shape[1] == 1:  # (N, 1, *spatial): the classifier reads one channel
        a = a[:, 0]
    if a.ndim not in (3, 4):
        raise InputError(f"{what}: images of shape {a.shape}; give (N, *spatial) or (N, 1, *spatial) "
                         "arrays of 2D or 3D images")
    if a.shape[0] == 0:
        raise InputError(f"{what}: no images")
    if not np.isfinite(a).all():
        raise InputError(f"{what}: images contain NaN or infinity")
    return a


def _targets(y: Any, n: int, n_labels: int, what: str) -> np.ndarray:
    a = np.asarray(y)
    if a.shape != (n, n_labels):
        raise InputError(f"{what}: labels of shape {a.shape}; expected ({n}, {n_labels}), one column "
                         "per label")
    if not np.isin(a, (0, 1)).all():
        raise InputError(f"{what}: labels must be multi-hot 0 / 1")
    return a.astype(np.float32)


def _epochs(n: int, batch_size: int, steps: int) -> tuple[int, int]:
    """(epochs, optimiser steps that run) for `steps` on a set of n images (see the module doc)."""
    per_epoch = max(1, math.ceil(n / batch_size))
    # LabelClassifier.fit skips a last batch of a single image (BatchNorm needs two)
    real_per_epoch = per_epoch - (1 if n % batch_size == 1 and n > 1 else 0)
    epochs = max(1, int(round(steps / per_epoch)))
    return epochs, epochs * real_per_epoch


def roc_curve(scores: np.ndarray, truth: np.ndarray, max_points: int = 200) -> tuple[list[float], list[float]]:
    """(fpr, tpr) from (0, 0) to (1, 1), one point per distinct score (ties move together),
    thinned to at most `max_points` points (the ends kept)."""
    s = np.asarray(scores, np.float64)
    t = np.asarray(truth).astype(bool)
    order = np.argsort(-s, kind="stable")
    s, t = s[order], t[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # the last row of each tie group
    tp, fp = np.cumsum(t)[last], np.cumsum(~t)[last]
    tpr = np.r_[0.0, tp / max(1, t.sum())]
    fpr = np.r_[0.0, fp / max(1, (~t).sum())]
    if fpr.size > max_points:
        keep = np.unique(np.round(np.linspace(0, fpr.size - 1, max_points)).astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return [round(float(v), 6) for v in fpr], [round(float(v), 6) for v in tpr]


# ------------------------------------------------------------------ the four regimes
def _train(stages: list[tuple[np.ndarray, np.ndarray, int, float]], labels: Sequence[str],
           cfg: UtilityConfig, seed: int, device: str) -> tuple[list[LabelClassifier], list[int], int]:
    """`n_seeds` classifiers, each trained through `stages` [(x, y, steps, lr)] in order (a second
    stage continues from the first's weights: fine-tuning)."""
    x0 = stages[0][0]
    clfs, epochs, ran = [], [], 0
    for k in range(cfg.n_seeds):
        clf = LabelClassifier(x0.ndim - 1, x0.shape[1:], labels, channels=cfg.channels,
                              dropout=cfg.dropout, seed=seed + 1000 * k, device=device)
        epochs, ran = [], 0
        for x, y, steps, lr in stages:
            e, r = _epochs(x.shape[0], cfg.batch_size, steps)
            clf.fit(x, y, epochs=e, batch_size=cfg.batch_size, lr=lr, weight_decay=cfg.weight_decay,
                    max_shift=cfg.max_shift, balance=cfg.balance)
            epochs.append(e)
            ran += r
        clfs.append(clf)
    return clfs, epochs, ran


def utility(real_train_x, real_train_y, synthetic_x, synthetic_y, holdout_x, holdout_y,
            labels: Sequence[str], *, config: UtilityConfig | None = None, seed: int = 0,
            train_patients=None, holdout_patients=None, device: str = "cpu") -> UtilityResult:
    """Train the classifier in the four regimes and test each on the real holdout (module doc).

    holdout_patients: one key per holdout image (the bootstrap's unit); None: each image its
    own patient (the record says so). train_patients is only counted in the record.
    """
    cfg = config or UtilityConfig()
    labels = [str(lab) for lab in labels]
    if not labels:
        raise InputError("utility: give at least one label")
    if len(set(labels)) != len(labels):
        raise InputError(f"utility: labels repeat: {labels}")
    xr = _images(real_train_x, "real train")
    xs = _images(synthetic_x, "synthetic")
    xh = _images(holdout_x, "holdout")
    if not xr.shape[1:] == xs.shape[1:] == xh.shape[1:]:
        raise InputError(f"utility: image shapes differ (real train {xr.shape[1:]}, synthetic "
                         f"{xs.shape[1:]}, holdout {xh.shape[1:]}); give images of one shape")
    L = len(labels)
    yr = _targets(real_train_y, xr.shape[0], L, "real train")
    ys = _targets(synthetic_y, xs.shape[0], L, "synthetic")
    yh = _targets(holdout_y, xh.shape[0], L, "holdout")
    groups = patient_groups(holdout_patients, xh.shape[0])
    ft_steps = cfg.finetune_steps or cfg.steps
    ft_lr = cfg.finetune_lr or cfg.lr

    # which labels can be scored at all, and by which regime
    pos_h, neg_h = yh.sum(0), (1 - yh).sum(0)
    holdout_reason = {}
    for j, lab in enumerate(labels):
        if pos_h[j] < cfg.min_holdout_positives:
            holdout_reason[lab] = (f"{int(pos_h[j])} positive holdout image(s); at least "
                                   f"{cfg.min_holdout_positives} needed")
        elif neg_h[j] < 1:
            holdout_reason[lab] = "every holdout image carries it (no negative)"
    train_sets = {"real": yr, "synthetic": ys, "real+synthetic": np.concatenate([yr, ys]),
                  "synthetic->real": yr}  # fine-tuned on real: real positives are what it ends on
    regime_reason: dict[str, dict[str, str]] = {}
    for name, y in train_sets.items():
        rs = dict(holdout_reason)
        for j, lab in enumerate(labels):
            if lab not in rs and y[:, j].sum() == 0:
                rs[lab] = "no positive image in this regime's training set"
        if name == "synthetic->real":
            for j, lab in enumerate(labels):
                if lab not in rs and ys[:, j].sum() == 0:
                    rs[lab] = "no positive image in the synthetic (pretraining) set"
        regime_reason[name] = rs
    macro_labels = [lab for lab in labels if all(lab not in r for r in regime_reason.values())]
    not_evaluable = {}
    for lab in labels:
        if lab in macro_labels:
            continue
        why = holdout_reason.get(lab) or "; ".join(
            f"{name}: {r[lab]}" for name, r in regime_reason.items() if lab in r)
        not_evaluable[lab] = why

    stages = {
        "real": [(xr, yr, cfg.steps, cfg.lr)],
        "synthetic": [(xs, ys, cfg.steps, cfg.lr)],
        "real+synthetic": [(np.concatenate([xr, xs]), np.concatenate([yr, ys]), cfg.steps, cfg.lr)],
        "synthetic->real": [(xs, ys, cfg.steps, cfg.lr), (xr, yr, ft_steps, ft_lr)],
    }
    probs: dict[str, np.ndarray] = {}
    runs: dict[str, tuple[list[int], int, int]] = {}
    for name in REGIMES:
        clfs, epochs, ran = _train(stages[name], labels, cfg, seed, device)
        probs[name] = np.mean([c.predict_proba(xh) for c in clfs], axis=0)
        runs[name] = (epochs, ran, int(sum(s[0].shape[0] for s in stages[name])))

    cols = [labels.index(lab) for lab in macro_labels]

    def aucs(p: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.array([roc_auc_of_labels(p[:, j], y[:, j]) for j in cols])

    # paired bootstrap over holdout patients: all regimes on the same replicate
    rng = np.random.default_rng(seed)
    reps = {name: [] for name in REGIMES}
    skipped = 0
    if cols:
        for _ in range(cfg.n_bootstrap):
            rows = np.concatenate([groups[g] for g in rng.choice(len(groups), len(groups), replace=True)])
            per = {name: aucs(probs[name][rows], yh[rows]) for name in REGIMES}
            if any(np.isnan(v).any() for v in per.values()):
                skipped += 1  # a resample without a positive (or negative) of some label: no macro
                continue
            for name in REGIMES:
                reps[name].append(float(per[name].mean()))
    reps_a = {name: np.asarray(v) for name, v in reps.items()}
    n_used = cfg.n_bootstrap - skipped if cols else 0

    def interval(value: float, replicates: np.ndarray) -> Interval | None:
        if not math.isfinite(value) or replicates.size < 10:
            return None
        lo, hi = np.percentile(replicates, [2.5, 97.5])
        return Interval(value=float(value), mean=float(replicates.mean()),
                        std=float(replicates.std(ddof=1)), low=float(lo), high=float(hi))

    full = {name: aucs(probs[name], yh) for name in REGIMES}
    macro = {name: float(full[name].mean()) if cols else math.nan for name in REGIMES}
    note = None
    if not cols:
        note = "no label can be scored by every regime on this holdout (see not_evaluable)"
    elif n_used < 10:
        note = (f"only {n_used} of {cfg.n_bootstrap} holdout resamples hold every label: "
                "too few for an interval")
    regimes = {}
    for name in REGIMES:
        per_label = {}
        for j, lab in enumerate(labels):
            ok = lab not in regime_reason[name]
            per_label[lab] = round(roc_auc_of_labels(probs[name][:, j], yh[:, j]), 6) if ok else None
        epochs, ran, n_train = runs[name]
        regimes[name] = RegimeResult(name, interval(macro[name], reps_a[name]), per_label,
                                     regime_reason[name], n_train, ran, epochs)
    real_reps = reps_a["real"]
    ratio = None
    if cols and macro["real"] > 0 and real_reps.size and (real_reps > 0).all():
        ratio = interval(macro["synthetic"] / macro["real"], reps_a["synthetic"] / real_reps)
    differences = {f"{name} - real": interval(macro[name] - macro["real"], reps_a[name] - real_reps)
                   if cols else None for name in REGIMES if name != "real"}
    roc = {name: {lab: roc_curve(probs[name][:, labels.index(lab)], yh[:, labels.index(lab)],
                                 cfg.max_roc_points)
                  for lab in labels if lab not in regime_reason[name]} for name in REGIMES}
    settings = {
        "config": cfg.model_dump(mode="json"), "seed": int(seed),
        "classifier_seeds": [seed + 1000 * k for k in range(cfg.n_seeds)],
        "budget": "equal optimiser steps per regime (synthetic->real: pretraining + fine-tuning)",
        "finetune_steps": int(ft_steps), "finetune_lr": float(ft_lr),
        "bootstrap": {"unit": "patient" if holdout_patients is not None else "image (no patient keys given)",
                      "n_asked": int(cfg.n_bootstrap), "n_used": int(n_used),
                      "n_without_every_label": int(skipped), "interval": "percentile 95 %"},
        "n_images": {"real_train": int(xr.shape[0]), "synthetic": int(xs.shape[0]),
                     "holdout": int(xh.shape[0])},
        "n_holdout_patients": len(groups),
        "n_train_patients": (int(np.unique(np.asarray(train_patients)).size)
                             if train_patients is not None else None),
        "holdout_positives": {lab: int(pos_h[j]) for j, lab in enumerate(labels)},
        "synthetic_positives": {lab: int(ys[:, j].sum()) for j, lab in enumerate(labels)},
        "real_train_positives": {lab: int(yr[:, j].sum()) for j, lab in enumerate(labels)},
    }
    return UtilityResult(labels, macro_labels, regimes, ratio, differences, not_evaluable, roc,
                         settings, note)


__all__ = ["UtilityConfig", "UtilityResult", "RegimeResult", "REGIMES", "utility", "roc_curve"]
