"""Identifying text burned into pixels (PS3.15 Clean Pixel Data): find it, refuse or mask it.

Header de-identification never sees text that a modality, a viewer or a screen grab drew into
the image itself: a name in a corner, an ID, a study date. A generator trained on such images
learns to draw it. Every input image therefore passes through `PixelTextChecker.check`, DICOM
included, before it is normalised.

Engine: RapidOCR (`rapidocr-onnxruntime` 1.4.4), the PP-OCRv4 detector (DBNet) and recogniser
(CRNN/SVTR) exported to ONNX and run with onnxruntime. It was chosen over Tesseract because the
models ship inside the PyPI wheel (nothing is downloaded at run time, nothing is needed from apt,
so `pip install` of the project is the whole install) and because its detector finds isolated
text lines on a picture (Tesseract's layout analysis is built for pages and misreads anatomy as
text blocks). Later RapidOCR releases (2.x, 3.x) fetch their models at run time and are not used.

Cost: the DBNet detector on a whole 1024 px image costs about 1 s of one core, ten times the
budget, so detection is staged (measured in benchmarks/bench_pixels.py):
1. a classical text-candidate stage: the morphological top-hat / black-hat (strokes brighter or
   darker than their surroundings and thinner than the kernel) above a contrast threshold,
   grouped into line-shaped components (a few ms at 1024 px);
2. the DBNet detector only inside the padded candidate regions (none on a clean image);
3. the recogniser only inside the boxes the detector returns.

Policy (`deid.pixel_text`): `refuse` (default) refuses an image whose recognised text could
identify someone (a digit run, a date, a name or word, more than a few characters); `mask`
blanks those boxes and keeps the image; `allow` runs no check at all (the operator vouches for
the pixels). Laterality and view markers (L, R, PA, AP, PORTABLE, LAT, ERECT, SUPINE, CC, MLO,
...) are not identifying and pass under every policy. Screenshots and secondary captures
(user-interface colours, a screen-sized colour frame, blocks of text lines) are refused under
`refuse` and `mask`: masking cannot make a screen grab a radiograph.

Fail closed: when the engine cannot be imported or fails on an image, or a text line is found
that cannot be read, the image is refused ("text check could not run", "unreadable text").

The recognised text never leaves this module: findings, reasons, reprs, logs and exceptions name
the *kind* of text found ("a date and a digit run, 3 text boxes"), never the text itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

PixelTextPolicy = Literal["refuse", "allow", "mask"]
Verdict = Literal["clean", "identifying", "screenshot", "unreadable", "error"]

# Laterality, projection, position and mammography view markers drawn by technologists and
# modalities. A text line made only of these (and of short punctuation) identifies nobody.
MARKERS = frozenset("""
L R LT RT LEFT RIGHT PA AP LAT LATERAL LL RL PORTABLE PORT MOBILE ERECT UPRIGHT SEMI SEMIERECT
SEMI-ERECT SUPINE PRONE SITTING STANDING DECUB DECUBITUS LLD RLD OBL OBLIQUE LAO RAO LPO RPO
CC MLO ML LM XCCL XCCM AT SIN DX SX INSP EXP INSPIRATION EXPIRATION FLEX FLEXION EXT EXTENSION
WB AXIAL SUP INF ANT POST A P H F TOWNE SWIMMERS LORDOTIC CROSSTABLE CROSS TABLE
""".split())
_LONG_MARKERS = tuple(m for m in MARKERS if len(m) >= 5)
_MAMMO_VIEW = re.compile(r"^[LR](CC|MLO|ML|LM|XCCL|XCCM|AT|SIO|FB)$")

# Common screen and window sizes (width, height). A colour frame of this size is a screen grab.
SCREEN_SIZES = ((1920, 1080), (1920, 1200), (2560, 1440), (2560, 1600), (3840, 2160),
                (1680, 1050), (1600, 900), (1440, 900), (1366, 768), (1280, 1024), (1280, 800),
                (1280, 720), (1024, 768), (3440, 1440))
# A maximised window or a grab without the task bar / title bar loses up to this many rows.
_SCREEN_CHROME_ROWS = 80

_DATE = re.compile(
    r"\d{1,4}[./\-]\d{1,2}[./\-]\d{2,4}"                       # 12/03/2019, 2019-03-12
    r"|\b(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\b"  # 20190312
    r"|(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]*\W*\d"
    r"|\d\W*(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)")
_DIGIT_RUN = re.compile(r"\d{3,}")
_WORD = re.compile(r"[A-Z]{3,}")
_TIME = re.compile(r"\b\d{1,2}:\d{2}(:\d{2})?\b")


@dataclass(frozen=True)
class TextBox:
    """One detected text line: an axis-aligned box (x0, y0, x1, y1) in pixels, and its kind.

    `kind` is one of: marker, short (one or two stray characters), identifying, unreadable,
    "not read" (under `refuse`, lines left unread once an identifying line settled the verdict).
    The recognised text itself is deliberately not kept.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    kind: str


