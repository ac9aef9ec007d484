"""`run_audit`: the whole privacy audit of one synthetic cohort against one dataset.

Members are the dataset's TRAIN patients (what the generator was trained on); non-members are its
HOLDOUT patients (same population, never seen). The attacker holds the synthetic images and a
reference sample of the population (the dataset's reference split, or half of the holdout
patients when there is none), which calibrates the attacks. Each attack scores every real
image, scores are aggregated per patient, and the audit asks whether the scores separate members
from non-members. Alongside, every synthetic image is checked for being a (near-)copy of a
training image. `verdict.evaluate` turns the numbers into rules; `report.write_report` into a page.

Outputs (all atomic, no timestamps, no paths, no pseudonyms: the same inputs and seed give the
same bytes): `out/audit.json` (schema "synthmed.audit/1"), `out/report.html`, `out/encoder/`
(the contrastive encoder, reusable with --encoder), and with `filter=True` `out/filtered/`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.audit.profile import AuditProfile, load_profile
from synthmed.audit.verdict import AttackMeasure, MemorisationMeasure, Verdict, evaluate
from synthmed.data.cohort import Cohort
from synthmed.data.dataset import Dataset
from synthmed.errors import InputError
from synthmed.io.atomic import write_json
from synthmed.progress import console, progress_enabled
from synthmed.provenance import hash_id_list, provenance

AUDIT_SCHEMA = "synthmed.audit/1"


@dataclass
class AuditResult:
    """What `run_audit` returns: the verdict, the audit.json content and where it was written."""

    out: Path
    verdict: Verdict
    audit: dict[str, Any]
    filtered: "AuditResult | None" = None
    report: Any = None  # ReportData, kept so a filtered re-audit can be added before writing

    @property
    def passed(self) -> bool:
        return self.verdict.passed


@dataclass
class AttackRun:
    """Everything one attack produced (the measure for the rules plus curves for the report)."""

    measure: AttackMeasure
    fpr: np.ndarray
    tpr: np.ndarray
    record: dict[str, Any]


@dataclass
class Inputs:
    """The images of an audit, by role, with patient ids for the real ones."""

    train: np.ndarray
    holdout: np.ndarray
    reference: np.ndarray  # real non-members that calibrate the attacks (never evaluated)
    synthetic: np.ndarray
    train_patients: np.ndarray
    holdout_patients: np.ndarray
    spatial_dims: int
    extra: dict[str, Any] = field(default_factory=dict)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)


def load_inputs(dataset: Path, cohort: Path, profile: AuditProfile, seed: int = 0) -> tuple[Inputs, Dataset, Cohort]:
    """Open both folders and check they can be audited; every problem is one readable line."""
    ds = Dataset.open(dataset)
    co = Cohort.open(cohort)
    if tuple(co.shape) != tuple(ds.shape):
        raise InputError(f"{co.root}: cohort images are {_shape_text(co.shape)} but the dataset's "
                         f"are {_shape_text(ds.shape)}; sample the cohort at the dataset's shape")
    train_idx = ds.require_split("train")
    holdout_idx = ds.require_split("holdout")
    ref_idx = ds.indices("reference")
    pid = ds.patient_ids
    reference_source = "reference split"
    if ref_idx.size == 0:
        # The attacks need real non-members to calibrate on that are NOT the evaluated ones
        # (synthmed.audit.attacks): without a reference split, half the holdout patients serve.
        from synthmed.audit.attacks import split_calibration

        cal, ev = split_calibration(pid[holdout_idx], 0.5, seed)
        ref_idx, holdout_idx = holdout_idx[cal], holdout_idx[ev]
        reference_source = "half of the holdout patients (the dataset has no reference split)"
    sizes = profile.sizes
    for split, idx, minimum in (("train", train_idx, sizes.min_train_patients),
                                ("holdout", holdout_idx, sizes.min_holdout_patients)):
        n = len(set(pid[idx].tolist()))
        if n < minimum:
            extra = ("" if split == "train" or reference_source == "reference split" else
                     " after half of them were set aside to calibrate the attacks (no reference split)")
            raise InputError(f"{ds.root}: the '{split}' split has {n} patients{extra} but the audit "
                             f"needs at least {minimum} (profile key sizes.min_{split}_patients); "
                             f"re-ingest with a larger {split} split")
    if len(co) < sizes.min_synthetic_images:
        raise InputError(f"{co.root}: the cohort has {len(co)} images but the audit needs at least "
                         f"{sizes.min_synthetic_images} (profile key sizes.min_synthetic_images)")
    images = ds.images
    inputs = Inputs(
        train=np.asarray(images[train_idx], dtype=np.float32),
        holdout=np.asarray(images[holdout_idx], dtype=np.float32),
        reference=np.asarray(images[ref_idx], dtype=np.float32),
        synthetic=np.asarray(co.images, dtype=np.float32),
        train_patients=pid[train_idx], holdout_patients=pid[holdout_idx],
        spatial_dims=ds.spatial_dims, extra={"reference_source": reference_source})
    return inputs, ds, co


# -------------------------------------------------------------------------------- embeddings
def fit_encoder(inputs: Inputs, profile: AuditProfile, seed: int, encoder: Path | None):
    """The learned embedder: loaded from `encoder`, or trained on the TRAIN split only."""
    from synthmed.audit import embeddings as emb

    if encoder is not None:
        loaded = emb.load_embedder(encoder)
        want = tuple(inputs.train.shape[1:])
        if tuple(getattr(loaded, "shape", want)) != want:
            raise InputError(f"{encoder}: the encoder was made for {_shape_text(loaded.shape)} images "
                             f"but the dataset's are {_shape_text(want)}")
        return loaded
    if "encoder" not in profile.attacks.spaces or profile.embedding.steps == 0:
        return None
    e = emb.ContrastiveEncoder(inputs.spatial_dims, tuple(inputs.train.shape[1:]),
                               dim=profile.embedding.dim, seed=seed)
    return e.fit(inputs.train, steps=profile.embedding.steps, batch_size=profile.embedding.batch_size)


def embed_all(inputs: Inputs, embedder) -> dict[str, np.ndarray | None]:
    def f(x):
        return None if x is None else np.asarray(embedder.embed(x), dtype=np.float32)

    return {"train": f(inputs.train), "holdout": f(inputs.holdout), "reference": f(inputs.reference),
            "synthetic": f(inputs.synthetic)}


def pixel_vectors(inputs: Inputs) -> dict[str, np.ndarray | None]:
    """Pixel space as the core defines it: distances are RMS intensity differences."""
    from synthmed.audit.embeddings import PixelEmbedder

    pe = PixelEmbedder()

    def f(x):
        return None if x is None else pe.embed(x)

    return {"train": f(inputs.train), "holdout": f(inputs.holdout), "reference": f(inputs.reference),
            "synthetic": f(inputs.synthetic)}


# ---------------------------------------------------------------------------------- attacks
def attack_scores(name: str, candidates: np.ndarray, synthetic: np.ndarray,
                  reference: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per-image member scores of one attack (synthmed.audit.attacks), calibrated on `reference`:
    real non-members that are not among the candidates."""
    from synthmed.audit import attacks

    if name == "dcr":
        return np.asarray(attacks.dcr_scores(candidates, synthetic, reference), dtype=np.float64)
    if name == "domias":
        return np.asarray(attacks.domias_scores(candidates, synthetic, reference), dtype=np.float64)
    if name == "mc_neighbourhood":
        return np.asarray(attacks.mc_neighbourhood_scores(candidates, synthetic, reference), dtype=np.float64)
    raise ValueError(f"unknown attack {name!r}")


