"""Frontal (PA) chest radiograph phantoms.

An image is a projection: we add up how much tissue each ray crosses (a density map D built
from analytic organ shapes), then turn it into detector brightness with 1 - exp(-k D), so dense
structures are bright (MONOCHROME2) and air-filled lungs are dark. All organ shapes are evaluated
on a study-specific transformed coordinate grid, so pose (shift, rotation, magnification) costs
nothing extra. Fine detail that makes a person recognisable (vessel tree, lung texture, old
calcifications, wires, devices) is drawn once per patient on a canonical grid and resampled for
each study.

Coordinates: x, y in [-1, 1] across the image; x grows to the image right (the patient's
left in a PA view), y grows downwards. `u = side * x` mirrors a side so lateral is positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from synthmed.phantoms.findings import Findings
from synthmed.phantoms.shapes import (bilinear, depth, ellipse_inside, rotate, smooth_noise, soft,
                                      splat)

_DETAIL_SPAN = 1.2  # the canonical detail grid covers [-1.2, 1.2] so shifted studies stay inside
N_RIBS = 10
ZOOM = 1.1  # anatomy units to image units: the chest wall lands near the image edge


@dataclass(frozen=True)
class CxrAnatomy:
    """One virtual patient's anatomical fingerprint (canonical, before any study pose)."""

    body_hw: float          # half width of the thorax
    soft_tissue: float      # body habitus: how much soft tissue each ray crosses
    lung_cx: float          # lung centre, distance from midline
    lung_cy: float
    lung_rx: float
    lung_ry: float
    lung_square: float      # 0 = elliptic lungs, 1 = boxy lungs
    lung_asym: float        # right lung (image left) relative size
    med_hw: float           # mediastinum half width
    dia_r: float            # right hemidiaphragm dome height (image left)
    dia_l: float            # left hemidiaphragm dome height
    dome_h: float           # how domed the diaphragm is
    heart_cx: float
    heart_cy: float
    heart_rx: float
    heart_ry: float
    heart_tilt: float
    aorta_r: float
    aorta_calcified: bool
    spine_x: float
    spine_w: float
    scoliosis: float
    vert_h: float           # vertebral body height
    rib_y0: tuple[float, ...]
    rib_w: float
    rib_curv: float
    rib_tilt: float
    clav_y: float
    clav_angle: float
    clav_w: float
    bone: float             # bone density (lower in the elderly)
    breast: float           # 0 for males
    bubble_x: float         # gastric air bubble under the left hemidiaphragm
    bubble_r: float


