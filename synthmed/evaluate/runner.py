"""How faithful and how controllable is a trained generator? One call, one evaluation.json.

`evaluate_generator(model, dataset, out)` answers the researcher's two questions with the
instruments of this package, all trained here on the dataset's real images (nothing downloaded):

- **conditioning**: for each guidance scale, samples conditioned on each of the most frequent
  findings and on none, read by a `LabelClassifier` trained on the train split (calibrated on
  the holdout) and by an independent one trained on the holdout patients only (calibrated on
  the train split): per-label rate vs chance (`label_rate`) and the pooled assignment test
  (`assignment_test`);
- **fidelity**: unconditional samples against the train split, next to the real floor (holdout
  vs train at the same size) and uniform noise; and each condition's samples against the real
  train images that carry it, next to that group's floor. Guidance trades one for the other, so
  both are reported at every scale and none is chosen after the fact. Diversity: the samples'
  mean pairwise MS-SSIM beside the holdout's, with its spread over holdout patients.

Outputs: `evaluation.json` (numbers, fingerprints, provenance; no path, no patient value) and
`samples.png` (one row per condition at the first guidance scale). A grid of real images is
written only when asked for (`real_grid=True`): it shows patients and must stay inside.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from synthmed.errors import InputError
from synthmed.evaluate.classifier import LabelClassifier, fit_on_dataset
from synthmed.evaluate.conditioning import NO_FINDING, assignment_test, label_rate
from synthmed.evaluate.diversity import diversity
from synthmed.evaluate.fidelity import fidelity_report
from synthmed.evaluate.floor import real_floor
from synthmed.evaluate.slices import slicewise_diversity
from synthmed.io.atomic import write_json
from synthmed.progress import console, make_progress
from synthmed.provenance import provenance
from synthmed.viz import save_grid

EVALUATION_SCHEMA = "synthmed.evaluation/1"
TRAIN_INSTRUMENT = "train-split classifier"
HOLDOUT_INSTRUMENT = "holdout-split classifier"


def finding_labels(vocabulary: Sequence[str]) -> list[str]:
    """The dataset's findings: 'No Finding' is the absence of labels, not a finding to ask for."""
    return [lab for lab in vocabulary if lab.lower() != NO_FINDING]


