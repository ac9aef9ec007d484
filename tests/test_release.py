"""`synthmed release`: a bundle only for a cohort with a matching, passing audit, and each refusal.

One small real chain, shared by the module: a toy dataset (120 patients, 16x16), a tiny model
trained on it, a cohort sampled from it, and the cohort's real audit (pixel space, a profile
sized for this toy: see TOY_PROFILE). Each refusal case changes one thing and checks the line
the CLI prints.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from synthmed.cli import main

from helpers_nih import kde_sampler, toy_dataset
from test_models import one_thread  # noqa: F401 (autouse fixture)

TINY_NET = {"channels": [8, 16], "attention_levels": [False, True], "num_head_channels": 8,
            "norm_num_groups": 8, "context_dim": 8}
# The toy has 30 holdout patients: a profile whose smallest leak to rule out (AUC 0.85) and
# whose FPR target (20 %) fit that size, so its audit can be conclusive (the shipped public
# profile needs ~620 holdout patients; see test_audit_power.py). The controlled tier: it does not
# require the re-identification attack (whose network training would dominate these tests).
TOY_PROFILE = {"name": "toy-controlled", "tier": "controlled", "n_bootstrap": 300,
               "embedding": {"steps": 0},
               "attacks": {"spaces": ["pixel"], "target_fpr": 0.2, "max_tpr": 0.5,
                           "max_auc": 0.85, "rule_out_auc": 0.85},
               "memorisation": {"aligned": False}}




def _train(ds: Path, out: Path, seed: int = 0) -> Path:
    from synthmed.config import validate_config
    from synthmed.models import TrainConfig, train

    cfg = validate_config({"seed": seed, "steps": 6, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2,
                           "log_every": 1, "checkpoint_every": 1000, "sample_every": 0,
                           "sample_grid": 4, "threads": 1, "network": TINY_NET,
                           "sampling": {"steps": 3}}, TrainConfig)
    return train(ds, cfg, out)


def _profile(tmp: Path) -> Path:
    import yaml

    p = tmp / "toy-controlled.yaml"
    p.write_text(yaml.safe_dump(TOY_PROFILE))
    return p


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from synthmed.audit import run_audit
    from synthmed.generate import generate_cohort
    from synthmed.models import load

    tmp = tmp_path_factory.mktemp("release")
    ds = toy_dataset(tmp / "dataset", n_patients=120, per_patient=2, size=16)
    # the toy's raw identities, as a source table, and a key
    src = tmp / "source"
    src.mkdir()
    with open(src / "metadata.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "patient_id"])
        w.writerows([[f"toy-{p}_{i}.png", f"toy-{p}"] for p in range(120) for i in range(2)])
    key = tmp / "deid.key"
    key.write_bytes(bytes(range(32)))
    run = _train(ds, tmp / "run")
    model = load(run)
    cohort = generate_cohort(model, 60, tmp / "cohort", seed=0)
    profile = _profile(tmp)
    audit = tmp / "audit"
    result = run_audit(ds, cohort, profile, audit, seed=0)
    return {"tmp": tmp, "dataset": ds, "source": src, "key": key, "run": run, "model": model,
            "cohort": cohort, "audit": audit, "profile": profile, "verdict": result.verdict}


def _args(c, out: Path, **over) -> list[str]:
    a = {"cohort": c["cohort"], "audit": c["audit"], "dataset": c["dataset"], "model": c["run"],
         "source": c["source"], "key": c["key"]}
    a.update(over)
    args = [str(a["cohort"]), "--audit", str(a["audit"]), "--dataset", str(a["dataset"]),
            "--model", str(a["model"]), "--out", str(out), "--tier", over.get("tier", "controlled"),
            "--source", str(a["source"]), "--key", str(a["key"])]
    return ["release"] + args + [str(x) for x in over.get("extra", [])]


def _refused(capsys, args: list[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert err.startswith("synthmed: error: release refused"), err
    return err


def _ok(capsys, args: list[str]) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    assert e.value.code in (0, None), out.err
    return out.out + out.err


def test_the_toy_audit_passes(chain):
    """The passing release below rests on a real passing audit of this cohort."""
    assert chain["verdict"].verdict == "pass", [r.explanation for r in chain["verdict"].failed_rules()]


def test_passing_release_writes_a_verified_bundle(chain, capsys):
    from synthmed.generate.documents import check_sha256sums
    from synthmed.io import folders

    out = chain["tmp"] / "bundle"
    text = _ok(capsys, _args(chain, out))
    assert "released" in text and "none found" in text
    info = folders.verify(out, "bundle")
    names = set(info.files)
    assert {"images.npy", "manifest.csv", "cohort.json", "audit.json", "model_card.json",
            "model_card.md", "DATA_CARD.md", "data_card.json", "release.json", "release.html",
            "SHA256SUMS"} <= names
    # the audit's report (real training images) and its encoder never travel
    assert not any(n.endswith("report.html") or n.startswith("encoder") for n in names)
    assert check_sha256sums(out) == []
    rec = json.loads((out / "release.json").read_text())
    assert rec["override"] is None and rec["audit"]["verdict"] == "pass"
    assert rec["scan"]["hits"] == 0 and rec["scan"]["identifier_counts"]["dataset pseudonym"] >= 120
    assert (out / "audit.json").read_bytes() == (chain["audit"] / "audit.json").read_bytes()
    assert "<img" not in (out / "release.html").read_text()
    # `synthmed verify` checks the marker and SHA256SUMS
    assert "every file matches SHA256SUMS" in _ok(capsys, ["verify", str(out)])
    # the same inputs give the same bytes
    again = chain["tmp"] / "bundle2"
    _ok(capsys, _args(chain, again))
    assert folders.verify(again, "bundle").fingerprint == info.fingerprint


def test_refuses_a_failed_audit(chain, capsys):
    """A memorising generator's cohort (training images plus faint noise): its audit fails."""
    from synthmed.audit import run_audit
    from synthmed.data.cohort import write_cohort
    from synthmed.data.dataset import Dataset
    from synthmed.data.records import CohortRecord

    tmp = chain["tmp"]
    ds = Dataset.open(chain["dataset"])
    train = np.asarray(ds.images[ds.indices("train")])
    images = kde_sampler(train, 60, 0.004, seed=1)
    info = {"model_sha256": chain["model"].model_hash,
            "dataset_fingerprint": ds.fingerprint()}
    cohort = write_cohort(tmp / "copies", images, [CohortRecord(i, f"SYN-{i:06d}") for i in range(60)], info)
    audit = tmp / "copies-audit"
    assert run_audit(chain["dataset"], cohort, chain["profile"], audit).verdict.verdict == "fail"
    err = _refused(capsys, _args(chain, tmp / "b-fail", cohort=cohort, audit=audit))
    assert "the audit's verdict is FAIL" in err and "no_hard_copies" in err
    assert not (tmp / "b-fail").exists()


