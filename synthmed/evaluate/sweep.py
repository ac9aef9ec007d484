"""Sampler sweep: fidelity against the number of sampling steps and the wall time they cost.

`sweep_steps(model, dataset, [10, 20, 50, 1000], n=200)` samples `n` unconditional images at each
step count with the model's own sampler (or `sampler=`), the same seeds at every count (so the
sets differ only by the steps), times each, and reads each set in the feature space of the
audit's encoder (`synthmed.audit.embeddings.ContrastiveEncoder`, trained on the real train split
as the audit trains it, or the `embedder` given: one encoder for audit and evaluation):

- Fréchet distance to the real train images, precision / recall / density / coverage (k-NN in the
  same space) and the intensity W1 (pixels, where too few steps leave noise);
- beside each, the real floor: real holdout images of randomly ordered whole patients, cut at the
  same size, against the train split, since every one of these numbers moves with the set size;
- each setting's own spread: the standard deviation over `n_boot` bootstrap resamples of its set.

All settings are compared at one size, m = the fewest images any setting drew (`n_at` may give
the slowest settings fewer images: 1000 DDPM-like steps cost 50-100x more than 10; the first m
images of every setting start from the same noise). The setting with the most steps is the
reference. A setting **costs** when its Fréchet distance exceeds the reference's by more than two
standard errors of the difference (sqrt(sd^2 + sd_ref^2)), the rule of benchmarks/bench_sampling.py;
`costs_from` is the largest step count that costs (None: none does), i.e. where fewer steps start
to cost. `in_floor` says whether a setting's Fréchet distance lies within the real floor's interval.

`SweepResult.to_json()` (per setting: numbers, wall seconds, the settings `sample` reported) and
`SweepResult.plot(path)` (PNG: Fréchet distance against steps and against wall time, with the
floor band and the reference band).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from synthmed.errors import InputError
from synthmed.evaluate.fidelity import frechet_distance, histogram_w1
from synthmed.evaluate.floor import Floor, Interval, patient_groups
from synthmed.evaluate.prdc import prdc
from synthmed.io.atomic import write_bytes

SWEEP_SCHEMA = "synthmed.sweep/1"
HEADLINE = "frechet"


@dataclass(frozen=True)
class SweepPoint:
    steps: int                       # denoising steps that ran (as `sample` reported them)
    n: int                           # images drawn at this setting
    wall_seconds: float              # sampling them, this process, this machine
    metrics: dict[str, float]        # at the comparison size m
    spread: dict[str, float]         # bootstrap sd of each metric over this set's images
    sampling: dict[str, Any]         # SamplingSettings.as_dict()
    costs: bool | None = None        # worse than the reference by > 2 SE (None: the reference)
    in_floor: bool | None = None     # Fréchet distance within the real floor's interval

    @property
    def seconds_per_image(self) -> float:
        return self.wall_seconds / max(1, self.n)


@dataclass(frozen=True)
class SweepResult:
    points: list[SweepPoint]         # in the order of `steps` asked
    floor: Floor                     # real holdout subsets of size ~m against the train split
    size: int                        # m, the comparison size
    reference_steps: int
    costs_from: int | None           # the largest step count that costs; None: none does
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        def num(v):
            return None if v is None or not math.isfinite(float(v)) else float(v)

        return {
            "schema": SWEEP_SCHEMA, "size": self.size, "reference_steps": self.reference_steps,
            "costs_from": self.costs_from, "headline": HEADLINE,
            "points": [{"steps": p.steps, "n": p.n, "wall_seconds": round(p.wall_seconds, 3),
                        "seconds_per_image": round(p.seconds_per_image, 5),
                        "metrics": {k: num(v) for k, v in p.metrics.items()},
                        "spread": {k: num(v) for k, v in p.spread.items()},
                        "costs": p.costs, "in_floor": p.in_floor, "sampling": p.sampling}
                       for p in self.points],
            "floor": {k: {"value": num(iv.value), "mean": num(iv.mean), "low": num(iv.low),
                          "high": num(iv.high)} for k, iv in self.floor.metrics.items()},
            "floor_size": self.floor.size, "floor_n_boot": self.floor.n_boot,
            "settings": self.settings,
        }

    def summary(self) -> str:
        lines = [f"{p.steps:>5} steps: Fréchet {p.metrics[HEADLINE]:.3f} ± {p.spread[HEADLINE]:.3f}, "
                 f"{p.seconds_per_image:.3f} s/image" + (" (costs)" if p.costs else "")
                 for p in self.points]
        fl = self.floor[HEADLINE]
        lines.append(f"real floor at n = {self.floor.size}: {fl.mean:.3f} [{fl.low:.3f}, {fl.high:.3f}]")
        lines.append("fewer steps start to cost at " + (f"{self.costs_from} steps" if self.costs_from
                                                        else "none of the settings"))
        return "\n".join(lines)

    def plot(self, path: str | Path) -> Path:
        """A PNG: the headline distance against steps and against seconds per image."""
        import io

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        pts = sorted(self.points, key=lambda p: p.steps)
        fl = self.floor[HEADLINE]
        ref = next(p for p in pts if p.steps == self.reference_steps)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, xs, xlabel in ((axes[0], [p.steps for p in pts], "sampling steps"),
                               (axes[1], [p.seconds_per_image for p in pts], "wall seconds per image")):
            ys = [p.metrics[HEADLINE] for p in pts]
            es = [1.96 * p.spread[HEADLINE] for p in pts]
            ax.axhspan(fl.low, fl.high, color="#1b7f3b", alpha=0.15,
                       label=f"real floor (holdout vs train, n = {self.floor.size})")
            r_lo = ref.metrics[HEADLINE] - 1.96 * ref.spread[HEADLINE]
            r_hi = ref.metrics[HEADLINE] + 1.96 * ref.spread[HEADLINE]
            ax.axhspan(r_lo, r_hi, color="#1f77b4", alpha=0.12, label=f"{ref.steps} steps ± 1.96 sd")
            ax.errorbar(xs, ys, yerr=es, fmt="-o", color="#333", capsize=3, lw=1.2)
            for p, x, y in zip(pts, xs, ys):
                if p.costs:
                    ax.plot([x], [y], "o", color="#b3261e", ms=9, zorder=5)
                ax.annotate(str(p.steps), (x, y), textcoords="offset points", xytext=(4, 6), fontsize=8)
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded labels
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"Fréchet distance to real train (features, n = {self.size})")
        axes[0].set_title("fidelity against steps (red: costs vs the reference)", fontsize=9)
        axes[1].set_title("fidelity against wall time", fontsize=9)
        axes[0].legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
        plt.close(fig)
        path = Path(path)
        write_bytes(path, buf.getvalue())
        return path


def _metrics(embed_train: np.ndarray, x_train: np.ndarray, k: int) -> Callable:
    """(reference features, candidate images) -> the sweep's numbers; candidate features are
    computed by the caller and passed as (features, images)."""
    def metric(_ref, cand) -> dict[str, float]:
        feats, imgs = cand
        p = prdc(embed_train, feats, k=k)
        return {"frechet": frechet_distance(embed_train, feats), "precision": p.precision,
                "recall": p.recall, "density": p.density, "coverage": p.coverage,
                "intensity_w1": histogram_w1(x_train, imgs)}
    return metric


def _floor_at(metric: Callable[[np.ndarray], dict], patients: np.ndarray, m: int, n_boot: int,
              seed: int, n_reference: int) -> Floor:
    """The real floor at exactly m images: holdout patients in a random order, their images taken
    until m are reached (the last patient cut), against the train split. `floor.real_floor`
    subsamples whole patients, so its sets vary in size, and at the few images a slow setting
    affords a set could fall below PRDC's k + 1 points. Interval: mean +- 1.96 sd / sqrt(1 - f),
    f = m / holdout images, the finite-population correction `real_floor` uses too."""
    groups = patient_groups(patients, len(patients))
    if m >= len(patients):
        raise InputError(f"sweep: {m} images to compare, but the holdout has only {len(patients)}")
    rng = np.random.default_rng(seed)
    full = metric(np.arange(len(patients)))
    reps: dict[str, list[float]] = {k: [] for k in full}
    for _ in range(n_boot):
        rows = np.concatenate([groups[g] for g in rng.permutation(len(groups))])[:m]
        for k, v in metric(rows).items():
            reps[k].append(v)
    f = m / len(patients)
    metrics = {}
    for k, v in full.items():
        a = np.asarray(reps[k])
        sd = float(a.std(ddof=1))
        half = 1.96 * sd / math.sqrt(1.0 - f)
        metrics[k] = Interval(value=float(v), mean=float(a.mean()), std=sd,
                              low=float(a.mean()) - half, high=float(a.mean()) + half)
    return Floor(metrics=metrics, n_boot=int(n_boot), replace=False, fraction=float(f), size=int(m),
                 n_reference=int(n_reference), n_candidate=len(patients), n_patients=len(groups), seed=int(seed))


def _as_embed(embedder) -> Callable[[np.ndarray], np.ndarray]:
    if embedder is None:
        return None
    if hasattr(embedder, "embed"):
        return embedder.embed
    if callable(embedder):
        return embedder
    raise InputError("embedder: give an object with .embed(images) or a callable")


def sweep_steps(model, dataset, steps: Sequence[int], *, n: int, seed: int = 0, embedder=None,
                sampler: str | None = None, batch_size: int = 64, n_at: dict[int, int] | None = None,
                n_boot: int = 20, k: int = 5, encoder_steps: int = 300) -> SweepResult:
    """Sample `n` unconditional images at each step count and read their fidelity (module doc).

    model: a loaded pipeline (`synthmed.load` / `synthmed.generate.pipeline.load`);
    dataset: a `Dataset` or its folder (the one the model was trained on; train and holdout used);
    n_at: fewer images at some step counts ({1000: 32}); embedder: `.embed` object or callable,
    None = the audit's contrastive encoder trained here on the train split (`encoder_steps`).
    """
    from synthmed.data.dataset import Dataset

    if not isinstance(dataset, Dataset):
        dataset = Dataset.open(dataset)
    asked = [int(s) for s in steps]
    if not asked:
        raise InputError("sweep: give at least one step count")
    if len(set(asked)) != len(asked):
        raise InputError(f"sweep: step counts repeat: {asked}")
    if tuple(model.shape) != tuple(dataset.shape):
        raise InputError(f"the model makes images of shape {tuple(model.shape)} but the dataset "
                         f"holds {tuple(dataset.shape)}; sweep against the dataset it was trained on")
    sizes = {s: int((n_at or {}).get(s, n)) for s in asked}
    m = min(sizes.values())
    if m < k + 2:
        raise InputError(f"sweep: {m} images at the smallest setting; give at least {k + 2} "
                         f"(k-NN with k = {k})")
    tr, ho = dataset.require_split("train"), dataset.require_split("holdout")
    x_tr = np.asarray(dataset.images[tr], np.float32)
    x_ho = np.asarray(dataset.images[ho], np.float32)
    pat_ho = np.asarray(dataset.patient_ids[ho])
    embed = _as_embed(embedder)
    encoder_record: dict[str, Any] = {"source": "given"}
    if embed is None:
        from synthmed.audit.embeddings import ContrastiveEncoder

        enc = ContrastiveEncoder(dataset.spatial_dims, tuple(dataset.shape), seed=seed)
        enc.fit(x_tr, steps=encoder_steps)
        embed = enc.embed
        encoder_record = {"source": "trained on the train split", **enc.history}
    f_tr = np.asarray(embed(x_tr), np.float64)
    f_ho = np.asarray(embed(x_ho), np.float64)
    metric = _metrics(f_tr, x_tr, k)
    floor = _floor_at(lambda rows: metric(None, (f_ho[rows], x_ho[rows])), pat_ho, m, n_boot, seed, x_tr.shape[0])

    points = []
    rng = np.random.default_rng(seed)
    for s in asked:
        t0 = time.perf_counter()
        out = model.sample(sizes[s], conditions=None, steps=s, sampler=sampler, seed=seed,
                           batch_size=batch_size)
        wall = time.perf_counter() - t0
        imgs = np.asarray(out.images, np.float32)[:m]
        feats = np.asarray(embed(imgs), np.float64)
        vals = metric(None, (feats, imgs))
        boots = {key: [] for key in vals}
        for _ in range(n_boot):
            rows = rng.integers(0, m, m)
            for key, v in metric(None, (feats[rows], imgs[rows])).items():
                boots[key].append(v)
        spread = {key: float(np.std(v, ddof=1)) for key, v in boots.items()}
        points.append(SweepPoint(out.settings.steps, sizes[s], wall, vals, spread,
                                 out.settings.as_dict()))
    ref = max(points, key=lambda p: p.steps)
    fl = floor[HEADLINE]
    marked, costly = [], []
    for p in points:
        in_floor = bool(p.metrics[HEADLINE] <= fl.high)
        if p is ref:
            marked.append(SweepPoint(**{**p.__dict__, "costs": None, "in_floor": in_floor}))
            continue
        se = math.hypot(p.spread[HEADLINE], ref.spread[HEADLINE])
        costs = bool(p.metrics[HEADLINE] > ref.metrics[HEADLINE] + 2 * se)
        if costs:
            costly.append(p.steps)
        marked.append(SweepPoint(**{**p.__dict__, "costs": costs, "in_floor": in_floor}))
    import torch

    settings = {"n": int(n), "n_at": {str(s): sizes[s] for s in asked}, "seed": int(seed),
                "sampler": sampler or model.config.sampling.sampler, "batch_size": int(batch_size),
                "conditions": "none (unconditional)", "n_boot": int(n_boot), "k": int(k),
                "encoder": encoder_record, "torch_threads": torch.get_num_threads(),
                "model_hash": getattr(model, "model_hash", None),
                "costs_rule": "Fréchet > reference + 2 sqrt(sd^2 + sd_ref^2), sd over bootstrap resamples",
                "floor": f"{m} holdout images of whole patients in random order (the last cut) against "
                         "the train split, {n_boot} draws"}
    return SweepResult(marked, floor, m, ref.steps, max(costly) if costly else None, settings)


__all__ = ["SweepPoint", "SweepResult", "sweep_steps"]
