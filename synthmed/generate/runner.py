"""Generating a cohort from a spec: sharded, resumable, merged into one Cohort folder.

Work happens in a folder beside the target, `.<name>.generating/`, never in the target, so the
target is always absent, the old cohort, or the finished new one:

    .<name>.generating/
        generate.json                  what is being generated (spec, model hash): a re-run with
                                       another spec or model is refused, not mixed in
        patients/SYN-000123.npy        the patient's studies, float32 (studies, *shape)
        patients/SYN-000123.json       written last: the patient's rows and the sha256 of every
                                       file of that patient (the patient is finished when this
                                       exists and every listed file matches)
        <format>/SYN-000123/...        files of the requested formats (generate/writers/)
        shards/shard-00001-of-00004.json   written when shard 1 of 4 has finished

A re-run skips the patients that are finished and verify, and redoes any other (a file killed
half-written, or changed since). When every shard has finished, `merge` builds the cohort in a
staging folder (per-format files are hard links), stamps it and swaps it into place
(synthmed/io/folders.py), then removes the work folder. One shard (`1/1`, the default) merges
at once; with several, `synthmed generate --merge` does it after the last one.

Patients are sampled in groups of `spec.batch_patients` consecutive patients; a group is the unit
whose bytes do not depend on anything else (batch composition changes the last bits of a float),
so shards take whole groups (group g goes to shard g mod n) and any shard or group regenerates
alone, byte for byte.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from synthmed.errors import InputError, arg
from synthmed.generate.manifest import ManifestRow, write_manifest
from synthmed.generate.patients import PatientPlan, draw_patient
from synthmed.generate.spec import CohortSpec
from synthmed.generate.study import CohortContext, SyntheticStudy
from synthmed.io import folders
from synthmed.generate.writers import write_study
from synthmed.io.atomic import save_npy, write_json
from synthmed.io.jsonfile import read_json
from synthmed.provenance import provenance, sha256_file, sha256_json

STATE = "generate.json"
STATE_SCHEMA = "synthmed.generate-state/1"
COHORT_SCHEMA = "synthmed.cohort/1"


# ---------------------------------------------------------------------------------- shards
@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based index)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InputError(f"shard {self.index}/{self.count}: needs 0 <= k < n")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """'k/n' (0-based k, as torchrun's RANK is)."""
        k, sep, n = str(text).partition("/")
        try:
            if not sep:
                raise ValueError
            return cls(int(k), int(n))
        except ValueError:
            raise InputError(f"{arg('shard')}: {text!r} is not k/n (e.g. 0/4; k counts from 0)") from None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Shard":
        """The shard torchrun gives this process (RANK / WORLD_SIZE), else 0/1."""
        env = dict(os.environ if env is None else env)
        if "WORLD_SIZE" not in env:
            return cls()
        try:
            return cls(int(env.get("RANK", "0")), int(env["WORLD_SIZE"]))
        except ValueError:
            raise InputError(f"RANK / WORLD_SIZE are not whole numbers ({env.get('RANK')!r}, "
                             f"{env.get('WORLD_SIZE')!r})") from None

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"

    def groups(self, n_groups: int) -> list[int]:
        return list(range(self.index, n_groups, self.count))


# ---------------------------------------------------------------------------------- results
@dataclass
class GenerateResult:
    """What a `generate` call did."""

    out: Path
    shard: Shard
    generated: list[str] = field(default_factory=list)   # patients sampled by this call
    skipped: list[str] = field(default_factory=list)     # finished earlier, checksums verified
    merged: bool = False
    seconds: float = 0.0
    sampling: dict[str, Any] = field(default_factory=dict)  # the sampler settings actually used

    @property
    def patients_per_s(self) -> float:
        return len(self.generated) / self.seconds if self.seconds > 0 else math.nan

    def summary(self) -> str:
        rate = f", {self.patients_per_s:.2f} patients/s" if self.generated else ""
        what = f"{len(self.generated)} patients generated, {len(self.skipped)} already finished{rate}"
        if self.sampling:
            what += (f" ({self.sampling['sampler']}, {self.sampling['steps']} steps, guidance "
                     f"{self.sampling['guidance_scale']:g})")
        if self.merged:
            return f"{what} -> {self.out}"
        return (f"{what} (shard {self.shard.index}/{self.shard.count}); merge when every shard "
                f"has finished -> {self.out}")


def work_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}.generating"


