"""Typed results of the stages that had none, and what every stage's result has in common.

Every stage returns an object with `.out` (the folder or file it wrote) and `.summary()` (a few
plain lines saying what it did), so the CLI, the demo and a notebook print the same thing from
the object in hand instead of re-reading JSON from disk. The results that already existed live
beside their stage (`IngestResult` in synthmed.data.ingest, `GenerateResult` in
synthmed.generate.runner, `AuditResult` in synthmed.audit.runner, `ReleaseResult` in
synthmed.release.bundle); those defined here are the ones whose stage returned a Path or a dict.

This module imports nothing heavy (no torch): `synthmed.TrainResult` must not load a framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Result(Protocol):
    """What every stage's result offers."""

    out: Path

    def summary(self) -> str: ...


def _num(value: Any, fmt: str = ".4f") -> str:
    return "n/a" if value is None else format(value, fmt)


@dataclass(frozen=True)
class TrainResult:
    """What `train` wrote: the run folder and what its model card records."""

    out: Path
    model_sha256: str
    steps: int
    final_loss: float | None = None
    first_loss: float | None = None
    training_seconds: float | None = None
    world_size: int = 1
    card: dict[str, Any] = field(default_factory=dict, repr=False)  # model_card.json's content
    # this process's rank under torchrun: only rank 0 wrote the model card (the others' results
    # have no model hash or losses) and reports the run
    rank: int = 0

    @classmethod
    def from_card(cls, out: Path, card: dict[str, Any], rank: int = 0) -> "TrainResult":
        return cls(out=Path(out), model_sha256=str(card.get("model_sha256") or ""),
                   steps=int(card.get("steps") or 0), final_loss=card.get("final_loss"),
                   first_loss=card.get("first_loss"), training_seconds=card.get("training_seconds"),
                   world_size=int(card.get("world_size") or 1), card=dict(card), rank=rank)

    def summary(self) -> str:
        return (f"trained {self.steps} steps; final loss {_num(self.final_loss)}; "
                f"model {self.model_sha256[:12]} -> {self.out}")


@dataclass(frozen=True)
class InspectResult:
    """What `inspect` found in a dataset folder; `out` is the contact sheet it drew."""

    out: Path
    dataset: Path
    record: dict[str, Any] = field(repr=False)  # the summary (patients, images, per split, ...)

    @property
    def patients(self) -> int:
        return int(self.record["patients"])

    @property
    def images(self) -> int:
        return int(self.record["images"])

    @property
    def splits(self) -> dict[str, dict[str, Any]]:
        return self.record["splits"]

    def summary(self) -> str:
        s = self.record
        lines = [f"{self.dataset}: {s['patients']} patients, {s['images']} images, "
                 f"{s['spatial_dims']}D {'x'.join(map(str, s['shape']))}"]
        for split, v in s["splits"].items():
            lines.append(f"  {split}: {v['patients']} patients, {v['images']} images")
        lines.append(f"contact sheet: {self.out}")
        return "\n".join(lines)


@dataclass(frozen=True)
class GeneratorEvaluation:
    """The read-out of `evaluate_generator`: how faithful and how controllable a model is.

    `out` is the evaluation folder (None when nothing was written); `record` is exactly what
    evaluation.json holds."""

    out: Path | None
    record: dict[str, Any] = field(repr=False)

    def summary(self) -> str:
        from synthmed.evaluate.runner import TRAIN_INSTRUMENT, headline_fidelity

        record = self.record
        key, synthetic, floor = headline_fidelity(record)
        fid = record["fidelity"]
        lines = [f"fidelity (unconditional, n = {fid['n']}): {key} {synthetic:.4g}"
                 f" (real holdout floor {floor:.4g}, noise {fid['noise_vs_train'][key]:.4g})"]
        if "by_guidance" not in record:
            lines.append(f"conditioning {record.get('conditioning', 'not evaluated')}")
        else:
            for g, entry in record["by_guidance"].items():
                a = entry[TRAIN_INSTRUMENT]["assignment"]["with_no_finding"]
                lines.append(f"guidance {g}: conditioned finding named in {a['accuracy']:.0%} of "
                             f"samples (chance {a['chance']:.0%}, p {a['p_value']:.2g})")
        if self.out is not None:
            lines.append(f"wrote {self.out / 'evaluation.json'}")
        return "\n".join(lines)


__all__ = ["Result", "TrainResult", "InspectResult", "GeneratorEvaluation"]


@dataclass(frozen=True)
class CanaryResult:
    """What a canary audit wrote (`out`: canaries.json / .md / .png and the canary model run/)
    and found: per attack and number of copies, the share of canaries found at the target FPR."""

    out: Path
    record: dict[str, Any] = field(repr=False)  # canaries.json's content

    @property
    def detection(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self.record["detection"]

    @property
    def n_controls(self) -> int:
        return int(self.record["n_controls"])

    def tpr(self, attack: str, copies: int) -> float:
        return float(self.detection[attack][str(copies)]["tpr"])

    def summary(self) -> str:
        fpr = self.record.get("target_fpr", 0.01)
        lines = [f"canaries found at {100 * fpr:g} % FPR against {self.n_controls} controls -> {self.out}"]
        lines += [f"{name:>22}: " + "  ".join(f"x{d} {v['tpr']:.2f}" for d, v in per.items())
                  for name, per in self.detection.items()]
        return "\n".join(lines)
