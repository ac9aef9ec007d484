"""Shared fixtures. Tests that need ../shared/data skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SYNTHMED_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Progress bars off in tests: output stays readable and timing is not spent on rendering.
os.environ.setdefault("SYNTHMED_NO_PROGRESS", "1")


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when it is not there."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p}")
    return p


@pytest.fixture
def nih_cxr() -> Path:
    return shared_path("nih-cxr14-1000")


@pytest.fixture
def msd_hippocampus() -> Path:
    return shared_path("msd-hippocampus")


@pytest.fixture
def dicom_dir() -> Path:
    return shared_path("dicom")
