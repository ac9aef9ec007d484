"""Canary audit: plant marked training images a known number of times, then see who finds them.

An audit that passes a model is only worth something if the same attacks would have caught a
leak. Canaries show that (Carlini et al. 2019; Jagielski et al. 2020): K images of holdout
patients are added to the training set, a share of them 1, 10 and 100 times (duplicates are how
real datasets over-represent a patient: follow-ups, repeated series), the model is trained, and
each attack is asked to tell the canaries from control images of other holdout patients that were
never trained on. Detection is reported per number of duplicates as TPR at 1 % FPR (controls as
the negatives) and AUC, for the white-box attacks (the model in hand) and the synthetic-only ones
(pixel space, on images sampled from the canary model).

Everything is by patient: a canary is one patient's image (the rest of that patient's images are
left out of the canary dataset, so no near-copy of a canary sits among the controls), a control is
one image of another holdout patient. With few controls a 1 % FPR cannot be estimated (`estimable`
in the record, as in the audit); the TPR is then at the strictest threshold the controls allow.

    synthmed canaries --dataset D --config C --out O --canaries 30 [--duplicates 1,10,100]
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from synthmed.errors import InputError, arg

DEFAULT_DUPLICATES = (1, 10, 100)
CANARY_SCHEMA = "synthmed.canaries/1"


@dataclass(frozen=True)
class CanaryPlan:
    """Where the canaries are in the canary dataset (row indices) and how often each was planted."""

    dataset: Path
    canary_rows: np.ndarray       # first copy of each canary, in the canary dataset
    duplicates: np.ndarray        # copies of each canary in its train split
    control_rows: np.ndarray      # one image per control patient (holdout, never trained on)
    reference_rows: np.ndarray


def _canary_id(seed: int, j: int) -> str:
    return "CANARY-" + hashlib.sha256(f"synthmed-canary:{seed}:{j}".encode()).hexdigest()[:12]


def plant_canaries(dataset: Path, out: Path, k: int, duplicates: Sequence[int] = DEFAULT_DUPLICATES,
                   seed: int = 0) -> CanaryPlan:
    """Write the canary dataset to `out`: the train split plus K canaries (images of K holdout
    patients, canary j planted duplicates[j % len(duplicates)] times, as a patient of its own),
    the remaining holdout patients as controls, the reference split as it is."""
    from synthmed.data.dataset import DATASET_SCHEMA, Dataset, dataset_fingerprint
    from synthmed.data.records import write_records
    from synthmed.io import folders
    from synthmed.io.atomic import save_npy, write_json
    from synthmed.provenance import sha256_file

    ds = Dataset.open(dataset)
    if k < len(duplicates):
        raise InputError(f"{arg('k', k)}: need at least one canary per duplicate count "
                         f"({len(duplicates)}: {', '.join(map(str, duplicates))})")
    holdout = ds.patients("holdout")
    if len(holdout) < 2 * k:
        raise InputError(f"{ds.root}: {len(holdout)} holdout patients, but {k} canaries need as "
                         f"many control patients again ({2 * k}); use fewer canaries ({arg('k')})")
    rng = np.random.default_rng([seed, 31])
    order = rng.permutation(sorted(holdout))
    canary_patients, control_patients = list(order[:k]), set(order[k:].tolist())
    pid = ds.patient_ids
    rows_of = {p: np.nonzero(pid == p)[0] for p in canary_patients}
    recs, src = [], []

    def add(i: int, **change) -> int:
        r = ds.records[i]
        recs.append(replace(r, index=len(recs), **change))
        src.append(i)
        return len(recs) - 1

    for i in ds.indices("train"):
        add(int(i))
    canary_rows, dup = [], []
    for j, p in enumerate(canary_patients):
        i = int(rng.choice(rows_of[p]))
        d = int(duplicates[j % len(duplicates)])
        first = [add(i, patient=_canary_id(seed, j), split="train", study=f"S-canary-{j}-{c}",
                     series=f"R-canary-{j}-{c}") for c in range(d)][0]
        canary_rows.append(first)
        dup.append(d)
    control_rows, seen = [], set()
    for i in ds.indices("holdout"):
        p = str(pid[i])
        if p in control_patients:
            row = add(int(i))
            if p not in seen:  # one image per control patient is scored
                control_rows.append(row)
                seen.add(p)
    reference_rows = [add(int(i)) for i in ds.indices("reference")]
    out.mkdir(parents=True, exist_ok=True)
    save_npy(out / "images.npy", np.asarray(ds.images)[np.asarray(src)])
    write_records(out / "manifest.csv", recs, type(ds.records[0]))
    splits = {s: {"patients": len({r.patient for r in recs if r.split == s}),
                  "images": sum(r.split == s for r in recs)} for s in ("train", "holdout", "reference")}
    info = {**ds.info, "schema": DATASET_SCHEMA, "splits": splits,
            "fingerprint": dataset_fingerprint(sha256_file(out / "images.npy"), sha256_file(out / "manifest.csv")),
            "canaries": {"k": k, "duplicates": list(map(int, duplicates)), "seed": seed,
                         "source_fingerprint": ds.fingerprint()}}
    write_json(out / "dataset.json", info)
    if (ds.root / "ingest_report.json").is_file():
        shutil.copy(ds.root / "ingest_report.json", out / "ingest_report.json")
    folders.stamp(out, "dataset")
    return CanaryPlan(out, np.asarray(canary_rows), np.asarray(dup), np.asarray(control_rows),
                      np.asarray(reference_rows))


def _detection(member: np.ndarray, control: np.ndarray, fpr: float) -> dict[str, Any]:
    from synthmed.audit.stats import roc_auc, tpr_at_fpr

    r = tpr_at_fpr(member, control, fpr)
    return {"n_canaries": int(member.size), "auc": roc_auc(member, control), "tpr": r.tpr,
            "tpr_ci": list(r.tpr_ci), "fpr_achieved": r.fpr_achieved, "estimable": r.estimable,
            "note": r.note}


def canary_scores(run: Path, plan: CanaryPlan, *, whitebox=None, seed: int = 0,
                  n_synthetic: int | None = None) -> dict[str, np.ndarray]:
    """{attack: scores of [canaries..., controls...]} for the white-box attacks and the
    synthetic-only attacks in pixel space (on images sampled from the run)."""
    from synthmed.audit.attacks import VectorAttack, get_attack
    from synthmed.audit.embeddings import PixelEmbedder
    from synthmed.audit.whitebox import WhiteboxSettings, score_images
    from synthmed.data.dataset import Dataset
    from synthmed.models import load

    ds = Dataset.open(plan.dataset)
    imgs = np.asarray(ds.images)
    cand = np.concatenate([plan.canary_rows, plan.control_rows])
    ref = plan.reference_rows
    model = load(run)
    labels, ages, sexes = ds.label_matrix(), ds.ages(), ds.sexes()
    out = score_images(model, imgs[cand], whitebox or WhiteboxSettings(), seed=seed,
                       labels=labels[cand], ages=ages[cand], sexes=sexes[cand], reference=imgs[ref],
                       reference_conditions=(labels[ref], ages[ref], sexes[ref]))
    n_syn = n_synthetic or min(1000, max(64, 2 * len(ds.indices("train"))))
    synthetic = model.sample(n_syn, seed=seed).images
    pe = PixelEmbedder()
    c, s, r = pe.embed(imgs[cand]), pe.embed(synthetic), pe.embed(imgs[ref])
    for name in ("dcr", "domias", "mc_neighbourhood"):
        cls = get_attack(name)
        assert issubclass(cls, VectorAttack)
        settings, _ = cls.settings(len(ref), n_syn)
        if settings is not None:
            out[f"{name}/pixel"] = np.asarray(cls.vector_scores(c, s, r, seed, **settings), dtype=np.float64)
    return out


def measure(scores: dict[str, np.ndarray], plan: CanaryPlan, fpr: float = 0.01) -> dict[str, Any]:
    """Per attack and duplicate count: TPR at `fpr` against the controls, and AUC."""
    k = plan.canary_rows.size
    result = {}
    for name, v in scores.items():
        canary, control = v[:k], v[k:]
        result[name] = {str(d): _detection(canary[plan.duplicates == d], control, fpr)
                        for d in sorted(set(plan.duplicates.tolist()))}
    return result


def detection_figure(detection: dict[str, Any], path: Path, fpr: float) -> None:
    """Detection (TPR at `fpr`) against the number of duplicates, one line per attack (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, per in detection.items():
        ds = sorted(per, key=int)
        ax.plot([int(d) for d in ds], [per[d]["tpr"] for d in ds], marker="o", label=name,
                ls="-" if "/" not in name else "--")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("copies of the canary in the training set")
    ax.set_ylabel(f"canaries found at {100 * fpr:g} % false alarms")
    ax.set_title("Canary detection (solid: white-box, dashed: synthetic images only)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    from synthmed.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)


def run_canary_audit(dataset: Path, config, out: Path, k: int, *,
                     duplicates: Sequence[int] = DEFAULT_DUPLICATES, seed: int = 0, whitebox=None,
                     fpr: float = 0.01, overwrite: bool = False) -> dict[str, Any]:
    """Plant K canaries into `dataset`'s train split, train `config` on it (out/run), attack,
    write out/canaries.json, out/canaries.md and out/canaries.png; return the record."""
    from synthmed.io.atomic import write_json, write_text
    from synthmed.models import train
    from synthmed.provenance import provenance

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: already exists and is not empty; choose another {arg('out')} or "
                         f"pass {arg('overwrite', True)}")
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="synthmed-canaries-") as tmp:
        plan = plant_canaries(Path(dataset), Path(tmp) / "dataset", k, duplicates, seed)
        run = train(plan.dataset, config, out / "run")
        scores = canary_scores(run, plan, whitebox=whitebox, seed=seed)
        detection = measure(scores, plan, fpr)
    record = {
        "schema": CANARY_SCHEMA, "k": int(k), "duplicates": [int(d) for d in duplicates],
        "n_controls": int(plan.control_rows.size), "target_fpr": fpr,
        "canaries_per_duplicate_count": {str(d): int((plan.duplicates == d).sum()) for d in sorted(set(duplicates))},
        "detection": detection,
        "note": ("TPR: share of the canaries with this many copies scored above the threshold that "
                 "keeps the controls' false alarms at the target; white-box attacks are named "
                 "plainly, synthetic-only ones with their space"),
        "provenance": provenance({"train": config.model_dump(mode="json"),
                                  "whitebox": (whitebox.model_dump(mode="json") if whitebox else None)},
                                 seed=seed, schema=CANARY_SCHEMA),
    }
    write_json(out / "canaries.json", record, nan_as_null=True)
    detection_figure(detection, out / "canaries.png", fpr)
    ds_sorted = sorted(set(int(d) for d in duplicates))
    lines = ["# Canary audit", "", f"{k} canaries (images of holdout patients) planted "
             + ", ".join(f"{record['canaries_per_duplicate_count'][str(d)]} x{d}" for d in ds_sorted)
             + f"; {plan.control_rows.size} control patients never trained on.", "",
             f"TPR at {100 * fpr:g} % FPR (AUC), by copies in the training set:", "",
             "| attack | " + " | ".join(f"x{d}" for d in ds_sorted) + " |",
             "|---|" + "---|" * len(ds_sorted)]
    for name, per in detection.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{per[str(d)]['tpr']:.2f} ({per[str(d)]['auc']:.2f})" for d in ds_sorted) + " |")
    if not all(p["estimable"] for per in detection.values() for p in per.values()):
        lines += ["", f"With {plan.control_rows.size} controls a {100 * fpr:g} % false-alarm rate "
                  "cannot be estimated; the TPR is at the strictest threshold they allow "
                  "(no control above it)."]
    write_text(out / "canaries.md", "\n".join(lines) + "\n")
    return record


__all__ = ["CanaryPlan", "plant_canaries", "canary_scores", "measure", "run_canary_audit",
           "DEFAULT_DUPLICATES"]
