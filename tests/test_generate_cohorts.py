"""`synthmed generate`: cohort specs, virtual patients with follow-ups, shards, resume (issue 11).

Must-show 2: the same spec and seed give byte-identical cohort folders, every file included;
two shards merged equal one run; a run really killed mid-way and resumed equals an
uninterrupted one. The model is test_models' tiny network trained for two steps: these tests are
about bytes, not image quality (that is tests/test_generate_quality.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers_dataset import make_toy_dataset
from synthmed.cli import main
from synthmed.config import validate_config
from synthmed.data.cohort import Cohort
from synthmed.errors import ConfigError, InputError
from synthmed.generate.patients import draw_patient
from synthmed.generate.runner import Shard, generate, merge, sample_group, work_dir
from synthmed.generate.spec import CohortSpec, load_spec
from synthmed.generate.study import SYNTHETIC_EPOCH
from synthmed.io import folders
from test_models import one_thread, tiny_config  # noqa: F401 (one_thread: autouse fixture)

ROOT = Path(__file__).resolve().parent.parent
SPEC = {"patients": 9, "seed": 5, "batch_patients": 2,
        "studies": {"per_patient": {1: 0.3, 2: 0.4, 3: 0.3}, "interval_days": {"min": 30, "max": 200}},
        "labels": {"prevalence": {"Mass": 0.5, "Effusion": 0.2}, "appear": 0.2, "resolve": 0.3},
        "age": {"mean": 60, "sd": 10, "min": 40, "max": 80}, "sex_ratio": 0.5,
        "sampling": {"steps": 3}, "followup": {"strength": 0.5}}


def _spec(**over) -> CohortSpec:
    return validate_config({**SPEC, **over}, CohortSpec)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module", autouse=True)
def one_thread_module():
    """The module-scoped cohorts below are made before any function-scoped fixture runs, so
    test_models' one_thread does not cover them: a float sum split over two threads differs in
    the last bits from one thread, and the byte-for-byte comparisons need both sides alike."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    from synthmed.models import train

    tmp = tmp_path_factory.mktemp("gen")
    ds = make_toy_dataset(tmp / "ds", n_patients=6, images_per_patient=2, shape=(8, 8), seed=4)
    return train(ds, tiny_config(steps=2, batch_size=4), tmp / "run")


@pytest.fixture(scope="module")
def model(run):
    from synthmed.models import load

    return load(run)


