"""The whole product on built-in virtual patients, small enough for a laptop CPU.

phantoms (fake identities in the headers) -> ingest (de-identify, split by patient) -> inspect
-> train -> generate (a cohort spec: 1-3 studies per patient, DICOM + NIfTI + PNG) -> audit ->
evaluate (with the audit's encoder) -> release (a bundle, or the refused release and its reasons)
-> index.html, one page linking every report.

Each stage is the same public API a user calls; the demo only picks small settings, writes the
settings it used into DIR/configs/ and prints, for every stage, the `synthmed ...` command that
re-runs it alone on the demo's folders (into DIR-rerun/: a finished demo folder is never written
into, synthmed/io/folders.py).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

# The packaged files themselves, not a name lookup in the working directory: a user's `demo`
# file or folder there must not change the demo.
from synthmed.config import find_shipped_config, load_config

if TYPE_CHECKING:
    from synthmed.release.bundle import ReleaseRefused

# `quick`: every stage still runs, with the smallest settings that exercise it (a smoke test of an
# install, about a minute on 2 CPU cores). Its model draws noise and 80 patients are far too few
# for the public tier: its audit cannot pass, so its release is refused, and the demo shows why.
QUICK = {"patients": 80, "phantom_px": 64, "studies": (1, 2), "train_steps": 10, "batch_size": 8,
         "encoder_steps": 10, "n_bootstrap": 200}
# The full demo is sized so that its audit CAN be conclusive under the public profile
# (synthmed.audit.power): a TPR at 1 % false alarms is measurable only with ~625 scored holdout
# patients (log(alpha/2) / log(0.99) at the Bonferroni alpha of 13-14 rules), and with ~700 on
# each side an AUC range is about +-0.045 wide, well inside the 0.6 to rule out. ingest-demo.yaml
# puts 45 % of patients in the holdout and 10 % in the reference split: 1,560 virtual patients give
# ~700 holdout and ~700 training patients. Phantoms are drawn at 64 px (ingest resizes to 32 px
# anyway), so the extra patients cost little; the aligned copy search registers at most 300
# images a side (a measurement knob: audit.json records it).
FULL = {"patients": 1560, "phantom_px": 64, "studies": (1, 3), "aligned_max_images": 300}
# The released cohort, as a hospital would hand it out: 1-3 studies per virtual patient
# (follow-ups 90-400 days apart), findings, ages and sexes drawn like the training population's,
# in every viewer format. A third as many virtual patients as real ones: at 1.9 studies each that
# is ~990 images for the full demo, more than the 780 one-study patients it audited before, for
# less sampling (a follow-up is a partial SDEdit pass, 7 of 20 steps), so the 15-minute budget
# holds with the evaluation and the release added.
COHORT = {"per_patient": {1: 0.4, 2: 0.3, 3: 0.3}, "interval_days": {"min": 90, "max": 400},
          "formats": ["dicom", "nifti", "png"], "batch_patients": 64, "share": 3}
TIER = "public"
STAGES = ("phantoms", "ingest", "inspect", "train", "generate", "audit", "evaluate", "release",
          "index")


@dataclass
class StageRecord:
    """One stage of the demo: what it did and how to run it alone."""

    name: str
    command: str                 # the `synthmed ...` line that re-runs it on the demo's folders
    summary: str = ""
    seconds: float = 0.0
    value: Any = None            # the stage's own result (IngestResult, AuditResult, ...)


@dataclass
class DemoResult:
    out: Path
    quick: bool = False
    records: dict[str, StageRecord] = field(default_factory=dict)
    # the refused release, when it was refused: its reasons for Python or the command line
    refusal: ReleaseRefused | None = field(default=None, repr=False)

    @property
    def release_refused(self) -> list[str] | None:
        """The reasons, when the release was refused (arguments spelled for Python,
        `override='why'`; `refusal.reasons_for(flags)` for the command line)."""
        return None if self.refusal is None else self.refusal.reasons

    @property
    def stages(self) -> dict[str, Any]:
        return {k: r.value for k, r in self.records.items()}

    @property
    def index(self) -> Path | None:
        return self.out / "index.html" if "index" in self.records else None

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records.values())

    def summary(self) -> str:
        lines = [f"{r.name}: {r.summary}" for r in self.records.values() if r.name != "index"]
        if self.index is not None:
            lines.append(f"open {self.index}")
        return "\n".join(lines)


def rerun_folder(out: Path) -> Path:
    """Where the printed stage commands write: beside the demo, never inside it."""
    out = Path(out)
    return out.parent / f"{out.name or out.resolve().name}-rerun"


def run_demo(out: str | Path, *, patients: int | None = None, seed: int = 0, train: bool = True,
             quick: bool = False, overwrite: bool = False,
             on_start: Callable[[str, str], None] | None = None,
             on_stage: Callable[[StageRecord], None] | None = None,
             flags: Mapping[str, str] | None = None) -> DemoResult:
    """Run every stage into `out/`; `on_start(name, command)` before and `on_stage(record)` after
    each one.

    `flags` spells the arguments that the refusal's reasons name, in release-refused.json and
    index.html: None for Python (`override='why'`), the CLI's table for its flags
    (`--override 'why'`), so that the record reads as the place it was made from; the record's
    `command` and each stage's rerun line are `synthmed` commands either way.

    `patients` defaults to 1,560 (enough for a conclusive audit, see FULL) or 80 when `quick`
    (the public profile needs 20 holdout patients to run at all). `train=False` stops after
    inspect. A release the audit does not allow is not an error: the result's
    `release_refused` holds the reasons and index.html shows them.
    The demo folder is built in a staging folder beside `out` and moved into place when every
    stage is done (synthmed/io/folders.py); `overwrite` replaces a previous demo, and only one
    exactly as synthmed wrote it.
    """
    from synthmed.io import folders

    final = Path(out)
    folders.prepare_output(final, "demo", overwrite)
    with folders.staged_output(final, "demo", overwrite) as stage:
        result = _Run(stage, final, patients=patients, seed=seed, quick=quick, on_start=on_start,
                      on_stage=on_stage, flags=flags).run(train)
    result.out = final
    return result


class _Run:
    """The stages in order, into the staging folder `work`; texts name the final folder `final`."""

    def __init__(self, work: Path, final: Path, *, patients: int | None, seed: int, quick: bool,
                 on_start, on_stage, flags: Mapping[str, str] | None = None):
        self.work, self.final, self.seed, self.quick = Path(work), Path(final), seed, quick
        self.flags = flags
        self.again = rerun_folder(final)
        self.sizes = QUICK if quick else FULL
        self.patients = patients if patients is not None else self.sizes["patients"]
        self.on_start, self.on_stage = on_start, on_stage
        self.result = DemoResult(out=self.work, quick=quick)

    # ------------------------------------------------------------------ helpers
    def f(self, rel: str) -> str:
        """A demo path as the printed commands name it (the final folder, not the staging one),
        quoted for a shell where it needs to be."""
        return shlex.quote(str(self.final / rel))

    def r(self, rel: str) -> str:
        return shlex.quote(str(self.again / rel))

    def stage(self, name: str, command: str, fn: Callable[[], tuple[Any, str]]) -> Any:
        if self.on_start is not None:
            self.on_start(name, command)
        t0 = time.perf_counter()
        value, summary = fn()
        rec = StageRecord(name, command, summary, time.perf_counter() - t0, value)
        self.result.records[name] = rec
        if self.on_stage is not None:
            self.on_stage(rec)
        return value

    def write_config(self, name: str, cfg: Any, what: str) -> Path:
        """The settings a stage ran with, as a config file its command reads."""
        import yaml

        from synthmed.io.atomic import write_text

        path = self.work / "configs" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
        write_text(path, f"# Written by `synthmed demo`: the {what} settings it ran with.\n{body}")
        return path

    # ------------------------------------------------------------------ stages
    def run(self, train: bool) -> DemoResult:
        self.phantoms()
        self.ingest()
        self.inspect()
        if train:
            self.train()
            self.generate()
            self.audit()
            self.evaluate()
            self.release()
        self.index()
        return self.result

    def phantoms(self) -> None:
        from synthmed.phantoms import make_phantoms

        lo, hi = self.sizes["studies"]
        px = self.sizes["phantom_px"]
        cmd = (f"synthmed phantoms {self.r('phantoms')} --patients {self.patients} --seed {self.seed} "
               f"--kind cxr --studies {lo}-{hi} --size {px}")

        def go():
            s = make_phantoms(self.work / "phantoms", patients=self.patients, seed=self.seed,
                              kind="cxr", size=px, studies_per_patient=(lo, hi))
            return s, f"{s.patients} virtual patients, {s.files} DICOM files (fake identities)"
        self.stage("phantoms", cmd, go)

    def ingest(self) -> None:
        from synthmed.data.ingest import ingest
        from synthmed.data.ingest_config import IngestConfig

        cfg = load_config(find_shipped_config("ingest-demo").path, IngestConfig)
        self.write_config("ingest", cfg, "ingest")
        cmd = (f"synthmed ingest {self.f('phantoms')} --out {self.r('dataset')} --config "
               f"{self.f('configs/ingest.yaml')} --metadata {self.f('phantoms/metadata.csv')} "
               f"--key {self.f('demo-deid.key')}")

        def go():
            key = _demo_key(self.work / "demo-deid.key", self.seed)
            v = ingest([self.work / "phantoms"], self.work / "dataset", config=cfg,
                       metadata_csv=self.work / "phantoms" / "metadata.csv", key_path=key)
            splits = ", ".join(f"{k} {s.get('patients', 0)} patients" for k, s in v.splits.items())
            return v, (f"{v.images} images of {v.patients} patients kept, {v.refused} files refused; "
                       f"split by patient: {splits}")
        self.stage("ingest", cmd, go)

    def inspect(self) -> None:
        from synthmed.data.inspect import inspect_dataset

        cmd = f"synthmed inspect {self.f('dataset')} --out {self.r('contact_sheet.png')}"

        def go():
            v = inspect_dataset(self.work / "dataset", self.work / "dataset" / "contact_sheet.png",
                                seed=self.seed)
            return v, f"contact sheet at {self.f('dataset/contact_sheet.png')}"
        self.stage("inspect", cmd, go)

    def train(self) -> None:
        from synthmed.models import TrainConfig, train as train_model

        q = QUICK
        cfg = load_config(find_shipped_config("demo").path, TrainConfig, overrides={
            "steps": q["train_steps"], "batch_size": q["batch_size"], "warmup_steps": 2,
            "checkpoint_every": q["train_steps"], "sample_grid": 4, "sampling": {"steps": 5}}
            if self.quick else None)
        self.write_config("train", cfg, "training")
        cmd = (f"synthmed train {self.f('dataset')} --config {self.f('configs/train.yaml')} "
               f"--out {self.r('run')}")

        def go():
            run = train_model(self.work / "dataset", cfg, self.work / "run")
            return run, f"{cfg.steps} steps, model in {self.f('run')}"
        self.stage("train", cmd, go)

    def generate(self) -> None:
        from synthmed.generate.runner import generate
        from synthmed.generate.spec import CohortSpec
        from synthmed.models import load

        spec = CohortSpec(patients=max(1, self.patients // COHORT["share"]), match="training", seed=self.seed,
                          studies={"per_patient": COHORT["per_patient"],
                                   "interval_days": COHORT["interval_days"]},
                          formats=COHORT["formats"], batch_patients=COHORT["batch_patients"])
        self.write_config("cohort", spec, "cohort spec")
        cmd = (f"synthmed generate {self.f('run')} --spec {self.f('configs/cohort.yaml')} "
               f"--out {self.r('cohort')}")

        def go():
            import json

            generate(load(self.work / "run"), spec, self.work / "cohort")
            info = json.loads((self.work / "cohort" / "cohort.json").read_text())
            studies = ", ".join(f"{n} with {k}" for k, n in info["generation"]["studies"].items())
            return self.work / "cohort", (
                f"{info['n_patients']} virtual patients, {info['n_images']} studies ({studies}) "
                f"in {', '.join(spec.formats)} and images.npy, in {self.f('cohort')}")
        self.stage("generate", cmd, go)

    def audit(self) -> None:
        from synthmed.audit import AuditProfile, run_audit

        q = QUICK
        profile = load_config(find_shipped_config(f"audit-{TIER}").path, AuditProfile, overrides={
            "embedding": {"steps": q["encoder_steps"]}, "n_bootstrap": q["n_bootstrap"],
            "identity": {"steps": q["encoder_steps"]}}
            if self.quick else {"memorisation": {"aligned_max_images": FULL["aligned_max_images"]}})
        self.write_config("audit", profile, "audit profile")
        cmd = (f"synthmed audit --dataset {self.f('dataset')} --synthetic {self.f('cohort')} "
               f"--profile {self.f('configs/audit.yaml')} --seed {self.seed} --out {self.r('audit')}")

        def go():
            res = run_audit(self.work / "dataset", self.work / "cohort", profile, self.work / "audit",
                            seed=self.seed)
            return res, audit_text(res.verdict)
        self.stage("audit", cmd, go)

    def evaluate(self) -> None:
        from synthmed.evaluate.cohort import evaluate_cohort

        # the audit's encoder, saved in its folder: one encoder for both, trained once
        config = "evaluate-quick" if self.quick else "evaluate"
        cmd = (f"synthmed evaluate --dataset {self.f('dataset')} --synthetic {self.f('cohort')} "
               f"--config {config} --encoder {self.f('audit/encoder')} --seed {self.seed} "
               f"--out {self.r('evaluate')}")

        def go():
            w = self.work
            v = evaluate_cohort(w / "dataset", w / "cohort", w / "evaluate", config=config,
                                encoder=w / "audit" / "encoder", seed=self.seed)
            return v, "; ".join(ln.strip() for ln in v.summary().splitlines() if ln.strip())
        self.stage("evaluate", cmd, go)

    def release(self) -> None:
        from synthmed.io.atomic import write_json
        from synthmed.release import release
        from synthmed.release.bundle import ReleaseRefused

        cmd = (f"synthmed release {self.f('cohort')} --audit {self.f('audit')} --dataset "
               f"{self.f('dataset')} --model {self.f('run')} --tier {TIER} --source "
               f"{self.f('phantoms')} --key {self.f('demo-deid.key')} --out {self.r('release')}")

        def go():
            w = self.work
            try:
                res = release(w / "cohort", audit=w / "audit", dataset=w / "dataset", model=w / "run",
                              out=w / "release", tier=TIER, sources=[w / "phantoms"],
                              key=w / "demo-deid.key")
            except ReleaseRefused as refused:
                record = refusal_record(refused.reasons_for(self.flags),
                                        self.result.records["audit"].value, cmd)
                write_json(w / "release-refused.json", record)
                # without its traceback, whose frames would keep the release's data alive
                self.result.refusal = refused.with_traceback(None)
                return record, (f"REFUSED ({len(refused.reasons)} reasons; audit "
                                f"{record['audit_verdict'].upper()}), see {self.f('release-refused.json')}")
            s = res.record["scan"]
            return res, (f"bundle at {self.f('release')} ({TIER} tier, {', '.join(res.record['formats'])}): "
                         f"{s['files']} files scanned for {sum(s['identifier_counts'].values())} "
                         "identifiers, none found; SHA256SUMS written")
        self.stage("release", cmd, go)

    def index(self) -> None:
        from synthmed.demo_index import write_index

        def go():
            # the stage commands and summaries name the final folder, as the page will be read
            path = write_index(self.work, self.result, self.final)
            return path, f"{self.f('index.html')}"
        self.stage("index", f"(written by synthmed demo; open {self.f('index.html')} in a browser)", go)


# ---------------------------------------------------------------------------------- texts
def audit_text(v) -> str:
    """A verdict in one line: failed rules, or what an inconclusive audit would need."""
    failed = ", ".join(r.rule for r in v.failed_rules())
    text = f"verdict {v.verdict.upper()} (tier {v.tier})" + (f"; failed rules: {failed}" if failed else "")
    if v.verdict == "inconclusive":
        text += (f"; too few patients to rule out a leak ({len(v.inconclusive_rules())} rules"
                 + (f", about {v.patients_needed} holdout patients needed)" if v.patients_needed else ")"))
    return text


def refusal_record(reasons: list[str], audit, command: str) -> dict[str, Any]:
    """What release-refused.json holds: every reason, and the rules behind the audit's verdict."""
    v = audit.verdict
    rule = lambda r: {"rule": r.rule, "outcome": r.outcome, "explanation": r.explanation}  # noqa: E731
    return {"schema": "synthmed.demo-release-refused/1", "tier": TIER, "refused": True,
            "reasons": list(reasons), "audit_verdict": v.verdict,
            "failed_rules": [rule(r) for r in v.failed_rules()],
            "inconclusive_rules": [rule(r) for r in v.inconclusive_rules()],
            "holdout_patients_needed": v.patients_needed, "command": command}


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


__all__ = ["run_demo", "DemoResult", "StageRecord", "QUICK", "FULL", "COHORT", "STAGES",
           "rerun_folder", "audit_text", "refusal_record"]
