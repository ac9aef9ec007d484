"""Canary audit (synthmed.audit.canaries): planted images found in proportion to their copies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers_nih import toy_dataset
from synthmed.audit.canaries import plant_canaries, run_canary_audit
from synthmed.data.dataset import Dataset
from synthmed.errors import InputError
from test_audit_whitebox import memorising_config
from test_models import one_thread  # noqa: F401  (autouse fixture)

# 20 train, 30 holdout (9 canaries + 21 controls), 20 reference patients; one 8x8 image each
FRACTIONS = {"train": 20 / 70, "holdout": 30 / 70, "reference": 20 / 70}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return toy_dataset(tmp_path_factory.mktemp("can") / "ds", n_patients=70, per_patient=1, size=8,
                       seed=5, fractions=FRACTIONS)


def test_plant_puts_each_canary_in_train_its_number_of_times_and_keeps_controls_out(data, tmp_path):
    plan = plant_canaries(data, tmp_path / "c", 9, (1, 10, 100), seed=0)
    ds, src = Dataset.open(plan.dataset), Dataset.open(data)
    assert sorted(plan.duplicates.tolist()) == [1] * 3 + [10] * 3 + [100] * 3
    imgs = np.asarray(ds.images)
    train = ds.indices("train")
    assert train.size == len(src.indices("train")) + 3 * (1 + 10 + 100)
    for row, d in zip(plan.canary_rows, plan.duplicates):
        same = [i for i in train if np.array_equal(imgs[i], imgs[row])]
        assert len(same) == d and len({ds.records[i].patient for i in same}) == 1
        assert ds.records[row].patient.startswith("CANARY-")
    assert all(ds.records[i].split == "holdout" for i in plan.control_rows)
    # no control is a canary patient's image, and no canary image is left in the holdout
    hold = imgs[ds.indices("holdout")]
    assert not any(np.array_equal(h, imgs[r]) for h in hold for r in plan.canary_rows)
    assert plan.control_rows.size == 21
    with pytest.raises(InputError, match="control patients"):
        plant_canaries(data, tmp_path / "too-many", 20, (1, 10, 100))


@pytest.mark.slow
def test_canaries_copied_ten_times_are_found_by_the_whitebox_attacks(data, tmp_path):
    """On the memorising configuration: every canary with 10 copies is found by a white-box
    attack at the strictest threshold the 21 controls allow (1 % FPR is not estimable with 21:
    no control above the threshold)."""
    rec = run_canary_audit(data, memorising_config(0), tmp_path / "out", 9, duplicates=(1, 10, 100), seed=0)
    det = rec["detection"]
    whitebox = ("loss", "pia", "secmi", "sima")
    best10 = max(det[a]["10"]["tpr"] for a in whitebox)
    assert best10 > 0.5, {a: det[a]["10"] for a in whitebox}
    # the whole curve, for the record (PIA's direction flips on the most-copied canaries, as in
    # test_audit_whitebox.py, so no monotonicity is asserted across attacks)
    print((tmp_path / "out" / "canaries.md").read_text())
    saved = json.loads((tmp_path / "out" / "canaries.json").read_text())
    assert saved["detection"]["loss"]["10"]["n_canaries"] == 3 and saved["n_controls"] == 21
    assert (tmp_path / "out" / "canaries.png").stat().st_size > 1000
    text = (tmp_path / "out" / "canaries.md").read_text()
    assert "x10" in text and "CANARY" not in text


def test_audit_with_canaries_trains_the_models_recorded_config_again(data, tmp_path, capsys):
    """`synthmed audit --model RUN --canaries K` (the issue's spelling): the canary audit of the
    very training that made RUN, its config read from RUN's model.json, not retyped."""
    from synthmed.cli import main
    from synthmed.models import train
    from test_models import tiny_config

    run = train(data, tiny_config(steps=3, lr=2e-3), tmp_path / "run")
    used = json.loads((run / "model.json").read_text())["config"]
    with pytest.raises(SystemExit) as e:
        main(["audit", "--dataset", str(data), "--model", str(run), "--canaries", "3",
              "--out", str(tmp_path / "can")])
    printed = capsys.readouterr().err  # synthmed's console writes to stderr, as progress does
    assert e.value.code in (0, None), printed
    rec = json.loads((tmp_path / "can" / "canaries.json").read_text())
    assert rec["provenance"]["config"]["train"] == used and used["steps"] == 3 and used["lr"] == 2e-3
    assert rec["canaries_per_duplicate_count"] == {"1": 1, "10": 1, "100": 1}
    assert {"loss", "pia", "secmi", "sima"} <= set(rec["detection"])
    assert "x10" in printed and "canaries.json" in printed
    # the same through the API, as a typed result
    import synthmed

    res = synthmed.canaries(data, tmp_path / "api", model=run, k=3)
    assert isinstance(res, synthmed.CanaryResult) and isinstance(res, synthmed.Result)
    assert res.record["detection"] == rec["detection"] and res.tpr("loss", 10) == rec["detection"]["loss"]["10"]["tpr"]
    assert "x100" in res.summary()


@pytest.mark.parametrize("extra, message", [
    (["--canaries", "3"], "--canaries: needs --model RUN"),
    (["--canaries", "3", "--model", "RUN", "--synthetic", "X"], "--canaries: --synthetic belong"),
    (["--canaries", "3", "--model", "RUN", "--filter"], "--canaries: --filter belong"),
    ([], "--synthetic: required"),
])
def test_audit_canary_mode_errors_are_one_line(data, tmp_path, capsys, extra, message):
    from synthmed.cli import main

    args = [str(tmp_path / a) if a in ("RUN", "X") else a for a in extra]
    with pytest.raises(SystemExit) as e:
        main(["audit", "--dataset", str(data), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def test_canaries_command_takes_any_config_and_its_steps(data, tmp_path, capsys):
    import yaml

    from synthmed.cli import main
    from test_models import tiny_config

    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(steps=50).model_dump(mode="json")))
    with pytest.raises(SystemExit) as e:
        main(["canaries", "--dataset", str(data), "--config", str(cfg), "--out", str(tmp_path / "c"),
              "--canaries", "2", "--duplicates", "1,10", "--steps", "2"])
    printed = capsys.readouterr().err
    assert e.value.code in (0, None), (e.value.code, printed)
    rec = json.loads((tmp_path / "c" / "canaries.json").read_text())
    assert rec["provenance"]["config"]["train"]["steps"] == 2  # the settings used, not the file's
    assert rec["canaries_per_duplicate_count"] == {"1": 1, "10": 1}
    with pytest.raises(SystemExit) as e:
        main(["canaries", "--dataset", str(data), "--config", str(cfg), "--out", str(tmp_path / "d"),
              "--duplicates", "1,x"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and "--duplicates '1,x'" in err, err