@pytest.fixture(scope="module")
def reference(model, tmp_path_factory) -> Path:
    """One uninterrupted run of SPEC in every format: what every other way must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "cohort"
    generate(model, _spec(formats=["dicom", "nifti", "png"]), out)
    return out


# ------------------------------------------------------------------------------------ the spec
def test_spec_errors_name_the_key(tmp_path):
    f = tmp_path / "s.yaml"
    for text, match in (("patients: 0\n", "patients"),
                        ("patients: 3\nstudies: {per_patient: {1: 0.5, 2: 0.4}}\n", "add up to 0.9"),
                        ("patients: 3\nage: {min: 80, max: 40}\n", "below min"),
                        ("patients: 3\nage: {min: 40, max: 80, mean: 60}\n", "both mean and sd"),
                        ("patients: 3\nformats: [jpeg]\n", "formats"),
                        ("patients: 3\nlabels: {prevalence: {Mass: 0.1}, joint: [{labels: [], p: 1}]}\n",
                         "not both"),
                        ("patients: 3\nsex_ratio: 1.5\n", "sex_ratio"),
                        ("patients: 3\nfollowup: {fresh_noise: 1.5}\n", "fresh_noise"),
                        ("patients: 3\ncolour: red\n", "colour")):
        f.write_text(text)
        with pytest.raises(ConfigError, match=match) as e:
            load_spec(f)
        assert "\n" not in str(e.value) and str(f) in str(e.value)
    with pytest.raises(InputError, match=r"unknown label\(s\) \['Pneumonia'\]"):
        _spec(labels={"prevalence": {"Pneumonia": 0.2}}).check_against(["Effusion", "Mass"])
    for name in ("cohort-followup", "followup", "cohort-joint", "cohort-match-training"):
        assert load_spec(name).patients >= 1


def test_patients_are_their_own_seed_and_follow_the_spec():
    vocab, priors = ["Effusion", "Mass"], {}
    a, b = _spec(), _spec(patients=50)
    # Patient 4 depends on (cohort seed, 4) only, not on how many patients the cohort has.
    assert draw_patient(a, 4, vocab, priors) == draw_patient(b, 4, vocab, priors)
    assert draw_patient(a, 4, vocab, priors) != draw_patient(_spec(seed=6), 4, vocab, priors)
    p = draw_patient(b, 7, vocab, priors)
    assert p.patient.patient_id == "SYN-000007" and p.patient.sex in ("F", "M")
    days = [s.days_since_first for s in p.studies]
    assert days[0] == 0 and all(30 <= d2 - d1 <= 200 for d1, d2 in zip(days, days[1:]))
    # Age advances with the interval.
    for s in p.studies:
        assert s.age == pytest.approx(p.patient.age + s.days_since_first / 365.25, abs=0.051)
    # A finding that always appears and never resolves is in every follow-up.
    always = _spec(patients=30, labels={"prevalence": {"Mass": 0.0}, "appear": 1.0, "resolve": 0.0},
                   studies={"per_patient": 3})
    for i in range(30):
        st = draw_patient(always, i, vocab, priors).studies
        assert st[0].labels == () and st[1].labels == st[2].labels == ("Effusion", "Mass")
    # A joint table is drawn cell by cell.
    joint = _spec(patients=400, labels={"joint": [{"labels": ["Effusion", "Mass"], "p": 0.5},
                                                  {"labels": [], "p": 0.5}]})
    firsts = [draw_patient(joint, i, vocab, priors).studies[0].labels for i in range(400)]
    assert set(firsts) == {(), ("Effusion", "Mass")}
    # Nothing set and no `match: training`: the model decides (null conditions).
    free = validate_config({"patients": 2}, CohortSpec)
    assert draw_patient(free, 0, vocab, {"label_rates": {"Mass": 0.9}}).studies[0].conditions("") == {}


# ------------------------------------------------------------------------ cohort folder contents
def test_a_generated_cohort_is_a_cohort(reference, model):
    c = Cohort.open(reference)  # what the audit and evaluate read
    info = json.loads((reference / "cohort.json").read_text())
    rows = c.records
    assert len(rows) == c.images.shape[0] == info["n_images"] and info["n_patients"] == 9
    assert folders.verify(reference, "cohort").kind == "cohort"
    by_patient: dict[str, list] = {}
    for r in rows:
        by_patient.setdefault(r.patient, []).append(r)
    assert sorted(by_patient) == [f"SYN-{i:06d}" for i in range(9)]
    for pid, studies in by_patient.items():
        assert [s.study_index for s in studies] == list(range(len(studies)))
        first = studies[0]
        assert np.isnan(first.followup_strength) and all(s.followup_strength == 0.5 for s in studies[1:])
        for s in studies:
            date = SYNTHETIC_EPOCH.fromisoformat(s.study_date)
            assert (date - SYNTHETIC_EPOCH).days >= s.days_since_first
            assert s.sex == first.sex
    # Follow-ups record the SDEdit steps that ran (half of 3, rounded), first studies all 3.
    assert info["sampling"]["steps"] == 3 and info["followup_sampling"]["steps"] == 2
    assert info["followup_sampling"]["fresh_noise"] == CohortSpec.model_fields["followup"].default.fresh_noise
    from synthmed.generate.documents import check_sha256sums
    from synthmed.generate.manifest import read_manifest_rows

    assert check_sha256sums(reference) == []
    mrows = read_manifest_rows(reference)
    assert {r.steps for r in mrows if r.study_index == 0} == {3}
    assert {r.steps for r in mrows if r.study_index > 0} == {2}
    assert all(set(r.paths) == {"dicom", "nifti", "png"} for r in mrows)
    # Any single patient regenerates alone, byte for byte (its group of batch_patients=2).
    from synthmed.generate.runner import plan_patients

    spec = _spec()
    group = sample_group(model, spec, plan_patients(model, spec, [4, 5]))
    k = [i for i, r in enumerate(rows) if r.patient == "SYN-000005"]
    again = np.stack([st.image for st in group[5]])
    assert again.tobytes() == np.asarray(c.images[k]).tobytes()


# ------------------------------------------------------------------------------- must-show 2
def test_same_spec_and_seed_give_byte_identical_cohorts(reference, model, tmp_path):
    again = tmp_path / "again"
    generate(model, _spec(formats=["dicom", "nifti", "png"]), again)
    assert _tree(again) == _tree(reference)  # every file, the marker and SHA256SUMS included
    other = tmp_path / "other"
    generate(model, _spec(seed=6), other)
    assert _tree(other)["images.npy"] != _tree(reference)["images.npy"]


def test_two_shards_merged_equal_one_run(reference, run, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(_spec(formats=["dicom", "nifti", "png"]).model_dump(mode="json")))
    out = tmp_path / "co"

    def cli(*args):
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in args])
        return e.value.code or 0, capsys.readouterr().err

    code, err = cli("generate", run, "--spec", spec, "--out", out, "--shard", "1/2")
    assert code == 0, err
    assert not out.exists() and "--merge" in err  # nothing at the target until merged
    code, err = cli("generate", "--merge", "--out", out)
    assert code == 2 and "shard(s) 0/2 have not finished" in err
    os.environ["RANK"], os.environ["WORLD_SIZE"] = "0", "2"  # as torchrun sets them
    try:
        code, err = cli("generate", run, "--spec", spec, "--out", out)
    finally:
        del os.environ["RANK"], os.environ["WORLD_SIZE"]
    assert code == 0, err
    code, err = cli("generate", "--merge", "--out", out)
    assert code == 0, err
    assert _tree(out) == _tree(reference)
    assert not work_dir(out).exists()
    # A re-run of a finished cohort is a no-op, not a second copy.
    code, err = cli("generate", run, "--spec", spec, "--out", out)
    assert code == 0 and _tree(out) == _tree(reference)
    assert Shard.from_env({"RANK": "3", "WORLD_SIZE": "4"}) == Shard(3, 4)
    with pytest.raises(InputError, match="k/n"):
        Shard.parse("2of4")
    with pytest.raises(InputError, match="0 <= k < n"):
        Shard.parse("4/4")


_KILL_AT_RENAME = r"""
import os, sys
kill_at = int(sys.argv[1])
calls = {"n": 0}
real = os.replace
def replace(*a, **k):
    calls["n"] += 1
    if calls["n"] == kill_at:
        os._exit(137)  # no finally blocks, no cleanup: what SIGKILL leaves
    return real(*a, **k)