def test_refuses_an_inconclusive_audit(chain, capsys):
    """The same cohort audited with the shipped public profile's leak (AUC 0.6) and FPR target
    (1 %): 30 holdout patients cannot rule those out."""
    import yaml

    from synthmed.audit import run_audit

    prof = dict(TOY_PROFILE, attacks={"spaces": ["pixel"]})
    path = chain["tmp"] / "toy-strict.yaml"
    path.write_text(yaml.safe_dump(prof))
    audit = chain["tmp"] / "audit-strict"
    res = run_audit(chain["dataset"], chain["cohort"], path, audit, seed=0)
    assert res.verdict.verdict == "inconclusive" and res.verdict.patients_needed > 30
    err = _refused(capsys, _args(chain, chain["tmp"] / "b-unsure", audit=audit))
    assert "the audit is INCONCLUSIVE" in err
    assert f"about {res.verdict.patients_needed} holdout patients needed, it had 30" in err


def test_refuses_a_release_at_a_stricter_tier_than_the_audit(chain, capsys):
    err = _refused(capsys, _args(chain, chain["tmp"] / "b-tier", tier="public"))
    assert "the audit was made at the 'controlled' tier, looser than the 'public' release" in err


def test_refuses_an_audit_of_another_cohort(chain, capsys):
    from synthmed.generate import generate_cohort

    other = generate_cohort(chain["model"], 60, chain["tmp"] / "cohort-seed1", seed=1)
    err = _refused(capsys, _args(chain, chain["tmp"] / "b-cohort", cohort=other))
    assert "the audit is of another cohort" in err


