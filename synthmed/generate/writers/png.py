"""16-bit greyscale PNG: the windowed image, round(x * 65535), one file per 2D image and one per
slice of a volume (PNG has no third dimension).

A text chunk marks every file as synthetic, with the model hash and seed, because a PNG leaves
the cohort folder more easily than any other format and carries no other record.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthmed.generate.writers.base import StudyOutput, Writer, register_writer
from synthmed.generate.writers.encoding import full_scale
from synthmed.io.atomic import write_bytes
from synthmed.viz import png_bytes


def _png16(pixels: np.ndarray, text: dict[str, str]) -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    return png_bytes(Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint16)), pnginfo=info)


@register_writer
class PngWriter(Writer):
    name = "png"

    def write(self, out: StudyOutput, root: Path) -> str:
        ctx = out.ctx
        text = {"Description": "SYNTHETIC - not for clinical use",
                "Software": f"synthmed {ctx.synthmed_version}",
                "Source": f"model sha256 {ctx.model_hash}; seed {out.study.seed}"}
        pixels = full_scale(out.study.image)
        base = root / self.name / out.folder
        if pixels.ndim == 2:
            path = base.with_name(base.name + ".png")
            write_bytes(path, _png16(pixels, text))
            return path.relative_to(root).as_posix()
        for k in range(pixels.shape[0]):
            write_bytes(base / f"{k:04d}.png", _png16(pixels[k], text))
        return base.relative_to(root).as_posix()
