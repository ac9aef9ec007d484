"""Do conditional samples carry the label they were conditioned on?

A classifier trained on real images (`LabelClassifier`) reads each sample. For a label L it
"assigns" L when its probability exceeds a threshold t_L set on REAL labelled images so that it
flags exactly the base-rate share of them: t_L is the (1 - base_rate) quantile of p_L over the
real calibration images. With that threshold:

- chance: a sample that carries no information about L is flagged at rate ~base_rate;
- ceiling: a real image that truly has L is flagged at rate recall_L (the classifier's own limit);
- the generator's rate: the share of samples conditioned on L that are flagged, with an exact
  (Clopper-Pearson) binomial confidence interval;
- the generator's own chance: the share of samples conditioned on NOT-L (e.g. no finding) that
  are flagged, and a one-sided Fisher exact test of the difference. This is the stricter
  comparison: a generator whose images all drift towards a finding beats the base rate without
  following the condition.

A threshold-free view is reported too: the AUC between the classifier's p_L on samples
conditioned on L and on samples conditioned on its absence, next to the same AUC on real images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest, fisher_exact

from synthmed.evaluate.classifier import LabelClassifier, roc_auc


def binomial_ci(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact Clopper-Pearson interval for k successes in n trials (scipy's binomtest)."""
    if n == 0:
        return (0.0, 1.0)
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=1 - alpha, method="exact")
    return (float(ci.low), float(ci.high))


def contrast_test(k: int, n: int, k_contrast: int, n_contrast: int) -> float:
    """One-sided Fisher exact p-value that the conditioned flag rate k/n exceeds k_contrast/n_contrast.

    The fair chance level for a generator is its own rate on samples conditioned on the label's
    absence: a generator whose every image looks a little like the finding clears the base rate
    without carrying the condition.
    """
    table = [[k, n - k], [k_contrast, n_contrast - k_contrast]]
    return float(fisher_exact(table, alternative="greater").pvalue)


@dataclass
class LabelRate:
    label: str
    threshold: float
    base_rate: float          # share of real calibration images that have the label
    chance_rate: float        # share of ALL real calibration images the threshold flags (~base_rate)
    real_positive_rate: float  # ceiling: share of real positives flagged (recall)
    real_positive_ci: tuple[float, float]
    n_real_positive: int
    flagged: int              # conditioned samples flagged
    n: int                    # conditioned samples
    rate: float
    rate_ci: tuple[float, float]
    contrast_rate: float | None  # share of samples conditioned on NOT-L that are flagged
    contrast_ci: tuple[float, float] | None
    n_contrast: int
    sample_auc: float | None  # p_L: conditioned-on-L samples vs contrast samples
    real_auc: float           # p_L: real positives vs real negatives
    above_chance: bool        # lower CI bound of `rate` above `chance_rate`
    contrast_p_value: float | None = None  # one-sided Fisher exact: rate > contrast_rate

    def as_dict(self) -> dict:
        return asdict(self)


def calibrate_threshold(scores: np.ndarray, base_rate: float) -> float:
    """Threshold flagging the top `base_rate` share of `scores` (the (1 - base_rate) quantile)."""
    return float(np.quantile(np.asarray(scores, np.float64), 1.0 - base_rate))


def label_rate(classifier: LabelClassifier, label: str, samples: np.ndarray, *,
               real_images: np.ndarray, real_targets: np.ndarray,
               contrast_samples: np.ndarray | None = None, base_rate: float | None = None,
               alpha: float = 0.05) -> LabelRate:
    """Rate at which the classifier assigns `label` to `samples` conditioned on it, vs chance.

    `real_images` / `real_targets` (N, L over `classifier.labels`) calibrate the threshold; use
    held-out real images, not the classifier's own training set. `base_rate` defaults to the
    label's share in `real_targets`.
    """
    j = classifier.labels.index(label)
    truth = np.asarray(real_targets)[:, j].astype(bool)
    p_real = classifier.predict_proba(real_images)[:, j]
    base = float(truth.mean()) if base_rate is None else float(base_rate)
    t = calibrate_threshold(p_real, base)
    pos_flag = int((p_real[truth] > t).sum())
    p_s = classifier.predict_proba(samples)[:, j]
    k = int((p_s > t).sum())
    lo, hi = binomial_ci(k, p_s.size, alpha)
    chance = float((p_real > t).mean())
    contrast_rate = contrast_ci = sample_auc = p_fisher = None
    n_c = 0
    if contrast_samples is not None and len(contrast_samples):
        p_c = classifier.predict_proba(contrast_samples)[:, j]
        n_c = int(p_c.size)
        contrast_rate = float((p_c > t).mean())
        contrast_ci = binomial_ci(int((p_c > t).sum()), n_c, alpha)
        sample_auc = roc_auc(np.concatenate([p_s, p_c]),
                             np.concatenate([np.ones(p_s.size), np.zeros(p_c.size)]))
        p_fisher = contrast_test(k, int(p_s.size), int((p_c > t).sum()), n_c)
    return LabelRate(
        label=label, threshold=t, base_rate=base, chance_rate=chance,
        real_positive_rate=pos_flag / max(int(truth.sum()), 1),
        real_positive_ci=binomial_ci(pos_flag, int(truth.sum()), alpha),
        n_real_positive=int(truth.sum()), flagged=k, n=int(p_s.size),
        rate=k / max(p_s.size, 1), rate_ci=(lo, hi), contrast_rate=contrast_rate,
        contrast_ci=contrast_ci, n_contrast=n_c, sample_auc=sample_auc,
        real_auc=roc_auc(p_real, truth), above_chance=bool(lo > chance),
        contrast_p_value=p_fisher,
    )