os.replace = replace
import torch
torch.set_num_threads(1)  # as the parent (one_thread_module): same thread count, same floats
from synthmed.cli import main
main(["generate", sys.argv[2], "--spec", sys.argv[3], "--out", sys.argv[4]])
"""


def test_a_killed_run_resumes_to_the_same_cohort(reference, run, model, tmp_path):
    """A child process dies (os._exit, nothing cleaned up) at a rename in the middle of writing
    patient files; the re-run skips the finished patients whose checksums verify, redoes the
    rest (and one whose file was changed since), and gives the uninterrupted run's bytes."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps(_spec(formats=["dicom", "nifti", "png"]).model_dump(mode="json")))
    out = tmp_path / "co"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # generate.json, then per patient: npy + one file per study and format + the record
    child = subprocess.run([sys.executable, "-c", _KILL_AT_RENAME, "25", run, spec, out],
                           env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == 137, child.stderr
    work = work_dir(out)
    done = sorted(p.stem for p in (work / "patients").glob("*.json"))
    assert not out.exists() and 0 < len(done) < 9, done
    # A finished patient's file changed since: its checksum no longer verifies.
    victim = work / "patients" / f"{done[0]}.npy"
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = generate(model, _spec(formats=["dicom", "nifti", "png"]), out)
    assert set(result.skipped) == set(done[1:]) and done[0] in result.generated
    assert len(result.generated) + len(result.skipped) == 9
    assert _tree(out) == _tree(reference)


def test_unfinished_work_of_another_spec_is_not_mixed_in(model, tmp_path):
    out = tmp_path / "co"
    generate(model, _spec(), out, shard=Shard(0, 3))
    with pytest.raises(InputError, match="another spec or model.*overwrite=True"):
        generate(model, _spec(seed=9), out, shard=Shard(1, 3))
    with pytest.raises(InputError, match="shard"):
        merge(out)
    generate(model, _spec(seed=9), out, overwrite=True)
    assert Cohort.open(out).info["generation"]["spec"]["seed"] == 9


def test_sdedit_follow_ups_keep_the_first_study_and_say_what_ran(model):
    """The pipeline's init_images path: a low strength stays near the image it starts from, the
    steps that ran are recorded, and bad arguments are refused before sampling."""
    from synthmed.generate.pipeline import sdedit_steps

    base = model.sample(4, steps=4, seed=1)
    low = model.sample(4, steps=4, seed=2, init_images=base.images, strength=0.25)
    full = model.sample(4, steps=4, seed=2, init_images=base.images, strength=1.0)
    assert low.settings.steps == sdedit_steps(4, 0.25) == 1 and low.strength == 0.25
    assert full.settings.steps == 4 and base.strength is None
    near = np.abs(low.images - base.images).mean()
    assert near < np.abs(full.images - base.images).mean(), near
    again = model.sample(4, steps=4, seed=2, init_images=base.images, strength=0.25)
    assert again.images.tobytes() == low.images.tobytes()
    for kw, match in (({"strength": 0.0}, "strength"), ({"strength": None}, "strength"),
                      ({"strength": 0.5, "init_images": base.images[:2]}, "init_images")):
        with pytest.raises(InputError, match=match):
            model.sample(4, **{"init_images": base.images, **kw})


def test_follow_ups_re_noised_with_their_first_study_s_own_noise_give_it_back(model):
    """`noise_at` records each sample's own noise at an SDEdit start. An SDEdit of the sample
    with that noise (fresh_noise 0) and unchanged conditions restarts from the state its own
    sampling passed through, so it gives the sample back: exactly with DDIM, nearly with the
    multistep DPM-Solver (which restarts at first order); a fresh draw moves away. fresh_noise 1
    is classic SDEdit, byte for byte."""
    for sampler, tol in (("ddim", 1e-5), ("dpm++", None)):
        base = model.sample(4, steps=4, seed=1, sampler=sampler, noise_at=0.5)
        assert base.noise.shape == (4, model.info["in_channels"], *model.info["model_shape"])
        same = model.sample(4, steps=4, seed=1, sampler=sampler)
        assert same.images.tobytes() == base.images.tobytes() and same.noise is None
        kw = dict(steps=4, seed=2, sampler=sampler, init_images=base.images, strength=0.5)
        own = model.sample(4, init_noise=base.noise, fresh_noise=0.0, **kw)
        fresh = model.sample(4, **kw)
        part = model.sample(4, init_noise=base.noise, fresh_noise=0.3, **kw)
        d_own, d_part, d_fresh = (float(np.abs(o.images - base.images).mean()) for o in (own, part, fresh))
        assert d_own < d_part < d_fresh, (sampler, d_own, d_part, d_fresh)
        assert d_own < (tol if tol is not None else 0.2 * d_fresh), (sampler, d_own, d_fresh)
        classic = model.sample(4, init_noise=base.noise, fresh_noise=1.0, **kw)
        assert classic.images.tobytes() == fresh.images.tobytes()
    for kw, match in (({"fresh_noise": 1.5}, "fresh_noise"), ({"noise_at": 0.5}, "noise_at"),
                      ({"init_noise": base.noise[:2]}, "init_noise")):
        with pytest.raises(InputError, match=match):
            model.sample(4, **{"init_images": base.images, "strength": 0.5, **kw})
    for kw, match in (({"init_noise": base.noise}, "init_noise"), ({"noise_at": 0.0}, "noise_at")):
        with pytest.raises(InputError, match=match):
            model.sample(4, **kw)


def test_generation_logs_patients_per_second_and_eta(model, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SYNTHMED_NO_PROGRESS", raising=False)
    monkeypatch.setenv("SYNTHMED_PROGRESS_EVERY", "0")
    generate(model, _spec(), tmp_path / "co")
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("synthmed: generate:")]
    assert lines[-1].endswith("done") and "9/9 (100%)" in lines[-1], lines
    assert any(" eta " in l for l in lines) and "patients_per_s" in lines[-1]


def test_sample_is_generate_with_a_one_study_spec(run, model, tmp_path, capsys):
    """`synthmed sample` is not a second implementation: its cohort is, byte for byte, the one
    `generate` makes from the spec its options stand for."""
    from synthmed.generate.patients import quick_spec

    with pytest.raises(SystemExit) as e:
        main(["sample", str(run), "--n", "5", "--out", str(tmp_path / "s"), "--seed", "3",
              "--labels", "Mass=0.5", "--steps", "2", "--format", "png"])
    assert e.value.code in (0, None), capsys.readouterr().err
    spec = quick_spec(5, label_rates={"Mass": 0.5}, seed=3, steps=2, batch_patients=64,
                      formats=["png"])
    generate(model, spec, tmp_path / "g")
    assert _tree(tmp_path / "s") == _tree(tmp_path / "g")
    assert len(list((tmp_path / "s" / "png").rglob("*.png"))) == 5