def test_refuses_an_audit_of_another_dataset(chain, capsys):
    other = toy_dataset(chain["tmp"] / "dataset-2", n_patients=120, per_patient=2, size=16, seed=5)
    err = _refused(capsys, _args(chain, chain["tmp"] / "b-dataset", dataset=other))
    assert "the audit is of another dataset" in err
    assert "the cohort's model was trained on another dataset" in err


def test_refuses_an_audit_of_another_model(chain, capsys):
    run2 = _train(chain["dataset"], chain["tmp"] / "run-seed1", seed=1)
    err = _refused(capsys, _args(chain, chain["tmp"] / "b-model", model=run2))
    assert "the cohort was generated by another model" in err


def test_refuses_a_cohort_with_one_file_changed_after_the_audit(chain, capsys):
    changed = chain["tmp"] / "cohort-changed"
    shutil.copytree(chain["cohort"], changed)
    m = changed / "manifest.csv"
    m.write_text(m.read_text().replace("SYN-000003", "SYN-999999"))
    err = _refused(capsys, _args(chain, chain["tmp"] / "b-changed", cohort=changed))
    assert "manifest.csv: changed since synthmed wrote it" in err


def test_every_reason_is_listed_one_line_each(chain, capsys):
    other = chain["tmp"] / "dataset-2"
    if not other.exists():
        from helpers_nih import toy_dataset as make

        make(other, n_patients=120, per_patient=2, size=16, seed=5)
    args = _args(chain, chain["tmp"] / "b-many", dataset=other)
    args = [a for a in args]
    i = args.index("--source")
    del args[i:i + 2]
    err = _refused(capsys, args)
    lines = err.strip().splitlines()
    assert lines[0].startswith("synthmed: error: release refused (")
    reasons = [ln for ln in lines[1:] if ln.startswith("  - ")]
    assert len(reasons) >= 3 and any("--source" in r for r in reasons)
    assert int(lines[0].split("(")[1].split()[0]) == len(reasons)


def test_override_is_recorded_and_warned(chain, capsys):
    from synthmed.generate import generate_cohort

    other = chain["tmp"] / "cohort-seed1"
    if not other.exists():
        generate_cohort(chain["model"], 60, other, seed=1)
    out = chain["tmp"] / "b-override"
    text = _ok(capsys, _args(chain, out, cohort=other,
                             extra=["--override", "approved by the data board, ticket 42"]))
    assert "warning" in text and "override" in text
    rec = json.loads((out / "release.json").read_text())
    assert rec["override"]["reason"] == "approved by the data board, ticket 42"
    assert any("another cohort" in r for r in rec["override"]["accepted"])
    assert "approved by the data board, ticket 42" in (out / "DATA_CARD.md").read_text()
    assert "UNDER AN OVERRIDE" in (out / "release.html").read_text()


def test_an_identifier_in_the_override_text_is_caught_by_the_scan(chain, capsys):
    from synthmed.data.dataset import Dataset

    pseudonym = Dataset.open(chain["dataset"]).records[0].patient
    err = _refused(capsys, _args(chain, chain["tmp"] / "b-leak", cohort=chain["tmp"] / "cohort-seed1",
                                 extra=["--override", f"checked patient {pseudonym}"]))
    assert "DATA_CARD.md" in err and "dataset pseudonym" in err
    assert pseudonym not in err  # the refusal names the kind, never the value


