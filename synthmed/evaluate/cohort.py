"""How faithful, how diverse and how well-conditioned is a synthetic cohort? One call, one report.

`evaluate_cohort(dataset, cohort, out)` reads a cohort folder (as `synthmed generate` /
`synthmed sample` write it, through `synthmed.data.cohort.Cohort`: images.npy in manifest order and
each image's labels, sex and age) against the real dataset it imitates, with instruments trained
here on the dataset's real TRAIN split only:

1. **Feature space**: the audit's augmentation-invariant contrastive encoder
   (`synthmed.audit.embeddings.ContrastiveEncoder`, the audit's settings and seed: the same
   encoder the audit trains, byte for byte), or local weights given as `encoder=` (the audit
   folder's `encoder/`). It is saved in `out/encoder/` so the audit can reuse it (`--encoder`).
2. **Fidelity and diversity** (`cohort_metrics.fidelity_diversity`): Fréchet distance, precision /
   recall / density / coverage and MS-SSIM diversity, each beside its real-versus-real floor
   (train against holdout patients, with its spread over resampled patients), overall and per
   condition; volumes slice-wise (MS-SSIM always; features too with a 2D encoder).
3. **Condition fidelity** (`agreement`): classifiers trained on real train images read each
   cohort image's finding, sex and age group; reported as agreement with the manifest, chance,
   a patient-bootstrap interval and the same classifier's agreement on real holdout images.
4. **Utility** (`synthmed.evaluate.utility`): the same classifier trained on real, synthetic,
   both, and synthetic then real, each tested on the real holdout (macro AUC, TSTR / TRTR).

Outputs, as one whole folder (synthmed/io/folders.py): `evaluation.json` (numbers, the settings
actually used, provenance; no path and no patient value) and `report.html` (synthmed.evaluate.report;
INTERNAL when it shows real images).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from synthmed.errors import InputError
from synthmed.evaluate.agreement import agreement, youden_threshold
from synthmed.evaluate.classifier import LabelClassifier
from synthmed.evaluate.cohort_metrics import FidelityDiversity, MetricReadout, fidelity_diversity, holdout_within
from synthmed.evaluate.conditioning import NO_FINDING
from synthmed.evaluate.config import CohortEvalConfig, ConditionSettings, resolve_eval_config
from synthmed.evaluate.runner import finding_labels, label_targets

SCHEMA = "synthmed.cohort-evaluation/1"
NO_FINDING_GROUP = "No Finding"


@dataclass(frozen=True)
class CohortEvaluation:
    out: Path             # the evaluation folder (evaluation.json, report.html)
    record: dict          # exactly what evaluation.json holds
    seconds: dict = field(default_factory=dict, compare=False)  # wall time per stage (not recorded)

    def summary(self) -> str:
        return summary_text(self.record)


# ------------------------------------------------------------------------------ inputs
def _open_dataset(dataset: Any):
    from synthmed.data.dataset import Dataset

    return dataset if isinstance(dataset, Dataset) else Dataset.open(Path(dataset))


def _multi_hot(records, findings: Sequence[str]) -> np.ndarray:
    col = {f: j for j, f in enumerate(findings)}
    y = np.zeros((len(records), len(findings)), np.float32)
    for i, r in enumerate(records):
        for lab in r.labels:
            if lab in col:
                y[i, col[lab]] = 1.0
    return y


# ------------------------------------------------------------------------------ encoder
def feature_space(x_train: np.ndarray, spatial_dims: int, cfg: CohortEvalConfig, seed: int,
                  encoder: Any = None):
    """(embedder, record): local weights when given, else the audit's encoder trained on the real
    train split with the audit's settings (audit/runner.py `fit_encoder`), else (steps 0) pixels."""
    from synthmed.audit import embeddings as emb

    shape = tuple(x_train.shape[1:])
    if encoder is not None:
        loaded = encoder if hasattr(encoder, "embed") else emb.load_embedder(encoder)
        made_for = getattr(loaded, "shape", None)  # None: an embedder of any shape (pixels)
        dims = int(getattr(loaded, "spatial_dims", spatial_dims))
        if made_for is not None and tuple(made_for) != shape and not (spatial_dims == 3 and dims == 2):
            raise InputError(f"{encoder}: the encoder was made for {'x'.join(map(str, made_for))} "
                             f"images but the dataset's are {'x'.join(map(str, shape))}")
        return loaded, {"source": "given", "name": str(getattr(loaded, "name", "encoder")),
                        "spatial_dims": dims,
                        "input_shape": list(made_for) if made_for is not None else None}
    if cfg.encoder.steps == 0:
        return emb.PixelEmbedder(), {"source": "pixel space (encoder.steps is 0)"}
    e = emb.ContrastiveEncoder(spatial_dims, shape, dim=cfg.encoder.dim, seed=seed)
    e.fit(x_train, steps=cfg.encoder.steps, batch_size=cfg.encoder.batch_size)
    return e, {"source": "trained on the train split", "spatial_dims": spatial_dims,
               "input_shape": list(shape), "settings": cfg.encoder.model_dump(), "seed": seed,
               "training": {k: v for k, v in e.history.items() if k != "n_images"}}