def measure_attack(attack: str, space: str, image_scores: np.ndarray, image_patients: np.ndarray,
                   member_patients: set[str], profile: AuditProfile, alpha: float,
                   seed: int) -> AttackRun:
    """Patient-level AUC (bootstrap interval), TPR at low FPRs (exact intervals), epsilon."""
    from synthmed.audit import attacks, stats

    ids, scores = attacks.aggregate_by_patient(image_scores, image_patients, how=profile.attacks.aggregate)
    ids = np.asarray(ids)
    scores = np.asarray(scores, dtype=np.float64)
    is_member = np.array([str(p) in member_patients for p in ids])
    m, n = scores[is_member], scores[~is_member]
    auc = stats.roc_auc(m, n)
    auc_ci = stats.auc_bootstrap_ci(m, n, n_boot=profile.n_bootstrap, alpha=alpha, seed=seed)
    fpr, tpr = stats.roc_curve(m, n)
    rates = {}
    for target in sorted(set(profile.attacks.report_fprs) | {profile.attacks.target_fpr}, reverse=True):
        r = stats.tpr_at_fpr(m, n, target, alpha=alpha)
        d = r.to_dict()
        eps = stats.epsilon_from_rate(r)
        d["empirical_epsilon"] = eps if math.isfinite(eps) else None
        d["empirical_epsilon_note"] = ("" if math.isfinite(eps) else
                                       "unbounded: the attack is right with no false alarm it could be blamed on")
        rates[f"{target:g}"] = (r, d)
    main = rates[f"{profile.attacks.target_fpr:g}"][0]
    measure = AttackMeasure(attack=attack, space=space, auc=auc, auc_ci=tuple(auc_ci), tpr=main.tpr,
                            tpr_ci=tuple(main.tpr_ci), fpr_achieved=main.fpr_achieved,
                            fpr_ci=tuple(main.fpr_ci), estimable=main.estimable, note=main.note)
    eps_all = [d["empirical_epsilon"] for _, d in rates.values()]
    record = {
        "attack": attack, "space": space, "auc": auc, "auc_ci": list(auc_ci),
        "n_member_patients": int(m.size), "n_nonmember_patients": int(n.size),
        "tpr_at_fpr": {k: d for k, (_, d) in rates.items()},
        "empirical_epsilon": (None if any(e is None for e in eps_all) else max(eps_all)),
    }
    return AttackRun(measure, fpr, tpr, record)


