"""The whole pipeline on built-in virtual patients, small enough for a laptop CPU.

phantoms -> ingest (de-identify, split by patient) -> inspect -> train -> generate -> evaluate
-> audit.
Each stage is the same public API a user calls; the demo only picks small settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# The packaged files themselves, not a name lookup in the working directory: a user's `demo`
# file or folder there must not change the demo.
from synthmed.config import find_shipped_config, load_config


@dataclass
class DemoResult:
    out: Path
    stages: dict[str, Any] = field(default_factory=dict)


# `quick`: every stage still runs, with the smallest settings that exercise it (a smoke test of an
# install, under a minute on 2 CPU cores). Its model draws noise and its audit is inconclusive:
# 80 patients are far too few to rule a leak out, and the audit says so.
QUICK = {"patients": 80, "phantom_px": 64, "studies": (1, 2), "train_steps": 10, "batch_size": 8,
         "encoder_steps": 10, "n_bootstrap": 200, "evaluate_n": 8}
# The full demo is sized so that its audit CAN be conclusive under the public profile
# (synthmed.audit.power): a TPR at 1 % false alarms is measurable only with ~625 scored holdout
# patients (log(alpha/2) / log(0.99) at the Bonferroni alpha of 13-14 rules), and with ~700 on
# each side an AUC range is about +-0.045 wide, well inside the 0.6 to rule out. ingest-demo.yaml
# puts 45 % of patients in the holdout and 10 % in the reference split: 1,560 virtual patients give
# ~700 holdout and ~700 training patients. Phantoms are drawn at 64 px (ingest resizes to 32 px
# anyway), so the extra patients cost little; the aligned copy search registers at most 300
# images a side (a measurement knob: audit.json records it).
FULL = {"patients": 1560, "phantom_px": 64, "studies": (1, 3), "aligned_max_images": 300}


def run_demo(out: str | Path, *, patients: int | None = None, seed: int = 0, train: bool = True,
             quick: bool = False, on_stage: Callable[[str, Any], None] | None = None,
             overwrite: bool = False) -> DemoResult:
    """Run every stage into `out/`; `on_stage(name, result)` is called after each one.

    `patients` defaults to 1,560 (enough for a conclusive audit, see FULL) or 80 when `quick`
    (the public profile needs 20 holdout patients to run at all).
    The demo folder is built in a staging folder beside `out` and moved into place when every
    stage is done (synthmed/io/folders.py); `overwrite` replaces a previous demo, and only one
    exactly as synthmed wrote it.
    """
    from synthmed.io import folders

    final = Path(out)
    folders.prepare_output(final, "demo", overwrite)
    with folders.staged_output(final, "demo", overwrite) as stage:
        result = _run_stages(stage, patients=patients, seed=seed, train=train, quick=quick,
                             on_stage=on_stage)
    result.out = final
    return result


def _run_stages(out: Path, *, patients: int | None, seed: int, train: bool, quick: bool,
                on_stage: Callable[[str, Any], None] | None) -> DemoResult:
    from synthmed.data.ingest import ingest
    from synthmed.data.ingest_config import IngestConfig
    from synthmed.data.inspect import inspect_dataset
    from synthmed.phantoms import make_phantoms

    out = Path(out)
    result = DemoResult(out=out)
    if patients is None:
        patients = QUICK["patients"] if quick else FULL["patients"]

    def done(name: str, value: Any) -> None:
        result.stages[name] = value
        if on_stage is not None:
            on_stage(name, value)

    sizes = QUICK if quick else FULL
    small = {"size": sizes["phantom_px"], "studies_per_patient": sizes["studies"]}
    done("phantoms", make_phantoms(out / "phantoms", patients=patients, seed=seed, kind="cxr", **small))
    key = out / "demo-deid.key"
    ingest_cfg = load_config(find_shipped_config("ingest-demo").path, IngestConfig)
    done("ingest", ingest([out / "phantoms"], out / "dataset", config=ingest_cfg,
                          metadata_csv=out / "phantoms" / "metadata.csv", key_path=_demo_key(key, seed)))
    done("inspect", inspect_dataset(out / "dataset", out / "dataset" / "contact_sheet.png", seed=seed))
    if not train:
        return result

    from synthmed.audit import AuditProfile, run_audit
    from synthmed.data.dataset import Dataset
    from synthmed.evaluate import evaluate_generator
    from synthmed.generate import generate_cohort
    from synthmed.models import TrainConfig, load, train as train_model

    train_cfg = load_config(find_shipped_config("demo").path, TrainConfig, overrides={
        "steps": QUICK["train_steps"], "batch_size": QUICK["batch_size"], "warmup_steps": 2,
        "checkpoint_every": QUICK["train_steps"], "sample_grid": 4, "sampling": {"steps": 5}}
        if quick else None)
    run = train_model(out / "dataset", train_cfg, out / "run")
    done("train", run)
    model = load(run)
    done("generate", generate_cohort(model, patients // 2, out / "cohort", seed=seed))
    done("evaluate", evaluate_generator(model, Dataset.open(out / "dataset"), out / "evaluate",
                                        n=QUICK["evaluate_n"] if quick else 32, seed=seed))
    profile = load_config(find_shipped_config("audit-public").path, AuditProfile, overrides={
        "embedding": {"steps": QUICK["encoder_steps"]}, "n_bootstrap": QUICK["n_bootstrap"],
        "identity": {"steps": QUICK["encoder_steps"]}}
        if quick else {"memorisation": {"aligned_max_images": FULL["aligned_max_images"]}})
    done("audit", run_audit(out / "dataset", out / "cohort", profile, out / "audit", seed=seed))
    return result


def _demo_key(path: Path, seed: int) -> Path:
    """A demo-only de-identification key inside the demo folder.

    Derived from the seed rather than random so the demo is reproducible end to end; that is
    only acceptable because the demo's patients are fake. A real key is secret and lives
    outside every output folder.
    """
    import hashlib

    from synthmed.io.atomic import write_bytes

    write_bytes(path, hashlib.sha256(f"synthmed-demo-key-{seed}".encode()).digest())
    path.chmod(0o600)
    return path
