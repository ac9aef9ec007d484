"""End-to-end audits on the real NIH chest X-rays (split by patient) and on toy data.

The generators are built to have a known answer: copies of training images and a memorising
kernel-density sampler must FAIL; the holdout images themselves and a sampler built only from the
reference split (never the members) must not fail. With the NIH sample's 66 holdout patients
they cannot PASS either (a 1 % false-alarm rate needs ~620 holdout patients to be measured):
their verdict is INCONCLUSIVE, with the number of patients that would settle it.

The trained part is the module's encoder (20 steps). Spread: all 13 tests pass with encoder
seeds 0-4 (seeds 1-4 through a pytest plugin that overrides ContrastiveEncoder's seed, 2-core
CPU, torch 2.13.0, ~65 s a run): the verdicts and bounds here hold across encoder seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers_nih import (kde_sampler, mixture_sampler, nih_dataset, toy_dataset,
                         write_plain_cohort)
from synthmed.audit import run_audit
from synthmed.audit.profile import AuditProfile
from synthmed.config import load_config
from synthmed.data.dataset import Dataset
from synthmed.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT / "configs" / "audit-public.yaml"


def public_profile(**over) -> AuditProfile:
    """The shipped public profile (same rules), with cheaper measurement knobs for CPU tests."""
    # the aligned copy search (~0.1 s per registered image here) runs only in the tests about it,
    # and the identity attack (a re-identification network to train) in tests/test_audit_identity.py
    base = {"n_bootstrap": 1000, "embedding": {"steps": 40, "batch_size": 64},
            "memorisation": {"aligned": False}, "identity": {"enabled": False}}
    base.update(over)
    return load_config(PUBLIC, AuditProfile, overrides=base)


@pytest.fixture(scope="module")
def nih(tmp_path_factory):
    from conftest import shared_path

    src = shared_path("nih-cxr14-1000")
    root = tmp_path_factory.mktemp("nih")
    ds_dir = nih_dataset(src, root / "dataset")
    ds = Dataset.open(ds_dir)
    # one encoder for the module (trained on the train split, as the audit does), reused via --encoder
    from synthmed.audit.embeddings import ContrastiveEncoder

    train = np.asarray(ds.images[ds.indices("train")])
    enc = ContrastiveEncoder(2, ds.shape, dim=64, seed=0).fit(train, steps=20, batch_size=64)
    enc.save(root / "encoder")
    return {"root": root, "dataset": ds_dir, "ds": ds, "encoder": root / "encoder"}


def _split_images(ds: Dataset, split: str) -> np.ndarray:
    return np.asarray(ds.images[ds.indices(split)], dtype=np.float32)


def _audit(nih, name: str, images: np.ndarray, **kw):
    cohort = write_plain_cohort(nih["root"] / f"cohort-{name}", images)
    return run_audit(nih["dataset"], cohort, kw.pop("profile", public_profile()), nih["root"] / f"audit-{name}",
                     seed=0, encoder=kw.pop("encoder", nih["encoder"]), **kw)


def _rule(result, prefix: str):
    return [r for r in result.verdict.rules if r.rule.startswith(prefix)]


def _no_leak_but_too_small(result) -> None:
    """A null generator on NIH: no rule fails, the verdict is inconclusive with a size."""
    v = result.verdict
    assert v.verdict == "inconclusive", [r.explanation for r in v.failed_rules()]
    assert v.failed_rules() == [] and v.patients_needed is not None and v.patients_needed > 66


def test_copies_of_training_images_fail_and_every_copy_is_flagged(nih):
    train = _split_images(nih["ds"], "train")
    copies = train[:: max(1, train.shape[0] // 120)][:120]
    res = _audit(nih, "copies", copies)
    assert res.verdict.verdict == "fail"
    mem = res.audit["memorisation"]
    assert mem["n_flagged"] == copies.shape[0]
    assert mem["n_hard_copies"] == copies.shape[0]
    assert sorted(f["synthetic_index"] for f in mem["flagged"]) == list(range(copies.shape[0]))
    assert not _rule(res, "no_hard_copies")[0].passed
    # the written file says the same, under the versioned schema
    on_disk = json.loads((res.out / "audit.json").read_text())
    assert on_disk["schema"] == "synthmed.audit/1" and on_disk["verdict"] == "fail"
    assert (res.out / "report.html").stat().st_size > 10_000


def test_holdout_images_as_synthetic_do_not_fail(nih):
    res = _audit(nih, "holdout", _split_images(nih["ds"], "holdout"),
                 profile=public_profile(memorisation={"aligned": True, "aligned_max_images": 32}))
    _no_leak_but_too_small(res)
    assert res.audit["memorisation"]["n_hard_copies"] == 0
    # the aligned copy search ran (capped) and is part of the memorisation rules
    assert res.audit["memorisation"]["space"] == "pixel+aligned"
    assert res.audit["memorisation"]["aligned"]["n_registered"] == 32
    assert _rule(res, "no_hard_copies")[0].details["spaces"] == ["pixel", "aligned"]
    # no identifying value in any output: pseudonyms appear only as list hashes
    text = (res.out / "audit.json").read_text() + (res.out / "report.html").read_text()
    for p in nih["ds"].patients():
        assert p not in text
    assert "00000001_000" not in text and ".png" not in text


def test_memorising_generator_fails_with_high_auc(nih):
    train = _split_images(nih["ds"], "train")
    # twice as many samples as training images: most training images get a noisy twin
    res = _audit(nih, "kde", kde_sampler(train, 2 * train.shape[0], bandwidth=0.02, seed=1))
    aucs = {f"{a['attack']}/{a['space']}": a["auc"] for a in res.audit["attacks"]}
    assert max(aucs.values()) >= 0.9, aucs
    assert res.verdict.verdict == "fail"
    assert not all(r.passed for r in _rule(res, "attack_auc"))


def test_generator_that_never_saw_members_does_not_fail_and_auc_intervals_cover_chance(nih):
    ref = _split_images(nih["ds"], "reference")
    res = _audit(nih, "reference-mix", mixture_sampler(ref, 400, seed=2))
    _no_leak_but_too_small(res)
    for a in res.audit["attacks"]:
        assert a["auc_ci"][0] <= 0.5 <= a["auc_ci"][1], a


def test_flipped_and_shifted_copies_are_found_by_the_aligned_search_and_fail(nih):
    from synthmed.audit.augment import transform_copy

    ds = nih["ds"]
    train, ref = _split_images(ds, "train"), _split_images(ds, "reference")
    images = mixture_sampler(ref, 60, seed=4)
    flipped, shifted = [5, 22, 41], [9, 30, 57]
    images[flipped] = transform_copy(train[[7, 70, 140]], "flip", seed=0)
    images[shifted] = transform_copy(train[[20, 90, 160]], "shift", seed=1)
    # pixel space only (no encoder): coarse pixels, mirrored and shifted, propose the candidates
    res = _audit(nih, "aligned", images, encoder=None,
                 profile=public_profile(attacks={"spaces": ["pixel"]},
                                        memorisation={"aligned": True, "aligned_max_images": 16}))
    mem = res.audit["memorisation"]
    reasons = {f["synthetic_index"]: f["reason"] for f in mem["flagged"]}
    planted = flipped + shifted
    assert all("aligned:" in reasons.get(i, "") for i in planted), reasons
    # plain pixel distances miss the mirrored copies: the aligned space is what finds them
    assert not any(reasons[i].startswith("pixel") for i in flipped), reasons
    assert mem["aligned"]["n_registered"] == 16 and mem["aligned"]["n_synthetic"] == 60
    assert res.verdict.verdict == "fail"
    hard = _rule(res, "no_hard_copies")[0]
    assert not hard.passed and hard.measured >= len(flipped) and hard.details["spaces"] == ["pixel", "aligned"]


def test_filter_removes_the_copies_and_the_rest_passes(nih):
    ds = nih["ds"]
    train = _split_images(ds, "train")
    ref = _split_images(ds, "reference")
    planted = [3, 50, 97, 121, 155]
    images = mixture_sampler(ref, 160, seed=3)
    for k, i in enumerate(planted):
        images[i] = train[10 * k]
    # filtering does not depend on the encoder or the copy search: pixel space only keeps this test
    # quick (an aligned search calibrated on few holdout images would also remove the ~1/(n+1) of
    # honest images it flags by chance)
    res = _audit(nih, "filter", images, filter=True,
                 profile=public_profile(attacks={"spaces": ["pixel"]}), encoder=None)
    assert res.verdict.verdict == "fail"
    assert res.filtered is not None and res.filtered.verdict.verdict == "inconclusive"
    assert res.filtered.verdict.failed_rules() == []
    removed = (res.out / "filtered" / "removed.csv").read_text().splitlines()
    assert removed[0] == "synthetic_index,reason,nearest_train_distance"
    assert sorted(int(line.split(",")[0]) for line in removed[1:]) == planted
    kept = np.load(res.out / "filtered" / "cohort" / "images.npy")
    assert kept.shape[0] == 160 - len(planted)
    on_disk = json.loads((res.out / "audit.json").read_text())
    assert on_disk["filter"]["verdict"] == "inconclusive" and on_disk["filter"]["n_removed"] == len(planted)


def test_same_seed_gives_identical_audit_json(tmp_path):
    # trains the encoder each time (the default path), on toy data to keep it quick
    ds = toy_dataset(tmp_path / "ds", n_patients=80, per_patient=2, size=16)
    d = Dataset.open(ds)
    cohort = write_plain_cohort(tmp_path / "c", mixture_sampler(np.asarray(d.images[d.indices("reference")]), 60))
    prof = public_profile(embedding={"steps": 15, "batch_size": 32, "dim": 32})
    a = run_audit(ds, cohort, prof, tmp_path / "a1", seed=7)
    b = run_audit(ds, cohort, prof, tmp_path / "a2", seed=7)
    assert (tmp_path / "a1" / "audit.json").read_bytes() == (tmp_path / "a2" / "audit.json").read_bytes()
    # the encoder record too (its training time goes to the log, not into embedder.json)
    for name in ("embedder.json", "embedder.safetensors"):
        assert (tmp_path / "a1" / "encoder" / name).read_bytes() == \
            (tmp_path / "a2" / "encoder" / name).read_bytes()
    assert "seconds" not in json.loads((tmp_path / "a1" / "encoder" / "embedder.json").read_text())["training"]
    assert a.audit["encoder"]["source"] == "trained on the train split"
    assert b.audit == a.audit and a.audit["provenance"]["seed"] == 7


# ------------------------------------------------------------------------------- bad input
@pytest.fixture
def toy(tmp_path):
    ds = toy_dataset(tmp_path / "ds", n_patients=60, per_patient=2, size=16)
    d = Dataset.open(ds)
    return tmp_path, ds, np.asarray(d.images[d.indices("reference")])


def test_shape_mismatch_is_one_clear_line(toy):
    tmp, ds, ref = toy
    cohort = write_plain_cohort(tmp / "c", np.zeros((30, 32, 32), np.float32))
    with pytest.raises(InputError, match=r"cohort images are 32x32 but the dataset's are 16x16"):
        run_audit(ds, cohort, public_profile(), tmp / "out")
    assert not (tmp / "out" / "audit.json").exists()


def test_missing_split_is_named(tmp_path):
    ds = toy_dataset(tmp_path / "ds", n_patients=40, fractions={"train": 1.0})
    cohort = write_plain_cohort(tmp_path / "c", np.zeros((30, 16, 16), np.float32))
    with pytest.raises(InputError, match=r"no 'holdout' split"):
        run_audit(ds, cohort, public_profile(), tmp_path / "out")


def test_too_few_patients_names_split_and_minimum(toy):
    tmp, ds, ref = toy
    cohort = write_plain_cohort(tmp / "c", ref[:30])
    with pytest.raises(InputError, match=r"'holdout' split has 15 patients but the audit needs at least 20"):
        run_audit(ds, cohort, public_profile(), tmp / "out")
    with pytest.raises(InputError, match=r"cohort has 5 images but the audit needs at least 20"):
        run_audit(ds, write_plain_cohort(tmp / "c5", ref[:5]),
                  public_profile(sizes={"min_holdout_patients": 10}), tmp / "out")


def test_cli_prints_verdict_and_exit_codes(toy, capsys):
    from synthmed.cli import main

    tmp, ds, ref = toy
    d = Dataset.open(ds)
    copies = np.asarray(d.images[d.indices("train")])[:30]
    cohort = write_plain_cohort(tmp / "copies", copies)
    prof = tmp / "p.yaml"
    prof.write_text(PUBLIC.read_text().replace("steps: 300", "steps: 0").replace("aligned: true", "aligned: false")
                    .replace("  enabled: true", "  enabled: false")
                    .replace("min_holdout_patients: 20", "min_holdout_patients: 10")
                    .replace("spaces: [pixel, encoder]", "spaces: [pixel]"))
    args = ["audit", "--dataset", str(ds), "--synthetic", str(cohort), "--profile", str(prof),
            "--out", str(tmp / "a")]
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 0  # a failed audit is a result, not an error
    out = capsys.readouterr().out
    assert "FAIL" in out and "no_hard_copies" in out
    with pytest.raises(SystemExit) as e:
        main(args + ["--fail-on-fail", "--overwrite"])
    assert e.value.code == 3
    with pytest.raises(SystemExit) as e:
        main(["audit", "--dataset", str(tmp / "nope"), "--synthetic", str(cohort), "--out", str(tmp / "b")])
    assert e.value.code == 2


def test_without_reference_split_half_the_holdout_calibrates_the_attacks(tmp_path):
    ds = toy_dataset(tmp_path / "ds", n_patients=84, per_patient=2, size=16,
                     fractions={"train": 0.5, "holdout": 0.5})
    d = Dataset.open(ds)
    hold = np.asarray(d.images[d.indices("holdout")])
    cohort = write_plain_cohort(tmp_path / "c", hold[:40])
    prof = public_profile(embedding={"steps": 0}, attacks={"spaces": ["pixel"]})
    res = run_audit(ds, cohort, prof, tmp_path / "a", seed=0)
    data = res.audit["data"]
    assert data["reference_source"].startswith("half of the holdout patients")
    assert data["n_nonmember_patients"] + data["n_reference_images"] // 2 == 42  # 21 + 21 patients
    assert {a["attack"] for a in res.audit["attacks"]} == {"dcr", "domias", "mc_neighbourhood"}
    with pytest.raises(InputError, match="after half of them were set aside"):
        run_audit(ds, cohort, public_profile(embedding={"steps": 0}, sizes={"min_holdout_patients": 30}),
                  tmp_path / "b")


def test_tiny_reference_split_is_topped_up_from_the_holdout_via_the_cli(tmp_path, capsys):
    """A 3-image reference split crashed DOMIAS (5 PCA dims) with an internal error (exit 1)."""
    from synthmed.cli import main

    # 84 patients x 3 images: 42 train, 41 holdout, 1 reference patient (3 images)
    ds = toy_dataset(tmp_path / "ds", n_patients=84, per_patient=3, size=16,
                     fractions={"train": 0.5, "holdout": 0.49, "reference": 0.01})
    d = Dataset.open(ds)
    assert d.indices("reference").size == 3
    cohort = write_plain_cohort(tmp_path / "c", mixture_sampler(np.asarray(d.images[d.indices("holdout")]), 40))
    base = (PUBLIC.read_text().replace("steps: 300", "steps: 0").replace("spaces: [pixel, encoder]", "spaces: [pixel]")
            .replace("  enabled: true", "  enabled: false")
            .replace("n_bootstrap: 2000", "n_bootstrap: 100").replace("aligned: true", "aligned: false"))
    cases = {"default": base,
             "dcr-mc": base.replace("attacks: [dcr, domias, mc_neighbourhood]", "attacks: [dcr, mc_neighbourhood]"),
             # the holdout cannot spare half its patients: the 3 images calibrate alone
             "use-tiny": base.replace("min_holdout_patients: 20", "min_holdout_patients: 30")}
    for name, text in cases.items():
        prof = tmp_path / f"{name}.yaml"
        prof.write_text(text)
        with pytest.raises(SystemExit) as e:
            main(["audit", "--dataset", str(ds), "--synthetic", str(cohort), "--profile", str(prof),
                  "--out", str(tmp_path / name)])
        out = capsys.readouterr()
        assert e.value.code == 0, (name, out.err)
        assert "Traceback" not in out.out + out.err and "internal error" not in out.err
        audit = json.loads((tmp_path / name / "audit.json").read_text())
        ran = {a["attack"]: a for a in audit["attacks"]}
        if name == "use-tiny":
            # DOMIAS adapts its PCA to 2 dims and says so
            assert audit["data"]["reference_source"] == "reference split"
            assert ran["domias"]["note"].startswith("PCA reduced to 2 dims")
        else:
            assert "fewer than sizes.min_reference_images = 20" in audit["data"]["reference_source"]
            assert audit["data"]["n_reference_images"] > 3
        assert set(ran) == ({"dcr", "mc_neighbourhood"} if name == "dcr-mc" else {"dcr", "domias", "mc_neighbourhood"})
    # a split too small for the profile: a one-line input error (exit 2), not an internal error
    prof = tmp_path / "strict.yaml"
    prof.write_text(base.replace("min_holdout_patients: 20", "min_holdout_patients: 50"))
    with pytest.raises(SystemExit) as e:
        main(["audit", "--dataset", str(ds), "--synthetic", str(cohort), "--profile", str(prof),
              "--out", str(tmp_path / "strict")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "'holdout' split has 41 patients but the audit needs at least 50" in err