@dataclass(frozen=True)
class PixelTextFinding:
    """What the check found in one image. Carries kinds of text, never the text."""

    verdict: Verdict
    reason: str = ""
    boxes: tuple[TextBox, ...] = ()
    kinds: tuple[str, ...] = ()  # e.g. ("a date", "a digit run")
    checked: str = ""  # what was checked, e.g. "2D image", "slices 0, 40, 79 and a MIP"

    @property
    def refused(self) -> bool:
        return self.verdict != "clean"

    @property
    def identifying_boxes(self) -> tuple[TextBox, ...]:
        return tuple(b for b in self.boxes if b.kind in ("identifying", "unreadable"))


def _is_marker(token: str, depth: int = 0) -> bool:
    if token in MARKERS or _MAMMO_VIEW.match(token):
        return True
    # The recogniser confuses I / l / 1 and O / 0 on small print: a long marker one edit away
    # (PORTABIE, SUPlNE) is still that marker; a line cut at a crop edge keeps a part of one
    # (PORTAB, RECT: four letters or more of a marker of five or more). Short tokens must match
    # exactly.
    if len(token) >= 4 and any(len(m) >= 5 and (_one_edit(token, m) or m.startswith(token)
                                               or m.endswith(token)) for m in _LONG_MARKERS):
        return True
    # A lost space: APPORTABLE is AP + PORTABLE.
    if depth < 2:
        return any(token.startswith(m) and _is_marker(token[len(m):], depth + 1)
                   for m in MARKERS if len(m) >= 2 and len(token) > len(m))
    return False


def _one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) <= 1
    if len(a) > len(b):
        a, b = b, a
    i = next((k for k in range(len(a)) if a[k] != b[k]), len(a))
    return a[i:] == b[i + 1:]


def classify_text(text: str) -> tuple[str, tuple[str, ...]]:
    """(box kind, identifying kinds) for one recognised text line.

    Kinds: "a date", "a digit run", "a time", "a name or word", "text" (more than a few
    characters that are not markers). Public for tests; callers never store `text`.
    """
    up = text.upper().strip()
    tokens = [t for t in re.split(r"[^A-Z0-9\-]+", up) if t]
    residual = [t for t in tokens if not _is_marker(t)]
    if not residual:
        return "marker", ()
    kinds: list[str] = []
    if _DATE.search(up):
        kinds.append("a date")
    if _TIME.search(up):
        kinds.append("a time")
    if _DIGIT_RUN.search(_DATE.sub(" ", up)):
        kinds.append("a digit run")
    rest = " ".join(residual)
    if _WORD.search(rest):
        kinds.append("a name or word")
    if not kinds and sum(c.isalnum() for c in rest) > 3:
        kinds.append("text")
    return ("identifying", tuple(kinds)) if kinds else ("short", ())


