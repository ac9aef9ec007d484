"""Config loading, atomic writes and the appendable array store."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest

from synthmed.config import StrictConfig, load_config
from synthmed.data.array_store import NpyAppender, open_array
from synthmed.errors import ConfigError
from synthmed.io.atomic import write_json


class _Inner(StrictConfig):
    size: int = 64


class _Cfg(StrictConfig):
    modality: Literal["ct", "mr", "cxr"] = "cxr"
    inner: _Inner = _Inner()


def test_config_error_names_file_key_and_allowed_values(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("modality: pet\n")
    with pytest.raises(ConfigError) as e:
        load_config(f, _Cfg)
    msg = str(e.value)
    assert str(f) in msg and "modality" in msg and "'ct'" in msg and "'cxr'" in msg


def test_config_unknown_nested_key_lists_allowed(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("inner:\n  sise: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(f, _Cfg)
    assert "inner.sise" in str(e.value) and "size" in str(e.value)


def test_config_missing_and_not_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", _Cfg)
    f = tmp_path / "x.yaml"
    f.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f, _Cfg)


def test_config_yaml_objects_are_not_constructed(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("modality: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError):
        load_config(f, _Cfg)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "out.json"
    write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        write_json(p, {"a": object()})
    assert p.read_text().strip().startswith("{") and '"a": 1' in p.read_text()
    assert [q.name for q in tmp_path.iterdir()] == ["out.json"]


def test_npy_appender_round_trip_and_abort(tmp_path):
    p = tmp_path / "images.npy"
    with NpyAppender(p, (2, 3)) as w:
        for i in range(7):
            w.append(np.full((2, 3), i, dtype=np.float32))
    a = open_array(p)
    assert a.shape == (7, 2, 3) and a[6, 1, 2] == 6
    assert np.load(p, allow_pickle=False).sum() == sum(range(7)) * 6
    with pytest.raises(RuntimeError):
        with NpyAppender(p, (2, 3)) as w:
            w.append(np.zeros((2, 3)))
            raise RuntimeError("crash")
    assert open_array(p).shape == (7, 2, 3)  # the old file survives a failed rewrite


def test_atomic_write_gives_normal_permissions(tmp_path):
    import os

    p = tmp_path / "x.json"
    write_json(p, {})
    mask = os.umask(0)
    os.umask(mask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~mask)
