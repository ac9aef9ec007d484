"""A look at an ingested dataset: counts per split, label, age and sex, and a contact sheet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from synthmed.data.dataset import SPLITS, Dataset
from synthmed.results import InspectResult
from synthmed.viz import save_png, tile, to_uint8, view_2d

_TILE = 96
_PER_ROW = 8
_LABEL_W = 90


def contact_sheet(ds: Dataset, out_png: Path, *, seed: int = 0, per_row: int = _PER_ROW) -> Path:
    """PNG with one row of randomly chosen images per split (seeded, so reruns match)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    rows: list[tuple[str, list[int]]] = []
    for split in SPLITS:
        idx = ds.indices(split)
        if idx.size:
            pick = np.sort(rng.choice(idx, size=min(per_row, idx.size), replace=False))
            rows.append((split, [int(i) for i in pick]))
    cell = _TILE - 4
    sheet = np.zeros((max(1, len(rows)) * _TILE, _LABEL_W + per_row * _TILE), dtype=np.float32)
    if rows:
        cells = np.zeros((len(rows) * per_row, cell, cell), dtype=np.float32)  # short rows: black
        for r, (_, picks) in enumerate(rows):
            for c, i in enumerate(picks):
                im = Image.fromarray(to_uint8(view_2d(ds.images[i])))
                small = im.resize((cell, cell), Image.Resampling.BILINEAR)
                cells[r * per_row + c] = np.asarray(small, dtype=np.float32) / 255
        sheet[:, _LABEL_W:] = tile(cells, ncol=per_row, pad=4, border=2, pad_value=0.0)
    image = Image.fromarray(to_uint8(sheet))
    draw = ImageDraw.Draw(image)
    for r, (split, _) in enumerate(rows):
        draw.text((6, r * _TILE + _TILE // 2 - 6), split, fill=255)
    return save_png(image, out_png)


def inspect_dataset(dir: Path, out_png: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Summary of a dataset folder (patients, images, per split / label / age / sex) and the
    path of its contact sheet (default `dir/contact_sheet.png`)."""
    ds = Dataset.open(dir, quick_verify=True)  # a look, not a certificate
    summary = ds.summary()
    summary["label_vocabulary"] = ds.label_vocabulary
    summary["modalities"] = dict(sorted(_count(r.modality or "unknown" for r in ds.records).items()))
    summary["fingerprint"] = ds.fingerprint()
    png = Path(out_png) if out_png is not None else Path(dir) / "contact_sheet.png"
    if png.resolve().is_relative_to(Path(dir).resolve()):
        # inside the dataset: added to its marker, so the folder still verifies afterwards
        from synthmed.io import folders

        with folders.amend(dir, "dataset"):
            summary["contact_sheet"] = str(contact_sheet(ds, png, seed=seed))
    else:
        summary["contact_sheet"] = str(contact_sheet(ds, png, seed=seed))
    return summary


def inspect(dataset: str | Path, out: str | Path | None = None, *, seed: int = 0) -> InspectResult:
    """`inspect_dataset` as a typed result: the summary, and the contact sheet as `out`."""
    record = inspect_dataset(Path(dataset), Path(out) if out is not None else None, seed=seed)
    return InspectResult(out=Path(record["contact_sheet"]), dataset=Path(dataset), record=record)


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out