def _slice_embed(embedder):
    """A 2D encoder applied to volume slices of another shape: slices resized to its input."""
    import torch
    import torch.nn.functional as F

    want = tuple(int(s) for s in embedder.shape)

    def embed(slices: np.ndarray) -> np.ndarray:
        x = np.asarray(slices, np.float32)
        if tuple(x.shape[1:]) != want:
            x = F.interpolate(torch.from_numpy(np.ascontiguousarray(x))[:, None], size=want,
                              mode="bilinear", align_corners=False)[:, 0].numpy()
        return embedder.embed(x)

    return embed


# ------------------------------------------------------------------------------ fidelity
def _readout_json(r: MetricReadout) -> dict[str, Any]:
    return {"synthetic": r.synthetic, "floor": r.floor.as_dict()}


def fidelity_json(fd: FidelityDiversity) -> dict[str, Any]:
    out: dict[str, Any] = {"frechet": _readout_json(fd.frechet), "prdc": _readout_json(fd.prdc),
                           "ms_ssim": _readout_json(fd.ms_ssim)}
    if fd.by_condition:
        out["by_condition"] = {name: ({"not_scored": v} if isinstance(v, str) else fidelity_json(v))
                               for name, v in fd.by_condition.items()}
    return out


# ------------------------------------------------------------------------------ conditions
def age_groups(edges: Sequence[float]) -> list[str]:
    e = [f"{v:g}" for v in edges]
    return [f"<{e[0]}"] + [f"{a}-{b}" for a, b in zip(e, e[1:])] + [f">={e[-1]}"]


