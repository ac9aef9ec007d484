"""Differentially private training with the patient as the privacy unit (synthmed.models.dp)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers_nih import toy_dataset
from synthmed.config import validate_config
from synthmed.errors import ConfigError
from synthmed.models import TrainConfig, load, train
from synthmed.models.conditioning import conditions_from_arrays
from synthmed.models.dp import PatientDPSGD, accountant_epsilon
from synthmed.models.network import ConditionalUNet
from test_models import one_thread, tiny_config  # noqa: F401  (one_thread: autouse fixture)

DP = {"target_epsilon": 4.0, "delta": 1e-3, "max_grad_norm": 1.0, "images_per_patient": 2}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    # 40 patients with 2 images each: 20 train patients (40 images)
    return toy_dataset(tmp_path_factory.mktemp("dp") / "ds", n_patients=40, per_patient=2, size=16, seed=3)


@pytest.fixture(scope="module")
def dp_run(toy, tmp_path_factory) -> Path:
    return train(toy, tiny_config(steps=12, dp=DP), tmp_path_factory.mktemp("dprun") / "run")


def test_model_card_epsilon_is_the_opacus_accountant_for_the_steps_and_sampling_rate(dp_run):
    """The card's epsilon is what Opacus's RDP accountant gives when fed the card's noise, the
    PATIENT sampling rate (expected patients per step / train patients) and the step count, one
    `step` call per training step, as Opacus's PrivacyEngine would feed it."""
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    card = json.loads((dp_run / "model_card.json").read_text())
    dp = card["differential_privacy"]
    assert dp["unit"] == "patient" and dp["steps"] == card["steps"] == 12
    assert dp["train_patients"] == card["split_sizes"]["train"]["patients"] == 20
    assert dp["sample_rate"] == pytest.approx(8 / 20)  # batch_size 8 = expected patients per step
    acc = RDPAccountant()
    for _ in range(dp["steps"]):
        acc.step(noise_multiplier=dp["noise_multiplier"], sample_rate=dp["sample_rate"])
    assert dp["epsilon"] == pytest.approx(acc.get_epsilon(delta=DP["delta"]), rel=1e-9)
    # the noise was chosen for the target: epsilon just at or under it (Opacus's 0.01 tolerance)
    assert DP["target_epsilon"] - 0.02 <= dp["epsilon"] <= DP["target_epsilon"]
    assert dp["noise_multiplier"] == pytest.approx(get_noise_multiplier(
        target_epsilon=DP["target_epsilon"], target_delta=DP["delta"], sample_rate=8 / 20, steps=12))
    # a smaller budget needs more noise, and the accountant helper is monotone in the noise
    assert accountant_epsilon(2 * dp["noise_multiplier"], dp["sample_rate"], 12, DP["delta"]) < dp["epsilon"]
    md = (dp_run / "model_card.md").read_text()
    assert "DP per PATIENT" in md and f"{dp['epsilon']:.3g}" in md
    # the guarantee travels with the weights: model.json records it, and the model samples
    m = load(dp_run)
    assert m.info["dp"]["epsilon"] == dp["epsilon"]
    x = m.sample(2, seed=0).images
    assert x.shape == (2, 16, 16) and np.isfinite(x).all()


def test_dp_training_is_reproducible_and_differs_from_non_private(toy, dp_run, tmp_path):
    again = train(toy, tiny_config(steps=12, dp=DP), tmp_path / "again")
    assert (again / "model.safetensors").read_bytes() == (dp_run / "model.safetensors").read_bytes()
    plain = train(toy, tiny_config(steps=12), tmp_path / "plain")
    assert (plain / "model.safetensors").read_bytes() != (dp_run / "model.safetensors").read_bytes()
    assert json.loads((plain / "model_card.json").read_text())["differential_privacy"] is None


def _tiny_net() -> ConditionalUNet:
    cfg = tiny_config()
    torch.manual_seed(0)
    return ConditionalUNet(2, 1, 0, cfg.network, cfg.conditioning)


def _batch(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, 1, 16, 16), generator=g)
    t = torch.randint(0, 1000, (n,), generator=g)
    target = torch.randn((n, 1, 16, 16), generator=g)
    cond = conditions_from_arrays(np.zeros((n, 0)), np.full(n, 50.0), np.array(["F"] * n, dtype=object))
    return x, t, target, cond