def sample_anatomy(rng: np.random.Generator, age: float, sex: str) -> CxrAnatomy:
    male = sex == "M"
    child = age < 16
    n = rng.normal
    size = 1.0 + (0.03 if male else -0.02) + (-0.06 if child else 0.0)
    rib_sp = float(np.clip(n(0.118, 0.01), 0.095, 0.14)) * size
    rib_first = n(-0.72, 0.03)
    steps = rib_sp * (1.0 + 0.05 * np.arange(N_RIBS)) + n(0, 0.008, N_RIBS)
    rib_y0 = tuple(float(v) for v in rib_first + np.concatenate([[0.0], np.cumsum(steps[:-1])]))
    anat = CxrAnatomy(
        body_hw=float(np.clip(n(0.86, 0.04) * size, 0.74, 0.96)),
        soft_tissue=float(np.clip(n(1.0, 0.12) + (0.05 if male else 0.0), 0.7, 1.35)),
        lung_cx=float(n(0.38, 0.025) * size),
        lung_cy=float(n(-0.05, 0.03)),
        lung_rx=float(np.clip(n(0.31, 0.02) * size, 0.25, 0.38)),
        lung_ry=float(np.clip(n(0.74, 0.04), 0.62, 0.86)),
        lung_square=float(np.clip(n(0.35, 0.2), 0.0, 0.9)),
        lung_asym=float(n(1.0, 0.03)),
        med_hw=float(np.clip(n(0.12, 0.012), 0.09, 0.15)),
        dia_r=float(n(0.42, 0.05) + (0.02 * (age - 50) / 40 if not child else -0.03)),
        dia_l=0.0,  # set below relative to the right side
        dome_h=float(np.clip(n(0.12, 0.025), 0.05, 0.2)),
        heart_cx=float(n(0.13, 0.025)),
        heart_cy=float(n(0.2, 0.03)),
        heart_rx=float(np.clip(n(0.27 if male else 0.25, 0.02) + (0.04 if child else 0.0),
                               0.18, 0.33)),
        heart_ry=float(np.clip(n(0.2, 0.018), 0.15, 0.26)),
        heart_tilt=float(n(0.45, 0.12)),
        aorta_r=float(np.clip(n(0.05, 0.008) + 0.0004 * max(age - 40, 0), 0.035, 0.085)),
        aorta_calcified=bool(age > 60 and rng.random() < 0.5),
        spine_x=float(n(0.0, 0.012)),
        spine_w=float(np.clip(n(0.075, 0.008), 0.055, 0.1)),
        scoliosis=float(n(0.0, 0.025)),
        vert_h=float(np.clip(n(0.105, 0.008), 0.085, 0.13)),
        rib_y0=rib_y0,
        rib_w=float(np.clip(n(0.03, 0.003), 0.022, 0.04)),
        rib_curv=float(np.clip(n(0.55, 0.08) - (0.15 if child else 0.0), 0.25, 0.8)),
        rib_tilt=float(n(0.1, 0.04)),
        clav_y=float(n(-0.7, 0.03)),
        clav_angle=float(np.deg2rad(np.clip(n(14, 5), 2, 28))),
        clav_w=float(np.clip(n(0.036, 0.004), 0.026, 0.046)),
        bone=float(np.clip(n(1.0, 0.08) - 0.006 * max(age - 50, 0), 0.55, 1.25)),
        breast=0.0 if male or child else float(np.clip(n(0.5, 0.2), 0.1, 1.0)),
        bubble_x=float(n(0.38, 0.05)),
        bubble_r=float(np.clip(n(0.07, 0.02), 0.03, 0.12)),
    )
    return _with_left_dome(rng, anat)


def _with_left_dome(rng: np.random.Generator, anat: CxrAnatomy) -> CxrAnatomy:
    # The left hemidiaphragm usually sits a little lower than the right (the liver is on the right).
    return replace(anat, dia_l=anat.dia_r + float(np.clip(rng.normal(0.04, 0.025), -0.02, 0.1)))


@dataclass(frozen=True)
class CxrStudy:
    """How one acquisition differs from another of the same patient."""

    tx: float
    ty: float
    rot: float
    scale: float
    inspiration: float   # diaphragm shift: deeper breath, lower domes
    exposure: float
    lo: float
    hi: float
    gamma: float
    heel: float
    noise: float
    blur: float          # in pixels at 256 px


def sample_study(rng: np.random.Generator) -> CxrStudy:
    n = rng.normal
    return CxrStudy(
        # Positioning as in a department with a fixed upright stand: a few mm and a degree.
        tx=float(np.clip(n(0, 0.012), -0.03, 0.03)), ty=float(np.clip(n(0, 0.012), -0.03, 0.03)),
        rot=float(np.deg2rad(np.clip(n(0, 0.9), -2.5, 2.5))),
        scale=float(np.clip(n(1.0, 0.012), 0.97, 1.03)),
        inspiration=float(np.clip(n(0, 0.02), -0.05, 0.05)),
        exposure=float(np.clip(n(1.0, 0.07), 0.8, 1.2)),
        lo=float(np.clip(n(0.02, 0.015), -0.02, 0.06)),
        hi=float(np.clip(n(0.93, 0.03), 0.85, 1.0)),
        gamma=float(np.clip(n(1.0, 0.08), 0.8, 1.25)),
        heel=float(n(0.0, 0.04)),
        noise=float(np.clip(n(0.018, 0.006), 0.006, 0.035)),
        blur=float(np.clip(n(0.8, 0.2), 0.4, 1.3)),
    )


