"""White-box membership attacks (synthmed.audit.whitebox): the audit with the model in hand.

A tiny diffusion model over-trained on 20 images (one per patient) must give itself away, and the
same attacks on a model that never saw those images must find nothing.

Margins over seeds at the default white-box settings (privacy_audits/whitebox_margins.py, results
in privacy_audits/whitebox_margins.md; image-level AUC, 20 members vs 20 holdout images, MEMO =
400 steps of batch 20; memorising model / unseen model):

  seed 0 (this test): loss 1.000, pia 0.922, secmi 0.993, sima 1.000 / unseen 0.42 0.48 0.37 0.40
  seed 1:             loss 1.000, pia 0.965, secmi 0.970, sima 1.000 / unseen 0.35 0.57 0.47 0.46
  seed 2:             loss 1.000, pia 0.917, secmi 0.983, sima 1.000 / unseen 0.46 0.54 0.45 0.44

(remeasured 2026-12-02; the earlier run gave pia 0.948 / secmi 0.995 on seed 0)

So every attack reaches AUC >= 0.9 on every seed, and that is asserted. Two findings stand behind
the defaults: PIA's second query is at t = 10 (at the paper's t = 100-200 it is 0.67-0.75 here,
synthmed/audit/whitebox/pia.py), and SecMI is two-sided (the published lower-is-member score has
AUC 0.000-0.010 on these models: members' error is the LARGER, synthmed/audit/whitebox/secmi.py).
On the unseen model every simultaneous interval covers 0.5 (all four attacks, all seeds).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers_nih import toy_dataset, write_plain_cohort
from synthmed.audit.stats import auc_bootstrap_ci, roc_auc
from synthmed.audit.whitebox import WhiteboxSettings, score_images
from synthmed.data.dataset import Dataset
from synthmed.models import load, train
from test_models import one_thread, tiny_config  # noqa: F401  (one_thread: autouse fixture)

MEMO_NET = {"channels": [16, 32], "attention_levels": [False, False], "num_head_channels": 8,
            "norm_num_groups": 8, "context_dim": 8}
# 400 steps over the whole train split (batch 20): the same 400 epochs as the earlier 1,000 steps
# of batch 8, at 44 s of CPU instead of 78 s per training (tests run two).
MEMO = {"steps": 400, "batch_size": 20, "lr": 5e-3, "warmup_steps": 10, "ema_decay": 0.9, "log_every": 50,
        "network": MEMO_NET}
FRACTIONS = {"train": 1 / 3, "holdout": 1 / 3, "reference": 1 / 3}
ATTACKS = ("loss", "pia", "secmi", "sima")
# Patient-level DP-SGD at epsilon 1 on MEMO (batch 20 of 20 patients: sampling rate 1). Epsilon 8
# does not promise attacks at chance (an (8, delta)-DP mechanism allows TPR up to e^8 x FPR), and
# on the reference audits one of 21 epsilon-8 intervals missed 0.5; at epsilon 1 none did.
DP_EPS1 = {"target_epsilon": 1.0, "delta": 1e-3, "max_grad_norm": 1.0, "images_per_patient": 1}


def memorising_config(seed: int = 0, **over):
    return tiny_config(**{**MEMO, "seed": seed, **over})


def _dataset(root: Path, seed: int) -> Path:
    # 60 patients, one 8x8 image each: 20 train (the members), 20 holdout, 20 reference
    return toy_dataset(root, n_patients=60, per_patient=1, size=8, seed=seed, fractions=FRACTIONS)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _dataset(tmp_path_factory.mktemp("wb") / "ds", seed=0)


@pytest.fixture(scope="module")
def memorised(data, tmp_path_factory) -> Path:
    return train(data, memorising_config(0), tmp_path_factory.mktemp("wbrun") / "memorised")


@pytest.fixture(scope="module")
def unseen(tmp_path_factory) -> Path:
    """The same training on other patients: it never saw any image of `data`."""
    other = _dataset(tmp_path_factory.mktemp("wb-other") / "ds", seed=1)
    return train(other, memorising_config(0), tmp_path_factory.mktemp("wbrun") / "unseen")


@pytest.fixture(scope="module")
def quick(data, tmp_path_factory) -> Path:
    """A few steps of training: enough to check what does not need a memorising model."""
    return train(data, tiny_config(steps=5), tmp_path_factory.mktemp("wbrun") / "quick")


def _scores(run: Path, data: Path, **settings) -> tuple[dict[str, np.ndarray], int]:
    ds = Dataset.open(data)
    tr, ho, rf = ds.indices("train"), ds.indices("holdout"), ds.indices("reference")
    imgs = np.asarray(ds.images)
    cand = np.concatenate([tr, ho])
    return score_images(load(run), imgs[cand], WhiteboxSettings(**settings), seed=0,
                        reference=imgs[rf]), len(tr)


SYNTHETIC_ONLY = ("dcr", "domias", "mc_neighbourhood")


def rates_at_1pct(run: Path, data: Path, root: Path, seed: int = 0, n_nonmembers: int = 400,
                  n_synthetic: int = 60) -> dict:
    """Each attack's patient-level `RateAtFpr` at 1 % FPR, white-box and synthetic-only, on the
    same members and non-members. Members: the train images of `data` (one per patient);
    non-members: `n_nonmembers` new patients of the same toy process (the holdout of `data` has
    20, too few for a 1 % FPR: min_nonmembers_for_fpr(0.01) = 368); reference: `data`'s
    reference split, as in the audit. The synthetic images come from the project's default
    sampler (DPM++, 25 steps), not tiny_config's 4 steps, which would blur the copies."""
    from synthmed.audit.attacks import attack_scores, attack_settings
    from synthmed.audit.stats import tpr_at_fpr

    ds = Dataset.open(data)
    imgs = np.asarray(ds.images)
    members, ref = imgs[ds.indices("train")], imgs[ds.indices("reference")]
    fresh = Dataset.open(toy_dataset(root, n_patients=n_nonmembers, per_patient=1, size=int(imgs.shape[-1]),
                                     seed=seed + 2000, fractions=FRACTIONS))
    cand = np.concatenate([members, np.asarray(fresh.images)])
    model = load(run)
    syn = model.sample(n_synthetic, steps=25, sampler="dpm++", seed=seed).images
    scores = dict(score_images(model, cand, WhiteboxSettings(), seed=seed, reference=ref))
    for name in SYNTHETIC_ONLY:
        kw, why = attack_settings(name, len(ref), len(syn))
        assert kw is not None, (name, why)
        scores[name] = attack_scores(name, cand.reshape(len(cand), -1), syn.reshape(len(syn), -1),
                                     ref.reshape(len(ref), -1), seed=seed, **kw)
    n = len(members)
    return {k: tpr_at_fpr(v[:n], v[n:], 0.01) for k, v in scores.items()}


