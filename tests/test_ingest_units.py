"""Readers (NIfTI, PNG/JPEG, NPZ), metadata CSV layouts, normalisation and resizing, config."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from synthmed.config import load_config
from synthmed.data.ingest import ingest
from synthmed.data.ingest_config import IngestConfig
from synthmed.data.metadata import parse_age, read_metadata
from synthmed.data.normalise import GeometryError, pad_crop, prepare, resize
from synthmed.errors import ConfigError, InputError
from synthmed.io.types import RefusedInput

KEY = bytes(range(50, 82))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def deid():
    from synthmed.deid import Deidentifier
    return Deidentifier(KEY)


def test_nifti_reader_transposes_to_zyx_with_spacing(tmp_path, deid):
    import nibabel as nib
    from synthmed.io.nifti import load_nifti
    xyz = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    img = nib.Nifti1Image(xyz, np.diag([0.5, 0.8, 2.5, 1.0]))
    p = tmp_path / "subject_0042.nii.gz"
    nib.save(img, str(p))
    li = load_nifti(p, deid)
    assert li.array.shape == (6, 5, 4) and li.spacing == (2.5, 0.8, 0.5)
    assert li.array[3, 2, 1] == xyz[1, 2, 3]
    assert li.patient == deid.patient("subject_0042") and "0042" not in li.patient + li.study + li.series
    bad = tmp_path / "inf.nii"
    xyz[0, 0, 0] = np.inf
    nib.save(nib.Nifti1Image(xyz, np.eye(4)), str(bad))
    with pytest.raises(RefusedInput, match="NaN or infinite"):
        load_nifti(bad, deid)


def test_raster_reader_rgb_to_luminance_and_16bit(tmp_path, deid):
    from PIL import Image
    from synthmed.io.raster import load_raster
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 200  # pure green: luminance 0.587 * 200
    Image.fromarray(rgb).save(tmp_path / "c.png")
    li = load_raster(tmp_path / "c.png", deid)
    assert li.array.shape == (4, 4) and abs(float(li.array[0, 0]) - 0.587 * 200) < 1.0
    Image.fromarray(np.full((3, 3), 40000, np.uint16)).save(tmp_path / "d.png")
    assert load_raster(tmp_path / "d.png", deid).array.max() == 40000
    Image.fromarray(rgb).save(tmp_path / "e.jpg")
    assert load_raster(tmp_path / "e.jpg", deid).source_format == "jpeg"
    (tmp_path / "cut.png").write_bytes((tmp_path / "c.png").read_bytes()[:30])
    with pytest.raises(RefusedInput):
        load_raster(tmp_path / "cut.png", deid)


def test_npz_reader_medmnist_layout(tmp_path, deid):
    from synthmed.io.npz import load_npz
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "pneumoniamnist.npz",
             train_images=rng.integers(0, 255, (5, 28, 28), dtype=np.uint8),
             train_labels=np.array([[0], [1], [0], [1], [1]], np.uint8),
             val_images=rng.integers(0, 255, (2, 28, 28), dtype=np.uint8),
             val_labels=np.array([[1], [0]], np.uint8),
             test_images=rng.integers(0, 255, (3, 28, 28, 3), dtype=np.uint8))
    imgs = load_npz(tmp_path / "pneumoniamnist.npz", deid, label_names=["normal", "pneumonia"])
    assert len(imgs) == 10 and len({i.patient for i in imgs}) == 10  # each image a patient
    assert [i.labels for i in imgs[:2]] == [("normal",), ("pneumonia",)]
    assert imgs[-1].array.shape == (28, 28) and imgs[-1].labels == ()
    np.savez(tmp_path / "multi.npz", images=np.zeros((2, 8, 8)), labels=np.array([[1, 0, 1], [0, 0, 0]]),
             patients=np.array(["a", "a"]))
    m = load_npz(tmp_path / "multi.npz", deid)
    assert m[0].labels == ("class_0", "class_2") and m[1].labels == () and m[0].patient == m[1].patient
    np.savez(tmp_path / "obj.npz", train_images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(RefusedInput):  # never unpickled
        load_npz(tmp_path / "obj.npz", deid)


def test_npz_and_png_ingest_end_to_end(tmp_path):
    from PIL import Image
    key = tmp_path / "k"
    key.write_bytes(KEY)
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "set.npz", train_images=np.random.default_rng(1).random((6, 16, 16)),
             train_labels=np.arange(6) % 2)
    Image.fromarray(np.full((20, 30), 7, np.uint8)).save(src / "flat.png")
    res = ingest([src], tmp_path / "ds", IngestConfig(shape=(16, 16)), key_path=key, workers=1)
    assert res.images == 6 and res.patients == 6
    from synthmed.data.dataset import Dataset
    ds = Dataset.open(tmp_path / "ds")
    assert ds.label_vocabulary == ["class_0", "class_1"]
    # A constant image holds no picture: refused (it used to become a blank training image).
    assert [r["reason"] for r in res.refusals] == ["degenerate image: every pixel has the same value (blank)"]
    assert not [r for r in ds.records if r.source_format == "png"]


def test_metadata_layouts_and_missing_columns(tmp_path):
    nih = tmp_path / "nih.csv"
    nih.write_text("Image Index,Finding Labels,Patient ID,Patient Age,Patient Gender\n"
                   "00000007_000.png,No Finding,7,061Y,F\n00000007_001.png,Mass|Effusion,7,62,F\n")
    m = read_metadata(nih)
    assert m.layout == "nih"
    row = m.lookup(tmp_path / "images" / "00000007_001.png")
    assert row.labels == ("Effusion", "Mass") and row.age == 62 and row.sex == "F" and row.patient_id == "7"
    assert m.lookup(tmp_path / "x" / "00000007_000.png").labels == () and m.by_name["00000007_000.png"].age == 61
    canon = tmp_path / "meta.csv"
    canon.write_text("file,patient_id,labels,age,sex\na/1.dcm,PX,Nodule,50,M\nb/1.dcm,PY,,40,F\n")
    c = read_metadata(canon)
    assert c.layout == "canonical"
    assert c.lookup(tmp_path / "a" / "1.dcm").patient_id == "PX"
    assert c.lookup(tmp_path / "b" / "1.dcm").patient_id == "PY"
    assert c.lookup(tmp_path / "elsewhere" / "1.dcm") is None  # base name '1.dcm' is ambiguous
    bad = tmp_path / "bad.csv"
    bad.write_text("Image Index,Finding Labels\nx.png,Mass\n")
    with pytest.raises(InputError) as e:
        read_metadata(bad)
    assert str(bad) in str(e.value) and "Patient ID" in str(e.value)
    assert math.isnan(parse_age("414")) and parse_age("006M") == 0.5


def test_resize_area_and_linear_and_pad_crop():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(resize(x, (3, 2)), [[0.5, 2.5], [4.5, 6.5], [8.5, 10.5]])
    y = resize(np.ones((7, 9, 11), np.float32) * 3, (4, 5, 6))
    np.testing.assert_allclose(y, 3.0, rtol=1e-6)  # area weights sum to one
    up = resize(np.array([[0.0, 1.0]], np.float32), (1, 4))
    np.testing.assert_allclose(up, [[0.0, 0.25, 0.75, 1.0]])
    # Shrinking stripes averages them (point sampling would alias into full-contrast stripes)
    stripes = np.tile([0.0, 1.0], 32).astype(np.float32)[None, :].repeat(4, 0)
    shrunk = resize(stripes, (4, 21))  # each output covers ~3 stripes: 1/3 to 2/3, never 0 or 1
    assert 0.3 < shrunk.min() and shrunk.max() < 0.7
    p = pad_crop(np.ones((2, 6), np.float32), (4, 4), value=-5)
    assert p.shape == (4, 4) and p[0, 0] == -5 and p[1, 0] == 1


def test_prepare_ct_window_mr_percentiles_and_dims():
    cfg3 = IngestConfig(spatial_dims=3, shape=(4, 8, 8))
    ct = np.full((4, 8, 8), -1000.0, np.float32)
    ct[:, 2:6, 2:6] = 0.0
    out = prepare(ct, (1, 1, 1), "CT", cfg3).images[0]
    assert out.min() == 0.0 and out[0, 3, 3] == pytest.approx(0.5)
    lung = prepare(ct, (1, 1, 1), "CT", IngestConfig(spatial_dims=3, shape=(4, 8, 8),
                                                      normalisation={"ct_preset": "lung"}))
    assert lung.images[0][0, 3, 3] == pytest.approx(1350 / 1500)
    with pytest.raises(GeometryError, match="2D image"):
        prepare(np.zeros((8, 8)), (1, 1), "CT", cfg3)
    with pytest.raises(GeometryError, match="NaN"):
        prepare(np.full((8, 8), np.nan), (1, 1), "DX", IngestConfig(shape=(8, 8)))
    mr = np.random.default_rng(0).random((6, 16, 16)).astype(np.float32)
    mr[0] = 0.0  # an empty edge slice
    cfg2 = IngestConfig(shape=(8, 8), slices="non_empty")
    prep = prepare(mr, (2, 1, 1), "MR", cfg2)
    assert len(prep.images) == 5 and prep.shapes[0] == (16, 16) and prep.spacings[0] == (1, 1)
    assert len(prepare(mr, (2, 1, 1), "MR", IngestConfig(shape=(8, 8), slices="middle")).images) == 1
    # Target spacing: a 2 mm volume resampled to 1 mm doubles, then is centre cropped
    spaced = IngestConfig(spatial_dims=3, shape=(12, 16, 16), spacing=(1, 1, 1), fit="pad_crop")
    assert prepare(mr, (2, 1, 1), "MR", spaced).images[0].shape == (12, 16, 16)


def test_shipped_configs_load_and_bad_values_are_named(tmp_path):
    for name in ("cxr-64", "mri-3d", "mri-2d", "ct"):
        cfg = load_config(ROOT / "configs" / f"ingest-{name}.yaml", IngestConfig)
        assert len(cfg.shape) == cfg.spatial_dims
    bad = tmp_path / "b.yaml"
    bad.write_text("normalisation:\n  ct_preset: bone\n")
    with pytest.raises(ConfigError, match="ct_preset"):
        load_config(bad, IngestConfig)
    bad.write_text("split:\n  holdout_fraction: 0.6\n  reference_fraction: 0.5\n")
    with pytest.raises(ConfigError, match="leave patients"):
        load_config(bad, IngestConfig)