def sample_nodule(rng: np.random.Generator, anat: CxrAnatomy) -> tuple[float, float, float]:
    side = -1.0 if rng.random() < 0.5 else 1.0
    u = anat.lung_cx + rng.uniform(-0.12, 0.12)
    y = rng.uniform(anat.lung_cy - 0.4, min(anat.lung_cy + 0.2, anat.dia_r - 0.2))
    return float(side * u), float(y), float(rng.uniform(0.03, 0.05))


# --- per-patient fine detail ---------------------------------------------------------------

def _canon_to_px(v: np.ndarray, res: int) -> np.ndarray:
    return (v + _DETAIL_SPAN) / (2 * _DETAIL_SPAN) * (res - 1)


def build_detail(rng: np.random.Generator, anat: CxrAnatomy, age: float, res: int
                 ) -> np.ndarray:
    """Per-patient detail on a canonical grid: [0] lung markings (masked by the lungs at render
    time), [1] fixed marks (calcified granulomas, wires, devices, old fractures).

    These are what make two studies of one person look like the same person beyond gross
    shape, as vessel patterns and old scars do in real radiographs.
    """
    step = min(0.01, 2 * _DETAIL_SPAN / res)
    px = 2 * _DETAIL_SPAN / (res - 1)
    # Vessel trees: 12 primary branches fanning out of each hilum, 3 side branches each, all
    # random walks drawn at once as (branch, step) arrays.
    nb = 12
    side = np.repeat([-1.0, 1.0], nb)
    hx = side * (anat.med_hw + 0.08 + np.repeat(rng.normal(0, 0.015, 2), nb))
    hy = anat.lung_cy - 0.03 + np.repeat(rng.normal(0, 0.03, 2), nb)
    theta = np.deg2rad(np.tile(np.linspace(-110, 100, nb), 2) + rng.normal(0, 7, 2 * nb))
    m = np.maximum((rng.uniform(0.25, 0.5, 2 * nb) / step).astype(int), 4)
    steps = np.arange(m.max())
    ang = theta[:, None] + np.cumsum(rng.normal(0, 0.07, (2 * nb, m.max())), 1)
    x = hx[:, None] + side[:, None] * np.cumsum(step * np.cos(ang), 1)
    y = hy[:, None] + np.cumsum(step * np.sin(ang), 1)
    w = 1.3 - 1.1 * steps[None] / m[:, None]
    valid = steps[None] < m[:, None]

    parent = np.repeat(np.arange(2 * nb), 3)
    j = rng.integers(m[parent] // 4, 3 * m[parent] // 4)
    m2 = np.maximum((rng.uniform(0.12, 0.28, parent.size) / step).astype(int), 3)
    steps2 = np.arange(m2.max())
    turn = rng.choice([-1.0, 1.0], parent.size) * rng.uniform(0.4, 0.8, parent.size)
    ang2 = (ang[parent, j] + turn)[:, None] + \
        np.cumsum(rng.normal(0, 0.08, (parent.size, m2.max())), 1)
    x2 = x[parent, j][:, None] + side[parent][:, None] * np.cumsum(step * np.cos(ang2), 1)
    y2 = y[parent, j][:, None] + np.cumsum(step * np.sin(ang2), 1)
    w2 = w[parent, j][:, None] * 0.6 * (1.0 - 0.7 * steps2[None] / m2[:, None])
    valid2 = steps2[None] < m2[:, None]
    points = [np.stack([y[valid], x[valid]], 1), np.stack([y2[valid2], x2[valid2]], 1)]
    weights = [w[valid], w2[valid2]]
    pts = _canon_to_px(np.concatenate(points), res)
    sigma = max(0.7, 0.7 * res / 256)
    vessels = splat((res, res), pts, np.concatenate(weights) * (step / px), sigma)
    vessels *= np.sqrt(2 * np.pi) * sigma  # peak ~ the point weight, whatever the resolution
    lung = 0.11 * vessels + 0.035 * smooth_noise(rng, (res, res), res / 70)

    lin = np.linspace(-_DETAIL_SPAN, _DETAIL_SPAN, res, dtype=np.float32)
    X, Y = np.meshgrid(lin, lin)
    fixed = np.zeros((res, res), np.float32)

    def blob(cx: float, cy: float, rx: float, ry: float, amp: float) -> None:
        nonlocal fixed
        fixed += amp * depth(ellipse_inside(X, Y, cx, cy, rx, ry)).astype(np.float32)

    for _ in range(int(rng.poisson(0.5))):  # calcified granulomas: small, very dense, permanent
        s = rng.choice([-1.0, 1.0])
        blob(s * (anat.lung_cx + rng.uniform(-0.15, 0.15)),
             anat.lung_cy + rng.uniform(-0.45, 0.3), r := rng.uniform(0.008, 0.016), r, 0.9)
    if age > 50 and rng.random() < 0.12:  # sternotomy wires down the midline
        for yw in np.linspace(-0.42, 0.12, int(rng.integers(4, 7))) + rng.normal(0, 0.01, 1):
            ring = ellipse_inside(X, Y, anat.spine_x, float(yw), 0.03, 0.018)
            fixed += 0.9 * np.exp(-(ring / 0.18) ** 2) * (ring > -0.6)
    if age > 60 and rng.random() < 0.06:  # pacemaker under the left clavicle, lead to the heart
        px0, py0 = 0.5 + rng.normal(0, 0.04), -0.6 + rng.normal(0, 0.04)
        blob(px0, py0, 0.08, 0.055, 1.6)
        t = np.linspace(0, 1, 400)
        hx, hy = anat.heart_cx - 0.05, anat.heart_cy + 0.05
        lead = np.stack([py0 + (hy - py0) * t - 0.15 * np.sin(np.pi * t),
                         px0 + (hx - px0) * t], 1)
        fixed += 0.5 * splat((res, res), _canon_to_px(lead, res), np.full(400, 1.0),
                             max(0.8, res / 256)) * np.sqrt(2 * np.pi) * max(0.8, res / 256) \
            * (2 * _DETAIL_SPAN / res) / (1.0 / 400)
    if rng.random() < 0.2:  # healed rib fracture: a lump of callus on one posterior rib
        s = rng.choice([-1.0, 1.0])
        k = int(rng.integers(3, 8))
        u = rng.uniform(0.4, 0.65)
        y = anat.rib_y0[k] - anat.rib_tilt * u + anat.rib_curv * u * u
        blob(s * u, y, 0.035, 0.028, 0.35)
    if rng.random() < 0.15:  # surgical clips near a hilum or in an axilla
        s = rng.choice([-1.0, 1.0])
        cx, cy = s * rng.uniform(0.2, 0.7), rng.uniform(-0.5, 0.1)
        for _ in range(int(rng.integers(2, 4))):
            blob(cx + rng.normal(0, 0.03), cy + rng.normal(0, 0.03), 0.012, 0.004, 1.2)
    return np.stack([lung.astype(np.float32), fixed])


# --- rendering ------------------------------------------------------------------------------

def _tube(d: np.ndarray, w: float) -> np.ndarray:
    """Projected cross-section of a hollow bone: the cortex shows as brighter edges."""
    q = (d / w) ** 2
    return depth(1.0 - q) - 0.55 * depth(1.0 - q / 0.42)


def _resample_detail(detail: np.ndarray, Xc: np.ndarray, Yc: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Sample the canonical detail maps under this study's pose."""
    res = detail.shape[-1]
    out = bilinear(detail, _canon_to_px(Yc, res), _canon_to_px(Xc, res))
    return out[0], out[1]


def _nearest_tube(base: np.ndarray, y0: np.ndarray, w: float) -> np.ndarray:
    # Ribs never overlap, so each pixel only needs the rib whose centre line is nearest: one
    # evaluation instead of one per rib (the renderer's hot spot). The nearest rib comes from
    # a small lookup table over `base` rather than a per-pixel binary search.
    lo, step = -3.0, 1.0 / 512
    grid = lo + step * np.arange(6 * 512, dtype=np.float32)
    table = np.searchsorted(0.5 * (y0[1:] + y0[:-1]), grid)
    pos = (base - lo) * (1.0 / step)
    k = table[np.clip(pos.astype(np.int32), 0, table.size - 1)]
    d = base - y0[k]
    return _tube(d, w) * (np.abs(d) < 2 * w)


def render(anat: CxrAnatomy, detail: np.ndarray, study: CxrStudy, findings: Findings,
           size: int, rng: np.random.Generator) -> np.ndarray:
    """One radiograph as 12-bit uint16 (size, size), bright = dense (MONOCHROME2)."""
    a = anat
    lin = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1).astype(np.float32)
    X, Y = np.meshgrid(lin, lin)
    # Python floats keep every array float32 (a numpy float64 scalar would upcast it).
    c, s_ = math.cos(study.rot), math.sin(study.rot)
    dx, dy = X - study.tx, Y - study.ty
    zoom = study.scale * ZOOM
    Xc = (c * dx + s_ * dy) / zoom
    Yc = (-s_ * dx + c * dy) / zoom
    w = max(0.008, 2.4 / size)
    insp = study.inspiration

    body_in = ellipse_inside(Xc, Yc, 0.0, 0.35, a.body_hw, 1.6, 0.9)
    D = a.soft_tissue * depth(body_in)

    # Heart first: the lungs lose air where the heart sits in front of them.
    hrx, hry, hcx = a.heart_rx, a.heart_ry, a.heart_cx
    if findings.cardiomegaly:
        hrx, hry, hcx = hrx * 1.42, hry * 1.12, hcx + 0.03
    Hx, Hy = rotate(Xc, Yc, hcx, a.heart_cy + insp, a.heart_tilt)
    heart_in = np.maximum(ellipse_inside(Hx, Hy, 0.0, 0.0, hrx, hry),
                          ellipse_inside(Xc, Yc, hcx - 0.55 * hrx, a.heart_cy + insp + 0.02,
                                         0.5 * hrx, 0.75 * hry))
    heart = soft(heart_in, 0.06)
    knob_y = a.lung_cy - 0.3
    knob_in = ellipse_inside(Xc, Yc, a.med_hw - 0.01, knob_y, a.aorta_r, a.aorta_r * 1.1)
    solid = np.maximum(heart, soft(knob_in, 0.08))

    air = np.zeros_like(D)
    lungs = np.zeros_like(D)
    for side, dia in ((-1.0, a.dia_r), (1.0, a.dia_l)):
        U = side * Xc
        grow = a.lung_asym if side < 0 else 1.0
        lung_in = ellipse_inside(U, Yc, a.lung_cx, a.lung_cy + 0.5 * insp, a.lung_rx * grow,
                                 a.lung_ry + 0.5 * insp, a.lung_square)
        dome = dia + insp - a.dome_h * (1.0 - ((U - a.lung_cx) / (a.lung_rx * 1.1)) ** 2)
        medial = soft(U - (a.med_hw + 0.02 * Yc), w)
        lung = soft(lung_in, 0.05) * soft(dome - Yc, w) * medial
        thick = lung * (0.6 + 0.4 * depth(lung_in))
        for eff_side, height in findings.effusion:
            if eff_side == side:
                # Fluid pools at the base and climbs the lateral wall (a meniscus), blunting
                # the costophrenic angle.
                line = dome - height - 0.35 * np.clip(U - a.lung_cx, 0.0, None)
                fluid = soft(Yc - line, 1.5 * w) * soft(lung_in, 0.05) * medial
                thick = thick * (1.0 - fluid)
                D = D + 0.1 * fluid
        air += thick
        lungs += lung
    air *= 1.0 - 0.9 * solid
    D = D - 0.72 * air + 0.12 * depth(heart_in) + 0.05 * depth(knob_in)
    if a.aorta_calcified:
        D = D + 0.25 * np.exp(-((knob_in - 0.15) / 0.1) ** 2) * (Yc < knob_y)

    # Trachea: a dark column down the upper mediastinum to the carina.
    D = D - 0.16 * soft(0.03 - np.abs(Xc - 0.5 * a.spine_x), w) * soft(knob_y + 0.05 - Yc, 0.03)

    # Spine, with darker disc spaces between vertebral bodies.
    xs = a.spine_x + a.scoliosis * np.sin(np.pi * (Yc + 1.0) / 2.0)
    phase = (Yc - a.rib_y0[0]) / a.vert_h
    disc = phase - np.round(phase)
    disc *= 1.0 / 0.25
    disc *= disc
    disc = np.maximum(1.0 - disc, 0.0) ** 2  # a smooth bump, cheaper than exp
    D = D + 0.22 * a.bone * depth(1.0 - ((Xc - xs) / a.spine_w) ** 2) * (1.0 - 0.45 * disc)

    bones = np.zeros_like(D)
    rib_y0 = np.asarray(a.rib_y0, np.float32)
    for side in (-1.0, 1.0):
        U = side * Xc
        # Posterior ribs: from the spine, curving down towards the lateral chest wall.
        base = Yc - (-a.rib_tilt * U + a.rib_curv * U * U)
        extent = soft(U - 0.05, 0.02) * soft(a.body_hw * 0.93 - U, 0.03)
        ribs = _nearest_tube(base, rib_y0, a.rib_w)
        # Anterior ribs: fainter, running down and inwards from the lateral wall.
        ul = 0.75 * a.body_hw
        base_a = Yc - (-a.rib_tilt * ul + a.rib_curv * ul * ul) - 0.33 * (ul - U)
        ant_extent = soft(U - 0.2, 0.04) * soft(ul + 0.05 - U, 0.03)
        ribs_a = _nearest_tube(base_a, rib_y0[:7], a.rib_w * 1.2)
        bones += ribs * extent + 0.4 * ribs_a * ant_extent
        v = U - 0.06
        clav = a.clav_y - math.tan(a.clav_angle) * v + 0.03 * np.sin(np.pi * v / 0.5)
        bones += 2.2 * _tube(Yc - clav, a.clav_w) * soft(v, 0.02) * soft(0.55 - v, 0.02)
        if a.breast > 0:
            b_in = ellipse_inside(U, Yc, 0.42, 0.58, 0.33, 0.25)
            D = D + 0.18 * a.breast * depth(b_in)
    D = D + 0.17 * a.bone * bones

    # Gastric air bubble under the left hemidiaphragm.
    by = a.dia_l + insp + a.bubble_r + 0.02
    D = D - 0.3 * depth(ellipse_inside(Xc, Yc, a.bubble_x, by, 1.3 * a.bubble_r, a.bubble_r))

    if findings.nodule is not None:
        nx, ny, nr = findings.nodule
        D = D + 0.45 * depth(ellipse_inside(Xc, Yc, nx, ny, nr, nr))

    lung_detail, marks = _resample_detail(detail, Xc, Yc)
    D = D + lung_detail * np.clip(lungs, 0.0, 1.0) + marks

    P = 1.0 - np.exp(-1.6 * study.exposure * np.clip(D, 0.0, None))
    P = ndimage.gaussian_filter(P, study.blur * size / 256)
    img = np.clip((P - study.lo) * (1.0 / (study.hi - study.lo)), 0.0, 1.0)
    # Detector gamma through a 4096-entry table: a gather is far cheaper than a per-pixel pow.
    lut = np.linspace(0.0, 1.0, 4096, dtype=np.float32) ** study.gamma
    img = lut[(img * 4095).astype(np.int32)]
    img *= 1.0 + study.heel * Y
    img = img + study.noise * (0.4 + 0.6 * np.sqrt(np.clip(img, 0, 1))) \
        * rng.standard_normal(img.shape, dtype=np.float32)
    return np.round(np.clip(img, 0.0, 1.0) * 4095).astype(np.uint16)
