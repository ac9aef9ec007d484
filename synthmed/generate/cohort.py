"""`generate_cohort`: population targets -> per-sample conditions -> images -> a Cohort folder.

Conditions are drawn from `np.random.default_rng(seed)`, and sample i's noise from (seed, i), so
the same model + arguments + seed give the same cohort, file for file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.data.cohort import write_cohort
from synthmed.data.records import CohortRecord
from synthmed.errors import InputError
from synthmed.provenance import provenance
from synthmed.progress import make_progress


def draw_conditions(n: int, vocabulary: list[str], priors: dict[str, Any], *,
                    label_rates: dict[str, float] | None = None,
                    age_range: tuple[float, float] | None = None,
                    sex_ratio: float | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """One condition dict per sample. Unset targets fall back to the training population's
    summaries recorded in the model (label rates, age mean/sd within its 5-95 % range, female share).
    `sex_ratio` is the share of females (0..1)."""
    rng = np.random.default_rng([seed, 3])
    rates = dict(priors.get("label_rates") or {})
    if label_rates is not None:
        unknown = sorted(set(label_rates) - set(vocabulary))
        if unknown:
            raise InputError(f"label_rates: unknown label(s) {unknown}; the model knows "
                             f"{', '.join(vocabulary) or 'no labels'}")
        bad = {k: v for k, v in label_rates.items() if not 0.0 <= float(v) <= 1.0}
        if bad:
            raise InputError(f"label_rates: rates must be between 0 and 1 (got {bad})")
        # Labels not named get rate 0: the user described the cohort they want.
        rates = {name: float(label_rates.get(name, 0.0)) for name in vocabulary}
    if age_range is not None:
        lo, hi = float(age_range[0]), float(age_range[1])
        if not (0 <= lo <= hi <= 130):
            raise InputError(f"age_range: {age_range} is not a range of ages in years (0-130)")
    if sex_ratio is not None and not 0.0 <= float(sex_ratio) <= 1.0:
        raise InputError(f"sex_ratio: {sex_ratio} must be the share of females, between 0 and 1")
    female = sex_ratio if sex_ratio is not None else priors.get("female_share")
    age_prior = priors.get("age")
    label_draws = rng.random((n, len(vocabulary)))
    age_draws = rng.random(n)
    age_normal = rng.standard_normal(n)
    sex_draws = rng.random(n)
    out = []
    for i in range(n):
        c: dict[str, Any] = {"labels": [name for j, name in enumerate(vocabulary)
                                        if label_draws[i, j] < rates.get(name, 0.0)]}
        if age_range is not None:
            c["age"] = round(lo + (hi - lo) * float(age_draws[i]), 1)
        elif age_prior:
            a = age_prior["mean"] + age_prior["std"] * float(age_normal[i])
            c["age"] = round(min(max(a, age_prior["q05"]), age_prior["q95"]), 1)
        if female is not None:
            c["sex"] = "F" if sex_draws[i] < float(female) else "M"
        out.append(c)
    return out


def generate_cohort(model, n: int, out: str | Path, *, label_rates: dict[str, float] | None = None,
                    age_range: tuple[float, float] | None = None, sex_ratio: float | None = None,
                    seed: int = 0, steps: int | None = None, sampler: str | None = None,
                    guidance_scale: float | None = None, batch_size: int = 64,
                    overwrite: bool = False) -> Path:
    """Sample `n` virtual patients matching the targets and write them as a Cohort folder.
    sampler / steps / guidance_scale: None means the model's own; cohort.json's `sampling` says
    what ran."""
    if n < 1:
        raise InputError(f"n must be at least 1 (got {n})")
    from synthmed.io.folders import prepare_output

    prepare_output(Path(out), "cohort", overwrite)  # before sampling, not after
    conds = draw_conditions(n, model.label_vocabulary, model.condition_priors,
                            label_rates=label_rates, age_range=age_range, sex_ratio=sex_ratio,
                            seed=seed)
    with make_progress() as progress:
        task = progress.add_task("sample", total=n)
        sampled = model.sample(n, conditions=conds, steps=steps, sampler=sampler,
                               guidance_scale=guidance_scale, seed=seed, batch_size=batch_size,
                               on_batch=lambda k: progress.advance(task, k))
    records = [CohortRecord(index=i, patient=f"SYN-{i:06d}", labels=tuple(c["labels"]),
                            age=float(c.get("age", math.nan)), sex=c.get("sex", ""))
               for i, c in enumerate(conds)]
    request = {"n": n, "label_rates": label_rates, "age_range": list(age_range) if age_range else None,
               "sex_ratio": sex_ratio, "steps": steps, "sampler": sampler,
               "guidance_scale": guidance_scale}
    info = {
        "label_vocabulary": model.label_vocabulary,
        "model_sha256": model.model_hash,
        # what the model was trained on, so an audit against another dataset can say so
        "dataset_fingerprint": str(model.info.get("dataset_fingerprint", "")),
        "generation": request,
        # What was actually used, as `sample` reports it: guidance in particular changes how
        # strongly a finding shows, so a reader of the cohort must not have to dig for defaults.
        "sampling": sampled.settings.as_dict(),
        "provenance": provenance(request, seed=seed, model_sha256=model.model_hash,
                                 model_config=model.config.model_dump(mode="json")),
    }
    return write_cohort(Path(out), sampled.images, records, info, overwrite)