def spec_digest(spec: CohortSpec) -> str:
    return sha256_json(spec.model_dump(mode="json"))


def context_for(pipe, spec: CohortSpec) -> CohortContext:
    """What every written file records about how the cohort was made."""
    from synthmed import __version__

    dims = int(pipe.spatial_dims)
    modality = str(pipe.info.get("modality") or ("DX" if dims == 2 else "MR"))
    spacing = tuple(float(v) for v in (pipe.info.get("spacing") or ()))
    window = pipe.info.get("intensity_window")
    return CohortContext(
        cohort_seed=spec.seed, model_hash=pipe.model_hash, synthmed_version=__version__,
        spatial_dims=dims, modality=modality, sampling=_settings(pipe, spec).as_dict(),
        spacing=spacing, intensity_window=tuple(window) if window else None,
        label_vocabulary=tuple(pipe.label_vocabulary), spec_sha256=spec_digest(spec),
        body_part=str(pipe.info.get("body_part") or ""))


def _settings(pipe, spec: CohortSpec):
    from synthmed.models.sampling import resolve_sampling

    s = spec.sampling
    return resolve_sampling(pipe.config, s.sampler, s.steps, s.guidance_scale)


# ---------------------------------------------------------------------------------- sampling
def plan_patients(pipe, spec: CohortSpec, indices) -> list[PatientPlan]:
    return [draw_patient(spec, i, pipe.label_vocabulary, pipe.condition_priors) for i in indices]


def sample_group(pipe, spec: CohortSpec, plans: list[PatientPlan]) -> dict[int, list[SyntheticStudy]]:
    """Every study of a group of patients: first studies from noise in one batch, then every
    follow-up from its patient's first study (SDEdit at `spec.followup.strength`) in another."""
    s = spec.sampling
    kw = dict(steps=s.steps, sampler=s.sampler, guidance_scale=s.guidance_scale)
    follow = [(j, st) for j, p in enumerate(plans) for st in p.studies[1:]]
    strength, fresh = spec.followup.strength, spec.followup.fresh_noise
    keep = bool(follow) and fresh < 1.0
    firsts = pipe.sample(len(plans), conditions=[p.studies[0].conditions(p.patient.sex) for p in plans],
                         seeds=[p.studies[0].seed for p in plans], batch_size=len(plans),
                         noise_at=strength if keep else None, **kw)
    out = {p.patient.index: [_study(p, 0, firsts.images[j], None, firsts.settings.steps)]
           for j, p in enumerate(plans)}
    if follow:
        # A follow-up is re-noised with its first study's own noise at that level but for a
        # `fresh_noise` share: an all-fresh draw redraws part of the anatomy the noise hides, and
        # the re-identification network then no longer finds the patient (tests/
        # test_generate_quality.py: 0.90-0.93 of follow-ups at strength 0.25, 1.00 kept).
        rows = [j for j, _ in follow]
        later = pipe.sample(len(follow), conditions=[st.conditions(plans[j].patient.sex) for j, st in follow],
                            seeds=[st.seed for _, st in follow], batch_size=len(follow),
                            init_images=firsts.images[rows], strength=strength,
                            init_noise=firsts.noise[rows] if keep else None, fresh_noise=fresh, **kw)
        for m, (j, st) in enumerate(follow):
            p = plans[j]
            out[p.patient.index].append(_study(p, st.study_index, later.images[m], strength,
                                               later.settings.steps))
    return out


def _study(plan: PatientPlan, s: int, image: np.ndarray, strength: float | None, steps: int) -> SyntheticStudy:
    st = plan.studies[s]
    return SyntheticStudy(patient=plan.patient, study_index=s, days_since_first=st.days_since_first,
                          labels=tuple(st.labels or ()), age=st.age, image=np.asarray(image, np.float32),
                          seed=st.seed, followup_strength=strength)


