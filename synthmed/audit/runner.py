"""`run_audit`: the whole privacy audit of one synthetic cohort against one dataset.

Members are the dataset's TRAIN patients (what the generator was trained on); non-members are its
HOLDOUT patients (same population, never seen). The attacker holds the synthetic images and a
reference sample of the population (the dataset's reference split, or half of the holdout
patients when there is none), which calibrates the attacks. Each attack scores every real
image, scores are aggregated per patient, and the audit asks whether the scores separate members
from non-members. Alongside, every synthetic image is checked for being a (near-)copy of a
training image. The attacks come from one registry (`synthmed.audit.attacks`): the runner builds one
`AttackContext` and puts every attack the profile lists through the same statistics
(`attacks.measure`); `memorisation.check_memorisation` runs the copy checks; `verdict.evaluate`
turns the numbers into rules, `record.AuditRecord` into audit.json and `report.write_report` into
a page.

Outputs (all atomic, no timestamps, no paths, no pseudonyms: the same inputs and seed give the
same bytes): `out/audit.json` (schema "synthmed.audit/1"), `out/report.html`, `out/encoder/`
(the contrastive encoder, reusable with --encoder), and with `filter=True` `out/filtered/`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from synthmed.audit.attacks import (AttackCannotRun, AttackContext, AttackRun, IdentityAttack, IdentitySpace,
                                    attack_scores, attack_settings, get_attack, identity_attack_for,
                                    measure_attack)
from synthmed.audit.inputs import Inputs, load_inputs, shape_text
from synthmed.audit.memorisation import (MemorisationCheck, aligned_memorisation, check_memorisation,
                                         combined_memorisation, measure_memorisation)
from synthmed.audit.profile import AuditProfile, load_profile
from synthmed.audit.record import AUDIT_SCHEMA, AuditRecord, DataRecord, EncoderRecord, quantiles
from synthmed.audit.verdict import Verdict, evaluate
from synthmed.errors import InputError
from synthmed.io.atomic import write_json
from synthmed.provenance import provenance


@dataclass(frozen=True)
class AuditResult:
    """What `run_audit` returns: the verdict, the audit record and where it was written."""

    out: Path
    verdict: Verdict
    record: AuditRecord
    filtered: "AuditResult | None" = None
    report: Any = None  # ReportData, kept so a filtered re-audit can be added before writing

    @property
    def audit(self) -> dict[str, Any]:
        """The content of audit.json (a fresh dict: change the record, not this)."""
        return self.record.to_json_dict()

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def summary(self) -> str:
        """The verdict, the failed rules and, when inconclusive, why and what would settle it."""
        v = self.verdict
        lines = [f"privacy audit: {v.verdict.upper()} (tier {v.tier}); "
                 f"{len(v.rules) - len(v.failed_rules()) - len(v.inconclusive_rules())} of "
                 f"{len(v.rules)} rules passed, {len(v.failed_rules())} failed, "
                 f"{len(v.inconclusive_rules())} inconclusive"]
        lines += [f"- failed: {r.rule}: {r.explanation}" for r in v.failed_rules()]
        if v.verdict == "inconclusive":
            from synthmed.audit.report import inconclusive_text

            lines.append(f"inconclusive: {inconclusive_text(self.audit)}")
        if self.filtered is not None:
            lines.append(f"filtered cohort: {self.filtered.verdict.verdict} -> {self.filtered.out}")
        lines.append(f"wrote {self.out / 'audit.json'} and {self.out / 'report.html'}")
        return "\n".join(lines)

    def with_record(self, record: AuditRecord) -> "AuditResult":
        """This result with another record; the report shows the same content."""
        report = self.report
        if report is not None:
            report = replace(report, audit=record.to_json_dict())
        return replace(self, record=record, report=report)


# -------------------------------------------------------------------------------- embeddings
def fit_encoder(inputs: Inputs, profile: AuditProfile, seed: int, encoder: Path | None):
    """The learned embedder: loaded from `encoder`, or trained on the TRAIN split only."""
    from synthmed.audit import embeddings as emb

    if encoder is not None:
        loaded = emb.load_embedder(encoder)
        want = tuple(inputs.train.shape[1:])
        if tuple(getattr(loaded, "shape", want)) != want:
            raise InputError(f"{encoder}: the encoder was made for {shape_text(loaded.shape)} images "
                             f"but the dataset's are {shape_text(want)}")
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

    return embed_all(inputs, PixelEmbedder())


def plan_attacks(prof: AuditProfile, ctx: AttackContext):
    """(attacks to run, [(label, why not)] for those that cannot), in the profile's order: every
    vector attack in every available space (space by space), then each attack with its own space."""
    jobs, not_evaluated = [], []
    classes = [get_attack(name) for name in prof.attacks.attacks]
    if ctx.model is not None:  # the model in hand: the white-box attacks too
        classes += [get_attack(n) for n in prof.whitebox.attacks if n not in prof.attacks.attacks]
    candidates = [cls(space) for space in ctx.spaces for cls in classes if cls.fixed_space is None]
    candidates += [cls() for cls in classes if cls.fixed_space is not None]
    if prof.identity.enabled:
        candidates.append(identity_attack_for(ctx.identity_network)())
    for attack in candidates:
        why = attack.unavailable(ctx)
        if why is None:
            jobs.append(attack)
        else:
            not_evaluated.append((attack.label, why))
    return jobs, not_evaluated


# ----------------------------------------------------------------------------------- driver
def run_audit(dataset: Path, cohort: Path, profile: "AuditProfile | Path | str | None", out: Path, *,
              seed: int = 0, filter: bool = False, encoder: Path | None = None,
              identity_network: Path | None = None, overwrite: bool = False,
              allow_other_dataset: bool = False, model: Path | None = None) -> AuditResult:
    """Audit `cohort` against `dataset`; write out/audit.json and out/report.html.

    model: the generator's run folder; the white-box attacks (profile `whitebox:`) then query it.

    A failed audit is a result, not an error: the verdict is in the returned `AuditResult`.
    Raises InputError for inputs that cannot be audited (missing splits, too few patients,
    mismatched shapes).

    identity_network: local weights of the re-identification network (`synthmed identity train`)
    for the identity attack, instead of training one on the train split (profile identity.weights).
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
    target = None
    if model is not None:
        from synthmed.audit.whitebox.registry import load_target

        target = load_target(Path(model), ds, allow_other_dataset)
    embedder = fit_encoder(inputs, prof, seed, Path(encoder) if encoder else None)
    identity = None
    if prof.identity.enabled:
        from synthmed.audit.attacks.identity import prepare_identity

        identity = prepare_identity(inputs, prof, seed, Path(identity_network) if identity_network else None,
                                    encoder=embedder, make_encoder=lambda: _fallback_encoder(inputs, prof, seed))
    result = audit_inputs(inputs, prof, out, seed=seed, embedder=embedder,
                          dataset_fingerprint=ds.fingerprint(), cohort_fingerprint=co.fingerprint(),
                          encoder_given=encoder is not None, identity=identity, model=target)
    # Which model made the audited cohort (`synthmed release` checks it against the run) and,
    # with --model, what the white-box attacks found beside the model's own privacy claim.
    model_sec: dict[str, Any] = {}
    model_sha = str(co.info.get("model_sha256", "") or "")
    if model_sha:
        model_sec["sha256"] = model_sha
    if target is not None:
        from synthmed.audit.whitebox.registry import model_section

        model_sec.update(model_section(target, result.record))
    if model_sec:
        result = result.with_record(result.record.with_(
            sections={**result.record.sections, "model": model_sec}))
    if other:
        note = (f"the cohort's model was trained on another dataset (fingerprint "
                f"{co.info.get('dataset_fingerprint')}); --allow-other-dataset was given")
        result = result.with_record(result.record.with_(data=replace(result.record.data, other_dataset=note)))
    # Built whole in a staging folder, moved into place at the end: a crash leaves the old audit
    # or the new one, never a new audit.json beside an old report.html.
    with folders.staged_output(out, "audit", overwrite) as stage:
        result = replace(result, out=stage)
        if filter:
            from synthmed.audit.filter import filter_and_reaudit

            result = filter_and_reaudit(result, inputs, co, prof, seed=seed, embedder=embedder,
                                        dataset_fingerprint=ds.fingerprint(), identity=identity)
        trained_here = identity is not None and not identity.fallback and identity_network is None \
            and prof.identity.weights is None and identity.embedder is not None
        write_outputs(result, embedder if encoder is None else None,
                      identity.embedder if trained_here else None)
    filtered = None if result.filtered is None else replace(result.filtered, out=out / "filtered")
    return replace(result, out=out, filtered=filtered)


