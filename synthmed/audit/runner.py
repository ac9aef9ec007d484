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
from synthmed.data.values import intensity_range
from synthmed.errors import InputError
from synthmed.io.atomic import write_json
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
    co = Cohort.open(cohort, intensity_range(ds.info))
    if tuple(co.shape) != tuple(ds.shape):
        raise InputError(f"{co.root}: cohort images are {_shape_text(co.shape)} but the dataset's "
                         f"are {_shape_text(ds.shape)}; sample the cohort at the dataset's shape")
    train_idx = ds.require_split("train")
    holdout_idx = ds.require_split("holdout")
    ref_idx = ds.indices("reference")
    pid = ds.patient_ids
    reference_source = "reference split"
    sizes = profile.sizes
    n_holdout = len(set(pid[holdout_idx].tolist()))
    if ref_idx.size == 0 or (ref_idx.size < sizes.min_reference_images
                             and n_holdout - round(n_holdout / 2) >= sizes.min_holdout_patients):
        # The attacks need real non-members to calibrate on that are NOT the evaluated ones
        # (synthmed.audit.attacks): without a reference split big enough to estimate a density or
        # a median distance (DOMIAS fits a 5-dim PCA + KDE on it), half the holdout patients join
        # it, when the holdout can spare them; otherwise the attacks adapt to the small reference
        # (attack_settings) or are reported as not evaluated.
        from synthmed.audit.attacks import split_calibration

        cal, ev = split_calibration(pid[holdout_idx], 0.5, seed)
        reference_source = ("half of the holdout patients (the dataset has no reference split)"
                            if ref_idx.size == 0 else
                            f"the reference split ({ref_idx.size} images, fewer than "
                            f"sizes.min_reference_images = {sizes.min_reference_images}) and half of "
                            f"the holdout patients")
        ref_idx, holdout_idx = np.concatenate([ref_idx, holdout_idx[cal]]), holdout_idx[ev]
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
def attack_settings(name: str, n_reference: int, n_synthetic: int) -> tuple[dict[str, Any] | None, str]:
    """(keyword arguments for `attack_scores`, note) for the calibration sizes at hand, or
    (None, why) when the attack cannot run on them: it is then reported as not evaluated."""
    from synthmed.audit import attacks

    if name == "dcr":
        return {}, ""
    if n_reference == 0:
        return None, "no real non-member images to calibrate it on (no reference split or holdout half)"
    if name == "mc_neighbourhood":
        return {}, ""
    if name == "domias":
        # the PCA is fitted on the reference and each KDE needs more points than dimensions
        default = attacks.DOMIAS_PCA_DIMS
        dims = min(default, n_reference - 1, n_synthetic - 1)
        if dims < 1:
            return None, (f"{n_reference} reference and {n_synthetic} synthetic images are too few for "
                          f"a density estimate (at least 2 of each are needed)")
        note = "" if dims == default else (f"PCA reduced to {dims} dims (from {default}): only "
                                           f"{min(n_reference, n_synthetic)} images to estimate a density on")
        return {"n_components": dims}, note
    raise ValueError(f"unknown attack {name!r}")


def attack_scores(name: str, candidates: np.ndarray, synthetic: np.ndarray,
                  reference: np.ndarray | None, seed: int = 0, **settings) -> np.ndarray:
    """Per-image member scores of one attack (synthmed.audit.attacks), calibrated on `reference`:
    real non-members that are not among the candidates. `settings` from `attack_settings`."""
    from synthmed.audit import attacks

    if name == "dcr":
        return np.asarray(attacks.dcr_scores(candidates, synthetic, reference), dtype=np.float64)
    if name == "domias":
        return np.asarray(attacks.domias_scores(candidates, synthetic, reference, **settings), dtype=np.float64)
    if name == "mc_neighbourhood":
        return np.asarray(attacks.mc_neighbourhood_scores(candidates, synthetic, reference, **settings),
                          dtype=np.float64)
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
    from synthmed.audit import memorisation as mem
    from synthmed.audit import stats

    bound = profile.memorisation.hard_copy_bound
    res = mem.memorisation(synth_pix, train_pix, holdout_pix, quantile=profile.memorisation.quantile,
                           hard_copy_bound=mem.PIXEL_HARD_COPY_BOUND if bound is None else bound,
                           alpha=alpha, space="pixel")
    flagged = np.asarray(res.flagged, dtype=bool)
    n_flag, n_syn = int(flagged.sum()), int(flagged.size)
    measure = MemorisationMeasure(
        n_synthetic=n_syn, n_flagged=n_flag, rate_ci=stats.clopper_pearson(n_flag, n_syn, alpha),
        null_rate=float(res.expected_false_flag_rate), null_ci=_null_ci(res, alpha),
        n_hard_copies=sum(1 for r in res.reason if r == "near-exact copy"), threshold=float(res.threshold))
    return res, measure