# ---------------------------------------------------------------------------- memorisation
def measure_memorisation(synth_pix: np.ndarray, train_pix: np.ndarray, holdout_pix: np.ndarray,
                         profile: AuditProfile, alpha: float):
    """Near-copies in pixel space (where a copy is a copy, whatever the encoder learned)."""
    from scipy import stats as st

    from synthmed.audit import memorisation as mem
    from synthmed.audit import stats

    bound = profile.memorisation.hard_copy_bound
    res = mem.memorisation(synth_pix, train_pix, holdout_pix, quantile=profile.memorisation.quantile,
                           hard_copy_bound=mem.PIXEL_HARD_COPY_BOUND if bound is None else bound,
                           alpha=alpha, space="pixel")
    flagged = np.asarray(res.flagged, dtype=bool)
    n_flag, n_syn = int(flagged.sum()), int(flagged.size)
    n_hold = int(np.asarray(res.calibration_distances).size)
    j = int(res.threshold_rank)
    # The threshold is the j-th smallest of n holdout distances, so the chance that an unseen image
    # falls below it is F(X_(j)) ~ Beta(j, n + 1 - j): its mean is the null rate j / (n + 1), its
    # quantiles are how far this holdout's threshold may sit from that.
    null_ci = (float(st.beta.ppf(alpha / 2, j, n_hold + 1 - j)), float(st.beta.ppf(1 - alpha / 2, j, n_hold + 1 - j)))
    measure = MemorisationMeasure(
        n_synthetic=n_syn, n_flagged=n_flag, rate_ci=stats.clopper_pearson(n_flag, n_syn, alpha),
        null_rate=float(res.expected_false_flag_rate), null_ci=null_ci,
        n_hard_copies=sum(1 for r in res.reason if r == "near-exact copy"), threshold=float(res.threshold))
    return res, measure


# ----------------------------------------------------------------------------------- driver
def run_audit(dataset: Path, cohort: Path, profile: "AuditProfile | Path | str | None", out: Path, *,
              seed: int = 0, filter: bool = False, encoder: Path | None = None) -> AuditResult:
    """Audit `cohort` against `dataset`; write out/audit.json and out/report.html.

    A failed audit is a result, not an error: the verdict is in the returned `AuditResult`.
    Raises InputError for inputs that cannot be audited (missing splits, too few patients,
    mismatched shapes).
    """
    prof = load_profile(profile)
    out = Path(out)
    inputs, ds, co = load_inputs(Path(dataset), Path(cohort), prof, seed)
    embedder = _status("training the contrastive encoder on the train split",
                       lambda: fit_encoder(inputs, prof, seed, Path(encoder) if encoder else None))
    result = audit_inputs(inputs, prof, out, seed=seed, embedder=embedder,
                          dataset_fingerprint=ds.fingerprint(), cohort_fingerprint=co.fingerprint(),
                          encoder_given=encoder is not None)
    if filter:
        from synthmed.audit.filter import filter_and_reaudit

        filter_and_reaudit(result, inputs, co, prof, seed=seed, embedder=embedder,
                           dataset_fingerprint=ds.fingerprint())
    write_outputs(result, embedder if encoder is None else None)
    return result


