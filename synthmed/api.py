"""The Python API: one verb per stage, one argument order, one kind of result.

    import synthmed
    data = synthmed.ingest(["dicom/"], "dataset", config="cxr-64")
    run = synthmed.train(data, "run", config="cxr-64")
    cohort = synthmed.generate(run, "cohort", spec="cohort-followup")
    audit = synthmed.audit(data, cohort, "audit", config="public")
    bundle = synthmed.release(cohort, "bundle", audit=audit, dataset=data, model=run,
                              sources=["dicom/"])

Every stage takes its inputs first, then `out` (where it writes), then keyword-only options.
`config=` takes a path to a YAML file, the name of a shipped config (`synthmed configs`) or the
config object itself; it is resolved here, once, at the edge (synthmed.config). Wherever a stage
wants a folder an earlier stage wrote, it also takes that stage's result (anything with `.out`).
Every stage returns a typed result with `.out` and `.summary()`.

These are thin wrappers over the stages' own functions (synthmed.data.ingest.ingest,
synthmed.models.run_training, synthmed.generate.runner.generate, ...), which stay where they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TypeVar

from synthmed.errors import ConfigError, InputError, arg

if TYPE_CHECKING:
    from pydantic import BaseModel

    from synthmed.audit.runner import AuditResult
    from synthmed.data.ingest import IngestResult
    from synthmed.generate.pipeline import DiffusionPipeline
    from synthmed.generate.runner import GenerateResult
    from synthmed.release.bundle import ReleaseResult
    from synthmed.results import CanaryResult, GeneratorEvaluation, TrainResult

M = TypeVar("M", bound="BaseModel")


# ------------------------------------------------------------------------------------ the edge
def folder(value: Any, what: str = "folder") -> Path:
    """A path from a path, a string or an earlier stage's result (its `.out`)."""
    out = getattr(value, "out", value)
    if isinstance(out, (str, Path)):
        return Path(out)
    raise InputError(f"{what}: expected a path or a synthmed result with .out (got {type(value).__name__})")


def resolve_config(config: Any, model: type[M], kind: str, *,
                   overrides: dict[str, Any] | None = None, name: str = "config") -> M:
    """`config` as a `model` instance: None (the defaults), a `model`, a mapping, a YAML path or a
    shipped config's name of this `kind`; `overrides` (nested keys) are applied on top."""
    from synthmed.config import _deep_merge, load_config, resolve_config_path, validate_config

    if config is None or isinstance(config, (str, Path)):
        return load_config(resolve_config_path(config, kind), model, overrides)
    if isinstance(config, model):
        if not overrides:
            return config
        return validate_config(_deep_merge(config.model_dump(mode="json"), overrides), model,
                               f"{model.__name__} with overrides")
    if isinstance(config, dict):
        return validate_config(_deep_merge(config, overrides or {}), model, f"{arg(name)} mapping")
    raise ConfigError(f"{arg(name)}: expected a path to a YAML file, a shipped {kind} config's name "
                      f"or a {model.__name__} (got {type(config).__name__})")


# ------------------------------------------------------------------------------------ the stages
def ingest(sources: str | Path | Sequence[str | Path], out: str | Path, *, config: Any = None,
           metadata: str | Path | None = None, key: str | Path | None = None,
           workers: int | None = None, show_paths: bool = False,
           overwrite: bool = False) -> IngestResult:
    """Read, de-identify, normalise and split by patient the images in `sources` (files or
    folders) into a dataset folder `out`.

    config: an IngestConfig, a YAML path or a shipped name (e.g. "cxr-64"); metadata: a CSV of
    patient ID, labels, age and sex per file; key: the de-identification key file (default:
    created once in ~/.config/synthmed/deid.key)."""
    from synthmed.data.ingest import ingest as _ingest
    from synthmed.data.ingest_config import IngestConfig

    if isinstance(sources, (str, Path)) or hasattr(sources, "out"):
        sources = [sources]
    cfg = resolve_config(config, IngestConfig, "ingest")
    return _ingest([folder(s, "sources") for s in sources], Path(out), cfg,
                   metadata_csv=Path(metadata) if metadata is not None else None,
                   key_path=Path(key) if key is not None else None, workers=workers,
                   show_paths=show_paths, overwrite=overwrite)


def train(dataset: Any, out: str | Path, *, config: Any = None,
          overrides: dict[str, Any] | None = None, resume: bool = False) -> TrainResult:
    """Train a conditional diffusion model on the train split of `dataset`; write the run `out`.

    config: a TrainConfig, a YAML path or a shipped name (e.g. "demo", "cxr-64"); overrides:
    nested keys set on top of it (e.g. {"steps": 20}); resume: continue from the last
    checkpoint of `out`."""
    from synthmed.models import TrainConfig, run_training

    cfg = resolve_config(config, TrainConfig, "train", overrides=overrides)
    return run_training(folder(dataset, "dataset"), cfg, Path(out), resume=resume)


