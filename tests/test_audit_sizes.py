"""A dataset far too small to audit is one clear input error (exit 2), whatever its splits: the
README walkthrough's three-patient DICOM folder (one holdout patient, no reference split) once
crashed with an internal error while the holdout was being halved to calibrate the attacks."""

from __future__ import annotations

import numpy as np
import pytest

from helpers_nih import toy_dataset, write_plain_cohort
from synthmed.audit import run_audit
from synthmed.cli import main
from synthmed.data.dataset import Dataset
from synthmed.errors import InputError
from test_audit_run import public_profile


@pytest.mark.parametrize("n_patients, fractions, split, n", [
    (3, {"train": 2 / 3, "holdout": 1 / 3}, "train", 2),     # the walkthrough's folder
    (30, {"train": 0.96, "holdout": 0.04}, "holdout", 1),    # enough members, one holdout patient
])
def test_one_holdout_patient_without_reference_is_an_input_error(tmp_path, n_patients, fractions, split, n):
    ds = toy_dataset(tmp_path / "ds", n_patients=n_patients, per_patient=2, fractions=fractions)
    d = Dataset.open(ds)
    assert len(set(d.patient_ids[d.indices("holdout")].tolist())) == 1 and d.indices("reference").size == 0
    cohort = write_plain_cohort(tmp_path / "c", np.asarray(d.images[:1]).repeat(30, axis=0))
    with pytest.raises(InputError, match=rf"'{split}' split has {n} patients but the audit needs at least 20"):
        run_audit(ds, cohort, public_profile(), tmp_path / "out")
    assert not (tmp_path / "out" / "audit.json").exists()


def test_cli_says_so_in_one_line(tmp_path, capsys):
    ds = toy_dataset(tmp_path / "ds", n_patients=3, per_patient=2, fractions={"train": 2 / 3, "holdout": 1 / 3})
    cohort = write_plain_cohort(tmp_path / "c", np.asarray(Dataset.open(ds).images[:1]).repeat(30, axis=0))
    with pytest.raises(SystemExit) as e:
        main(["audit", "--dataset", str(ds), "--synthetic", str(cohort), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert err.count("\n") == 1 and "needs at least 20" in err and "internal error" not in err