def _fallback_encoder(inputs: Inputs, prof: AuditProfile, seed: int):
    """The augmentation-invariant encoder for the identity fallback when the audit has none."""
    from synthmed.audit import embeddings as emb

    if prof.embedding.steps == 0:
        return None
    e = emb.ContrastiveEncoder(inputs.spatial_dims, tuple(inputs.train.shape[1:]),
                               dim=prof.embedding.dim, seed=seed)
    return e.fit(inputs.train, steps=prof.embedding.steps, batch_size=prof.embedding.batch_size)


def write_outputs(result: AuditResult, encoder_to_save=None, identity_to_save=None) -> None:
    """audit.json, report.html (and the trained encoder / identity network) into result.out; the
    identity network goes to out/identity-network/, reusable with --identity-network."""
    from synthmed.audit.report import write_report

    out = result.out
    out.mkdir(parents=True, exist_ok=True)
    # NaN is "not measurable" here (a share of an empty set): recorded as null
    write_json(out / "audit.json", result.audit, nan_as_null=True)
    if encoder_to_save is not None and hasattr(encoder_to_save, "save"):
        encoder_to_save.save(out / "encoder")
    if identity_to_save is not None:
        identity_to_save.save(out / "identity-network")
    if result.report is not None:
        write_report(out / "report.html", result.report)