@pytest.mark.slow
def test_every_whitebox_attack_finds_the_members_of_a_memorising_model_and_nothing_in_an_unseen_one(
        data, memorised, unseen):
    scores, n = _scores(memorised, data)
    aucs = {k: roc_auc(v[:n], v[n:]) for k, v in scores.items()}
    assert set(aucs) == set(ATTACKS) and all(np.isfinite(v).all() for v in scores.values())
    assert all(a >= 0.9 for a in aucs.values()), aucs  # lowest over seeds 0-2: PIA 0.917, SecMI 0.970
    # The same images against a model that never saw them: every interval covers 0.5. The four
    # intervals are simultaneous (Bonferroni, 95 % together), as the audit's decisions are.
    null, n = _scores(unseen, data)
    for k, v in null.items():
        lo, hi = auc_bootstrap_ci(v[:n], v[n:], n_boot=2000, alpha=0.05 / len(ATTACKS), seed=1)
        assert lo <= 0.5 <= hi, (k, roc_auc(v[:n], v[n:]), lo, hi)


@pytest.mark.slow
def test_the_memorising_configuration_trained_with_dp_at_epsilon_1_gives_attacks_at_chance(data, tmp_path):
    """must-show 3: the configuration whose members every attack finds at AUC >= 0.9 (above),
    trained with patient-level DP-SGD at epsilon 1: every white-box AUC interval covers 0.5.
    Seeds 0-4 in privacy_audits/whitebox_margins_dp.md. Were the noise or the clipping not
    applied, the model would memorise and the intervals would sit near 1."""
    run = train(data, memorising_config(0, dp=DP_EPS1), tmp_path / "dp1")
    card = json.loads((run / "model_card.json").read_text())["differential_privacy"]
    assert card["unit"] == "patient" and card["epsilon"] <= DP_EPS1["target_epsilon"]
    scores, n = _scores(run, data)
    for k, v in scores.items():
        lo, hi = auc_bootstrap_ci(v[:n], v[n:], n_boot=2000, alpha=0.05 / len(ATTACKS), seed=1)
        assert lo <= 0.5 <= hi, (k, roc_auc(v[:n], v[n:]), lo, hi)