def to_uint8(array: np.ndarray) -> np.ndarray:
    """A 2D image windowed to 8 bits by its 0.5 / 99.5 percentiles (burned-in text, drawn at or
    near the extreme values, saturates rather than disappears)."""
    a = np.asarray(array)
    if a.dtype != np.float32:
        a = a.astype(np.float32)
    # Percentiles from a regular subsample (about 65k pixels): a full sort of a 1024 px image
    # costs more than the whole candidate stage, and the window does not need that precision.
    step = max(1, int(np.sqrt(a.size / 65_536)))
    sub = a[::step, ::step] if a.ndim == 2 else a
    finite = sub[np.isfinite(sub)]
    if finite.size == 0:
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = (float(v) for v in np.percentile(finite, (0.5, 99.5)))
    if hi <= lo:
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if not hi > lo:
            return np.zeros(a.shape, dtype=np.uint8)
    if not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
    out = np.subtract(a, lo, dtype=np.float32)
    out *= 255.0 / (hi - lo)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def colour_summary(rgb: np.ndarray) -> dict:
    """Share of saturated pixels and of the largest flat colour region in an RGB thumbnail."""
    rgb = np.asarray(rgb, dtype=np.int16)
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    saturated = chroma >= 48
    frac = float(saturated.mean())
    flat = 0.0
    if saturated.any():
        q = (rgb[saturated] // 16).astype(np.int32)
        codes = q[:, 0] * 256 + q[:, 1] * 16 + q[:, 2]
        flat = float(np.bincount(codes).max()) / saturated.size
    return {"saturated_fraction": frac, "largest_flat_colour_fraction": flat}


@dataclass
class _Engine:
    """The ONNX detector and recogniser, loaded once per checker (never a module global)."""

    detector: object
    recogniser: object

    @classmethod
    def load(cls, threads: int = 1) -> "_Engine":
        from pathlib import Path

        import rapidocr_onnxruntime
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
        from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer
        from rapidocr_onnxruntime.utils import read_yaml

        root = Path(rapidocr_onnxruntime.__file__).parent
        cfg = read_yaml(str(root / "config.yaml"))
        for part in ("Det", "Rec"):
            cfg[part]["model_path"] = str(root / cfg[part]["model_path"])
            cfg[part]["intra_op_num_threads"] = threads
            cfg[part]["inter_op_num_threads"] = 1
            if not Path(cfg[part]["model_path"]).is_file():  # a wheel without its models
                raise FileNotFoundError("OCR model missing from the rapidocr wheel")
        return cls(TextDetector(cfg["Det"]), TextRecognizer(cfg["Rec"]))

    def detect(self, rgb: np.ndarray, limit: int = 960) -> list[tuple[np.ndarray, float]]:
        """Text-line quadrilaterals (4x2, in `rgb` pixels) and their detector scores."""
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

        det = self.detector
        pre = DetPreProcess(limit, "max", det.mean, det.std)
        x = pre(rgb)
        if x is None:
            return []
        pred = det.infer(x)[0]
        boxes, scores = det.postprocess_op(pred, rgb.shape[:2])
        return [(np.asarray(b, dtype=np.float32), float(s)) for b, s in zip(boxes, scores)]

    def recognise(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        if not crops:
            return []
        res, _ = self.recogniser(list(crops))
        return [(str(t), float(s)) for t, s in res]


def _text_candidates(gray: np.ndarray, kernel: int, contrast: int) -> list[tuple[int, int, int, int]]:
    """Line-shaped groups of thin strokes that stand out from their surroundings.

    Recall matters more than precision: a false candidate costs one detector run on a small
    crop, a missed one lets text through. Strokes of burned-in text are thinner than `kernel`
    and differ from the local background by more than `contrast` grey levels (of 255). A
    line of identifying text has at least three characters, so it is wider than tall and made
    of several separate strokes of similar height; a vessel, a rib edge or a wire is one long
    stroke, and a lone laterality marker (allowed anyway) is a single glyph.
    """
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_RECT, (kernel, kernel))
    bright = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, k) > contrast
    dark = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, k) > contrast
    # The union fills a whole word (the gaps between bright glyphs are dark strokes), which
    # groups a line; each polarity alone shows the separate glyphs.
    lines = cv2.dilate((bright | dark).astype(np.uint8),
                       cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3)))
    n, _, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
    max_h = min(100, gray.shape[0] // 4)
    out = []
    for x, y, w, h, _area in stats[1:]:
        if h < 6 or w < 6 or h > max_h + 3 or w < 1.2 * h:
            continue
        if _glyph_runs(bright[y:y + h, x:x + w]) < 3 and _glyph_runs(dark[y:y + h, x:x + w]) < 3:
            continue
        out.append((int(x), int(y), int(x + w), int(y + h)))
    return out


def _glyph_runs(mask: np.ndarray) -> int:
    """The most separate stroke runs met by one row through the box (a word crosses several)."""
    if mask.size == 0:
        return 0
    m = mask.astype(np.int8)
    starts = np.count_nonzero(np.diff(m, axis=1) == 1, axis=1) + m[:, 0]
    return int(starts.max())


def _merge_regions(boxes, shape, pad_x: float = 2.5, pad_y: float = 0.75):
    """Pad candidate boxes (by multiples of their height) and merge the overlapping ones.

    Returns (x0, y0, x1, y1, smallest line height) per region."""
    h_img, w_img = shape
    regions = []
    for x0, y0, x1, y1 in boxes:
        h = max(y1 - y0, 8)
        regions.append([max(0, int(x0 - pad_x * h)), max(0, int(y0 - pad_y * h)),
                        min(w_img, int(x1 + pad_x * h)), min(h_img, int(y1 + pad_y * h)), h])
    merged = True
    while merged and len(regions) > 1:
        merged = False
        out: list[list[int]] = []
        for r in regions:
            for m in out:
                if r[0] <= m[2] and m[0] <= r[2] and r[1] <= m[3] and m[1] <= r[3]:
                    m[0], m[1] = min(m[0], r[0]), min(m[1], r[1])
                    m[2], m[3] = max(m[2], r[2]), max(m[3], r[3])
                    m[4] = min(m[4], r[4])  # the smallest line sets the enlargement
                    merged = True
                    break
            else:
                out.append(list(r))
        regions = out
    return [tuple(r) for r in regions]


def _crop_quad(gray3: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The text line under a detector quadrilateral, straightened (as RapidOCR does)."""
    import cv2

    w = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    h = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    w, h = max(w, 2), max(h, 2)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    crop = cv2.warpPerspective(gray3, m, (w, h), borderMode=cv2.BORDER_REPLICATE,
                               flags=cv2.INTER_CUBIC)
    if h / w >= 1.5:
        crop = np.rot90(crop)  # a vertical line of text
    return np.ascontiguousarray(crop)


class PixelTextChecker:
    """Find burned-in text and screenshots in one image (2D) or a volume (3D, sampled).

    `check(array, rgb=None, original_shape=None) -> PixelTextFinding`; `mask(array, finding)`
    returns a copy with the identifying boxes blanked. Plain arrays in, plain data out.
    """

    def __init__(self, policy: PixelTextPolicy = "refuse", *, kernel: int = 15,
                 contrast: int = 40, min_read_score: float = 0.5,
                 max_text_lines: int = 6, threads: int = 1):
        if policy not in ("refuse", "allow", "mask"):
            raise ValueError(f"pixel_text policy must be refuse, allow or mask (got {policy!r})")
        self.policy = policy
        self.kernel = kernel
        self.contrast = contrast
        self.min_read_score = min_read_score
        self.max_text_lines = max_text_lines
        self.threads = threads
        self._engine: _Engine | None = None
        self._engine_error: str | None = None

    def __repr__(self) -> str:
        return f"PixelTextChecker(policy={self.policy!r})"

    def __getstate__(self):  # the ONNX sessions stay in their process; workers load their own
        state = dict(self.__dict__)
        state["_engine"] = None
        return state

    def engine_importable(self) -> bool:
        import importlib.util

        if self._engine_error is None and self._engine is None:
            for mod in ("onnxruntime", "rapidocr_onnxruntime", "cv2"):
                if importlib.util.find_spec(mod) is None:
                    self._engine_error = f"{mod} not installed"
        return self._engine_error is None

    def engine(self) -> _Engine | None:
        if self._engine is None and self._engine_error is None:
            try:
                self._engine = _Engine.load(self.threads)
            except Exception as err:  # noqa: BLE001 - any failure means: the check cannot run
                self._engine_error = type(err).__name__
        return self._engine

    # -- the check --------------------------------------------------------------------------

    def check(self, array: np.ndarray, *, rgb: np.ndarray | None = None,
              original_shape: tuple[int, ...] | None = None) -> PixelTextFinding:
        """Check a 2D image (H, W) or a volume (D, H, W).

        `rgb`: a colour thumbnail (h, w, 3) uint8 of a raster that was stored in colour (None
        for grayscale sources); `original_shape`: the stored frame size, for the screen test.
        """
        if self.policy == "allow":
            return PixelTextFinding("clean", "pixel text check off (deid.pixel_text: allow)",
                                    checked="nothing")
        array = np.asarray(array)
        shot = self._screenshot(array, rgb, original_shape)
        if shot is not None:
            return shot
        if array.ndim == 2:
            return self._check_2d(array, "2D image")
        if array.ndim == 3:
            if array.shape[0] == 1:
                return self._check_2d(array[0], "2D image")
            return self._check_volume(array)
        return PixelTextFinding("error", f"text check could not run (array of {array.ndim} dims)")

    def _screenshot(self, array, rgb, original_shape) -> PixelTextFinding | None:
        if rgb is None:
            return None  # a grayscale source carries no user-interface colour
        colour = colour_summary(rgb)
        shape = tuple(original_shape or array.shape)[-2:]
        h, w = int(shape[0]), int(shape[1])
        reasons = []
        if colour["saturated_fraction"] >= 0.01:
            reasons.append(f"RGB user-interface colours ({colour['saturated_fraction']:.0%} of "
                           "pixels saturated)")
        if any(w == sw and sh - _SCREEN_CHROME_ROWS <= h <= sh for sw, sh in SCREEN_SIZES):
            reasons.append(f"a screen-sized colour frame ({w}x{h})")
        if not reasons:
            return None
        return PixelTextFinding("screenshot", "screenshot or secondary capture: " + ", ".join(reasons),
                                checked="colour and frame size")

    def _check_volume(self, volume: np.ndarray) -> PixelTextFinding:
        # Burned-in text in CT / MR sits on localisers and secondary captures, which are 2D
        # images (their own series), or is an overlay rendered into every frame of a series.
        # A per-frame overlay shows on any slice; a summary frame sits at the start or the end.
        # So the first, middle and last slices are read, plus a maximum-intensity projection:
        # text drawn at the top of the range on any subset of slices survives the MIP. Four
        # reads instead of hundreds keep a 300-slice CT under a second.
        d = volume.shape[0]
        idx = sorted({0, d // 2, d - 1})
        planes = [(f"slice {i}", volume[i]) for i in idx]
        planes.append(("MIP", np.nanmax(volume, axis=0)))
        checked = f"slices {', '.join(map(str, idx))} of {d} and a MIP"
        worst: PixelTextFinding | None = None
        for _name, plane in planes:
            f = self._check_2d(plane, checked)
            if f.refused:
                return f
            worst = worst or f
        return PixelTextFinding("clean", "", worst.boxes if worst else (), checked=checked)

    def _check_2d(self, image: np.ndarray, checked: str) -> PixelTextFinding:
        if not self.engine_importable():
            return self._cannot_run(checked)
        try:
            read = self._read(image)
        except Exception as err:  # noqa: BLE001 - fail closed, and never echo the input
            return PixelTextFinding("error", f"text check could not run ({type(err).__name__})",
                                    checked=checked)
        if read is None:
            return self._cannot_run(checked)
        return self._verdict(*read, checked)

    def _cannot_run(self, checked: str) -> PixelTextFinding:
        return PixelTextFinding("error", "text check could not run (OCR engine unavailable: "
                                f"{self._engine_error})", checked=checked)

    def _read(self, image: np.ndarray):
        """(boxes, kinds, unreadable count), or None when the engine is needed but unavailable.

        The ONNX sessions load on the first image that has a text candidate: an image without
        any needs neither detector nor recogniser, and most images of a run have none."""
        import cv2

        gray = to_uint8(image)
        scale = 1.0
        if max(gray.shape) > 2048:  # text on large plates is large too; halve the work
            scale = 2048 / max(gray.shape)
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cands = _text_candidates(gray, self.kernel, self.contrast)
        regions = _merge_regions(cands, gray.shape)
        if sum((r[2] - r[0]) * (r[3] - r[1]) for r in regions) > 0.4 * gray.size:
            regions = [(0, 0, gray.shape[1], gray.shape[0], 24)]  # text everywhere: read it whole
        if not regions:
            return [], [], 0
        engine = self.engine()
        if engine is None:
            return None
        gray3 = np.repeat(gray[:, :, None], 3, axis=2)
        found_lines: list[tuple[np.ndarray, list[int]]] = []
        boxes: list[TextBox] = []
        kinds: list[str] = []
        unreadable = 0
        for x0, y0, x1, y1, line_h in regions:
            crop = gray3[y0:y1, x0:x1]
            if min(crop.shape[:2]) < 6:
                continue
            # The detector misses lines under ~20 px and lines that touch the crop's edge:
            # enlarge small text to about 24 px and give every crop a plain margin.
            up = float(np.clip(24.0 / max(line_h, 1), 1.0, 3.0))
            up = min(up, max(1.0, (250_000 / crop.size * 3) ** 0.5))  # bound the detector's input
            if up > 1.0:
                crop = cv2.resize(crop, None, fx=up, fy=up, interpolation=cv2.INTER_CUBIC)
            m = 16
            crop = cv2.copyMakeBorder(crop, m, m, m, m, cv2.BORDER_CONSTANT,
                                      value=[int(np.median(crop))] * 3)
            quads = engine.detect(crop, limit=960)
            hi_y, hi_x = image.shape[-2:]
            for q, _s in quads:
                qx0, qy0 = (q.min(axis=0) - m) / up
                qx1, qy1 = (q.max(axis=0) - m) / up
                bx = [max(0, int((x0 + qx0) / scale)), max(0, int((y0 + qy0) / scale)),
                      min(hi_x, int(np.ceil((x0 + qx1) / scale))),
                      min(hi_y, int(np.ceil((y0 + qy1) / scale)))]
                found_lines.append((_crop_quad(crop, q), bx))
        # The recogniser costs about 0.2 ms of one core per pixel of line width (at its 48 px
        # line height): most of the budget. Under `refuse` one identifying line settles the
        # verdict, so lines are read one at a time, longest first, and reading stops there;
        # `mask` must know every line, so it reads them all.
        if self.policy == "refuse":
            found_lines.sort(key=lambda lb: -lb[0].shape[1] / max(lb[0].shape[0], 1))
            reads: list[tuple[str, float] | None] = []
            done = False
            for line, _bx in found_lines:
                if done:
                    reads.append(None)  # not read: the verdict is already settled
                    continue
                read = engine.recognise([line])[0]
                reads.append(read)
                done = read[1] >= self.min_read_score and classify_text(read[0])[0] == "identifying"
        else:
            reads = list(engine.recognise([line for line, _bx in found_lines]))
        for (_line, bx), read in zip(found_lines, reads):
            if read is None:
                boxes.append(TextBox(*bx, kind="not read"))
                continue
            text, score = read
            if score < self.min_read_score or not text.strip():
                kind, found = "unreadable", ()
            else:
                kind, found = classify_text(text)
            del text  # the text goes no further than this function
            if kind == "unreadable":
                if not _legible_geometry(bx):
                    continue
                unreadable += 1
            boxes.append(TextBox(*bx, kind=kind))
            kinds.extend(k for k in found if k not in kinds)
        return boxes, kinds, unreadable

    def _verdict(self, boxes, kinds, unreadable, checked) -> PixelTextFinding:
        n = len(boxes)
        ident = [b for b in boxes if b.kind == "identifying"]
        if n >= self.max_text_lines and len(ident) > 0:
            return PixelTextFinding(
                "screenshot", f"screenshot or secondary capture: text blocks ({n} text lines)",
                tuple(boxes), tuple(kinds), checked)
        if ident:
            what = " and ".join(kinds) if len(kinds) <= 2 else \
                ", ".join(kinds[:-1]) + " and " + kinds[-1]
            return PixelTextFinding(
                "identifying", f"burned-in text: {what}, {len(ident)} text box"
                + ("es" if len(ident) != 1 else ""), tuple(boxes), tuple(kinds), checked)
        if unreadable:
            return PixelTextFinding(
                "unreadable", f"burned-in text that could not be read ({unreadable} text box"
                + ("es)" if unreadable != 1 else ")"), tuple(boxes), (), checked)
        return PixelTextFinding("clean", "", tuple(boxes), (), checked)

    # -- masking ----------------------------------------------------------------------------

    def mask(self, array: np.ndarray, finding: PixelTextFinding, pad: int = 2) -> np.ndarray:
        """A copy of `array` with the identifying and unreadable boxes set to the image minimum
        (on every slice of a volume: the check read sampled slices, the overlay may be on all)."""
        out = np.array(array, copy=True)
        if not finding.identifying_boxes:
            return out
        finite = out[np.isfinite(out)] if np.issubdtype(out.dtype, np.floating) else out
        fill = finite.min() if finite.size else 0
        h, w = out.shape[-2:]
        for b in finding.identifying_boxes:
            out[..., max(0, b.y0 - pad):min(h, b.y1 + pad), max(0, b.x0 - pad):min(w, b.x1 + pad)] = fill
        return out


def _legible_geometry(box: Sequence[int]) -> bool:
    """An unread detection counts only when it is shaped like a line of text."""
    w, h = box[2] - box[0], box[3] - box[1]
    return 8 <= min(w, h) and max(w, h) >= 2 * min(w, h)


__all__ = ["MARKERS", "PixelTextChecker", "PixelTextFinding", "PixelTextPolicy", "SCREEN_SIZES",
           "TextBox", "classify_text", "colour_summary", "to_uint8"]
