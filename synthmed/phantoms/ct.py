"""Torso CT phantoms in Hounsfield units: a stack of axial slices from the lung apices down to the
upper abdomen.

Tissue values follow textbook HU: air -1000, lung about -850, fat about -100, soft tissue and blood
about 40, liver about 60, cortical bone 700 and above. Organs are analytic shapes evaluated on a
(slice, row, column) grid, the way the radiograph phantom is built, so a patient's anatomical
fingerprint is a handful of numbers and each study only moves the table and the breath.

Coordinates: x, y in [-1, 1] across a slice (x to the image right = the patient's left, y down =
posterior), z in [0, 1] from the first (most cranial) slice to the last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from synthmed.phantoms.findings import Findings
from synthmed.phantoms.shapes import ellipse_inside, smooth_noise

FOV_MM = 360.0          # in-plane field of view
Z_EXTENT_MM = 300.0     # apex to upper abdomen
_PAD_XY, _PAD_Z = 8, 4  # texture margin so shifted studies stay inside the patient's texture

AIR, LUNG, FAT, SOFT, BLOOD, LIVER, BONE, CANCELLOUS = -1000, -850, -100, 40, 45, 60, 1400, 400


@dataclass(frozen=True)
class CtAnatomy:
    body_ax: float
    body_ay: float
    body_cy: float
    body_square: float
    fat: float
    wall: float
    lung_cx: float
    lung_cy: float
    lung_rx: float
    lung_ry: float
    apex_z: float
    dia_r: float
    dia_l: float
    dome_h: float
    med_hw: float
    heart_cx: float
    heart_cy: float
    heart_cz: float
    heart_rx: float
    heart_ry: float
    heart_rz: float
    aorta_r: float
    arch_z: float
    carina_z: float
    spine_y: float
    spine_r: float
    vert_h: float
    rib_z0: float
    rib_sp: float
    rib_slope: float
    liver_x: float


def sample_anatomy(rng: np.random.Generator, age: float, sex: str) -> CtAnatomy:
    n = rng.normal
    male = sex == "M"
    size = 1.0 + (0.04 if male else -0.03)
    dia_r = float(np.clip(n(0.76, 0.04), 0.66, 0.86))
    return CtAnatomy(
        body_ax=float(np.clip(n(0.84, 0.04) * size, 0.72, 0.95)),
        body_ay=float(np.clip(n(0.58, 0.04) * size, 0.48, 0.7)),
        body_cy=float(n(0.05, 0.02)),
        body_square=float(np.clip(n(0.35, 0.15), 0.0, 0.8)),
        fat=float(np.clip(n(0.07 if male else 0.09, 0.025), 0.02, 0.16)),
        wall=float(np.clip(n(0.06, 0.01), 0.04, 0.09)),
        lung_cx=float(n(0.36, 0.025) * size),
        lung_cy=float(n(0.04, 0.025)),
        lung_rx=float(np.clip(n(0.27, 0.02) * size, 0.21, 0.33)),
        lung_ry=float(np.clip(n(0.36, 0.03) * size, 0.28, 0.44)),
        apex_z=float(np.clip(n(0.03, 0.02), 0.0, 0.08)),
        dia_r=dia_r,
        dia_l=dia_r + float(np.clip(n(0.04, 0.02), -0.01, 0.09)),
        dome_h=float(np.clip(n(0.18, 0.03), 0.1, 0.26)),
        med_hw=float(np.clip(n(0.11, 0.012), 0.08, 0.14)),
        heart_cx=float(n(0.1, 0.025)),
        heart_cy=float(n(-0.1, 0.03)),
        heart_cz=float(n(0.64, 0.03)),
        heart_rx=float(np.clip(n(0.24, 0.02), 0.18, 0.3)),
        heart_ry=float(np.clip(n(0.2, 0.018), 0.15, 0.26)),
        heart_rz=float(np.clip(n(0.17, 0.015), 0.13, 0.22)),
        aorta_r=float(np.clip(n(0.05, 0.006) + 0.0003 * max(age - 40, 0), 0.035, 0.08)),
        arch_z=float(n(0.22, 0.03)),
        carina_z=float(n(0.34, 0.03)),
        spine_y=float(n(0.38, 0.02)),
        spine_r=float(np.clip(n(0.095, 0.008), 0.075, 0.12)),
        vert_h=float(np.clip(n(0.085, 0.006), 0.07, 0.1)),
        rib_z0=float(n(0.0, 0.02)),
        rib_sp=float(np.clip(n(0.085, 0.007), 0.07, 0.1)),
        rib_slope=float(np.clip(n(0.22, 0.03), 0.14, 0.3)),
        liver_x=float(n(0.2, 0.04)),
    )


@dataclass(frozen=True)
class CtStudy:
    dx: int          # table/patient shift in voxels (columns, rows, slices)
    dy: int
    dz: int
    inspiration: float
    noise: float     # HU standard deviation
    blur: float      # reconstruction kernel, voxels


def sample_study(rng: np.random.Generator) -> CtStudy:
    return CtStudy(dx=int(rng.integers(-4, 5)), dy=int(rng.integers(-3, 4)),
                   dz=int(rng.integers(-2, 3)),
                   inspiration=float(np.clip(rng.normal(0, 0.02), -0.04, 0.04)),
                   noise=float(np.clip(rng.normal(14, 4), 6, 25)),
                   blur=float(np.clip(rng.normal(0.7, 0.15), 0.4, 1.0)))


def sample_nodule(rng: np.random.Generator, anat: CtAnatomy) -> tuple[float, float, float]:
    """(x, y, z) of a nodule inside a lung, in canonical units; its radius is fixed per size."""
    side = -1.0 if rng.random() < 0.5 else 1.0
    return (float(side * (anat.lung_cx + rng.uniform(-0.1, 0.1))),
            float(anat.lung_cy + rng.uniform(-0.15, 0.15)),
            float(rng.uniform(anat.apex_z + 0.2, anat.dia_r - 0.15)))


def build_texture(rng: np.random.Generator, slices: int, size: int) -> np.ndarray:
    """Per-patient lung texture [0] and vessel field [1], with margins for study shifts."""
    shape = (slices + 2 * _PAD_Z, size + 2 * _PAD_XY, size + 2 * _PAD_XY)
    coarse = smooth_noise(rng, shape, (1.0, size / 40, size / 40))
    fine = smooth_noise(rng, shape, (0.8, size / 110, size / 110))
    return np.stack([coarse, fine]).astype(np.float32)


def render(anat: CtAnatomy, texture: np.ndarray, study: CtStudy, findings: Findings,
           slices: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One CT volume in HU, float32 (slices, size, size), slice 0 the most cranial."""
    a = anat
    h = 2.0 / size
    lin = ((np.arange(size, dtype=np.float32) + 0.5) * h - 1).astype(np.float32)
    X = (lin - study.dx * h)[None, None, :]
    Y = (lin - study.dy * h)[None, :, None]
    Z = ((np.arange(slices, dtype=np.float32) + 0.5 - study.dz) / slices)[:, None, None]
    X2, Y2 = np.broadcast_arrays(X[0], Y[0])

    body = ellipse_inside(X2, Y2, 0.0, a.body_cy, a.body_ax, a.body_ay, a.body_square) > 0
    k_muscle = 1.0 - a.fat
    muscle = ellipse_inside(X2, Y2, 0.0, a.body_cy, a.body_ax * k_muscle, a.body_ay * k_muscle,
                            a.body_square) > 0
    k_cav = k_muscle - a.wall
    cav_in = ellipse_inside(X2, Y2, 0.0, a.body_cy, a.body_ax * k_cav, a.body_ay * k_cav,
                            a.body_square)
    cavity = cav_in > 0
    slice2d = np.full((size, size), AIR, np.float32)
    slice2d[body] = FAT
    slice2d[muscle] = SOFT
    slice2d[cavity] = FAT + 20  # mediastinal fat: vessels and heart stand out against it
    vol = np.repeat(slice2d[None], slices, axis=0)

    # Below the diaphragm: liver on the patient's right (image left), stomach/bowel elsewhere.
    dome_r = a.dia_r + study.inspiration - a.dome_h * np.clip(
        1.0 - ((np.abs(X) - a.lung_cx) / (a.lung_rx * 1.3)) ** 2 - ((Y - a.lung_cy) / 0.6) ** 2,
        0.0, None)
    dome_l = dome_r + (a.dia_l - a.dia_r)
    dome = np.where(X < 0, dome_r, dome_l)
    abdomen = (Z > dome) & cavity[None]
    liver = abdomen & (X < a.liver_x)
    tex = texture[:, _PAD_Z + study.dz: _PAD_Z + study.dz + slices,
                  _PAD_XY + study.dy: _PAD_XY + study.dy + size,
                  _PAD_XY + study.dx: _PAD_XY + study.dx + size]
    # Bowel and mesenteric fat: a coarse mix of soft tissue and fat.
    vol = np.where(abdomen, np.where(tex[0] > 0.6, FAT + 10.0, 30.0), vol).astype(np.float32)
    vol[liver] = LIVER
    stomach_air = abdomen & ((((X - 0.35) / 0.16) ** 2 + ((Y + 0.15) / 0.1) ** 2) < 1) & \
        (Z < dome + 0.06)
    vol[stomach_air] = AIR

    # Lungs: a cross-section that grows from the apex, cut below by the dome.
    grow = np.sqrt(np.clip((Z - a.apex_z) / 0.28, 0.0, 1.0)) + 1e-3
    lungs = np.zeros(vol.shape, bool)
    sides = {}
    for side in (-1.0, 1.0):
        U = side * X
        inside = 1.0 - ((U - a.lung_cx) / (a.lung_rx * grow)) ** 2 \
            - ((Y - a.lung_cy) / (a.lung_ry * grow)) ** 2
        lung = (inside > 0) & (Z < dome) & (U > a.med_hw) & cavity[None]
        sides[side] = lung
        lungs |= lung
    hrx, hry, hrz = a.heart_rx, a.heart_ry, a.heart_rz
    if findings.cardiomegaly:
        hrx, hry, hrz = hrx * 1.35, hry * 1.25, hrz * 1.1
    heart_in = 1.0 - ((X - a.heart_cx) / hrx) ** 2 - ((Y - a.heart_cy) / hry) ** 2 \
        - ((Z - a.heart_cz) / hrz) ** 2
    heart = heart_in > 0
    lungs &= ~heart
    parenchyma = LUNG + 25.0 * tex[0]
    # Vessels: the brightest ridges of a fine noise field, denser towards the hila.
    hilum = np.exp(-((np.abs(X) - a.med_hw - 0.05) ** 2 + (Y - a.lung_cy) ** 2) / 0.12)
    vessels = tex[1] > (2.4 - 1.0 * hilum)
    parenchyma = np.where(vessels, SOFT - 20.0, parenchyma)
    vol = np.where(lungs, parenchyma, vol).astype(np.float32)
    for side, height in findings.effusion:
        fluid_top = a.lung_cy + a.lung_ry - height * 2.2 * np.clip((Z - 0.35) / 0.35, 0.0, 1.0)
        fluid = sides[float(side)] & ~heart & (Y > fluid_top)
        vol[fluid] = 15.0
    vol[heart] = BLOOD
    vol[heart & (heart_in < 0.12)] = SOFT + 10  # myocardium, slightly denser than blood

    # Great vessels and airway.
    def put(mask: np.ndarray, value: float) -> None:
        vol[np.broadcast_to(mask, vol.shape)] = value

    def tube(cx: float, cy: float, r: float) -> np.ndarray:
        return (((X - cx) / r) ** 2 + ((Y - cy) / r) ** 2) < 1

    desc = tube(a.spine_r * 0.9, a.spine_y - a.spine_r - a.aorta_r, a.aorta_r) & \
        (Z > a.arch_z) & (Z < dome)
    asc = tube(0.02, a.heart_cy - a.heart_ry * 0.6, a.aorta_r * 1.1) & (Z > a.arch_z) & \
        (Z < a.heart_cz - a.heart_rz * 0.5)
    arch = (np.abs(Z - a.arch_z) < 0.025) & \
        ((((X - 0.05) / 0.12) ** 2 + ((Y - (a.heart_cy + a.spine_y) / 2) / 0.28) ** 2) < 1)
    put(desc | asc | arch, BLOOD)
    trachea = tube(0.0, -0.02, 0.055) & (Z < a.carina_z)
    bronchi = (tube(-0.08, 0.0, 0.04) | tube(0.08, 0.0, 0.04)) & \
        (Z >= a.carina_z) & (Z < a.carina_z + 0.08)
    put(trachea | bronchi, AIR)
    put(tube(0.03, 0.14, 0.035) & (Z < dome), SOFT)  # oesophagus

    # Spine: vertebral bodies (cortical rim, cancellous core), discs, canal and spinous process.
    phase = (Z - a.rib_z0) / a.vert_h
    disc = np.abs(phase - np.round(phase)) < 0.12
    r2 = (X / a.spine_r) ** 2 + ((Y - a.spine_y) / a.spine_r) ** 2
    vbody = r2 < 1
    vol = np.where(vbody, np.where(disc, 80.0, np.where(r2 > 0.45, BONE, CANCELLOUS)),
                   vol).astype(np.float32)
    canal_y = a.spine_y + a.spine_r + 0.05
    lamina = tube(0.0, canal_y, 0.08) & ~disc
    put(lamina, BONE * 0.8)
    put(tube(0.0, canal_y, 0.045), 10.0)
    spinous = ((((X / 0.03) ** 2 + ((Y - canal_y - 0.1) / 0.08) ** 2) < 1) & ~disc)
    put(spinous, BONE * 0.8)

    # Ribs: seen end-on in the chest wall, each slanting down from back to front.
    ring = (cav_in < 0.0) & (cav_in > -0.13)
    phi = np.arctan2(X2, -(Y2 - a.body_cy))  # 0 = posterior midline... pi = anterior
    phi = np.abs(np.pi - np.abs(phi))        # 0 at the back, pi at the front
    v = (Z - a.rib_z0 - a.rib_slope * phi[None] / math.pi) / a.rib_sp
    rib = ring[None] & (np.abs(v - np.round(v)) < 0.17) & (phi[None] < 2.5) & \
        (phi[None] > 0.35) & (v > -0.2) & (Z < dome + 0.12)
    put(rib, 800.0)
    sternum = (((X / 0.08) ** 2 + ((Y - (a.body_cy - a.body_ay * k_cav - 0.02)) / 0.035) ** 2)
               < 1) & (Z < 0.75)
    put(sternum, 600.0)

    if findings.nodule is not None:
        nx, ny, nz = findings.nodule
        r = 0.045
        nod = ((X - nx) ** 2 + (Y - ny) ** 2 + ((Z - nz) * 1.5) ** 2) < r * r
        put(nod & lungs, SOFT)

    vol = ndimage.gaussian_filter(vol, (0.0, study.blur, study.blur))
    vol += study.noise * rng.standard_normal(vol.shape, dtype=np.float32) * body[None]
    return vol