def label_targets(dataset, idx: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Multi-hot targets of the images `idx`, one column per label in `labels`."""
    vocab = dataset.label_vocabulary
    return dataset.label_matrix()[idx][:, [vocab.index(lab) for lab in labels]]


def _members(targets: np.ndarray, labels: Sequence[str], label: str) -> np.ndarray:
    return targets.sum(1) == 0 if label == NO_FINDING else targets[:, list(labels).index(label)] == 1


def evaluate_generator(model: Any, dataset: Any, out: str | Path | None = None, *,
                       labels: Sequence[str] | None = None, top: int = 4, n: int = 100,
                       guidance: Sequence[float] | None = None, steps: int | None = None,
                       sampler: str | None = None, seed: int = 0, batch_size: int = 64,
                       classifier: LabelClassifier | None = None,
                       independent_classifier: LabelClassifier | None | bool = None,
                       classifier_epochs: int = 30, device: str = "cpu",
                       real_grid: bool = False, grid_columns: int = 8,
                       overwrite: bool = False, allow_other_dataset: bool = False) -> dict:
    """Measure `model` (a `synthmed.models.load` result) against `dataset` (a `Dataset`).

    labels: findings to condition on (default: the `top` most frequent in the train split).
    guidance: classifier-free guidance scales to report (default: the model's own).
    classifier / independent_classifier: trained instruments to reuse; None trains them here,
    `independent_classifier=False` skips the second one.
    Returns the evaluation record; with `out`, also writes it and the grids there, as one whole
    folder (synthmed/io/folders.py; an existing evaluation is replaced only with `overwrite`).
    A dataset the model was not trained on is refused unless `allow_other_dataset`.
    """
    from synthmed.data.dataset import check_trained_on
    from synthmed.io import folders

    if out is not None:
        folders.prepare_output(Path(out), "evaluation", overwrite)  # before any work
    other = check_trained_on(dataset, str(getattr(model, "info", {}).get("dataset_fingerprint", "")),
                             "the model", allow_other_dataset)
    if n < 2:
        raise InputError(f"n = {n}: give at least 2 samples per condition")
    if tuple(model.shape) != tuple(dataset.shape):
        raise InputError(f"the model makes images of shape {tuple(model.shape)} but the dataset "
                         f"holds {tuple(dataset.shape)}; evaluate against the dataset it was trained on")
    tr, ho = dataset.require_split("train"), dataset.require_split("holdout")
    x_tr = np.asarray(dataset.images[tr], np.float32)
    x_ho = np.asarray(dataset.images[ho], np.float32)
    guidance = [float(g) for g in (guidance or [model.config.sampling.guidance_scale])]
    findings = finding_labels(dataset.label_vocabulary)
    conditional = bool(findings) and bool(model.config.conditioning.labels)
    if labels and not conditional:
        raise InputError("labels were asked for, but " + (
            "the dataset has no finding labels" if not findings
            else "the model was trained without label conditioning"))
    record: dict[str, Any] = {
        "schema": EVALUATION_SCHEMA, "model_hash": model.model_hash,
        "dataset_fingerprint": dataset.fingerprint(), "n_per_condition": int(n),
        "guidance": guidance,
        "splits": {"train_images": int(tr.size), "holdout_images": int(ho.size)},
    }
    used: dict[float | None, dict[str, Any]] = {}  # guidance asked -> settings `sample` reported

    def draw(cond, offset: int, g: float | None) -> np.ndarray:
        out = model.sample(n, conditions=cond, steps=steps, sampler=sampler, seed=seed + offset,
                           batch_size=batch_size, guidance_scale=g)
        used[g] = out.settings.as_dict()
        return np.asarray(out.images, np.float32)

    instruments: dict[str, tuple[LabelClassifier, np.ndarray, np.ndarray]] = {}
    if findings:
        y_tr, y_ho = label_targets(dataset, tr, findings), label_targets(dataset, ho, findings)
        counts = y_tr.sum(0)
        chosen = list(labels) if labels else [findings[j] for j in np.argsort(-counts, kind="stable")[:top]
                                              if counts[j] > 0]
        unknown = [lab for lab in chosen if lab not in findings]
        if unknown:
            raise InputError(f"labels {unknown} are not findings of this dataset ({', '.join(findings)})")
        conditional = conditional and bool(chosen)
        if classifier is None:
            with console.status("training the label classifier on the train split"):
                classifier = fit_on_dataset(dataset, findings, seed=seed, device=device,
                                            epochs=classifier_epochs)
        instruments[TRAIN_INSTRUMENT] = (classifier, x_ho, y_ho)
        if independent_classifier is None and ho.size < 20:
            independent_classifier = False
            record["independent_classifier"] = (f"not trained: the holdout split has {ho.size} images "
                                                "(at least 20 needed)")
        if independent_classifier is None:
            with console.status("training the independent classifier on the holdout split"):
                independent_classifier = fit_on_dataset(dataset, findings, split="holdout", seed=seed,
                                                        device=device, epochs=classifier_epochs)
        if isinstance(independent_classifier, LabelClassifier):
            instruments[HOLDOUT_INSTRUMENT] = (independent_classifier, x_tr, y_tr)
        record["instruments"] = {
            name: {"trained_on": "train" if name == TRAIN_INSTRUMENT else "holdout",
                   "calibrated_on": "holdout" if name == TRAIN_INSTRUMENT else "train",
                   "auc_on_calibration_split": clf.score(cx, cy)}
            for name, (clf, cx, cy) in instruments.items()}
    features = instruments[TRAIN_INSTRUMENT][0] if instruments else None

    grid_rows: list[np.ndarray] = []
    grid_names: list[str] = []
    with make_progress() as progress:
        per_scale = 1 + len(chosen) if conditional else 0
        task = progress.add_task("sampling", total=1 + len(guidance) * per_scale)
        unc = draw(None, 100, None)
        progress.advance(task)
        grid_rows.append(unc[:grid_columns])
        grid_names.append("unconditional")
        if conditional:
            record["labels"] = chosen
            record["train_label_counts"] = {lab: int(counts[findings.index(lab)]) for lab in chosen}
            record["by_guidance"] = {}
            for gi, g in enumerate(guidance):
                none = draw({"labels": []}, 0, g)
                progress.advance(task)
                sets = {}
                for k, lab in enumerate(chosen):
                    sets[lab] = draw({"labels": [lab]}, 1 + k, g)
                    progress.advance(task)
                entry = {name: _read_out(clf, none, sets, cx, cy, seed)
                         for name, (clf, cx, cy) in instruments.items()}
                entry["fidelity_by_condition"] = {
                    lab: _condition_fidelity(x, lab, findings, x_tr, y_tr, x_ho, y_ho, features)
                    for lab, x in ((NO_FINDING, none), *sets.items())}
                record["by_guidance"][str(g)] = entry
                if gi == 0:
                    grid_rows += [none[:grid_columns]] + [sets[lab][:grid_columns] for lab in chosen]
                    grid_names += [NO_FINDING] + chosen
        else:
            record["conditioning"] = (
                "not evaluated: " + ("the dataset has no finding labels" if not findings else
                                     "the model was trained without label conditioning"
                                     if not model.config.conditioning.labels else
                                     "no finding occurs in the train split"))

    rng = np.random.default_rng(seed)
    m = min(n, x_ho.shape[0])
    record["fidelity"] = {
        "n": int(m),
        "synthetic_vs_train": fidelity_report(x_tr, unc[:m], classifier=features),
        "holdout_vs_train_floor": fidelity_report(x_tr, x_ho[rng.permutation(x_ho.shape[0])[:m]],
                                                  classifier=features),
        "noise_vs_train": fidelity_report(x_tr, rng.random(unc[:m].shape).astype(np.float32),
                                          classifier=features),
        "ms_ssim_diversity": _diversity_readout(unc, x_ho, dataset.patient_ids[ho], seed),
    }
    record["grid_rows"] = grid_names
    # What ran, as `sample` reported it: the sampler and steps of every draw, and the settings of
    # the unconditional draw (model default guidance; it has no effect without a condition) and of
    # each guidance scale.
    unconditional = used[None]
    record["sampler"], record["steps"] = unconditional["sampler"], unconditional["steps"]
    record["sampling"] = {"unconditional": unconditional,
                          "by_guidance": {str(g): used[g] for g in guidance if g in used}}
    record["provenance"] = provenance(
        {"labels": record.get("labels"), "top": top, "n": n, "guidance": guidance, "steps": steps,
         "sampler": sampler, "batch_size": batch_size, "classifier_epochs": classifier_epochs},
        seed=seed, model_hash=model.model_hash, dataset_fingerprint=record["dataset_fingerprint"])

    if other:
        record["other_dataset"] = ("the model was trained on another dataset (fingerprint "
                                   f"{model.info.get('dataset_fingerprint')}); "
                                   "--allow-other-dataset was given")
    if out is not None:
        with folders.staged_output(Path(out), "evaluation", overwrite) as stage:
            _write_evaluation(stage, record, grid_rows, dataset, x_tr, x_ho,
                              y_tr if findings else None, y_ho if findings else None, findings,
                              grid_columns, rng, real_grid)
    return record


def _write_evaluation(out: Path, record: dict, grid_rows, dataset, x_tr, x_ho, y_tr, y_ho,
                      findings, grid_columns: int, rng, real_grid: bool) -> None:
    scale = max(1, 64 // max(dataset.shape))  # small images are enlarged to be seen
    save_grid(np.concatenate(grid_rows), out / "samples.png", ncol=grid_columns, scale=scale)
    if real_grid:
        save_grid(_real_rows(x_tr, x_ho, y_tr, y_ho, record, findings, grid_columns, rng),
                  out / "real.png", ncol=grid_columns, scale=scale)
    # NaN is "not measurable" here (an AUC with one class empty): recorded as null
    write_json(out / "evaluation.json", record, nan_as_null=True)


def headline_fidelity(record: dict) -> tuple[str, float, float]:
    """(distance name, synthetic vs train, real floor) for a one-line summary: the classifier's
    feature Fréchet distance where the dataset has labels, the intensity W1 otherwise."""
    fid = record["fidelity"]
    key = "feature_frechet" if "feature_frechet" in fid["synthetic_vs_train"] else "intensity_w1"
    return key, fid["synthetic_vs_train"][key], fid["holdout_vs_train_floor"][key]


def _diversity_readout(synthetic: np.ndarray, x_ho: np.ndarray, holdout_patients: np.ndarray,
                       seed: int, n_pairs: int = 200, n_boot: int = 10) -> dict:
    """Mean pairwise MS-SSIM (higher = less diverse) of the unconditional samples, beside the
    holdout's, resampled over half its patients. The mean over pairs does not depend on the set
    size in expectation (only its spread does), so all `n` samples are used. Volumes slice-wise.
    Its own seeded pairs: the record's other numbers and grids draw exactly as before."""
    def div(x):
        if x.ndim == 4:
            return slicewise_diversity(x, n_pairs=n_pairs, seed=seed)
        return diversity(x, n_pairs=n_pairs, seed=seed)

    try:
        fl = real_floor(lambda _ref, cand: div(cand), x_ho, x_ho, holdout_patients, n_boot=n_boot,
                        seed=seed, replace=False, fraction=0.5)
        synth = div(synthetic)
    except ValueError as err:  # too few holdout patients, images smaller than the SSIM kernel
        return {"note": f"not measured: {err}"}
    floor = fl["ms_ssim"]
    return {"synthetic": synth.ms_ssim, "holdout_floor": floor.mean, "floor_low": floor.low,
            "floor_high": floor.high, "floor_size": fl.size, "n_synthetic": int(synthetic.shape[0]),
            "n_pairs": n_pairs, "settings": dataclasses.asdict(synth.settings)}


def _read_out(clf: LabelClassifier, none: np.ndarray, sets: dict[str, np.ndarray],
              calib_x: np.ndarray, calib_y: np.ndarray, seed: int) -> dict:
    """Label rates and assignment tests of one instrument; calib_* = real images it never saw."""
    rates = {lab: label_rate(clf, lab, x, real_images=calib_x, real_targets=calib_y,
                             contrast_samples=none).as_dict()
             for lab, x in sets.items()}
    # With "no finding" as one more class (can it tell that a finding was asked for?) and among
    # the findings alone (can it tell which one?).
    assignment = {"with_no_finding": assignment_test(
        clf, {NO_FINDING: none, **sets}, real_images=calib_x, real_targets=calib_y, seed=seed).as_dict()}
    if len(sets) >= 2:
        assignment["findings_only"] = assignment_test(
            clf, sets, real_images=calib_x, real_targets=calib_y, seed=seed).as_dict()
    return {"label_rates": rates, "assignment": assignment}


def _condition_fidelity(x: np.ndarray, label: str, findings: Sequence[str], x_tr, y_tr, x_ho, y_ho,
                        features: LabelClassifier | None) -> dict:
    """Samples of one condition vs the real train images that carry it, at the real holdout
    group's size, next to that group (its floor at the same n)."""
    in_tr, in_ho = _members(y_tr, findings, label), _members(y_ho, findings, label)
    m = int(min(in_ho.sum(), x.shape[0]))
    if m < 2 or in_tr.sum() < 2:
        return {"n": m, "note": "too few real images with this condition to compare"}
    real = x_tr[in_tr]
    return {"n": m, "synthetic": fidelity_report(real, x[:m], classifier=features),
            "holdout_floor": fidelity_report(real, x_ho[in_ho][:m], classifier=features)}


def _real_rows(x_tr, x_ho, y_tr, y_ho, record, findings, ncol, rng) -> np.ndarray:
    """Real rows matching samples.png: random holdout images, no finding, then each finding
    (holdout first, topped up from train; a short row is padded with black)."""
    rows = [x_ho[rng.permutation(x_ho.shape[0])[:ncol]]]
    if "labels" in record:
        for lab in [NO_FINDING] + record["labels"]:
            rows.append(np.concatenate([x_ho[_members(y_ho, findings, lab)],
                                        x_tr[_members(y_tr, findings, lab)]])[:ncol])
    return np.concatenate([np.concatenate([r, np.zeros((ncol - r.shape[0], *r.shape[1:]), np.float32)])
                           for r in rows])