def audit_inputs(inputs: Inputs, prof: AuditProfile, out: Path, *, seed: int, embedder,
                 dataset_fingerprint: str, cohort_fingerprint: str, encoder_given: bool = False,
                 identity: IdentitySpace | None = None, model=None) -> AuditResult:
    """The audit proper on loaded images (shared by run_audit and the filtered re-audit); writes
    nothing (see `write_outputs`). identity: the identity attack's space (when the profile has it)."""
    from synthmed.audit import neighbours
    from synthmed.audit.report import ReportData
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
    ctx = AttackContext(inputs=inputs, profile=prof, seed=seed, spaces=spaces, identity_network=identity,
                        model=model)
    jobs, not_evaluated = plan_attacks(prof, ctx)
    alpha = prof.decision_alpha(len(jobs))
    cand_patients = ctx.candidate_patients
    members = ctx.member_patients

    runs: list[AttackRun] = []
    identity_found = None  # (links, patient measure inputs) of the identity attack, for the report
    with make_progress() as progress:
        task = progress.add_task("membership attacks", total=len(jobs) + 2)
        for j, attack in enumerate(jobs):
            try:
                scored = attack.score(ctx)
            except AttackCannotRun as why:
                not_evaluated.append((attack.label, str(why)))
                continue
            except np.linalg.LinAlgError:
                # a KDE on images that are (nearly) all alike: no density to compare
                not_evaluated.append((attack.label, "its density estimate is singular (the "
                                      "reference or synthetic images are too alike or too few)"))
                continue
            finally:
                progress.advance(task)
            run = measure_attack(attack.name, attack.space, scored.scores, cand_patients, members, prof,
                                 alpha, seed + 1000 * j, aggregate=attack.aggregate, tail_test=attack.tail_test,
                                 genuine_quantiles=scored.extra.get("genuine_quantiles"))
            if attack.two_sided:
                run = replace(run, measure=replace(run.measure, two_sided=True))
            if scored.note:
                run.record["note"] = scored.note
            if scored.cannot_pass:
                run = replace(run, measure=replace(run.measure, cannot_pass=scored.cannot_pass))
                run.record["not_evaluated_reason"] = scored.cannot_pass
            if isinstance(attack, IdentityAttack):
                identity_found = scored.extra.get("links")
            runs.append(run)

        def aligned_stage() -> None:
            progress.update(task, description="aligned copy search (registration)")

        mem = check_memorisation(inputs, pix, spaces.get("encoder"), prof, alpha, seed, on_aligned=aligned_stage)
        progress.advance(task)
        dist_space = "encoder" if "encoder" in spaces else "pixel"
        dv = spaces.get(dist_space, pix)
        d_st = neighbours.nearest(dv["synthetic"], dv["train"], k=1)[0][:, 0]
        d_ht = neighbours.nearest(dv["holdout"], dv["train"], k=1)[0][:, 0]
        d_sh = neighbours.nearest(dv["synthetic"], dv["holdout"], k=1)[0][:, 0]
        progress.advance(task)

    skipped += [{"attack": name, "reason": why} for name, why in not_evaluated]
    from synthmed.audit.verdict import AuditSize

    n_eval = len(set(inputs.holdout_patients.tolist()))
    size = AuditSize(n_holdout=max(n_eval, int(inputs.extra.get("n_holdout_patients", n_eval))),
                     n_evaluated=n_eval)
    verdict = evaluate(prof, [r.measure for r in runs], mem.measure, not_evaluated, size=size, alpha=alpha)
    record = AuditRecord(
        verdict=verdict.verdict, tier=verdict.tier, profile=prof.name,
        rules=[r.to_dict() for r in verdict.rules],
        thresholds={
            "max_auc": prof.attacks.max_auc, "auc_evidence_above": prof.attacks.auc_evidence_above,
            "target_fpr": prof.attacks.target_fpr, "max_tpr": prof.attacks.max_tpr,
            "max_hard_copies": prof.memorisation.max_hard_copies,
            "memorisation_quantile": prof.memorisation.quantile,
            "confidence": prof.confidence, "per_interval_alpha": alpha,
            "statistical_rules": prof.n_statistical_rules(len(runs)),
        },
        attacks=[r.record for r in runs], skipped=skipped, memorisation=mem.record(),
        distances={"space": dist_space, "synthetic_to_train": quantiles(d_st),
                   "holdout_to_train": quantiles(d_ht), "synthetic_to_holdout": quantiles(d_sh)},
        data=DataRecord.from_inputs(inputs, dataset_fingerprint, cohort_fingerprint),
        encoder=EncoderRecord(
            source="given" if encoder_given else ("trained on the train split" if embedder is not None else "none"),
            name=getattr(embedder, "name", None) if embedder is not None else None,
            steps=prof.embedding.steps, dim=prof.embedding.dim),
        # the white-box settings are recorded when they ran (an audit without --model keeps its bytes)
        provenance=provenance(prof if model is not None else prof.model_dump(mode="json", exclude={"whitebox"}),
                              seed=seed, schema=AUDIT_SCHEMA),
        sections={"power": verdict.power})
    identity_gallery: list[dict[str, Any]] = []
    if prof.identity.enabled:
        section, identity_gallery = _identity_section(inputs, identity, identity_found, prof.gallery_pairs)
        record = record.with_(sections={**record.sections, "identity": section})
    report = ReportData(
        audit=record.to_json_dict(), curves={r.measure.name: (r.fpr, r.tpr) for r in runs},
        distances={"synthetic → train": d_st, "holdout → train": d_ht, "synthetic → holdout": d_sh},
        distance_space=dist_space, gallery=_gallery(inputs, mem, prof.gallery_pairs),
        identity_gallery=identity_gallery)
    return AuditResult(out=out, verdict=verdict, record=record, report=report)


