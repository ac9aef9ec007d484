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
from scipy.stats import fisher_exact

from synthmed.evaluate.classifier import LabelClassifier
from synthmed.stats import clopper_pearson, roc_auc, roc_auc_of_labels


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
    lo, hi = clopper_pearson(k, p_s.size, alpha)
    chance = float((p_real > t).mean())
    contrast_rate = contrast_ci = sample_auc = p_fisher = None
    n_c = 0
    if contrast_samples is not None and len(contrast_samples):
        p_c = classifier.predict_proba(contrast_samples)[:, j]
        n_c = int(p_c.size)
        contrast_rate = float((p_c > t).mean())
        contrast_ci = clopper_pearson(int((p_c > t).sum()), n_c, alpha)
        sample_auc = roc_auc(p_s, p_c)
        p_fisher = contrast_test(k, int(p_s.size), int((p_c > t).sum()), n_c)
    return LabelRate(
        label=label, threshold=t, base_rate=base, chance_rate=chance,
        real_positive_rate=pos_flag / max(int(truth.sum()), 1),
        real_positive_ci=clopper_pearson(pos_flag, int(truth.sum()), alpha),
        n_real_positive=int(truth.sum()), flagged=k, n=int(p_s.size),
        rate=k / max(p_s.size, 1), rate_ci=(lo, hi), contrast_rate=contrast_rate,
        contrast_ci=contrast_ci, n_contrast=n_c, sample_auc=sample_auc,
        real_auc=roc_auc_of_labels(p_real, truth), above_chance=bool(lo > chance),
        contrast_p_value=p_fisher,
    )


# ---------------------------------------------------------------------------------------------
# Which of K findings does the classifier assign to each sample?
#
# The per-label rate above asks one yes/no question per label and so needs a threshold, whose
# base-rate calibration is noisy on a small holdout. The assignment test asks the question the
# cohort user cares about: given samples conditioned on K different findings, does the classifier
# name the finding each one was conditioned on? Each label's probability is first put on a common
# scale (its rank among REAL calibration images: a multi-label classifier's raw probabilities are
# not comparable across labels: they follow each label's prevalence and loss weight), then the
# highest-ranked label is the one assigned.
#
# Chance is exact, not assumed: if samples carried no information about their condition, every
# relabelling of which condition made which sample would be equally likely, so chance accuracy is
# the mean over relabellings, sum_k (n_k / N) (a_k / N) for n_k samples conditioned on k and a_k
# assigned to k (1/K with balanced conditions, whatever the classifier's bias), and the p-value is
# a permutation test of the same relabelling.


@dataclass
class AssignmentResult:
    labels: list[str]
    confusion: list[list[int]]   # rows: conditioned on, columns: assigned
    n: int
    correct: int
    accuracy: float
    accuracy_ci: tuple[float, float]
    chance: float
    p_value: float               # permutation test, one-sided (accuracy above chance)
    n_permutations: int
    per_label_recall: dict[str, float]
    # The same assignment on real images that carry exactly one of the labels: what the
    # instrument can do at best (its own ceiling), with its own chance.
    real_n: int
    real_accuracy: float | None
    real_accuracy_ci: tuple[float, float] | None
    real_chance: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def _rank_scale(p: np.ndarray, p_ref: np.ndarray) -> np.ndarray:
    """Each column of p as the share of the reference column below it (mid-rank for ties)."""
    out = np.empty_like(p, dtype=np.float64)
    for j in range(p.shape[1]):
        ref = np.sort(p_ref[:, j])
        lo = np.searchsorted(ref, p[:, j], side="left")
        hi = np.searchsorted(ref, p[:, j], side="right")
        out[:, j] = (lo + hi) / (2.0 * ref.size)
    return out


def _chance_accuracy(cond: np.ndarray, assigned: np.ndarray, k: int) -> float:
    n_k = np.bincount(cond, minlength=k) / cond.size
    a_k = np.bincount(assigned, minlength=k) / cond.size
    return float((n_k * a_k).sum())


NO_FINDING = "no finding"


def assignment_test(classifier: LabelClassifier, samples: dict[str, np.ndarray], *,
                    real_images: np.ndarray, real_targets: np.ndarray,
                    n_permutations: int = 10000, seed: int = 0,
                    alpha: float = 0.05) -> AssignmentResult:
    """Share of samples whose top-ranked label (among the K keys of `samples`) is their condition.

    `samples` maps each label (one of `classifier.labels`) to the images conditioned on it; the
    key "no finding" (`NO_FINDING`) may hold images conditioned on no label, scored by how far
    below real images their highest label probability is. `real_images` / `real_targets` (columns
    over `classifier.labels`) rank-scale the probabilities and give the real-image ceiling; use
    held-out images.
    """
    labels = list(samples)
    if len(labels) < 2:
        raise ValueError("the assignment test needs samples for at least two labels")
    unknown = [lab for lab in labels if lab not in classifier.labels and lab != NO_FINDING]
    if unknown:
        raise ValueError(f"labels {unknown} are not outputs of the classifier ({classifier.labels})")
    k = len(labels)

    def columns(p_all: np.ndarray) -> np.ndarray:
        # "No finding" is the absence of every label the classifier knows, not only the K here.
        return np.stack([-p_all.max(1) if lab == NO_FINDING else p_all[:, classifier.labels.index(lab)]
                         for lab in labels], axis=1)

    p_ref = columns(classifier.predict_proba(real_images))

    def assign(images: np.ndarray) -> np.ndarray:
        return _rank_scale(columns(classifier.predict_proba(images)), p_ref).argmax(1)

    cond = np.concatenate([np.full(len(samples[lab]), i) for i, lab in enumerate(labels)])
    assigned = np.concatenate([assign(samples[lab]) for lab in labels])
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (cond, assigned), 1)
    correct = int(np.trace(confusion))
    n = int(cond.size)
    rng = np.random.default_rng(seed)
    hits = sum(int((rng.permutation(cond) == assigned).sum() >= correct) for _ in range(n_permutations))

    all_truth = np.asarray(real_targets).astype(bool)
    truth = np.stack([~all_truth.any(1) if lab == NO_FINDING
                      else all_truth[:, classifier.labels.index(lab)] for lab in labels], axis=1)
    single = truth.sum(1) == 1
    real_n = int(single.sum())
    real_acc = real_ci = real_chance = None
    if real_n:
        r_cond = truth[single].argmax(1)
        r_assigned = _rank_scale(p_ref[single], p_ref).argmax(1)
        r_correct = int((r_cond == r_assigned).sum())
        real_acc = r_correct / real_n
        real_ci = clopper_pearson(r_correct, real_n, alpha)
        real_chance = _chance_accuracy(r_cond, r_assigned, k)
    return AssignmentResult(
        labels=labels, confusion=confusion.tolist(), n=n, correct=correct,
        accuracy=correct / n, accuracy_ci=clopper_pearson(correct, n, alpha),
        chance=_chance_accuracy(cond, assigned, k),
        p_value=(1 + hits) / (1 + n_permutations), n_permutations=n_permutations,
        per_label_recall={lab: float(confusion[i, i] / max(confusion[i].sum(), 1))
                          for i, lab in enumerate(labels)},
        real_n=real_n, real_accuracy=real_acc, real_accuracy_ci=real_ci, real_chance=real_chance,
    )
