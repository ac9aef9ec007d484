"""synthmed: synthetic virtual-patient cohorts from medical images, audited for privacy.

The stages, one argument order (inputs, then `out`, then keyword-only options), each returning a
result with `.out` and `.summary()` (see synthmed.api):

    synthmed.ingest(sources, out, *, config=None, ...)            -> IngestResult
    synthmed.train(dataset, out, *, config=None, ...)             -> TrainResult
    synthmed.load(run, *, device=None)                            -> the model, ready to sample
    synthmed.generate(model, out, *, spec=None, ...)              -> GenerateResult
    synthmed.evaluate(dataset, out, *, synthetic= | model=, ...)  -> CohortEvaluation | GeneratorEvaluation
    synthmed.audit(dataset, cohort, out, *, config=None, ...)     -> AuditResult
    synthmed.release(cohort, out, *, audit, dataset, model, ...)  -> ReleaseResult
    synthmed.canaries(dataset, out, *, model= | config=, k=30)    -> CanaryResult

and `synthmed.make_phantoms(out, patients, ...)` for built-in virtual patients to try them on.
Everything is imported on first use: `import synthmed` loads no framework (no torch).
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from synthmed.api import audit, canaries, evaluate, generate, ingest, load, release, train
    from synthmed.audit.runner import AuditResult
    from synthmed.data.ingest import IngestResult
    from synthmed.errors import ConfigError, InputError, SynthmedError
    from synthmed.generate.runner import GenerateResult
    from synthmed.phantoms import PhantomSummary, make_phantoms
    from synthmed.release.bundle import ReleaseRefused, ReleaseResult
    from synthmed.results import CanaryResult, GeneratorEvaluation, InspectResult, Result, TrainResult

# name -> the module that defines it
_LAZY: dict[str, str] = {
    "ingest": "synthmed.api", "train": "synthmed.api", "load": "synthmed.api",
    "canaries": "synthmed.api",
    "make_phantoms": "synthmed.phantoms", "PhantomSummary": "synthmed.phantoms",
    "IngestResult": "synthmed.data.ingest",
    "TrainResult": "synthmed.results", "InspectResult": "synthmed.results",
    "GeneratorEvaluation": "synthmed.results", "Result": "synthmed.results",
    "CanaryResult": "synthmed.results",
    "GenerateResult": "synthmed.generate.runner",
    "CohortEvaluation": "synthmed.evaluate.cohort",
    "AuditResult": "synthmed.audit.runner",
    "ReleaseResult": "synthmed.release.bundle", "ReleaseRefused": "synthmed.release.bundle",
    "SynthmedError": "synthmed.errors", "ConfigError": "synthmed.errors",
    "InputError": "synthmed.errors",
}

__all__ = ["__version__", *_LAZY]

# Four stages share their name with the subpackage that implements them (synthmed.audit is both
# the audit package and the audit verb). Python binds `synthmed.audit` to the subpackage as soon
# as anything imports it, which would shadow the verb depending on import order; instead the
# subpackage itself is made callable as its stage, so `synthmed.audit(...)` and
# `synthmed.audit.run_audit` both work whatever was imported first.
_STAGE_PACKAGES = frozenset({"generate", "evaluate", "audit", "release"})


class _StagePackage(types.ModuleType):
    """A subpackage that, called, runs its stage (synthmed.api)."""

    def _stage(self):
        return getattr(import_module("synthmed.api"), self.__name__.rpartition(".")[2])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._stage()(*args, **kwargs)

    @property
    def __signature__(self):  # what inspect.signature and help() show: the stage's own
        import inspect

        return inspect.signature(self._stage())


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # the import system binds a freshly imported subpackage here
        if name in _STAGE_PACKAGES and type(value) is types.ModuleType:
            value.__class__ = _StagePackage
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    if name in _STAGE_PACKAGES:
        return import_module(f"{__name__}.{name}")  # bound (and made callable) by the import
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'synthmed' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


sys.modules[__name__].__class__ = _Package