def _identity_section(inputs: Inputs, space: IdentitySpace | None, found, n: int):
    """audit.json's "identity" section and the report's linked pairs: the n training patients
    most strongly linked to a synthetic image, shown by synthetic index and train-split positions
    (the images go to the report only; no patient id goes anywhere)."""
    section: dict[str, Any] = {"enabled": True}
    if space is None:
        return section, []
    section.update(space.record())
    section["attack"] = identity_attack_for(space).name
    if found is None:
        return section, []
    members = set(map(str, inputs.train_patients.tolist()))
    is_member = np.array([p in members for p in found.patients.tolist()])
    hold_scores = np.sort(found.score[~is_member])
    m_idx = np.flatnonzero(is_member)
    order = m_idx[np.lexsort((m_idx, -found.score[m_idx]))][:n]
    train_ids = np.asarray(inputs.train_patients).astype(str)
    links, gallery = [], []
    for rank, k in enumerate(order, start=1):
        pos = int(found.real_index[k])  # candidates are train images first: a member's index is its train position
        s_idx = int(found.synthetic_index[k])
        score = float(found.score[k])
        above = float(np.mean(hold_scores >= score)) if hold_scores.size else float("nan")
        links.append({"rank": rank, "synthetic_index": s_idx, "train_position": pos, "similarity": score,
                      "holdout_share_as_strong": above})
        own = np.flatnonzero(train_ids == str(found.patients[k]))[:4]
        gallery.append({"rank": rank, "synthetic_index": s_idx, "similarity": score,
                        "holdout_share_as_strong": above, "train_positions": [int(i) for i in own],
                        "synthetic": inputs.synthetic[s_idx], "train": [inputs.train[i] for i in own]})
    section["links"] = links
    section["strongest_holdout_link"] = float(hold_scores[-1]) if hold_scores.size else None
    return section, gallery


def _gallery(inputs: Inputs, mem: MemorisationCheck, n: int) -> list[dict[str, Any]]:
    """The n closest synthetic / training pairs (by pixel distance), as indices and images."""
    res = mem.pixel
    d = np.asarray(res.distance, dtype=np.float64)
    j = np.asarray(res.nearest_train, dtype=np.int64)
    order = np.lexsort((np.arange(d.size), d))[:n]
    flagged = np.asarray(res.flagged, dtype=bool)
    return [{"rank": r + 1, "synthetic_index": int(i), "train_rank_index": int(j[i]),
             "distance": float(d[i]), "flagged": bool(flagged[i]),
             "synthetic": inputs.synthetic[i], "train": inputs.train[j[i]]}
            for r, i in enumerate(order)]


__all__ = ["AUDIT_SCHEMA", "AuditResult", "Inputs", "run_audit", "audit_inputs", "load_inputs", "measure_attack",
           "measure_memorisation", "aligned_memorisation", "combined_memorisation", "attack_scores",
           "attack_settings", "plan_attacks", "write_outputs"]
