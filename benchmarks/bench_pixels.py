"""Cost and rates of the burned-in text check (synthmed.deid.pixels).

Per-image CPU time on one core at 1024 px (clean upscaled radiographs and radiographs with
text), staged check (candidates -> detector in regions -> recogniser in boxes) against the
baseline measured in the same run: the same RapidOCR detector and recogniser on the whole image.
Then the rates: share of text radiographs refused (512-1024 px, names / IDs / dates) and share
of clean native images refused (pydicom-data CR, every shared DICOM slice and series, with and
without drawn markers; NIH upscaled without text).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_pixels.py [--n-text 300] [--n-time 20]

CPU time (time.process_time) is reported, not wall time: the machine is shared, and onnxruntime
runs with one thread, so process time is the cost on one core.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers_pixel_text import (draw_markers, draw_text_image, native_images,  # noqa: E402
                                nih_files, text_images)
from synthmed.deid.pixels import PixelTextChecker, to_uint8  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def _cpu(fn, *args):
    t = time.process_time()
    out = fn(*args)
    return out, time.process_time() - t


def full_ocr(engine, image):
    """Baseline: detector on the whole image (at its size, up to 1024), recogniser in its boxes."""
    from synthmed.deid.pixels import _crop_quad

    g3 = np.repeat(to_uint8(image)[:, :, None], 3, axis=2)
    quads = engine.detect(g3, limit=1024)
    return engine.recognise([_crop_quad(g3, q) for q, _ in quads])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-text", type=int, default=300)
    ap.add_argument("--n-time", type=int, default=20)
    args = ap.parse_args()
    nih = SHARED / "nih-cxr14-1000"
    checker = PixelTextChecker()
    engine = checker.engine()

    # --- timing at 1024 px --------------------------------------------------------------------
    from PIL import Image
    files = nih_files(nih)
    rng = random.Random(11)
    clean, texted = [], []
    for f in rng.sample(files, args.n_time):
        with Image.open(f) as im:
            clean.append(np.asarray(im.convert("L").resize((1024, 1024), Image.BICUBIC)))
    while len(texted) < args.n_time:
        s = draw_text_image(files[rng.randrange(len(files))], rng)
        if s.image.shape == (1024, 1024):
            texted.append(s.image)
    print(f"timing: {args.n_time} clean and {args.n_time} text images at 1024 px, CPU s per image")
    rows = {}
    for name, imgs in (("clean", clean), ("text", texted)):
        staged = [_cpu(checker.check, a)[1] for a in imgs]
        base = [_cpu(full_ocr, engine, a)[1] for a in imgs]
        rows[name] = (np.median(staged), np.mean(staged), np.max(staged), np.median(base),
                      np.mean(base))
        print(f"  {name:5s} staged median {np.median(staged)*1e3:6.1f} ms  mean "
              f"{np.mean(staged)*1e3:6.1f}  max {np.max(staged)*1e3:6.1f} | full-image OCR "
              f"median {np.median(base)*1e3:6.1f} ms  mean {np.mean(base)*1e3:6.1f} | "
              f"ratio full/staged (means) {np.mean(base)/np.mean(staged):5.1f}x")

    # --- detection rate -------------------------------------------------------------------------
    samples = text_images(nih, args.n_text, seed=2026)
    refused, missed = 0, []
    for s in samples:
        if checker.check(s.image).refused:
            refused += 1
        else:
            missed.append((s.kind, s.size, s.contrast, s.image.shape[0]))
    print(f"text radiographs refused: {refused}/{len(samples)} = {refused/len(samples):.1%}")
    print(f"  missed (kind, font px (0 = bitmap), contrast, side): {missed}")

    # --- false positives --------------------------------------------------------------------------
    mrng = random.Random(5)
    n, fp = 0, []
    natives = native_images(SHARED / "dicom")
    # every slice of every shared series, too
    import pydicom
    for series in sorted(p for p in (SHARED / "dicom").iterdir() if p.is_dir()):
        for f in sorted(series.rglob("*")):
            try:
                natives.append((f"{series.name}/{f.name}", pydicom.dcmread(f).pixel_array.astype(np.float32)))
            except Exception:
                continue
    for label, a in natives:
        for marked in (False, True):
            if marked and a.ndim != 2:
                continue
            img = draw_markers(a, mrng) if marked else a
            n += 1
            f = checker.check(img)
            if f.refused:
                fp.append((label + ("+markers" if marked else ""), f.reason))
    print(f"clean native images refused: {len(fp)}/{n} = {len(fp)/max(n,1):.2%}: {fp}")
    up_fp, m = [], 0
    for f in random.Random(9).sample(files, 200):
        with Image.open(f) as im:
            side = random.Random(f.name).choice([512, 768, 1024])
            up = np.asarray(im.convert("L").resize((side, side), Image.BICUBIC))
        for marked in (False, True):
            m += 1
            r = checker.check(draw_markers(up, mrng) if marked else up)
            if r.refused:
                up_fp.append((f.name + ("+markers" if marked else ""), r.reason))
    print(f"clean NIH upscaled (with and without markers) refused: {len(up_fp)}/{m} = "
          f"{len(up_fp)/m:.2%}: {up_fp}")


if __name__ == "__main__":
    main()