def load(run: Any, *, device: str | None = None) -> DiffusionPipeline:
    """The trained model of the run folder `run` (or a TrainResult), ready to sample."""
    from synthmed.generate.pipeline import load as _load

    return _load(folder(run, "run"), device=device or "auto")


def _model(model: Any, device: str | None = None):
    """A loaded pipeline as it is, else a run folder or TrainResult loaded."""
    if hasattr(model, "sample") and hasattr(model, "model_hash"):
        return model
    return load(model, device=device)


def generate(model: Any, out: str | Path, *, spec: Any = None, n: int | None = None,
             seed: int | None = None, overrides: dict[str, Any] | None = None, shard: Any = None,
             overwrite: bool = False) -> GenerateResult:
    """Generate a cohort of virtual patients with `model` (loaded, a run folder or a TrainResult)
    into `out`.

    spec: a CohortSpec, a YAML path or a shipped name (e.g. "cohort-followup": several studies
    per patient); or, without a spec, `n` one-study patients matching the training population.
    seed / overrides: set on the spec. shard: "k/n" or a Shard (then merge with
    synthmed.generate.runner.merge when every shard has finished)."""
    from synthmed.generate.runner import Shard, generate as _generate
    from synthmed.generate.spec import CohortSpec

    extra = dict(overrides or {})
    if seed is not None:
        extra["seed"] = seed
    if spec is None:
        if n is None:
            raise InputError(f"generate needs {arg('spec')} (a cohort spec) or {arg('n')} "
                             "(that many one-study patients)")
        from synthmed.generate.patients import quick_spec

        cohort_spec = resolve_config(quick_spec(n), CohortSpec, "cohort", overrides=extra)
    else:
        if n is not None:
            extra["patients"] = n
        cohort_spec = resolve_config(spec, CohortSpec, "cohort", overrides=extra, name="spec")
    if isinstance(shard, str):
        shard = Shard.parse(shard)
    return _generate(_model(model), cohort_spec, Path(out), shard=shard, overwrite=overwrite)


def evaluate(dataset: Any, out: str | Path, *, synthetic: Any = None, model: Any = None,
             config: Any = None, overrides: dict[str, Any] | None = None, seed: int = 0,
             overwrite: bool = False, **options: Any):
    """Evaluate against the real `dataset`, writing the evaluation folder `out`.

    synthetic=COHORT (a cohort folder or GenerateResult): the cohort evaluation (fidelity and
    diversity beside the real floors, condition agreement; config: a CohortEvalConfig, a YAML
    path or a shipped name, "evaluate" by default or "evaluate-quick"; options: encoder,
    allow_other_dataset) -> CohortEvaluation.
    model=RUN (a run folder, TrainResult or loaded model): the generator read-out (label rates
    against chance, fidelity beside the real floor; options: n, labels, top, guidance, steps,
    sampler, batch_size, classifier_epochs, real_grid, allow_other_dataset) -> GeneratorEvaluation."""
    if (synthetic is None) == (model is None):
        raise InputError(f"evaluate needs exactly one of {arg('synthetic')} (a cohort) or "
                         f"{arg('model')} (a training run)")
    if synthetic is not None:
        try:
            from synthmed.evaluate.cohort import evaluate_cohort
            from synthmed.evaluate.config import CohortEvalConfig, resolve_eval_config
        except ImportError:
            raise InputError(f"evaluate({arg('synthetic')}...): the cohort evaluation is not in "
                             "this build of synthmed; evaluate a model with "
                             f"{arg('model')} instead") from None
        # None is the shipped "evaluate" config (not the bare defaults), as on the CLI
        cfg = (resolve_config(config, CohortEvalConfig, "evaluate", overrides=overrides)
               if isinstance(config, dict) else resolve_eval_config(config, overrides))
        return evaluate_cohort(folder(dataset, "dataset"), folder(synthetic, "synthetic"), Path(out),
                               config=cfg, seed=seed, overwrite=overwrite, **options)
    if config is not None or overrides is not None:
        raise InputError(f"{arg('config')} applies to a cohort evaluation ({arg('synthetic')}); "
                         f"the model read-out takes its settings as options ({arg('n')}, "
                         "labels=, ...)")
    from synthmed.data.dataset import Dataset
    from synthmed.evaluate.runner import evaluate_generator
    from synthmed.results import GeneratorEvaluation

    pipe = _model(model, options.pop("device", None))
    out = Path(out)
    record = evaluate_generator(pipe, Dataset.open(folder(dataset, "dataset")), out, seed=seed,
                                overwrite=overwrite, device=str(pipe.device), **options)
    return GeneratorEvaluation(out=out, record=record)