def write_outputs(result: AuditResult, encoder_to_save=None) -> None:
    """audit.json, report.html (and the trained encoder) into result.out."""
    from synthmed.audit.report import write_report

    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "audit.json", result.audit)
    if encoder_to_save is not None and hasattr(encoder_to_save, "save"):
        encoder_to_save.save(out / "encoder")
    if result.report is not None:
        write_report(out / "report.html", result.report)


def _status(text: str, fn):
    if progress_enabled():
        with console.status(text):
            return fn()
    return fn()


def audit_inputs(inputs: Inputs, prof: AuditProfile, out: Path, *, seed: int, embedder,
                 dataset_fingerprint: str, cohort_fingerprint: str, encoder_given: bool = False) -> AuditResult:
    """The audit proper on loaded images (shared by run_audit and the filtered re-audit); writes
    nothing (see `write_outputs`)."""
    from synthmed.audit import neighbours
    from synthmed.progress import make_progress

    spaces: dict[str, dict[str, np.ndarray | None]] = {}
    pix = pixel_vectors(inputs)
    if "pixel" in prof.attacks.spaces:
        spaces["pixel"] = pix
    if "encoder" in prof.attacks.spaces and embedder is not None:
        spaces["encoder"] = embed_all(inputs, embedder)

    jobs = [(a, s) for s in spaces for a in prof.attacks.attacks]
    skipped: list[dict[str, str]] = []
    if "encoder" in prof.attacks.spaces and "encoder" not in spaces:
        skipped.append({"space": "encoder", "reason": "embedding.steps is 0 and no --encoder was given"})
    alpha = prof.decision_alpha(len(jobs))
    cand_patients = np.concatenate([inputs.train_patients, inputs.holdout_patients])
    members = set(map(str, inputs.train_patients.tolist()))

    runs: list[AttackRun] = []
    with make_progress() as progress:
        task = progress.add_task("membership attacks", total=len(jobs) + 2)
        for j, (attack, space) in enumerate(jobs):
            v = spaces[space]
            cand = np.concatenate([v["train"], v["holdout"]])
            scores = attack_scores(attack, cand, v["synthetic"], v["reference"], seed)
            runs.append(measure_attack(attack, space, scores, cand_patients, members, prof, alpha,
                                       seed + 1000 * j))
            progress.advance(task)
        mem_res, mem_measure = measure_memorisation(pix["synthetic"], pix["train"], pix["holdout"], prof, alpha)
        progress.advance(task)
        dist_space = "encoder" if "encoder" in spaces else "pixel"
        dv = spaces.get(dist_space, pix)
        d_st = neighbours.nearest(dv["synthetic"], dv["train"], k=1)[0][:, 0]
        d_ht = neighbours.nearest(dv["holdout"], dv["train"], k=1)[0][:, 0]
        d_sh = neighbours.nearest(dv["synthetic"], dv["holdout"], k=1)[0][:, 0]
        progress.advance(task)

    verdict = evaluate(prof, [r.measure for r in runs], mem_measure)
    audit = _audit_json(prof, inputs, verdict, runs, mem_res, mem_measure, skipped, seed,
                        dataset_fingerprint, cohort_fingerprint, alpha, encoder_given, embedder,
                        {"space": dist_space, "synthetic_to_train": d_st, "holdout_to_train": d_ht,
                         "synthetic_to_holdout": d_sh})
    from synthmed.audit.report import ReportData

    report = ReportData(
        audit=audit, curves={r.measure.name: (r.fpr, r.tpr) for r in runs},
        distances={"synthetic → train": d_st, "holdout → train": d_ht, "synthetic → holdout": d_sh},
        distance_space=dist_space, gallery=_gallery(inputs, mem_res, prof.gallery_pairs))
    result = AuditResult(out=out, verdict=verdict, audit=audit, report=report)
    return result


def _quantiles(x: np.ndarray) -> dict[str, float]:
    qs = (0.0, 0.001, 0.01, 0.05, 0.25, 0.5)
    return {f"q{q:g}": float(np.quantile(x, q)) for q in qs}


