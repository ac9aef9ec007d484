"""Must-show 3 in small: real 3D MRI goes ingest -> train -> sample -> NIfTI end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_mri3d():
    spec = importlib.util.spec_from_file_location("run_mri3d", ROOT / "benchmarks" / "run_mri3d.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_save_nifti_round_trip(tmp_path):
    nib = pytest.importorskip("nibabel")
    mod = _run_mri3d()
    vol = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    p = mod.save_nifti(tmp_path / "v.nii.gz", vol, (2.0, 1.0, 0.5))
    img = nib.load(str(p))
    # NIfTI is (x, y, z): the synthmed (D, H, W) volume comes back transposed, spacing with it.
    np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), vol)
    assert tuple(float(z) for z in img.header.get_zooms()) == (0.5, 1.0, 2.0)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file


@pytest.mark.slow
def test_mri3d_end_to_end(tmp_path, msd_hippocampus):
    nib = pytest.importorskip("nibabel")
    mod = _run_mri3d()
    res = mod.run_mri3d(tmp_path, msd_hippocampus, volumes=8, shape=(16, 16, 16), steps=4, batch=2,
                        channels=(8, 16), n_samples=2, sample_steps=3, threads=1,
                        grid=tmp_path / "grid.png")
    assert res["volumes"] == 8 and res["shape"] == [16, 16, 16]
    assert sum(res["splits"].values()) == 8 and res["splits"].get("holdout", 0) >= 1
    info = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    assert info["spatial_dims"] == 3
    for rel in res["samples"]:
        img = nib.load(str(tmp_path / rel))
        a = np.asarray(img.dataobj)
        assert a.shape == (16, 16, 16) and np.isfinite(a).all()
        assert a.min() >= 0.0 and a.max() <= 1.0
        assert tuple(float(z) for z in img.header.get_zooms()) == (1.0, 1.0, 1.0)
    from synthmed.data.cohort import Cohort

    cohort = Cohort.open(tmp_path / "cohort")
    assert cohort.shape == (16, 16, 16) and len(cohort) == 2
    assert cohort.info["provenance"]["model_sha256"] == res["model_sha256"]
    # No input file name reaches any output (MSD stems are 'hippocampus_NNN').
    for f in tmp_path.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".csv", ".md"):
            assert "hippocampus_" not in f.read_text(errors="ignore"), f