def audit(dataset: Any, cohort: Any, out: str | Path, *, config: Any = None,
          overrides: dict[str, Any] | None = None, model: Any = None, seed: int = 0,
          filter: bool = False, encoder: str | Path | None = None,
          identity_network: str | Path | None = None, overwrite: bool = False,
          allow_other_dataset: bool = False) -> AuditResult:
    """Audit the synthetic `cohort` for membership leakage and copies of the `dataset`'s patients.

    config: the audit profile, an AuditProfile, a YAML path or a shipped name ("public",
    "controlled"; default public); overrides: nested keys set on top of it. model: the
    generator's run (folder or TrainResult): also run the white-box attacks. A failed or
    inconclusive audit is a result (see `.verdict`), not an error."""
    from synthmed.audit import run_audit
    from synthmed.audit.profile import AuditProfile

    profile = resolve_config(config, AuditProfile, "audit", overrides=overrides)
    return run_audit(folder(dataset, "dataset"), folder(cohort, "cohort"), profile, Path(out),
                     seed=seed, filter=filter, encoder=Path(encoder) if encoder else None,
                     identity_network=Path(identity_network) if identity_network else None,
                     overwrite=overwrite, allow_other_dataset=allow_other_dataset,
                     model=folder(model, "model") if model is not None else None)


def canaries(dataset: Any, out: str | Path, *, config: Any = None, model: Any = None, k: int = 30,
             duplicates: Sequence[int] = (1, 10, 100), profile: Any = None,
             overrides: dict[str, Any] | None = None, seed: int = 0,
             overwrite: bool = False) -> CanaryResult:
    """Does the audit have teeth? Plant `k` canaries (holdout patients' images, a share copied
    each number of `duplicates` times) into `dataset`'s train split, train, and measure how well
    every membership attack finds them against control patients never trained on.

    The training recipe: `config` (a TrainConfig, YAML path or shipped name), or `model`'s
    (a run folder or TrainResult): the config that run recorded as used, so the canaries measure
    the very training that made the model under audit. overrides: nested keys set on top (e.g.
    {"steps": 200}). profile: the audit profile whose `whitebox:` settings the attacks use.
    Returns a CanaryResult (`.detection`, `.tpr(attack, copies)`, `.record`: canaries.json)."""
    from synthmed.audit.canaries import run_canary_audit
    from synthmed.audit.profile import AuditProfile
    from synthmed.io.jsonfile import read_json
    from synthmed.models import TrainConfig

    if (config is None) == (model is None):
        raise ConfigError(f"canaries: give the training recipe as one of {arg('config')} or "
                          f"{arg('model')} (a run whose recorded config is trained again)")
    if model is not None:
        run = folder(model, "model")
        info = read_json(run / "model.json", "model record")
        if "config" not in info:
            raise InputError(f"{run / 'model.json'}: records no training config to repeat; give "
                             f"{arg('config')} instead")
        config = info["config"]
    cfg = resolve_config(config, TrainConfig, "train", overrides=overrides)
    prof = resolve_config(profile, AuditProfile, "audit", name="profile")
    from synthmed.results import CanaryResult

    record = run_canary_audit(folder(dataset, "dataset"), cfg, Path(out), k,
                              duplicates=tuple(duplicates), seed=seed, whitebox=prof.whitebox,
                              overwrite=overwrite)
    return CanaryResult(out=Path(out), record=record)


def release(cohort: Any, out: str | Path, *, audit: Any, dataset: Any, model: Any,
            tier: str = "public", formats: Sequence[str] | None = None,
            sources: Sequence[str | Path] | None = None, key: str | Path | None = None,
            override: str | None = None, overwrite: bool = False) -> ReleaseResult:
    """Assemble the release bundle `out` of `cohort`: only with a matching, passing `audit`, and
    after a scan for every identifier of the `dataset`'s `sources`.

    A refused release raises synthmed.ReleaseRefused, whose `.reasons` lists every reason; a
    person may accept the audit-related ones with `override="why"` (written into the bundle)."""
    from synthmed.release import release as _release

    return _release(folder(cohort, "cohort"), audit=folder(audit, "audit"),
                    dataset=folder(dataset, "dataset"), model=folder(model, "model"), out=Path(out),
                    tier=tier, formats=list(formats) if formats is not None else None,
                    sources=[folder(s, "sources") for s in sources] if sources else None,
                    key=Path(key) if key is not None else None, override=override,
                    overwrite=overwrite)


STAGES = ("ingest", "train", "load", "generate", "evaluate", "audit", "release")

__all__ = [*STAGES, "STAGES", "folder", "resolve_config"]