def age_group_of(ages: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Group name per age ('' where the age is unknown); groups are [a, b) between edges."""
    names = np.array(age_groups(edges))
    a = np.asarray(ages, np.float64)
    out = np.full(a.shape, "", dtype=object)
    known = np.isfinite(a)
    out[known] = names[np.searchsorted(np.asarray(edges, np.float64), a[known], side="right")]
    return out.astype(str)


def _fit(x: np.ndarray, y: np.ndarray, labels: Sequence[str], spatial_dims: int,
         cfg: ConditionSettings, seed: int) -> LabelClassifier:
    clf = LabelClassifier(spatial_dims, x.shape[1:], list(labels), channels=cfg.channels, seed=seed)
    return clf.fit(x, y, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr)


def _classes(what: str, tr_values: np.ndarray, sy_values: np.ndarray, cfg: ConditionSettings,
             order: Sequence[str] | None = None) -> tuple[list[str], list[str], str | None]:
    """(classes to read, classes left out, why not available) of a categorical attribute."""
    if not np.any(tr_values != ""):
        return [], [], f"the dataset's metadata has no {what}"
    if not np.any(sy_values != ""):
        return [], [], f"the cohort's manifest gives no {what}"
    values, counts = np.unique(tr_values[tr_values != ""], return_counts=True)
    classes = [str(v) for v, c in zip(values, counts) if c >= cfg.min_images]
    if order is not None:
        classes = [c for c in order if c in classes]
    left_out = sorted(set(map(str, values)) - set(classes))
    if len(classes) < 2:
        return [], left_out, f"fewer than two {what} classes with {cfg.min_images} train images each"
    n_sy = int(np.isin(sy_values, classes).sum())
    if n_sy < cfg.min_images:
        return [], left_out, (f"the cohort's manifest gives a {what} of {', '.join(classes)} for "
                              f"{n_sy} images (at least {cfg.min_images} needed)")
    return classes, left_out, None


def condition_fidelity(x_tr, y_tr, x_ho, y_ho, x_sy, y_sy, findings: Sequence[str], meta: dict,
                       sy_patients: np.ndarray, spatial_dims: int, cfg: ConditionSettings,
                       seed: int) -> dict[str, Any]:
    """{attribute: Agreement as a dict | {"not_available": why}} for every finding, sex, age group.

    meta: {"sex": (train, holdout, cohort) values, "age": (train, holdout, cohort) ages}.
    One LabelClassifier reads every attribute (one output per finding, one per sex, one per age
    group; a categorical attribute is read by argmax over its outputs): one training budget, as
    fixed in the config, on the train images whose attributes in use are all known."""
    from synthmed.stats import roc_auc_of_labels

    out: dict[str, Any] = {}
    findings = list(findings)
    pos = y_tr.sum(0)
    usable = [f for j, f in enumerate(findings) if pos[j] >= cfg.min_images]
    if not findings:
        out["finding"] = {"not_available": "the dataset has no finding labels"}
    for j, f in enumerate(findings):
        if f not in usable:
            out[f"finding: {f}"] = {"not_available": f"{int(pos[j])} train images carry it "
                                                     f"(at least {cfg.min_images} needed)"}
    sex = [np.asarray(v).astype(str) for v in meta["sex"]]
    age = [age_group_of(a, cfg.age_edges) for a in meta["age"]]
    cats: dict[str, tuple[list[str], list[str], list[np.ndarray]]] = {}
    for name, what, vals, order in (("sex", "sex", sex, None),
                                    ("age group", "age", age, age_groups(cfg.age_edges))):
        classes, left_out, why = _classes(what, vals[0], vals[2], cfg, order)
        if why is not None:
            out[name] = {"not_available": why}
        else:
            cats[name] = (classes, left_out, vals)
    columns = list(usable) + [f"{name}={c}" for name, (classes, _, _) in cats.items() for c in classes]
    if not columns:
        return out
    m_tr = np.ones(len(x_tr), bool)
    for classes, _, vals in cats.values():
        m_tr &= np.isin(vals[0], classes)
    targets = [y_tr[:, [findings.index(f) for f in usable]]]
    for classes, _, vals in cats.values():
        targets.append((vals[0][:, None] == np.array(classes)[None, :]).astype(np.float32))
    y = np.concatenate(targets, axis=1)[m_tr]
    clf = _fit(x_tr[m_tr], y, columns, spatial_dims, cfg, seed)
    p_ho, p_sy = clf.predict_proba(x_ho), clf.predict_proba(x_sy)
    n_train = int(m_tr.sum())
    word = np.array(["absent", "present"])
    for k, f in enumerate(usable):
        j = findings.index(f)
        truth_ho, truth_sy = y_ho[:, j] > 0, y_sy[:, j] > 0
        # calibrated on real holdout images (never on the cohort): the cohort is read at the
        # threshold that best separates real images
        t = youden_threshold(p_ho[:, k], truth_ho)
        auc_sy, auc_ho = roc_auc_of_labels(p_sy[:, k], truth_sy), roc_auc_of_labels(p_ho[:, k], truth_ho)
        a = agreement(f"finding: {f}", word[(p_sy[:, k] >= t).astype(int)], word[truth_sy.astype(int)],
                      sy_patients, classes=("absent", "present"), n_boot=cfg.n_boot, seed=seed,
                      real=float(np.mean((p_ho[:, k] >= t) == truth_ho)),
                      auc=None if math.isnan(auc_sy) else float(auc_sy),
                      real_auc=None if math.isnan(auc_ho) else float(auc_ho))
        out[f"finding: {f}"] = a.as_dict() | {"threshold": float(t), "manifest_rate": float(truth_sy.mean()),
                                              "n_train_images": n_train}
    for name, (classes, left_out, vals) in cats.items():
        cols = [columns.index(f"{name}={c}") for c in classes]
        cls = np.array(classes)
        m_ho, m_sy = np.isin(vals[1], classes), np.isin(vals[2], classes)
        read_sy = cls[np.argmax(p_sy[m_sy][:, cols], 1)]
        real = float(np.mean(cls[np.argmax(p_ho[m_ho][:, cols], 1)] == vals[1][m_ho])) if m_ho.any() else None
        a = agreement(name, read_sy, vals[2][m_sy], sy_patients[m_sy], classes=classes,
                      n_boot=cfg.n_boot, seed=seed, real=real)
        out[name] = a.as_dict() | {"n_train_images": n_train}
        if left_out:
            out[name]["classes_left_out"] = {"classes": left_out,
                                             "why": f"fewer than {cfg.min_images} train images each"}
        if int((~m_sy).sum()):
            out[name]["cohort_images_left_out"] = int((~m_sy).sum())
    return {k: out[k] for k in sorted(out, key=lambda k: (not k.startswith("finding"), k))}


# ------------------------------------------------------------------------------ driver
def evaluate_cohort(dataset: Any, synthetic: str | Path, out: str | Path, *,
                    config: Any = None, encoder: Any = None, seed: int = 0,
                    overwrite: bool = False, allow_other_dataset: bool = False) -> CohortEvaluation:
    """Evaluate the cohort folder `synthetic` against `dataset` (a path or an opened `Dataset`);
    write evaluation.json and report.html to `out` as one folder. See the module doc.

    config: CohortEvalConfig, a path, a shipped name ("evaluate", "evaluate-quick") or None (the
    shipped default). encoder: local weights (an embedder folder, the audit's `encoder/`) or an
    embedder object; None trains the audit's encoder on the train split. A cohort made by a model
    of another dataset is refused unless `allow_other_dataset` (then recorded).
    """
    from synthmed.data.cohort import Cohort
    from synthmed.data.dataset import check_trained_on
    from synthmed.data.values import intensity_range
    from synthmed.io import folders
    from synthmed.progress import console

    out = Path(out)
    cfg = resolve_eval_config(config)
    folders.prepare_output(out, "evaluation", overwrite)  # before any work
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    ds = _open_dataset(dataset)
    co = Cohort.open(Path(synthetic), intensity_range(ds.info))
    if tuple(co.shape) != tuple(ds.shape):
        raise InputError(f"{co.root}: cohort images are {'x'.join(map(str, co.shape))} but the "
                         f"dataset's are {'x'.join(map(str, ds.shape))}; evaluate a cohort against "
                         "the dataset its model was trained on")
    other = check_trained_on(ds, str(co.info.get("dataset_fingerprint") or ""), "the cohort's model",
                             allow_other_dataset)
    tr, ho = ds.require_split("train"), ds.require_split("holdout")
    pid = ds.patient_ids
    # copies, not views of the read-only memory maps (torch wraps them in every classifier)
    x_tr = np.array(ds.images[tr], np.float32)
    x_ho = np.array(ds.images[ho], np.float32)
    x_sy = np.array(co.images, np.float32)
    sy_patients = co.patient_ids()
    findings = finding_labels(ds.label_vocabulary)
    y_tr, y_ho = label_targets(ds, tr, findings), label_targets(ds, ho, findings)
    y_sy = _multi_hot(co.records, findings)
    notes: list[str] = []
    unknown = sorted({lab for r in co.records for lab in r.labels} - set(findings) - {NO_FINDING_GROUP})
    if unknown:
        notes.append(f"the cohort's manifest names labels the dataset does not have "
                     f"({', '.join(unknown)}); they are not evaluated")
    plain = co.info.get("source") == "plain image folder"
    clock["read"] = time.perf_counter() - t0

    record: dict[str, Any] = {
        "schema": SCHEMA,
        "dataset_fingerprint": ds.fingerprint(), "cohort_fingerprint": co.fingerprint(),
        "model_hash": co.info.get("model_sha256"),
        "data": {"shape": list(ds.shape), "spatial_dims": ds.spatial_dims, "findings": findings,
                 "train_images": int(tr.size), "train_patients": len(set(pid[tr].tolist())),
                 "holdout_images": int(ho.size), "holdout_patients": len(set(pid[ho].tolist())),
                 "synthetic_images": int(x_sy.shape[0]),
                 "synthetic_patients": len(set(sy_patients.tolist()))},
    }

    t = time.perf_counter()
    with console.status("training the evaluation encoder on the train split"):
        embedder, enc_record = feature_space(x_tr, ds.spatial_dims, cfg, seed, encoder)
    slicewise = ds.spatial_dims == 3 and int(getattr(embedder, "spatial_dims", 3)) == 2
    enc_record["slicewise"] = slicewise
    record["encoder"] = enc_record
    clock["encoder"] = time.perf_counter() - t

    t = time.perf_counter()
    f = cfg.fidelity
    rows = holdout_within(pid[ho], int(ho.size), min(f.max_holdout_images, int(x_sy.shape[0])), seed)
    labelled = bool(findings) and f.per_condition and not plain
    embed = _slice_embed(embedder) if slicewise else embedder.embed
    with console.status("fidelity and diversity, with real floors"):
        try:
            fd = fidelity_diversity(
                x_tr, x_ho[rows], x_sy, embed=embed, holdout_patients=pid[ho][rows], k=f.k,
                n_pairs=f.n_pairs, n_boot=f.n_boot, seed=seed, slicewise=slicewise,
                train_labels=y_tr if labelled else None, holdout_labels=y_ho[rows] if labelled else None,
                synthetic_labels=y_sy if labelled else None, label_names=findings,
                none_label=NO_FINDING_GROUP, min_group=f.min_group)
            record["fidelity"] = {"holdout_used": {"images": int(rows.size),
                                                   "patients": len(set(pid[ho][rows].tolist()))},
                                  **fidelity_json(fd)}
        except ValueError as err:  # too few holdout patients or images for k: say so, go on
            record["fidelity"] = {"not_measured": str(err)}
    clock["fidelity"] = time.perf_counter() - t

    t = time.perf_counter()
    if not cfg.conditions.enabled:
        record["conditions"] = {"not_evaluated": "conditions.enabled is false in the config"}
    elif plain:
        record["conditions"] = {"not_evaluated": "the cohort is a plain image folder: no manifest "
                                                 "says what its images should show"}
    else:
        meta = {"sex": (ds.sexes()[tr], ds.sexes()[ho], np.array([r.sex for r in co.records])),
                "age": (ds.ages()[tr], ds.ages()[ho], np.array([r.age for r in co.records], np.float64))}
        with console.status("condition classifiers on the train split"):
            record["conditions"] = condition_fidelity(x_tr, y_tr, x_ho, y_ho, x_sy, y_sy, findings, meta,
                                                      sy_patients, ds.spatial_dims, cfg.conditions, seed)
    clock["conditions"] = time.perf_counter() - t

    t = time.perf_counter()
    roc = None
    if cfg.utility is None:
        record["utility"] = {"not_evaluated": "utility is null in the config"}
    elif plain or not findings:
        record["utility"] = {"not_evaluated": "the cohort is a plain image folder: it has no labels to "
                                              "train on" if plain else "the dataset has no finding labels"}
    else:
        from synthmed.evaluate.utility import utility

        with console.status("utility: the classifier trained on real, synthetic, both, synthetic->real"):
            try:
                u = utility(x_tr, y_tr, x_sy, y_sy, x_ho, y_ho, findings, config=cfg.utility, seed=seed,
                            train_patients=pid[tr], holdout_patients=pid[ho])
                record["utility"], roc = u.to_json(), u.roc
            except InputError as err:
                record["utility"] = {"not_measured": str(err)}
    clock["utility"] = time.perf_counter() - t

    if notes:
        record["notes"] = notes
    if other:
        record["other_dataset"] = ("the cohort's model was trained on another dataset; "
                                   "allow_other_dataset was given")
    from synthmed.provenance import provenance

    record["provenance"] = provenance(cfg, seed=seed, dataset_fingerprint=record["dataset_fingerprint"],
                                      cohort_fingerprint=record["cohort_fingerprint"],
                                      model_hash=record["model_hash"])

    t = time.perf_counter()
    with folders.staged_output(out, "evaluation", overwrite) as stage:
        _write(stage, record, cfg, embedder if encoder is None else None, x_tr, y_tr, x_sy, y_sy,
               findings, seed, roc)
    clock["write"] = time.perf_counter() - t
    clock["total"] = time.perf_counter() - t0
    return CohortEvaluation(out, record, clock)


def _write(stage: Path, record: dict, cfg: CohortEvalConfig, trained_encoder, x_tr, y_tr, x_sy, y_sy,
           findings, seed: int, roc=None) -> None:
    from synthmed.evaluate.report import ReportData, sample_grids, write_report
    from synthmed.io.atomic import write_json
    from synthmed.provenance import sha256_file

    if trained_encoder is not None and hasattr(trained_encoder, "save"):
        trained_encoder.save(stage / "encoder")
        record["encoder"]["sha256"] = sha256_file(stage / "encoder" / "embedder.safetensors")
    grids = sample_grids(x_tr, y_tr, x_sy, y_sy, findings, cfg.report.grid_columns, seed,
                         real=cfg.report.real_grids)
    write_json(stage / "evaluation.json", record, nan_as_null=True)
    write_report(stage / "report.html", ReportData(record=record, grids=grids, roc=roc))


# ------------------------------------------------------------------------------ sweep
def evaluate_sweep(model: Any, dataset: Any, out: str | Path, steps: Sequence[int], *, n: int = 100,
                   seed: int = 0, encoder: Any = None, sampler: str | None = None, batch_size: int = 64,
                   overwrite: bool = False, allow_other_dataset: bool = False) -> CohortEvaluation:
    """The sampler sweep of a trained generator (`synthmed.evaluate.sweep.sweep_steps`) as an
    evaluation folder: evaluation.json (the sweep's numbers, provenance), sweep.png, report.html.
    Wall times are measurements of this machine: they differ between runs, the rest does not."""
    from synthmed.data.dataset import check_trained_on
    from synthmed.evaluate.report import ReportData, write_report
    from synthmed.evaluate.sweep import sweep_steps
    from synthmed.io import folders
    from synthmed.io.atomic import write_json
    from synthmed.provenance import provenance

    out = Path(out)
    folders.prepare_output(out, "evaluation", overwrite)
    ds = _open_dataset(dataset)
    other = check_trained_on(ds, str(getattr(model, "info", {}).get("dataset_fingerprint", "")),
                             "the model", allow_other_dataset)
    embedder = None
    if encoder is not None:
        from synthmed.audit import embeddings as emb

        embedder = encoder if hasattr(encoder, "embed") else emb.load_embedder(encoder)
    res = sweep_steps(model, ds, list(steps), n=n, seed=seed, embedder=embedder, sampler=sampler,
                      batch_size=batch_size)
    record: dict[str, Any] = {"schema": SCHEMA, "dataset_fingerprint": ds.fingerprint(),
                              "model_hash": getattr(model, "model_hash", None), "sweep": res.to_json()}
    if other:
        record["other_dataset"] = "the model was trained on another dataset; allow_other_dataset was given"
    record["provenance"] = provenance({"steps": [int(v) for v in steps], "n": int(n), "sampler": sampler,
                                      "batch_size": int(batch_size)}, seed=seed,
                                     dataset_fingerprint=record["dataset_fingerprint"],
                                     model_hash=record["model_hash"])
    with folders.staged_output(out, "evaluation", overwrite) as stage:
        png = res.plot(stage / "sweep.png").read_bytes()
        write_json(stage / "evaluation.json", record, nan_as_null=True)
        write_report(stage / "report.html", ReportData(record=record, sweep_png=png))
    return CohortEvaluation(out, record)


# ------------------------------------------------------------------------------ summary
def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def place(value: float, low: float, high: float) -> str:
    """Where a cohort's value lies against its floor's interval."""
    if value < low:
        return "below the real range"
    if value > high:
        return "above the real range"
    return "within the real range"


CHANCE_BASELINE = ("the real-trained classifier is not above chance (its AUC range reaches 0.5), "
                   "so the TSTR / TRTR ratio says nothing here")


def baseline_at_chance(util: dict) -> bool:
    """Whether the TRTR baseline's interval reaches 0.5: a ratio to a coin toss is no reading."""
    real = ((util.get("regimes") or {}).get("real") or {}).get("macro_auc") or {}
    low = real.get("low")
    return low is not None and low <= 0.5


def summary_text(record: dict) -> str:
    if "data" not in record:  # a sampler sweep alone
        sw = record["sweep"]
        lines = [f"{p['steps']:>5} steps: Fréchet {_fmt(p['metrics'].get('frechet'))}, "
                 f"{p['seconds_per_image']:.3f} s/image" + (" (costs)" if p.get("costs") else "")
                 for p in sw["points"]]
        lines.append("fewer steps start to cost at " + (f"{sw['costs_from']} steps" if sw["costs_from"]
                                                        else "none of the settings"))
        return "\n".join(lines)
    d = record["data"]
    lines = [f"cohort evaluation: {d['synthetic_images']} synthetic images ({d['synthetic_patients']} "
             f"virtual patients) against {d['train_patients']} train / {d['holdout_patients']} holdout "
             f"patients; encoder {record['encoder']['source']}"]
    fid = record.get("fidelity", {})
    if "not_measured" in fid:
        lines.append(f"fidelity: not measured ({fid['not_measured']})")
    else:
        for key, metric, name in (("frechet", "value", "Fréchet distance"), ("prdc", "precision", "precision"),
                                  ("prdc", "recall", "recall"), ("prdc", "coverage", "coverage"),
                                  ("ms_ssim", "ms_ssim", "MS-SSIM (diversity)")):
            v = fid[key]["synthetic"][metric]
            iv = fid[key]["floor"]["metrics"][metric]
            low = max(iv["low"], 0.0) if key == "frechet" else iv["low"]  # a distance is >= 0
            lines.append(f"  {name}: {_fmt(v)} (real range {_fmt(low)} to {_fmt(iv['high'])}): "
                         f"{place(v, iv['low'], iv['high'])}")
    cond = record.get("conditions", {})
    if "not_evaluated" in cond:
        lines.append(f"condition agreement: not evaluated ({cond['not_evaluated']})")
    else:
        parts = []
        for name, a in cond.items():
            if "not_available" in a:
                parts.append(f"{name} not available")
            else:
                parts.append(f"{name} {a['agreement']:.2f} (chance {a['chance']:.2f}, real "
                             f"{_fmt(a.get('real'))})")
        lines.append("condition agreement: " + "; ".join(parts))
    util = record.get("utility", {})
    if "regimes" in util:
        macro = {k: (r.get("macro_auc") or {}).get("value") for k, r in util["regimes"].items()}
        ratio = (util.get("tstr_trtr") or {}).get("value")
        lines.append("utility (macro AUC on the real holdout): " + ", ".join(
            f"{k} {_fmt(v)}" for k, v in macro.items()) + f"; TSTR/TRTR {_fmt(ratio)}"
            + (f" ({util['note']})" if util.get("note") else "")
            + (f"; {CHANCE_BASELINE}" if baseline_at_chance(util) else ""))
    elif util:
        lines.append(f"utility: not measured ({util.get('not_evaluated') or util.get('not_measured')})")
    return "\n".join(lines)


__all__ = ["CohortEvaluation", "evaluate_cohort", "evaluate_sweep", "condition_fidelity", "feature_space",
           "fidelity_json", "age_groups", "age_group_of", "summary_text", "place"]
