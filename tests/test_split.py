"""Patient-level split: deterministic, order-free, disjoint, proportional, stratified."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from synthmed.data.ingest_config import SplitConfig
from synthmed.data.split import assert_patient_disjoint, patient_strata, split_patients


def _patients(n: int) -> list[str]:
    return [f"P-{i:012x}" for i in range(n)]


def test_split_is_deterministic_and_independent_of_input_order():
    pats = _patients(300)
    cfg = SplitConfig(holdout_fraction=0.2, seed=3)
    a = split_patients(pats, cfg)
    shuffled = pats[:]
    random.Random(1).shuffle(shuffled)
    assert split_patients(shuffled + pats[:10], cfg) == a  # order and repeats do not matter
    assert split_patients(pats, SplitConfig(holdout_fraction=0.2, seed=4)) != a
    assert Counter(a.values()) == {"train": 240, "holdout": 60}


def test_split_fractions_with_reference():
    a = split_patients(_patients(1000), SplitConfig(holdout_fraction=0.15, reference_fraction=0.1))
    c = Counter(a.values())
    assert c == {"train": 750, "holdout": 150, "reference": 100}


def test_stratified_split_keeps_label_shares():
    pats = _patients(400)
    # 10 % of patients have a rare finding.
    strata = {p: ("Hernia" if i % 10 == 0 else "") for i, p in enumerate(pats)}
    for seed in range(5):
        a = split_patients(pats, SplitConfig(holdout_fraction=0.25, seed=seed), strata)
        rare_hold = sum(1 for p in pats if strata[p] == "Hernia" and a[p] == "holdout")
        assert rare_hold == 10  # 25 % of the 40 rare patients, exactly, for every seed


def test_patient_strata_most_common_label_set():
    s = patient_strata(["a", "a", "a", "b"], [("Mass",), ("Mass",), (), ("Effusion", "Mass")])
    assert s == {"a": "Mass", "b": "Effusion|Mass"}


def test_disjoint_check_catches_a_patient_on_two_sides():
    assert_patient_disjoint(["a", "a", "b"], ["train", "train", "holdout"])
    with pytest.raises(AssertionError, match="both"):
        assert_patient_disjoint(["a", "a"], ["train", "holdout"])