def _null_ci(res, alpha: float) -> tuple[float, float]:
    from scipy import stats as st

    n_hold = int(np.asarray(res.calibration_distances).size)
    j = int(res.threshold_rank)
    # The threshold is the j-th smallest of n holdout distances, so the chance that an unseen image
    # falls below it is F(X_(j)) ~ Beta(j, n + 1 - j): its mean is the null rate j / (n + 1), its
    # quantiles are how far this holdout's threshold may sit from that.
    return (float(st.beta.ppf(alpha / 2, j, n_hold + 1 - j)), float(st.beta.ppf(1 - alpha / 2, j, n_hold + 1 - j)))


def aligned_memorisation(inputs: Inputs, encoder_vectors: dict[str, np.ndarray] | None,
                         profile: AuditProfile, alpha: float, seed: int):
    """Copies disguised by a flip, rotation, shift or crop (`memorisation.copy_search`), on a capped
    selection: registration costs ~40 ms per image, so at most `aligned_max_images` synthetic
    images are registered, those whose nearest training image is closest BEFORE alignment (8-voxel
    coarse pixels of the image, its mirror image and their +-5 % shifts, and the encoder; each
    distance ranked against the holdout's, the best rank counts), and a random sample of as many holdout images calibrates the threshold.

    Leaving images out can only remove flags, so a non-member image is still flagged with
    probability at most j / (n + 1) of the registered holdout sample. Returns (result over ALL
    synthetic images, unregistered ones unflagged at distance inf; selection record)."""
    from synthmed.audit import memorisation as mem
    from synthmed.audit.embeddings import CoarsePixelEmbedder
    from synthmed.audit.neighbours import nearest

    cap = profile.memorisation.aligned_max_images
    syn, train, hold = inputs.synthetic, inputs.train, inputs.holdout
    c_train = CoarsePixelEmbedder(8).embed(train)

    def coarse(queries: np.ndarray, flip: bool) -> np.ndarray:
        # nearest coarse distance over the query shifted by 0 / +-5 % per axis: a shifted copy is
        # mid-ranked without it (measured on NIH: 3-6 % shifts ranked 0.5-0.9 of the holdout's)
        emb = CoarsePixelEmbedder(8, flip=flip)
        return np.min([nearest(emb.embed(v), c_train, k=1)[0][:, 0] for v in mem.shifted(queries, 0.05)], axis=0)

    views = [(coarse(syn, False), coarse(hold, False)), (coarse(syn, True), coarse(hold, True))]
    if encoder_vectors is not None:
        views.append(tuple(nearest(encoder_vectors[k], encoder_vectors["train"], k=1)[0][:, 0]
                           for k in ("synthetic", "holdout")))
    score = np.ones(len(syn))
    for d_syn, d_hold in views:
        score = np.minimum(score, np.searchsorted(np.sort(d_hold), d_syn, side="right") / d_hold.size)
    reg = np.sort(np.lexsort((np.arange(len(syn)), score))[:cap])
    hsel = np.sort(np.random.default_rng(seed).permutation(len(hold))[:cap])
    enc = ([] if encoder_vectors is None else
           [(encoder_vectors["synthetic"][reg], encoder_vectors["train"], encoder_vectors["holdout"][hsel])])
    part = mem.copy_search(syn[reg], train, hold[hsel], enc, quantile=profile.memorisation.quantile,
                           alpha=alpha, shift=0.05)
    d = np.full(len(syn), np.inf)
    i = np.full(len(syn), -1, dtype=np.int64)
    d[reg], i[reg] = part.distance, part.nearest_train
    res = mem.memorisation_from_distances(d, i, np.full(len(syn), np.nan), part.calibration_distances,
                                          n_train=len(train), n_holdout=len(hsel),
                                          quantile=profile.memorisation.quantile,
                                          hard_copy_bound=part.hard_copy_bound, alpha=alpha, space="aligned")
    res.closer_to_train, res.note = {}, part.note
    selection = {
        "n_synthetic": int(len(syn)), "n_registered": int(reg.size),
        "n_holdout": int(len(hold)), "n_holdout_registered": int(hsel.size),
        "max_images": cap,
        "selection": ("all synthetic images" if reg.size == len(syn) else
                      f"the {reg.size} synthetic images nearest to a training image before alignment "
                      f"(coarse pixels, also mirrored, shifted by +-5 %{', encoder' if encoder_vectors is not None else ''}; "
                      f"each ranked against the holdout's distances)"),
    }
    return res, selection