def _gallery(inputs: Inputs, mem_res, n: int) -> list[dict[str, Any]]:
    """The n closest synthetic / training pairs (by pixel distance), as indices and images."""
    d = np.asarray(mem_res.distance, dtype=np.float64)
    j = np.asarray(mem_res.nearest_train, dtype=np.int64)
    order = np.lexsort((np.arange(d.size), d))[:n]
    flagged = np.asarray(mem_res.flagged, dtype=bool)
    return [{"rank": r + 1, "synthetic_index": int(i), "train_rank_index": int(j[i]),
             "distance": float(d[i]), "flagged": bool(flagged[i]),
             "synthetic": inputs.synthetic[i], "train": inputs.train[j[i]]}
            for r, i in enumerate(order)]


def _audit_json(prof, inputs, verdict, runs, mem_res, mem, skipped, seed, dataset_fp, cohort_fp,
                alpha, encoder_given, embedder, dist) -> dict[str, Any]:
    flagged = np.asarray(mem_res.flagged, dtype=bool)
    flagged_list = [{"synthetic_index": int(i), "train_position": int(mem_res.nearest_train[i]),
                     "nearest_train_distance": float(mem_res.distance[i]), "reason": str(mem_res.reason[i])}
                    for i in np.nonzero(flagged)[0]]
    core = mem_res.to_dict()
    mem_extra = {k: core[k] for k in ("quantile", "threshold_rank", "hard_copy_bound", "n_holdout",
                                      "holdout_distance_quantiles", "synthetic_distance_quantiles",
                                      "closer_to_train", "note") if k in core}
    eps = [r.record["empirical_epsilon"] for r in runs]
    return {
        "schema": AUDIT_SCHEMA,
        "verdict": verdict.verdict,
        "tier": verdict.tier,
        "profile": prof.name,
        "rules": [r.to_dict() for r in verdict.rules],
        "thresholds": {
            "max_auc": prof.attacks.max_auc, "auc_evidence_above": prof.attacks.auc_evidence_above,
            "target_fpr": prof.attacks.target_fpr, "max_tpr": prof.attacks.max_tpr,
            "max_hard_copies": prof.memorisation.max_hard_copies,
            "memorisation_quantile": prof.memorisation.quantile,
            "confidence": prof.confidence, "per_interval_alpha": alpha,
            "statistical_rules": prof.n_statistical_rules(len(runs)),
        },
        "attacks": [r.record for r in runs],
        "skipped": skipped,
        "empirical_epsilon": (None if any(e is None for e in eps) else (max(eps) if eps else 0.0)),
        "empirical_epsilon_note": ("lower bound on the differential-privacy epsilon the release "
                                   "leaks, from the strongest attack (TPR lower bound / FPR upper "
                                   "bound); null means unbounded"),
        "memorisation": {
            "space": "pixel", "n_synthetic": mem.n_synthetic, "n_flagged": mem.n_flagged,
            "rate_ci": list(mem.rate_ci), "null_rate": mem.null_rate, "null_ci": list(mem.null_ci),
            "n_hard_copies": mem.n_hard_copies, "threshold": mem.threshold,
            "flagged": flagged_list, **mem_extra,
        },
        "distances": {"space": dist["space"],
                      **{k: _quantiles(v) for k, v in dist.items() if k != "space"}},
        "data": {
            "dataset_fingerprint": dataset_fp, "cohort_fingerprint": cohort_fp,
            "member_patients_sha256": hash_id_list(map(str, inputs.train_patients.tolist())),
            "nonmember_patients_sha256": hash_id_list(map(str, inputs.holdout_patients.tolist())),
            "n_member_patients": len(set(inputs.train_patients.tolist())),
            "n_nonmember_patients": len(set(inputs.holdout_patients.tolist())),
            "n_member_images": int(inputs.train.shape[0]), "n_nonmember_images": int(inputs.holdout.shape[0]),
            "n_reference_images": int(inputs.reference.shape[0]),
            "reference_source": inputs.extra.get("reference_source", "reference split"),
            "n_synthetic_images": int(inputs.synthetic.shape[0]),
            "image_shape": list(inputs.train.shape[1:]),
        },
        "encoder": {"source": "given" if encoder_given else ("trained on the train split" if embedder is not None else "none"),
                    "name": getattr(embedder, "name", None) if embedder is not None else None,
                    "steps": prof.embedding.steps, "dim": prof.embedding.dim},
        "provenance": provenance(prof, seed=seed, schema=AUDIT_SCHEMA),
    }


__all__ = ["AUDIT_SCHEMA", "AuditResult", "run_audit", "audit_inputs", "load_inputs", "measure_attack",
           "measure_memorisation", "attack_scores"]