# ---------------------------------------------------------------------------------- formats
def write_formats(studies: list[SyntheticStudy], ctx: CohortContext, root: Path,
                  formats: list[str]) -> list[ManifestRow]:
    """Write `studies` in `formats` under `root` (each file atomically, by generate/writers/);
    return their manifest rows (with no format, the rows alone). The one place writers are
    called. A follow-up's row states the denoising steps its SDEdit pass really took."""
    rows: list[ManifestRow] = []
    for st in studies:
        c = ctx
        if st.followup_strength is not None:
            from synthmed.generate.pipeline import sdedit_steps

            steps = sdedit_steps(int(ctx.sampling["steps"]), st.followup_strength)
            c = replace(ctx, sampling={**ctx.sampling, "steps": steps})
        rows += write_study(st, c, root, list(formats))
    return rows


def _row_to_json(row: ManifestRow) -> dict[str, Any]:
    d = asdict(row)
    d["labels"] = list(row.labels)
    return d


def _row_from_json(d: dict[str, Any]) -> ManifestRow:
    return ManifestRow(**{**d, "labels": tuple(d["labels"]), "paths": dict(d["paths"])})


def _context_to_json(ctx: CohortContext) -> dict[str, Any]:
    return asdict(ctx)


def _context_from_json(d: dict[str, Any]) -> CohortContext:
    d = dict(d)
    for key in ("spacing", "label_vocabulary", "patient_orientation"):
        if key in d and d[key] is not None:
            d[key] = tuple(d[key])
    if d.get("intensity_window") is not None:
        d["intensity_window"] = tuple(d["intensity_window"])
    return CohortContext(**d)


# ---------------------------------------------------------------------------------- records
def _patient_files(work: Path, pid: str) -> tuple[Path, Path]:
    return work / "patients" / f"{pid}.npy", work / "patients" / f"{pid}.json"


def patient_done(work: Path, pid: str) -> dict[str, Any] | None:
    """The patient's record when it is finished and every file it lists matches, else None."""
    _, rec_path = _patient_files(work, pid)
    if not rec_path.is_file():
        return None
    try:
        import json

        rec = json.loads(rec_path.read_text(encoding="utf-8"))
        for rel, digest in rec["files"].items():
            p = work / rel
            if not p.is_file() or sha256_file(p) != digest:
                return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rec


def _save_patient(work: Path, studies: list[SyntheticStudy], ctx: CohortContext,
                  formats: list[str]) -> None:
    pid = studies[0].patient.patient_id
    npy, rec_path = _patient_files(work, pid)
    rec_path.unlink(missing_ok=True)  # a stale record must never vouch for new files
    save_npy(npy, np.stack([st.image for st in studies]).astype(np.float32))
    rows = write_formats(studies, ctx, work, formats)
    rels = [npy.relative_to(work).as_posix()]
    for row in rows:
        for rel in row.paths.values():
            path = work / rel
            for f in (sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]):
                rels.append(f.relative_to(work).as_posix())
    files = {rel: sha256_file(work / rel) for rel in dict.fromkeys(rels)}
    # Written last: the patient is finished when this exists and its files match.
    write_json(rec_path, {"patient": pid, "index": studies[0].patient.index,
                          "rows": [_row_to_json(r) for r in rows], "files": files})


# ---------------------------------------------------------------------------------- the run
def _state(pipe, spec: CohortSpec) -> dict[str, Any]:
    from synthmed.generate.pipeline import sdedit_steps

    settings = _settings(pipe, spec)
    spec_json = spec.model_dump(mode="json")
    info: dict[str, Any] = {
        "spatial_dims": int(pipe.spatial_dims), "shape": list(pipe.shape),
        "label_vocabulary": pipe.label_vocabulary, "model_sha256": pipe.model_hash,
        # what the model was trained on, so an audit against another dataset can say so
        "dataset_fingerprint": str(pipe.info.get("dataset_fingerprint", "")),
        # What was actually used: guidance in particular changes how strongly a finding shows,
        # so a reader of the cohort must not have to dig for defaults.
        "sampling": settings.as_dict(),
        "provenance": provenance(spec_json, seed=spec.seed, model_sha256=pipe.model_hash,
                                 model_config=pipe.config.model_dump(mode="json")),
    }
    if max(spec.studies.distribution()) > 1:
        info["followup_sampling"] = {**settings.as_dict(), "strength": spec.followup.strength,
                                     "fresh_noise": spec.followup.fresh_noise,
                                     "steps": sdedit_steps(settings.steps, spec.followup.strength)}
    source = {"dataset_fingerprint": info["dataset_fingerprint"],
              "modality": context_for(pipe, spec).modality, "spatial_dims": int(pipe.spatial_dims),
              "image_shape": list(pipe.shape), "label_vocabulary": list(pipe.label_vocabulary)}
    return {"schema": STATE_SCHEMA, "spec_sha256": spec_digest(spec), "model_sha256": pipe.model_hash,
            "spec": spec_json, "shape": list(pipe.shape), "cohort_info": info,
            "context": _context_to_json(context_for(pipe, spec)), "source": source}