def combined_memorisation(results: list, alpha: float) -> tuple[np.ndarray, list[str], MemorisationMeasure]:
    """One measure over several spaces: an image is flagged (a hard copy) when any space flags it
    (calls it one). The null rate adds up over the spaces (union bound), and so do the upper ends
    of their null intervals: the rule then fails only on more flags than all spaces together
    could give an unseen image."""
    from synthmed.audit import memorisation as mem
    from synthmed.audit import stats

    flagged, reasons = mem.combine(results)
    hard = np.zeros(flagged.size, dtype=bool)
    for r in results:
        hard |= np.array([x == "near-exact copy" for x in r.reason], dtype=bool)
    cis = [_null_ci(r, alpha) for r in results]
    n_flag, n_syn = int(flagged.sum()), int(flagged.size)
    measure = MemorisationMeasure(
        n_synthetic=n_syn, n_flagged=n_flag, rate_ci=stats.clopper_pearson(n_flag, n_syn, alpha),
        null_rate=min(1.0, sum(float(r.expected_false_flag_rate) for r in results)),
        null_ci=(max(c[0] for c in cis), min(1.0, sum(c[1] for c in cis))),
        n_hard_copies=int(hard.sum()), threshold=float(results[0].threshold),
        spaces=tuple(r.space for r in results))
    return flagged, reasons, measure


# ----------------------------------------------------------------------------------- driver
def run_audit(dataset: Path, cohort: Path, profile: "AuditProfile | Path | str | None", out: Path, *,
              seed: int = 0, filter: bool = False, encoder: Path | None = None,
              overwrite: bool = False, allow_other_dataset: bool = False) -> AuditResult:
    """Audit `cohort` against `dataset`; write out/audit.json and out/report.html.

    A failed audit is a result, not an error: the verdict is in the returned `AuditResult`.
    Raises InputError for inputs that cannot be audited (missing splits, too few patients,
    mismatched shapes).
    """
    from synthmed.data.dataset import check_trained_on
    from synthmed.io import folders

    out = Path(out)
    folders.prepare_output(out, "audit", overwrite)  # before any work; never inside a cohort
    prof = load_profile(profile)
    inputs, ds, co = load_inputs(Path(dataset), Path(cohort), prof, seed)
    # A cohort records the dataset its model was trained on; auditing it against another one
    # would measure membership against people the model never saw.
    other = check_trained_on(ds, str(co.info.get("dataset_fingerprint", "")),
                             f"the model of the cohort {co.root}", allow_other_dataset)
    embedder = fit_encoder(inputs, prof, seed, Path(encoder) if encoder else None)
    result = audit_inputs(inputs, prof, out, seed=seed, embedder=embedder,
                          dataset_fingerprint=ds.fingerprint(), cohort_fingerprint=co.fingerprint(),
                          encoder_given=encoder is not None)
    if other:
        result.audit["data"]["other_dataset"] = (
            f"the cohort's model was trained on another dataset (fingerprint "
            f"{co.info.get('dataset_fingerprint')}); --allow-other-dataset was given")
    # Built whole in a staging folder, moved into place at the end: a crash leaves the old audit
    # or the new one, never a new audit.json beside an old report.html.
    with folders.staged_output(out, "audit", overwrite) as stage:
        result.out = stage
        if filter:
            from synthmed.audit.filter import filter_and_reaudit

            filter_and_reaudit(result, inputs, co, prof, seed=seed, embedder=embedder,
                               dataset_fingerprint=ds.fingerprint())
        write_outputs(result, embedder if encoder is None else None)
    result.out = out
    if result.filtered is not None:
        result.filtered.out = out / "filtered"
    return result