def test_scores_are_seeded_and_do_not_depend_on_the_batch(data, quick):
    a, _ = _scores(quick, data, batch_size=64)
    b, _ = _scores(quick, data, batch_size=7)
    for k in ATTACKS:
        # equal up to float summation order (CPU kernels sum differently per batch size; SecMI's
        # |log error - median| magnifies that near the median)
        np.testing.assert_allclose(a[k], b[k], rtol=2e-3, atol=2e-4, err_msg=k)
    ds = Dataset.open(data)
    imgs = np.asarray(ds.images[ds.indices("train")])
    m = load(quick)
    one = score_images(m, imgs, WhiteboxSettings(attacks=["loss"]), seed=0)["loss"]
    other = score_images(m, imgs, WhiteboxSettings(attacks=["loss"]), seed=1)["loss"]
    assert not np.allclose(one, other)  # the loss attack draws noise, from the seed
    # an image's score does not depend on which other images are scored with it
    np.testing.assert_allclose(score_images(m, imgs[3:5], WhiteboxSettings(attacks=["loss"]), seed=0)["loss"],
                               one[3:5], rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_audit_with_the_model_fails_a_memorising_model_through_the_whitebox_rules(data, memorised, unseen, tmp_path):
    from synthmed.audit import run_audit
    from synthmed.audit.profile import AuditProfile

    prof = AuditProfile(n_bootstrap=300, embedding={"steps": 0}, attacks={"spaces": ["pixel"]},
                        memorisation={"aligned": False})
    cohort = write_plain_cohort(tmp_path / "cohort", load(memorised).sample(24, seed=0).images)
    res = run_audit(data, cohort, prof, tmp_path / "audit", seed=0, model=memorised)
    audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
    wb = {a["attack"]: a for a in audit["attacks"] if a["space"] == "model"}
    assert set(wb) == set(ATTACKS)
    assert all(a["n_member_patients"] == 20 and a["n_nonmember_patients"] == 20 for a in wb.values())
    assert res.verdict.verdict == "fail"
    failed = {r.rule for r in res.verdict.failed_rules()}
    assert {"attack_auc:loss/model", "attack_auc:sima/model"} <= failed, failed
    # the white-box AUC rules are two-sided (Attack.two_sided), the synthetic-only ones are not
    sided = {r["rule"]: r["details"].get("two_sided", False) for r in audit["rules"]
             if r["rule"].startswith("attack_auc:")}
    assert all(v == r.endswith("/model") for r, v in sided.items()), sided
    # must-show 2 (reported, not asserted: the synthetic-only attacks may also find a memoriser)
    tpr = {f"{a['attack']}/{a['space']}": a["tpr_at_fpr"]["0.01"]["tpr"] for a in audit["attacks"]}
    print("TPR at the strictest threshold (1 % FPR not estimable with 20):", tpr)
    assert audit["model"]["model_sha256"] == load(memorised).model_hash
    assert audit["model"]["differential_privacy"] is None
    assert "whitebox" in audit["provenance"]["config"]
    # Without --model the audit is the outsider's: no white-box attack, no whitebox settings recorded.
    res2 = run_audit(data, cohort, prof, tmp_path / "audit2", seed=0)
    assert not [a for a in res2.audit["attacks"] if a["space"] == "model"]
    assert "whitebox" not in res2.audit["provenance"]["config"] and "model" not in res2.audit


def test_audit_refuses_a_model_trained_on_another_dataset(data, tmp_path):
    from synthmed.audit import run_audit
    from synthmed.errors import InputError

    other = train(_dataset(tmp_path / "other", seed=1), tiny_config(steps=2), tmp_path / "other-run")
    ds = Dataset.open(data)
    cohort = write_plain_cohort(tmp_path / "cohort", np.asarray(ds.images[ds.indices("reference")]))
    with pytest.raises(InputError, match="is not the dataset the model"):
        run_audit(data, cohort, None, tmp_path / "audit", model=other)


def test_a_latent_model_is_attacked_in_its_latent_space(data, tmp_path):
    """The run's own autoencoder encodes the images (latent means times the run's scale), and the
    attacks query the denoiser there."""
    import torch

    from synthmed.audit.whitebox.target import ModelTarget
    from synthmed.models.autoencoder import encode_all

    cfg = tiny_config(steps=4, latent={"enabled": True, "channels": [8, 16], "norm_num_groups": 8,
                                       "latent_channels": 2, "steps": 4, "batch_size": 4})
    m = load(train(data, cfg, tmp_path / "latent"))
    ds = Dataset.open(data)
    imgs = np.asarray(ds.images[ds.indices("train")][:6])
    target = ModelTarget(m)
    x0 = target.encode(imgs)
    assert target.latent and tuple(x0.shape) == (6, 2, *m.info["model_shape"])
    pixels = torch.from_numpy(imgs)[:, None] * 2 - 1
    want = encode_all(m.autoencoder, pixels, torch.device("cpu")) * m.info["latent"]["scale_factor"]
    torch.testing.assert_close(x0, want, rtol=1e-5, atol=1e-6)
    scores = score_images(m, imgs, WhiteboxSettings(secmi_direction="published"))
    assert set(scores) == set(ATTACKS) and all(np.isfinite(v).all() and v.shape == (6,) for v in scores.values())


def test_a_per_patient_subsample_scores_every_patient_and_keeps_their_aggregate():
    """whitebox.max_images_per_patient: at most k images of each patient are scored, a seeded
    choice per patient (independent of the other patients), and the unscored images take their
    patient's aggregate, so the patient-level scores are exactly those of the scored images."""
    from synthmed.audit.attacks.measure import aggregate_by_patient
    from synthmed.audit.whitebox.registry import expand_to_all, scored_subset

    rng = np.random.default_rng(0)
    patients = np.array([f"p{i}" for i in rng.integers(0, 30, size=120)], dtype=object)
    sub = scored_subset(patients, 2, seed=0)
    assert np.array_equal(sub, np.unique(sub))
    kept, counts = np.unique(patients[sub], return_counts=True)
    assert set(kept) == set(patients)  # every patient is scored
    have = dict(zip(*np.unique(patients, return_counts=True)))
    assert all(c == min(2, have[p]) for p, c in zip(kept, counts))
    assert np.array_equal(scored_subset(patients, 2, seed=0), sub)
    assert not np.array_equal(scored_subset(patients, 2, seed=1), sub)
    # a patient's choice does not depend on who else is audited
    mine = patients == patients[0]
    alone = scored_subset(patients[mine], 2, seed=0)
    assert np.array_equal(np.nonzero(mine)[0][alone], sub[mine[sub]])
    assert np.array_equal(scored_subset(patients, None, seed=0), np.arange(120))
    scores = rng.normal(size=sub.size)
    for how in ("max", "mean"):
        full = expand_to_all(scores, sub, patients, how)
        assert np.array_equal(full[sub], scores)
        ids_a, agg_a = aggregate_by_patient(full, patients, how)
        ids_b, agg_b = aggregate_by_patient(scores, patients[sub], how)
        assert np.array_equal(ids_a, ids_b)
        np.testing.assert_allclose(agg_a, agg_b, rtol=1e-12)


@pytest.mark.slow
def test_whitebox_attacks_find_more_members_at_1pct_fpr_than_the_synthetic_images_alone(data, memorised, tmp_path):
    """must-show 2, on the test's memorising model: at a real 1 % FPR (400 non-member patients),
    the white-box attacks find more members than the best attack that sees only 60 synthetic
    images (the best chosen after the fact, which favours it).

    Over seeds 0-2 (privacy_audits/whitebox_margins.md, second table): loss and SimA find 20 of
    20 members on every seed (Clopper-Pearson lower bound 0.83), SecMI 0.35-0.85, PIA 0.00-0.10
    (its AUC is 0.92-0.97, but some non-members outscore every member); the best synthetic-only
    attack (DCR on every seed) 0.20 / 0.40 / 0.25. So the claim is asserted for the best
    white-box attacks, loss and SimA, with their lower bound above the synthetic-only rate; not
    for every white-box attack, which would not be true."""
    rates = rates_at_1pct(memorised, data, tmp_path / "fresh")
    assert all(r.estimable and r.n_nonmembers == 400 and r.fpr_achieved <= 0.01 for r in rates.values())
    bb = max(rates[k].tpr for k in SYNTHETIC_ONLY)
    print("TPR at 1 % FPR:", {k: round(r.tpr, 3) for k, r in rates.items()})
    assert bb < 0.6, bb  # largest over seeds 0.40: the synthetic images alone do find some
    for k in ("loss", "sima"):
        assert rates[k].tpr >= 0.9 and rates[k].tpr_ci[0] > bb, (k, rates[k], bb)
