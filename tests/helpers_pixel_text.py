"""Radiographs with burned-in text, and the clean native images, for the pixel-text check.

Text images: NIH chest radiographs (64 px) upscaled to 512-1024 px, as radiographs arrive in
practice, with an invented name, ID or date drawn at several sizes, contrasts (relative to the
local background, brighter or darker), fonts (TrueType and Pillow's bitmap font) and positions.
Clean images: every shared DICOM series and the CR / DX / MG files of `pydicom-data`, at native
resolution, some with laterality / view markers drawn on them (those must pass).

Used by tests/test_pixels.py (a sample) and benchmarks/bench_pixels.py (all of them).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Invented identities only; the same shapes as real ones (surname^given, MRNs, accession, dates).
NAMES = ["SMITH^JOHN", "DOE, JANE", "Garcia Maria", "O'BRIEN PATRICK", "NGUYEN^THI", "MUELLER K",
         "Kowalski, Anna", "JOHNSON ROBERT T"]
IDS = ["ID 4471023", "MRN: 00912834", "ACC 2019-88812", "PID 7730019", "1234567", "Pt# 558201",
       "H-99231-7"]
DATES = ["12/03/2019", "2019-03-12", "03.12.2019", "12 MAR 2019", "DOB 1987-05-14", "20190312",
         "Mar 12 2019 14:32"]
MARKERS = ["L", "R", "PA", "AP", "PORTABLE", "AP PORTABLE", "LAT", "ERECT", "SUPINE"]


def fonts() -> list[str]:
    """TrueType fonts that exist here (system DejaVu, else matplotlib's bundled copy)."""
    import matplotlib

    dirs = [Path("/usr/share/fonts/truetype/dejavu"),
            Path(matplotlib.get_data_path()) / "fonts" / "ttf"]
    names = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSerif.ttf"]
    found = []
    for n in names:
        for d in dirs:
            if (d / n).is_file():
                found.append(str(d / n))
                break
    return found


@dataclass
class TextSample:
    image: np.ndarray  # uint8 (H, W)
    kind: str          # name / id / date / two lines
    size: int          # font size in px (0: Pillow's bitmap font)
    contrast: int      # grey levels between text and its local background (signed)


def nih_files(root: Path) -> list[Path]:
    return sorted((root / "images").glob("*.png"))


def draw_text_image(path: Path, rng: random.Random) -> TextSample:
    from PIL import Image, ImageDraw, ImageFont

    side = rng.choice([512, 768, 1024])
    with Image.open(path) as im:
        base = im.convert("L").resize((side, side), Image.BICUBIC)
    kind = rng.choice(["name", "id", "date", "two lines"])
    text = {"name": rng.choice(NAMES), "id": rng.choice(IDS), "date": rng.choice(DATES),
            "two lines": rng.choice(NAMES) + "\n" + rng.choice(DATES)}[kind]
    draw = ImageDraw.Draw(base)
    if rng.random() < 0.15:
        font, size = ImageFont.load_default_imagefont(), 0  # Pillow's 11 px bitmap font
    else:
        size = rng.choice([12, 16, 20, 28, 40]) * side // 1024 + rng.choice([0, 4])
        size = max(size, 10)
        font = ImageFont.truetype(rng.choice(fonts()), size)
    x0, y0, x1, y1 = draw.multiline_textbbox((0, 0), text, font=font)
    tw, th = x1 - x0, y1 - y0
    corner = rng.choice(["tl", "tr", "bl", "br", "top", "bottom", "anywhere"])
    m = rng.randint(4, max(5, side // 40))
    xs = {"tl": m, "bl": m, "tr": side - tw - m, "br": side - tw - m,
          "top": (side - tw) // 2, "bottom": (side - tw) // 2}
    ys = {"tl": m, "tr": m, "top": m, "bl": side - th - m, "br": side - th - m,
          "bottom": side - th - m}
    x = xs.get(corner, rng.randint(0, max(0, side - tw)))
    y = ys.get(corner, rng.randint(0, max(0, side - th)))
    a = np.asarray(base)
    bg = float(a[max(0, y):y + th, max(0, x):x + tw].mean()) if tw and th else float(a.mean())
    delta = rng.choice([80, 120, 200]) * (1 if bg < 128 else -1)
    fill = int(np.clip(bg + delta, 0, 255))
    draw.multiline_text((x - x0, y - y0), text, fill=fill, font=font)
    return TextSample(np.asarray(base).copy(), kind, size, int(fill - bg))


def text_images(root: Path, n: int, seed: int = 0) -> list[TextSample]:
    rng = random.Random(seed)
    files = nih_files(root)
    picks = rng.sample(range(len(files)), min(n, len(files)))
    return [draw_text_image(files[i], rng) for i in picks]


def draw_markers(image: np.ndarray, rng: random.Random) -> np.ndarray:
    """Laterality / view markers as technologists place them: bright, in a corner."""
    from PIL import Image, ImageDraw, ImageFont

    u8 = image if image.dtype == np.uint8 else _to_u8(image)
    im = Image.fromarray(u8)
    h, w = u8.shape
    draw = ImageDraw.Draw(im)
    # One or two markers, each in its own corner (markers are never stacked on one another).
    corners = rng.sample([(0, 0), (1, 0), (0, 1), (1, 1)], rng.choice([1, 2]))
    for right, bottom in corners:
        text = rng.choice(MARKERS)
        size = max(12, int(min(h, w) * rng.choice([0.03, 0.05, 0.08])))
        font = ImageFont.truetype(rng.choice(fonts()), size)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        if x1 - x0 > 0.45 * w:  # a marker wider than its corner would be cut off: use L / R
            text = rng.choice(["L", "R"])
            x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        x = w - (x1 - x0) - size // 2 if right else size // 2
        y = h - (y1 - y0) - size // 2 if bottom else size // 2
        draw.text((x - x0, y - y0), text, fill=255, font=font)
    return np.asarray(im).copy()


def _to_u8(a: np.ndarray) -> np.ndarray:
    from synthmed.deid.pixels import to_uint8
    return to_uint8(a)


def pydicom_data_files() -> list[Path]:
    """Every file shipped by pydicom and the `pydicom-data` package, read from their install
    folders (pydicom's own lookup may try to download missing files; tests never touch a network)."""
    from pydicom.data.data_manager import DATA_ROOT, external_data_sources

    dirs = [Path(DATA_ROOT) / "test_files"]
    dirs += [Path(s.data_path) for s in external_data_sources().values()]
    return sorted(f for d in dirs if d.is_dir() for f in d.rglob("*") if f.is_file())


def native_images(shared_dicom: Path | None, per_series: int | None = None
                  ) -> list[tuple[str, np.ndarray]]:
    """(label, 2D or 3D float array) for every clean native image: pydicom-data CR / DX / MG files
    and, when given, each shared DICOM series (as a volume, sorted by instance number, from at
    most `per_series` evenly spaced files), plus four of its slices as 2D images."""
    import warnings

    import pydicom

    out: list[tuple[str, np.ndarray]] = []
    for f in pydicom_data_files():
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:
            continue
        if str(getattr(ds, "Modality", "")) not in ("CR", "DX", "MG"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = pydicom.dcmread(f).pixel_array
        except Exception:
            continue  # a compressed syntax without its decoder, a deliberately broken file
        if min(a.shape[:2]) < 32:
            continue  # the 16x16 DICOMDIR thumbnails hold no legible pixels at all
        if a.ndim == 3 and a.shape[-1] in (3, 4):
            continue  # colour: refused by the DICOM reader before any text check
        if a.ndim == 3:
            a = a[0]
        out.append((f"pydicom-data/{Path(f).name}", a.astype(np.float32)))
    if shared_dicom is not None and shared_dicom.is_dir():
        for series in sorted(p for p in shared_dicom.iterdir() if p.is_dir()):
            slices = []
            files = sorted(f for f in series.rglob("*") if f.is_file())
            if per_series and len(files) > per_series:
                files = files[::-(-len(files) // per_series)]
            for f in files:
                try:
                    ds = pydicom.dcmread(f)
                    slices.append((int(getattr(ds, "InstanceNumber", 0) or 0),
                                   ds.pixel_array.astype(np.float32)))
                except Exception:
                    continue
            shapes = {s[1].shape for s in slices}
            if slices and len(shapes) == 1 and slices[0][1].ndim == 2:
                vol = np.stack([s[1] for s in sorted(slices, key=lambda s: s[0])])
                out.append((f"shared/{series.name}", vol))
                out.extend((f"shared/{series.name}/slice{i}", vol[i])
                           for i in sorted({0, len(vol) // 3, 2 * len(vol) // 3, len(vol) - 1}))
    return out