def test_a_patient_is_one_clipped_record_whatever_its_number_of_images():
    """Patient 0 has 3 images in the batch, patient 1 one: each patient's gradient is the mean of
    its images' own gradients (checked against plain autograd one image at a time), clipped as ONE
    record, and the update (noise off) is the sum of the clipped patient gradients over the
    expected batch. An image-level clip would let patient 0 move the weights three times as far."""
    net = _tiny_net()
    cfg = tiny_config(dp={**DP, "max_grad_norm": 0.05, "images_per_patient": 3})
    patients = np.array(["a", "a", "a", "b"] + [f"p{i}" for i in range(16)], dtype=object)
    dp = PatientDPSGD(net, torch.optim.SGD(net.parameters(), lr=1.0), cfg, patients)
    x, t, target, cond = _batch(4)
    slot = np.array([0, 0, 0, 1])
    grads = dp.per_patient_grads(x, t, target, cond, slot, 2)
    names = [k for k, _ in net.named_parameters()]

    def autograd_grad(i):
        net.zero_grad()
        F.mse_loss(net(x[i:i + 1], t[i:i + 1], cond.select(slice(i, i + 1))), target[i:i + 1]).backward()
        return {k: p.grad.detach().clone() for k, p in net.named_parameters()}

    single = [autograd_grad(i) for i in range(4)]
    for k in names:
        torch.testing.assert_close(grads[k][0], (single[0][k] + single[1][k] + single[2][k]) / 3,
                                   rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(grads[k][1], single[3][k], rtol=1e-4, atol=1e-6)
    norms = torch.stack([torch.sqrt(sum((grads[k][j] ** 2).sum() for k in names)) for j in range(2)])
    assert (norms > 0.05).all()  # both get clipped at this norm, so the bound is what is tested
    before = {k: p.detach().clone() for k, p in net.named_parameters()}
    dp.optimizer.noise_multiplier = 0.0
    net.zero_grad(set_to_none=True)
    dp.step(x, t, target, cond, slot, 2, torch.Generator().manual_seed(0))
    expected_batch = dp.sample_rate * dp.n_patients
    for k, p in net.named_parameters():
        clipped = sum(grads[k][j] * min(1.0, 0.05 / float(norms[j])) for j in range(2))
        torch.testing.assert_close(before[k] - p.detach(), clipped / expected_batch, rtol=2e-3, atol=1e-7)
    moved = torch.sqrt(sum(((before[k] - p.detach()) ** 2).sum() for k, p in net.named_parameters()))
    assert float(moved) <= 2 * 0.05 / expected_batch * (1 + 1e-4)


def test_patients_are_poisson_sampled_with_their_own_images():
    net = _tiny_net()
    patients = np.repeat([f"p{i:02d}" for i in range(20)], 3).astype(object)  # 3 images each
    dp = PatientDPSGD(net, torch.optim.SGD(net.parameters(), lr=1.0), tiny_config(dp=DP), patients)
    counts = np.zeros(20)
    sizes = []
    for step in range(400):
        rows, slot, k = dp.sample(seed=0, step=step)
        sizes.append(k)
        assert rows.size == slot.size and (k == 0 or slot.max() == k - 1)
        for j in range(k):
            own = rows[slot == j]
            assert 1 <= own.size <= 2 and len(set(patients[own])) == 1  # images_per_patient = 2
            counts[int(patients[own[0]][1:])] += 1
    # each patient independently with q = 8 / 20 = 0.4: 400 steps give 160 +- 3 sd (~30)
    assert dp.sample_rate == pytest.approx(0.4)
    assert np.all(np.abs(counts - 160) < 35), counts
    assert len(set(sizes)) > 5  # Poisson sampling: the batch size varies
    r1, s1, _ = dp.sample(seed=0, step=7)
    r2, s2, _ = dp.sample(seed=0, step=7)
    assert np.array_equal(r1, r2) and np.array_equal(s1, s2)


def test_dp_config_errors_are_one_line(toy, tmp_path):
    with pytest.raises(ConfigError, match="latent"):
        validate_config({"dp": DP, "latent": {"enabled": True}}, TrainConfig)
    with pytest.raises(ConfigError, match="target_epsilon"):
        validate_config({"dp": {"delta": 1e-5}}, TrainConfig)
    with pytest.raises(ConfigError, match=r"dp.delta = 0.1 is not below 1 / \(train patients\)"):
        train(toy, tiny_config(dp={**DP, "delta": 0.1}), tmp_path / "run")


@pytest.fixture(scope="module")
def dp_audited(tmp_path_factory):
    """A DP model audited with the model in hand: 20 train / 20 holdout / 20 reference patients
    (one 8x8 image each), 12 DP steps, the pixel-space attacks and the four white-box ones."""
    from helpers_nih import write_plain_cohort
    from synthmed.audit import run_audit
    from synthmed.audit.profile import AuditProfile

    root = tmp_path_factory.mktemp("dpaudit")
    ds = toy_dataset(root / "ds", n_patients=60, per_patient=1, size=8, seed=5,
                     fractions={"train": 1 / 3, "holdout": 1 / 3, "reference": 1 / 3})
    run = train(ds, tiny_config(steps=12, dp={**DP, "images_per_patient": 1}), root / "run")
    cohort = write_plain_cohort(root / "cohort", load(run).sample(30, seed=0).images)
    prof = AuditProfile(n_bootstrap=200, embedding={"steps": 0}, attacks={"spaces": ["pixel"]},
                        memorisation={"aligned": False})
    res = run_audit(ds, cohort, prof, root / "audit", seed=0, model=run)
    return run, res, root / "audit"


def _independent_lower_bound(attacks: list[dict], delta: float) -> float:
    """Kairouz et al. (2015) from each attack's TPR lower and FPR upper bound, written out here
    rather than through synthmed.audit.stats, so a wrong formula or a wrong delta there shows."""
    import math

    best = 0.0
    for a in attacks:
        for r in a["tpr_at_fpr"].values():
            tpr, fpr = r["tpr_ci"][0], r["fpr_ci"][1]
            for num, den in ((tpr - delta, fpr), (1 - fpr - delta, 1 - tpr)):
                if num > 0:
                    best = max(best, math.inf if den <= 0 else math.log(num / den))
    return best


def test_the_audit_puts_the_accountant_epsilon_beside_an_empirical_lower_bound_below_it(dp_audited):
    """must-show 3: audit.json's model section carries the model card's (the accountant's)
    epsilon and delta, and the strongest empirical lower bound over EVERY attack (the white-box
    ones included) at the model's delta, which is below the theoretical epsilon; report.html
    shows both."""
    run, res, out = dp_audited
    card = json.loads((run / "model_card.json").read_text())["differential_privacy"]
    audit = json.loads((out / "audit.json").read_text())
    dp = audit["model"]["differential_privacy"]
    assert dp["theoretical_epsilon"] == card["epsilon"] and dp["delta"] == DP["delta"] == card["delta"]
    assert dp["unit"] == "patient"
    spaces = {a["space"] for a in audit["attacks"]}
    assert {"model", "pixel"} <= spaces
    want = _independent_lower_bound(audit["attacks"], DP["delta"])
    assert dp["empirical_epsilon_lower_bound"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert dp["empirical_epsilon_lower_bound"] < dp["theoretical_epsilon"] and dp["consistent"] is True
    page = (out / "report.html").read_text()
    assert "Differential privacy" in page and f"{card['epsilon']:.3g}" in page and "consistent" in page


def test_an_attack_stronger_than_the_bound_makes_the_dp_record_inconsistent(dp_audited):
    """Fail closed: an audit whose attack shows more leakage than epsilon allows must say so
    (consistent: false) rather than print two numbers side by side."""
    from synthmed.audit.whitebox.registry import model_section

    run, res, _ = dp_audited
    strong = {"attack": "loss", "space": "model", "tpr_at_fpr": {"0.01": {
        "target_fpr": 0.01, "tpr_ci": [0.9, 1.0], "fpr_ci": [0.0, 0.001]}}}
    rec = res.record.with_(attacks=[*res.record.attacks, strong])
    dp = model_section(load(run), rec)["differential_privacy"]
    assert dp["empirical_epsilon_lower_bound"] == pytest.approx(np.log((0.9 - DP["delta"]) / 0.001))
    assert dp["empirical_epsilon_lower_bound"] > dp["theoretical_epsilon"]
    assert dp["consistent"] is False and dp["strongest_attack"] == "loss/model at 0.01 FPR"