def _work_record(path: Path, what: str, work: Path) -> dict[str, Any]:
    # a broken record of the work folder: the way out is to start the generation over
    return read_json(path, what, hint=f"remove {work} to start over")


def _open_work(work: Path, state: dict[str, Any], overwrite: bool) -> None:
    path = work / STATE
    if path.is_file():
        old = _work_record(path, "generation state", work)
        same = (old.get("spec_sha256"), old.get("model_sha256")) == (state["spec_sha256"],
                                                                      state["model_sha256"])
        if same:
            return
        if not overwrite:
            raise InputError(f"{work}: holds an unfinished generation of another spec or model; "
                             f"pass {arg('overwrite', True)} to discard it, or choose another {arg('out')}")
        shutil.rmtree(work)
    elif work.exists() and any(work.iterdir()) and not overwrite:
        raise InputError(f"{work}: exists but is not a synthmed generation in progress; remove it")
    elif work.exists():
        shutil.rmtree(work)
    (work / "patients").mkdir(parents=True, exist_ok=True)
    write_json(path, state)


def generate(pipe, spec: CohortSpec, out: str | Path, *, shard: Shard | None = None,
             overwrite: bool = False, progress_name: str = "generate",
             on_patient: Callable[[str], None] | None = None) -> GenerateResult:
    """Generate this shard's patients of `spec` with `pipe`, resuming what an earlier run left;
    with one shard, merge into the cohort folder `out` at once."""
    out = Path(out)
    shard = shard or Shard()
    spec.check_against(pipe.label_vocabulary)
    _settings(pipe, spec)  # bad sampler settings are refused before any work
    folders.prepare_output(out, "cohort", overwrite=True)  # kind and place checked; replacing later
    work = work_dir(out)
    state = _state(pipe, spec)
    if _already_complete(out, state):
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)  # a merge killed after its commit
        return GenerateResult(out, shard, merged=True, sampling=state["cohort_info"]["sampling"])
    if (out / folders.MARKER).is_file() and not overwrite:
        raise InputError(f"{out}: already holds a synthmed cohort (of another spec or model); "
                         f"pass {arg('overwrite', True)} to replace it")
    t0 = time.perf_counter()
    # One writer per shard (shards of one cohort run side by side); the lock sits beside the
    # work folder so that discarding the work never removes a held lock.
    with folders.writer_lock(work.parent / f"{work.name}-{shard.name}"):
        _open_work(work, state, overwrite)
        result = _run_shard(pipe, spec, work, shard, progress_name, on_patient)
    result.out = out
    result.seconds = time.perf_counter() - t0
    result.sampling = state["cohort_info"]["sampling"]
    if shard.count == 1:
        merge(out, overwrite=overwrite)
        result.merged = True
    return result


def _run_shard(pipe, spec: CohortSpec, work: Path, shard: Shard, progress_name: str,
               on_patient: Callable[[str], None] | None) -> GenerateResult:
    from rich.progress import TextColumn

    from synthmed.progress import make_progress

    ctx = context_for(pipe, spec)
    b = spec.batch_patients
    n_groups = math.ceil(spec.patients / b)
    mine = [list(range(g * b, min(spec.patients, (g + 1) * b))) for g in shard.groups(n_groups)]
    total = sum(len(g) for g in mine)
    result = GenerateResult(Path(), shard)
    t0 = time.perf_counter()
    with make_progress(TextColumn("{task.fields[patients_per_s]:.2f} patients/s")) as bar:
        task = bar.add_task(progress_name, total=total, patients_per_s=0.0)
        for group in mine:
            todo = [i for i in group if patient_done(work, _pid(i)) is None]
            result.skipped += [_pid(i) for i in group if i not in todo]
            if todo:
                # The whole group is sampled (its bytes depend on the group), only the patients
                # not yet finished are written.
                studies = sample_group(pipe, spec, plan_patients(pipe, spec, group))
                for i in todo:
                    _save_patient(work, studies[i], ctx, spec.formats)
                    result.generated.append(_pid(i))
                    if on_patient is not None:
                        on_patient(_pid(i))
            elapsed = time.perf_counter() - t0
            bar.update(task, advance=len(group),
                       patients_per_s=len(result.generated) / elapsed if elapsed > 0 else 0.0)
    ids = [_pid(i) for g in mine for i in g]
    write_json(work / "shards" / f"{shard.name}.json",
               {"shard": shard.index, "of": shard.count, "patients": ids,
                "records": {pid: sha256_file(_patient_files(work, pid)[1]) for pid in ids}})
    return result


