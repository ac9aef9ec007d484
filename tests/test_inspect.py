"""`synthmed inspect`: summary table and contact sheet of a small ingested dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthmed.cli import main
from synthmed.data.inspect import inspect_dataset
from synthmed.data.ingest import ingest
from synthmed.data.ingest_config import IngestConfig


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    from PIL import Image
    src = tmp_path / "src"
    src.mkdir()
    rows = ["file,patient_id,labels,age,sex"]
    for i in range(12):
        Image.fromarray(np.full((16, 16), 10 * i, np.uint8) + np.eye(16, dtype=np.uint8) * 50).save(src / f"im{i:02d}.png")
        rows.append(f"im{i:02d}.png,PAT{i // 2},{'Mass' if i % 3 == 0 else ''},{40 + i},{'MF'[i % 2]}")
    (src / "meta.csv").write_text("\n".join(rows) + "\n")
    key = tmp_path / "k"
    key.write_bytes(bytes(32))
    ingest([src], tmp_path / "ds", IngestConfig(shape=(16, 16)), metadata_csv=src / "meta.csv", key_path=key)
    return tmp_path / "ds"


def test_inspect_summary_and_contact_sheet(small_dataset, tmp_path):
    from PIL import Image
    s = inspect_dataset(small_dataset, seed=1)
    assert s["images"] == 12 and s["patients"] == 6
    assert sum(v["patients"] for v in s["splits"].values()) == 6
    assert sum(v["labels"].get("Mass", 0) for v in s["splits"].values()) == 4
    assert s["splits"]["train"]["age"]["min"] >= 40
    png = Path(s["contact_sheet"])
    assert png == small_dataset / "contact_sheet.png"
    im = np.asarray(Image.open(png))
    assert im.ndim == 2 and im.shape[0] == 96 * len(s["splits"]) and im.max() > 0
    again = tmp_path / "again.png"
    inspect_dataset(small_dataset, again, seed=1)
    assert again.read_bytes() == png.read_bytes()  # seeded: same sheet


def test_inspect_cli_prints_table(small_dataset, capsys):
    with pytest.raises(SystemExit) as e:
        main(["inspect", str(small_dataset), "--out", str(small_dataset / "sheet.png")])
    assert (e.value.code or 0) == 0
    out = capsys.readouterr().out
    assert "train" in out and "Mass" in out and (small_dataset / "sheet.png").is_file()
    with pytest.raises(SystemExit) as e:
        main(["inspect", str(small_dataset.parent / "nope")])
    assert e.value.code == 2