def write_outputs(result: AuditResult, encoder_to_save=None) -> None:
    """audit.json, report.html (and the trained encoder) into result.out."""
    from synthmed.audit.report import write_report

    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    # NaN is "not measurable" here (a share of an empty set): recorded as null
    write_json(out / "audit.json", result.audit, nan_as_null=True)
    if encoder_to_save is not None and hasattr(encoder_to_save, "save"):
        encoder_to_save.save(out / "encoder")
    if result.report is not None:
        write_report(out / "report.html", result.report)


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

    skipped: list[dict[str, str]] = []
    if "encoder" in prof.attacks.spaces and "encoder" not in spaces:
        skipped.append({"space": "encoder", "reason": "embedding.steps is 0 and no --encoder was given"})
    jobs, not_evaluated = [], []
    for space in spaces:
        for attack in prof.attacks.attacks:
            settings, note = attack_settings(attack, len(inputs.reference), len(inputs.synthetic))
            if settings is None:
                not_evaluated.append((f"{attack}/{space}", note))
            else:
                jobs.append((attack, space, settings, note))
    alpha = prof.decision_alpha(len(jobs))
    cand_patients = np.concatenate([inputs.train_patients, inputs.holdout_patients])
    members = set(map(str, inputs.train_patients.tolist()))

    runs: list[AttackRun] = []
    with make_progress() as progress:
        task = progress.add_task("membership attacks", total=len(jobs) + 2)
        for j, (attack, space, settings, note) in enumerate(jobs):
            v = spaces[space]
            cand = np.concatenate([v["train"], v["holdout"]])
            try:
                scores = attack_scores(attack, cand, v["synthetic"], v["reference"], seed, **settings)
            except np.linalg.LinAlgError:
                # a KDE on images that are (nearly) all alike: no density to compare
                not_evaluated.append((f"{attack}/{space}", "its density estimate is singular (the "
                                      "reference or synthetic images are too alike or too few)"))
                continue
            finally:
                progress.advance(task)
            run = measure_attack(attack, space, scores, cand_patients, members, prof, alpha, seed + 1000 * j)
            if note:
                run.record["note"] = note
            runs.append(run)
        mem_res, mem_measure = measure_memorisation(pix["synthetic"], pix["train"], pix["holdout"], prof, alpha)
        mem_results, aligned = [mem_res], None
        if prof.memorisation.aligned:
            progress.update(task, description="aligned copy search (registration)")
            a_res, a_sel = aligned_memorisation(inputs, spaces.get("encoder"), prof, alpha, seed)
            mem_results.append(a_res)
            aligned = (a_res, a_sel)
        mem_flagged, mem_reasons, mem_measure = combined_memorisation(mem_results, alpha)
        progress.advance(task)
        dist_space = "encoder" if "encoder" in spaces else "pixel"
        dv = spaces.get(dist_space, pix)
        d_st = neighbours.nearest(dv["synthetic"], dv["train"], k=1)[0][:, 0]
        d_ht = neighbours.nearest(dv["holdout"], dv["train"], k=1)[0][:, 0]
        d_sh = neighbours.nearest(dv["synthetic"], dv["holdout"], k=1)[0][:, 0]
        progress.advance(task)

    skipped += [{"attack": name, "reason": why} for name, why in not_evaluated]
    verdict = evaluate(prof, [r.measure for r in runs], mem_measure, not_evaluated)
    audit = _audit_json(prof, inputs, verdict, runs, mem_results, (mem_flagged, mem_reasons, aligned),
                        mem_measure, skipped, seed, dataset_fingerprint, cohort_fingerprint, alpha,
                        encoder_given, embedder,
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


def _flag_source(results, i: int):
    """The first space that flagged image i (pixel before aligned): its nearest image and distance."""
    return next(r for r in results if r.flagged[i])


def _aligned_json(res, selection: dict[str, Any]) -> dict[str, Any]:
    reg = np.isfinite(res.distance)
    return {**selection, "n_flagged": int(res.flagged.sum()),
            "n_hard_copies": sum(1 for r in res.reason if r == "near-exact copy"),
            "threshold": float(res.threshold), "threshold_rank": int(res.threshold_rank),
            "expected_false_flag_rate": float(res.expected_false_flag_rate),
            "hard_copy_bound": res.hard_copy_bound,
            "holdout_distance_quantiles": {str(p): float(np.quantile(res.calibration_distances, p))
                                           for p in (0.0, 0.01, 0.5)},
            "registered_distance_quantiles": ({str(p): float(np.quantile(res.distance[reg], p))
                                               for p in (0.0, 0.01, 0.5)} if reg.any() else {}),
            "note": res.note}


def _audit_json(prof, inputs, verdict, runs, mem_results, combined, mem, skipped, seed, dataset_fp,
                cohort_fp, alpha, encoder_given, embedder, dist) -> dict[str, Any]:
    mem_res = mem_results[0]
    flagged, reasons, aligned = combined
    flagged_list = []
    for i in np.nonzero(flagged)[0]:
        src = _flag_source(mem_results, i)
        flagged_list.append({"synthetic_index": int(i), "train_position": int(src.nearest_train[i]),
                             "nearest_train_distance": float(src.distance[i]), "reason": str(reasons[i])})
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
            "space": "+".join(mem.spaces), "n_synthetic": mem.n_synthetic, "n_flagged": mem.n_flagged,
            "rate_ci": list(mem.rate_ci), "null_rate": mem.null_rate, "null_ci": list(mem.null_ci),
            "n_hard_copies": mem.n_hard_copies, "threshold": mem.threshold,
            "flagged": flagged_list, **mem_extra,
            "aligned": (_aligned_json(*aligned) if aligned is not None else
                        {"note": "not run (profile memorisation.aligned is false)"}),
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
           "measure_memorisation", "attack_scores", "attack_settings"]