def _pid(i: int) -> str:
    from synthmed.generate.patients import patient_id

    return patient_id(i)


def _already_complete(out: Path, state: dict[str, Any]) -> bool:
    info_path = out / "cohort.json"
    if not (out / folders.MARKER).is_file() or not info_path.is_file():
        return False
    try:
        info = read_json(info_path, "cohort description")
    except InputError:
        return False
    gen = info.get("generation") or {}
    if (gen.get("spec_sha256"), info.get("model_sha256")) != (state["spec_sha256"], state["model_sha256"]):
        return False
    folders.verify(out, "cohort")  # a finished cohort that was changed is an error, not "done"
    return True


def generate_once(pipe, spec: CohortSpec, out: str | Path, *, overwrite: bool = False,
                  progress_name: str = "sample") -> Path:
    """The whole cohort in one go, all or nothing (`synthmed sample`): the same sampling, files
    and assembly as `generate`, with the work inside the staging folder, so an interrupted run
    leaves the old cohort (or nothing) and no work to resume."""
    return run_once(pipe, spec, out, overwrite=overwrite, progress_name=progress_name).out


def run_once(pipe, spec: CohortSpec, out: str | Path, *, overwrite: bool = False,
             progress_name: str = "sample") -> GenerateResult:
    """`generate_once`, returning what it did (patients, seconds, sampler settings used)."""
    out = Path(out)
    t0 = time.perf_counter()
    spec.check_against(pipe.label_vocabulary)
    _settings(pipe, spec)
    folders.prepare_output(out, "cohort", overwrite)  # before sampling, not after
    with folders.staged_output(out, "cohort", overwrite) as stage:
        # Beside the staging folder, not in it (it must not be listed in SHA256SUMS); its name
        # starts like the staging folder's, so the next writer clears it after a crash.
        work = stage.parent / f"{stage.name}-work"
        try:
            state = _state(pipe, spec)
            _open_work(work, state, overwrite=False)
            result = _run_shard(pipe, spec, work, Shard(), progress_name, None)
            # As `merge` reads it (key order included), so both paths give the same bytes.
            state = _work_record(work / STATE, "generation state", work)
            assemble(work, stage, state, spec, _finished_records(work, spec))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    result.out, result.merged = out, True
    result.seconds = time.perf_counter() - t0
    result.sampling = state["cohort_info"]["sampling"]
    return result


# ---------------------------------------------------------------------------------- merging
def merge(out: str | Path, *, overwrite: bool = False) -> Path:
    """Merge the finished shards in `out`'s work folder into the cohort folder `out`."""
    out = Path(out)
    work = work_dir(out)
    if not (work / STATE).is_file():
        if (out / folders.MARKER).is_file():
            folders.verify(out, "cohort")
            return out  # merged already
        raise InputError(f"{out}: nothing to merge (no generation in progress at {work})")
    state = _work_record(work / STATE, "generation state", work)
    spec = CohortSpec.model_validate(state["spec"])
    records = _finished_records(work, spec)
    if (out / folders.MARKER).is_file() and not overwrite:
        raise InputError(f"{out}: already holds a synthmed cohort; pass {arg('overwrite', True)} to replace it")
    with folders.staged_output(out, "cohort", overwrite=True) as stage:
        assemble(work, stage, state, spec, records)
    shutil.rmtree(work, ignore_errors=True)
    return out