@pytest.mark.slow
def test_nih_bundle_holds_no_identifier_of_the_sample(tmp_path, capsys):
    """A release made from the NIH sample through the real ingestion: the scan searched every
    NIH file stem and the dataset's pseudonyms and found none; the same bundle with one NIH file
    name written into its manifest is refused."""
    from conftest import shared_path
    from synthmed.audit import run_audit
    from synthmed.data.dataset import Dataset
    from synthmed.generate import generate_cohort
    from synthmed.models import load
    from synthmed.release.identifiers import collect_identifiers
    from synthmed.release.scan import scan_folder

    from helpers_nih import ingest_nih

    nih = shared_path("nih-cxr14-1000")
    ds_dir = ingest_nih(nih, tmp_path / "nih", holdout=0.25, reference=0.25)
    run = _train(ds_dir, tmp_path / "run")
    cohort = generate_cohort(load(run), 80, tmp_path / "cohort", seed=0)
    run_audit(ds_dir, cohort, _profile(tmp_path), tmp_path / "audit", seed=0)
    c = {"cohort": cohort, "audit": tmp_path / "audit", "dataset": ds_dir, "run": run,
         "source": nih, "key": tmp_path / "nih.key"}
    out = tmp_path / "bundle"
    # whatever the tiny model's audit says, an override cannot pass the scan: a bundle made
    # means the scan found nothing
    _ok(capsys, _args(c, out, extra=["--override", "test of the identifier scan"]))
    rec = json.loads((out / "release.json").read_text())
    counts = rec["scan"]["identifier_counts"]
    assert counts["source ID"] >= 1000 and counts["dataset pseudonym"] >= 264, counts
    assert rec["scan"]["hits"] == 0 and rec["scan"]["sources_read"] >= 1001
    ids = collect_identifiers(Dataset.open(ds_dir), [nih], (tmp_path / "nih.key").read_bytes())
    leaky = tmp_path / "leaky"
    shutil.copytree(out, leaky)
    (leaky / "manifest.csv").write_text((leaky / "manifest.csv").read_text() + "00000013_005.png\n")
    hits, _ = scan_folder(leaky, ids)
    assert [(h.where, h.kind) for h in hits] == [("manifest.csv", "source ID")]


@pytest.fixture(scope="module")
def generated(chain):
    """A cohort made by `synthmed generate` (per-patient DICOM and PNG files, manifest, data card,
    SHA256SUMS) from the chain's model, and its audit."""
    from synthmed.audit import run_audit
    from synthmed.config import validate_config
    from synthmed.generate.runner import generate
    from synthmed.generate.spec import CohortSpec

    spec = validate_config({"patients": 60, "seed": 0, "studies": {"per_patient": 1},
                            "formats": ["dicom", "png"], "sampling": {"steps": 3}}, CohortSpec)
    out = chain["tmp"] / "generated"
    generate(chain["model"], spec, out)
    audit = chain["tmp"] / "generated-audit"
    verdict = run_audit(chain["dataset"], out, chain["profile"], audit, seed=0).verdict
    return {"cohort": out, "audit": audit, "verdict": verdict}


def test_release_of_a_generated_cohort(chain, generated, capsys):
    from synthmed.generate.documents import check_sha256sums

    assert generated["verdict"].verdict == "pass", [r.explanation for r in generated["verdict"].rules
                                                    if not r.passed]
    out = chain["tmp"] / "b-generated"
    _ok(capsys, _args(chain, out, cohort=generated["cohort"], audit=generated["audit"]))
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert any(f.startswith("dicom/SYN-") for f in files) and any(f.startswith("png/SYN-") for f in files)
    assert "images.npy" not in files and "manifest.parquet" in files  # viewer formats by default
    assert check_sha256sums(out) == []
    card = (out / "DATA_CARD.md").read_text()
    assert "SYNTHETIC DATA" in card and "verdict" in card and "override" not in card.lower()
    rec = json.loads((out / "release.json").read_text())
    # scanned: every file but the records written after the first pass (the data card,
    # release.json / .html: scanned in a second pass), SHA256SUMS and the marker
    assert rec["formats"] == ["dicom", "png"] and rec["scan"]["files"] == len(files) - 6


def test_refuses_a_generated_cohort_with_one_image_file_changed(chain, generated, capsys):
    changed = chain["tmp"] / "generated-changed"
    shutil.copytree(generated["cohort"], changed)
    png = sorted((changed / "png").rglob("*.png"))[3]
    data = bytearray(png.read_bytes())
    data[-20] ^= 0xFF  # one byte of one image
    png.write_bytes(bytes(data))
    rel = png.relative_to(changed).as_posix()
    err = _refused(capsys, _args(chain, chain["tmp"] / "b-gen-changed", cohort=changed,
                                 audit=generated["audit"]))
    assert f"{rel}: changed since synthmed wrote it" in err  # the folder marker
    assert f"{rel}: changed (sha256 differs from SHA256SUMS)" in err  # and SHA256SUMS