def _finished_records(work: Path, spec: CohortSpec) -> list[dict[str, Any]]:
    shard_files = sorted((work / "shards").glob("shard-*-of-*.json")) if (work / "shards").is_dir() else []
    done: dict[str, str] = {}
    counts = set()
    seen_shards = set()
    for f in shard_files:
        d = _work_record(f, "shard record", work)
        counts.add(int(d["of"]))
        seen_shards.add(int(d["shard"]))
        done.update(d["records"])
    if len(counts) > 1:
        raise InputError(f"{work}: shards of different splits ({sorted(counts)}) were run; run one "
                         f"split (or {arg('overwrite', True)} and start again)")
    n = counts.pop() if counts else 0
    missing_shards = sorted(set(range(n)) - seen_shards)
    if not shard_files or missing_shards:
        which = ", ".join(f"{k}/{n}" for k in missing_shards) or "all"
        raise InputError(f"{work}: cannot merge, shard(s) {which} have not finished")
    out = []
    for i in range(spec.patients):
        pid = _pid(i)
        rec = patient_done(work, pid)
        if rec is None or done.get(pid) != sha256_file(_patient_files(work, pid)[1]):
            raise InputError(f"{work}: patient {pid} is missing or changed since its shard finished; "
                             "re-run that shard (finished patients are kept)")
        out.append(rec)
    return out


def assemble(work: Path, dest: Path, state: dict[str, Any], spec: CohortSpec,
             records: list[dict[str, Any]]) -> None:
    """Write the cohort into `dest`: images.npy (every study, in manifest order), the format
    files (hard links to the work folder's), manifest.csv / .parquet, cohort.json, the data
    card, provenance/ and, last, SHA256SUMS."""
    from synthmed.generate.documents import (SourceSummary, build_data_card, write_data_card,
                                             write_provenance, write_sha256sums)

    shape = tuple(state["shape"])
    rows = [_row_from_json(r) for rec in records for r in rec["rows"]]
    images = np.lib.format.open_memmap(dest / "images.npy", mode="w+", dtype=np.float32,
                                       shape=(len(rows), *shape))
    k = 0
    for rec in records:
        arr = np.load(work / "patients" / f"{rec['patient']}.npy", allow_pickle=False)
        images[k:k + arr.shape[0]] = arr
        k += arr.shape[0]
        for rel in rec["files"]:
            if not rel.startswith("patients/"):
                _link(work / rel, dest / rel)
    images.flush()
    del images
    write_manifest(rows, dest)
    info = cohort_info(state, spec, rows)
    write_json(dest / "cohort.json", info)
    ctx = _context_from_json(state["context"])
    src = state["source"]
    source = SourceSummary(dataset_fingerprint=src["dataset_fingerprint"], modality=src["modality"],
                           spatial_dims=int(src["spatial_dims"]), image_shape=tuple(src["image_shape"]),
                           label_vocabulary=tuple(src["label_vocabulary"]))
    write_data_card(dest, build_data_card(ctx, rows, source, spec=state["spec"]))
    write_provenance(dest, {"cohort_spec": state["spec"]}, seed=spec.seed,
                     model_sha256=state["model_sha256"], spec_sha256=state["spec_sha256"],
                     sampling=info["sampling"], followup_sampling=info.get("followup_sampling"))
    write_sha256sums(dest)


def cohort_info(state: dict[str, Any], spec: CohortSpec, rows: list[ManifestRow]) -> dict[str, Any]:
    from synthmed.generate.study import SYNTHETIC_EPOCH as epoch

    return {"schema": COHORT_SCHEMA, **state["cohort_info"],
            "n_images": len(rows), "n_patients": spec.patients,
            "generation": {"spec": state["spec"], "spec_sha256": state["spec_sha256"],
                           "synthetic_epoch": epoch.isoformat(),
                           "studies": {str(k): v for k, v in sorted(_count_studies(rows).items())}}}


def _count_studies(rows: list[ManifestRow]) -> dict[int, int]:
    per: dict[str, int] = {}
    for r in rows:
        per[r.patient] = per.get(r.patient, 0) + 1
    out: dict[int, int] = {}
    for v in per.values():
        out[v] = out.get(v, 0) + 1
    return out


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


__all__ = ["Shard", "GenerateResult", "generate", "merge", "sample_group", "work_dir",
           "context_for", "write_formats", "patient_done", "assemble", "generate_once", "run_once"]
