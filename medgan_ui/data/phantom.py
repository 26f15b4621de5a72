"""The built-in demo dataset: a procedural chest radiograph phantom, deterministic by seed.

Each image is drawn analytically as a "density" map (body, lungs, heart, mediastinum, spine, ribs,
clavicles, diaphragm, scapulae, breasts, findings) on a [-1, 1]^2 grid and shown as 1 - exp(-k d),
which, like film, compresses the bright parts and keeps ribs visible over the dark lungs. Edges are
linear ramps one pixel wide (a box-filtered edge), so rendering at the target size is already
antialiased and no supersampling is needed. Everything is batched numpy on [B, H, W].

Patients own their anatomy and findings; follow-ups re-use them with a new pose, view, inspiration
and exposure.

Difficulty: "standard" (the default demo) draws every finding well clear of normal anatomy, so a
classifier separates them almost perfectly. "hard" draws findings near their threshold and normals
just below it (cardiothoracic ratio 0.50-0.56 vs 0.43-0.50, so AP magnification pushes some normals
over 0.5), small effusions, faint small nodules, and more detector noise: a test bed on which
augmentation strategies can differ (`medgan data demo --difficulty hard`, data source "demo:hard"). Coordinates are anatomical: x grows to the image right (the patient's left, as a PA
film is read), y grows downward; each side of the chest is drawn with X = +-x, 0 at the midline.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.preprocess import check_size
from medgan_ui.errors import UserError

FINDINGS = ["Cardiomegaly", "Effusion", "Nodule"]
PREVALENCE = {"Cardiomegaly": 0.03, "Effusion": 0.10, "Nodule": 0.05}  # NIH-like image fractions
SEX, VIEW = ["F", "M"], ["AP", "PA"]
P_AP = 0.36  # NIH: about a third of the images are AP (portable, inpatients)
FOLLOWUP_WEIGHTS = np.array([0.25, 0.20, 0.17, 0.14, 0.12, 0.12])  # 1..6 images per patient
AP_MAGNIFICATION, AP_HEART_EXTRA = 1.04, 1.07  # AP: source closer, heart (anterior) enlarged more
VERSION = 1  # bump when the drawing changes, so cached demo sets are rebuilt
HEART_SIN, HEART_COS = float(np.sin(0.5)), float(np.cos(0.5))  # long axis about 30 degrees off horizontal
# Pixels per batch (~1 MB of float32 per array: stays in cache). The drawing is numpy, whose
# elementwise ops run on one thread: torch split each small op over threads with a barrier each,
# which on a busy 2-core machine made 2,000 images take 55 s instead of 3 s.
CHUNK_PIXELS = 262144
DIFFICULTIES = ("standard", "hard")
# per difficulty: finding ranges, nodule contrast, detector noise (sigma range, in [0, 1] gray units)
SETTINGS: dict[str, dict[str, tuple[float, float] | float]] = {
    "standard": {"ctr_pos": (0.57, 0.66), "ctr_neg": (0.36, 0.44), "eff_h": (0.25, 0.45), "nod_r": (0.05, 0.075),
                 "nod_i": 0.45, "noise": (0.004, 0.014)},
    "hard": {"ctr_pos": (0.50, 0.56), "ctr_neg": (0.43, 0.50), "eff_h": (0.06, 0.16), "nod_r": (0.03, 0.045),
             "nod_i": 0.2, "noise": (0.03, 0.06)},
}


@dataclass
class Demo:
    """A phantom set plus per-image facts the ImageSet does not carry (for the folder writers and checks)."""

    imageset: ImageSet
    age: np.ndarray  # int [N], years
    followup: np.ndarray  # int [N], 0-based follow-up number within the patient
    patient_num: np.ndarray  # int [N], 1-based patient number
    ctr: np.ndarray  # float [N], drawn cardiothoracic ratio (heart width / thoracic width)


# ---- parameters ------------------------------------------------------------------------------
def _pick_patients(rng: np.random.Generator, counts: np.ndarray, target: float) -> np.ndarray:
    """Positive patients whose images add up as close as possible to `target` (at least one patient)."""
    order = rng.permutation(len(counts))
    cum = np.cumsum(counts[order])
    k = int(np.argmin(np.abs(cum - target))) + 1
    pos = np.zeros(len(counts), bool)
    pos[order[:k]] = True
    return pos


def check_difficulty(difficulty: str) -> str:
    if difficulty not in DIFFICULTIES:
        raise UserError(f"phantom difficulty must be one of {list(DIFFICULTIES)}, got {difficulty!r}")
    return difficulty


def _patient_params(rng: np.random.Generator, n: int, difficulty: str = "standard"
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-patient anatomy and findings, and the patient index of each image (images grouped by patient).

    Every difficulty makes the same random draws in the same order (only the ranges differ), so the
    standard demo is unchanged by the existence of the others."""
    cfg = SETTINGS[difficulty]
    counts = []
    while sum(counts) < n:
        counts.append(int(rng.choice(6, p=FOLLOWUP_WEIGHTS)) + 1)
    counts[-1] -= sum(counts) - n
    counts_a = np.array(counts)
    P = len(counts_a)
    u = lambda lo, hi: rng.uniform(lo, hi, P)  # noqa: E731
    male = rng.random(P) < 0.5
    p: dict[str, np.ndarray] = {
        "male": male.astype(np.float64),
        "W": u(0.74, 0.84),  # lateral lung edge
        "xm": u(0.07, 0.10),  # medial lung edge
        "apex": u(-0.76, -0.66),
        "dome": u(0.40, 0.50),  # right hemidiaphragm height; the left is a bit lower
        "dome_k": u(1.2, 1.6),
        "heart_b": u(0.85, 1.0),  # heart short / long axis
        "wb": u(0.92, 1.02) + 0.04 * male,  # body half-width
        "neck": u(0.20, 0.26),
        # shoulders: men broad and square (flat slope, humeral heads further out), women sloping
        "shoulder": np.where(male, u(-0.80, -0.70), u(-0.62, -0.52)),  # body edge height at |x| = 1
        "humerus_x": np.where(male, u(1.00, 1.08), u(0.86, 0.94)),
        "rib_sp": u(0.125, 0.14),
        "rib_r0": u(0, 1),
        "clav": u(-0.64, -0.58),
        "contrast": u(1.05, 1.35),
        "bubble": (rng.random(P) < 0.6).astype(np.float64),
        "age": rng.integers(18, 86, P).astype(np.float64),
    }
    pos = {f: _pick_patients(rng, counts_a, PREVALENCE[f] * n) for f in FINDINGS}
    # cardiomegaly: heart wider than half the chest; standard: normals clearly below (even with AP
    # magnification); hard: both near 0.5
    p["ctr"] = np.where(pos["Cardiomegaly"], u(*cfg["ctr_pos"]), u(*cfg["ctr_neg"]))
    p["cardiomegaly"] = pos["Cardiomegaly"].astype(np.float64)  # the label (hard ranges touch 0.5)
    side = rng.integers(0, 3, P)  # effusion on the right, left or both sides
    p["eff_r"] = (pos["Effusion"] & (side != 1)).astype(np.float64)
    p["eff_l"] = (pos["Effusion"] & (side != 0)).astype(np.float64)
    p["eff_h"] = u(*cfg["eff_h"])
    p["nodule"] = pos["Nodule"].astype(np.float64)
    p["nod_side"] = np.where(rng.random(P) < 0.5, -1.0, 1.0)
    p["nod_X"], p["nod_y"], p["nod_r"] = u(0.32, 0.62), u(-0.45, 0.1), u(*cfg["nod_r"])
    p["nod_i"] = np.full(P, float(cfg["nod_i"]))  # type: ignore[arg-type]
    return p, np.repeat(np.arange(P), counts_a)


# ---- drawing primitives (v = signed distance in anatomical units, positive inside) -----------
def _ramp(v: np.ndarray, px: float) -> np.ndarray:
    return np.clip(0.5 + v / px, 0, 1)


def _ellipse_sd(x, y, cx, cy, a, b) -> np.ndarray:
    """Approximate signed distance to an ellipse boundary (exact for circles)."""
    r = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + 1e-12)
    return (1 - r) * np.minimum(a, b).astype(np.float32)  # python-float radii must not upcast to float64


def _dome(X, p, left):
    """Hemidiaphragm height under a lung (X = distance from the midline): peaks mid-lung, with a deep
    costophrenic angle laterally and a shallow cardiophrenic one medially; the left one sits lower."""
    off = X - 0.4
    return p["dome"] + 0.05 * left + p["insp"] + p["dome_k"] * off**2 * np.where(off > 0, np.float32(1), np.float32(0.35))


def _shoulder(ax, p):
    """Upper body edge: the neck leaves the top of the film, the shoulders slope down to |x| = 1."""
    w = np.maximum(((ax - p["neck"]) / (1 - p["neck"])), 0)
    return -1.15 + (p["shoulder"] + 1.15) * w**1.5


def _lung_shape(X, y, p):
    """Signed distance of a lung without its diaphragm: apex at X=0.3, widening to the lateral wall."""
    t = np.clip(((y - p["apex"]) / (0.95 * (p["dome"] + 0.1 - p["apex"]))), 0, 1)
    # quarter ellipses: a round apex, a straight lateral wall at the base
    lateral = 0.3 + (p["W"] - 0.3) * np.sqrt(1 - (1 - np.minimum((1.25 * t), 1)) ** 2)
    tm = np.minimum((2.5 * t), 1)  # the medial border reaches the mediastinum high up
    medial = 0.3 - (0.3 - p["xm"]) * np.sqrt(1 - (1 - tm) ** 2)
    return np.minimum(np.minimum(X - medial, lateral - X), y - p["apex"])


def _bands(phase: np.ndarray) -> np.ndarray:
    """Periodic bands a third of a period wide (ribs)."""
    return np.maximum(((np.cos(2 * np.pi * phase) - 0.5) / 0.5), 0)


def _blur(d: np.ndarray) -> np.ndarray:
    """Separable [1 2 1]/4 blur (focal spot and detector): softens every edge a little."""
    d = np.pad(d, ((0, 0), (1, 1), (1, 1)), mode="edge")
    d = (d[:, :-2] + 2 * d[:, 1:-1] + d[:, 2:]) / 4
    return (d[:, :, :-2] + 2 * d[:, :, 1:-1] + d[:, :, 2:]) / 4


def _sample(tex: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear lookup of small per-image textures [B,g,g] at coordinates in [-1, 1] (edges clamped)."""
    g = tex.shape[-1]
    fx, fy = np.clip((x + 1) * g / 2 - 0.5, 0, g - 1), np.clip((y + 1) * g / 2 - 0.5, 0, g - 1)
    x0, y0 = np.minimum(fx.astype(np.int64), g - 2), np.minimum(fy.astype(np.int64), g - 2)
    wx, wy = fx - x0, fy - y0
    b = np.arange(tex.shape[0])[:, None, None]
    top = tex[b, y0, x0] * (1 - wx) + tex[b, y0, x0 + 1] * wx
    bottom = tex[b, y0 + 1, x0] * (1 - wx) + tex[b, y0 + 1, x0 + 1] * wx
    return top * (1 - wy) + bottom * wy


def _render(p: dict[str, np.ndarray], tex: np.ndarray, noise: np.ndarray, size: int):
    """Draw a batch. p: per-image parameters [B,1,1]; tex: the patient's texture [B,g,g]; noise [B,H,W].

    Returns uint8 images [B,H,W] and boolean lung and heart masks."""
    px = 2.0 / size
    c = ((np.arange(size, dtype=np.float32) + 0.5) * px - 1).astype(np.float32)
    v, u = np.meshgrid(c, c, indexing="ij")
    # pose: image = R * s * anatomy + t, so invert for anatomical coordinates of each pixel
    cs, sn, s = np.cos(p["rot"]), np.sin(p["rot"]), p["scale"]
    x = (cs * (u - p["tx"]) + sn * (v - p["ty"])) / s
    y = (-sn * (u - p["tx"]) + cs * (v - p["ty"])) / s
    pxa = px / s  # a pixel in anatomical units
    # both halves of the chest are drawn at once: X is the distance from the midline
    X, left = np.abs(x), (x > 0).astype(np.float32)
    # the texture moves with the anatomy, so follow-ups show the same lung markings
    tex = _sample(tex, x, y)

    body = _ramp(y - _shoulder(X, p), pxa) * _ramp(p["wb"] - X, pxa)
    d = body * (0.5 + 0.3 * np.sqrt(np.clip(1 - (x / (p["wb"] + 0.15)) ** 2, 0, 1)))

    # heart: an ellipse tilted down to the patient's left, sitting on the diaphragm, one third of
    # its width right of the midline; its horizontal half-extent is ctr * W (the drawn ratio)
    hw = p["ctr"] * p["W"] * p["heart_mag"]
    a = hw / np.sqrt(HEART_COS**2 + (p["heart_b"] * HEART_SIN) ** 2)
    b = a * p["heart_b"]
    hc = p["dome"] + p["insp"] + 0.06 - 0.45 * np.sqrt((a * HEART_SIN) ** 2 + (b * HEART_COS) ** 2)
    hx, hy = x - hw / 3, y - hc
    heart = _ramp(_ellipse_sd(HEART_COS * hx + HEART_SIN * hy, -HEART_SIN * hx + HEART_COS * hy, 0, 0, a, b), pxa)
    knob = _ramp(_ellipse_sd(x, y, 0.1, -0.22, 0.1, 0.09), pxa)  # aortic knob
    # mediastinum: widens from the upper chest into the heart's borders, so the heart does not float
    t = np.clip(((y + 0.4) / (hc + 0.4)), 0, 1)
    lo, hi = -0.12 - t * (2 * hw / 3 - 0.12), 0.12 + t * (0.8 * hw - 0.12)
    medi = np.maximum(_ramp(x - lo, pxa) * _ramp(hi - x, pxa) * _ramp(hc - y, pxa), knob)
    centre = np.maximum(heart, medi)
    spine = _ramp(0.065 - X, pxa) * (0.9 + 0.1 * np.cos(2 * np.pi * y / 0.11))
    trachea = _ramp(0.03 - np.abs(x + 0.01 * y), pxa) * _ramp(-0.28 - y, pxa)
    hprof = np.clip((1 - hx**2 / (hw + 0.05) ** 2), 0, 1)  # the heart is thicker in the middle
    # heart, mediastinum and liver/spleen below the diaphragm merge into one bright mass
    # (max, not sum: nothing separates them on a film)
    dome = _dome(X, p, left)
    abdomen = _ramp(y - dome, pxa) * body
    d = d + np.maximum(np.maximum(0.22 * medi, heart * (0.25 + 0.1 * hprof)), 0.32 * abdomen)
    d = d + 0.1 * spine - 0.25 * trachea

    shape = _lung_shape(X, y, p)
    lungs = _ramp(np.minimum(shape, dome - y), pxa) * (1 - centre)
    # effusion: fluid fills the base and climbs the lateral wall (meniscus), blunting the angle
    frac = np.clip(((X - p["xm"]) / (p["W"] - p["xm"])), 0, 1)
    level = _dome(p["W"], p, left) - p["eff_h"] * (0.6 + 0.8 * frac**2)
    eff = p["eff_r"] + (p["eff_l"] - p["eff_r"]) * left
    fluid = eff * np.clip(((y - level) / 0.06), 0, 1) * _ramp(shape + 0.02, pxa)
    # air: thicker (darker) away from the lung edges; vessels brighter towards the hilum
    depth = 0.55 + 0.45 * np.clip((shape / 0.2), 0, 1)
    marks = np.maximum(tex, 0) * (0.12 - 0.07 * frac)
    hilum = _ramp(_ellipse_sd(X, y, 0.2, -0.05, 0.07, 0.12), pxa)
    d = d - lungs * ((1 - fluid) * (0.62 * depth - marks) - 0.12 * hilum) + 0.25 * fluid * _ramp(dome + 0.1 - y, pxa)
    # ribs: posterior arcs rising from the spine and curving down at the lateral wall; fainter
    # anterior ribs running down towards the sternum
    cage = _ramp(shape + 0.07, pxa) * _ramp(X - 0.06, pxa) * _ramp(dome + 0.05 - y, pxa) * (1 - 0.7 * centre)
    ribs = 0.14 * _bands((y - 1.2 * (X - 0.35) ** 2) / p["rib_sp"] - p["rib_r0"])
    ribs = ribs + 0.04 * _ramp(X - 0.2, pxa) * _bands((y + 0.5 * X) / (1.1 * p["rib_sp"]) - p["rib_r0"])
    d = d + cage * ribs
    # clavicles: from the sternal end out and up to the shoulder; humeral heads at the corners
    cy = p["clav"] - 0.18 * (X - 0.08) + 0.25 * (X - 0.45) ** 2
    d = d + 0.15 * _ramp(0.035 - np.abs(y - cy), pxa) * _ramp(X - 0.07, pxa) * _ramp(0.8 - X, pxa)
    d = d + 0.1 * _ramp(_ellipse_sd(X, y, p["humerus_x"], _shoulder(p["humerus_x"], p) + 0.17, 0.15, 0.15), pxa)
    # scapulae: rotated off the lungs on PA films, projected over the lateral lungs on AP
    d = d + 0.16 * _ramp(_ellipse_sd(X, y, p["scap_x"], -0.32, 0.13, 0.3), pxa)
    # breasts (F): soft tissue over the lower lung fields with a sharp lower border
    breast = _ramp(_ellipse_sd(X, y, 0.55, 0.36, 0.38, 0.3), pxa) * np.clip(((y - 0.14) / 0.45), 0, 1)
    d = d + 0.2 * (1 - p["male"]) * (1 - abdomen) * breast
    # nodule: a small round opacity in one lung
    on = p["nodule"] * (1 - np.abs((p["nod_side"] > 0) - left))
    r = _ellipse_sd(X, y, p["nod_X"], p["nod_y"], p["nod_r"], p["nod_r"])
    d = d + on * p["nod_i"] * np.sqrt(np.clip(r / p["nod_r"] * 2, 0, 1)) * _ramp(r, pxa)
    # gastric air bubble under the left hemidiaphragm
    bubble = _ramp(_ellipse_sd(x, y, 0.42, p["dome"] + 0.15 + p["insp"], 0.1, 0.06), pxa)
    d = d - 0.25 * p["bubble"] * bubble

    # film: 1 - exp(-k d) keeps ribs visible over the lungs and compresses the dense centre
    img = (1 - np.exp(-p["contrast"] * np.maximum(_blur(d), 0))) / (1 - np.exp(-p["contrast"] * 1.2))
    img = np.clip((img * p["gain"] + p["offset"]), 0, 1) ** p["gamma"] + noise
    img8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    heart_mask = (heart > 0.5) & (body > 0.5)
    lung_mask = (lungs > 0.5) & ~heart_mask
    return img8, lung_mask, heart_mask


# ---- the data set ----------------------------------------------------------------------------
def generate(n: int = 2000, size: int = 64, seed: int = 0, difficulty: str = "standard") -> Demo:
    """The phantom set with its extra per-image facts (ages, follow-up numbers, drawn ratios)."""
    check_size(size)
    check_difficulty(difficulty)
    if n < 1:
        raise UserError(f"number of demo images must be at least 1, got {n}")
    rng = np.random.default_rng([seed, VERSION])
    pp, pat = _patient_params(rng, n, difficulty)
    followup = np.zeros(n, np.int64)
    for i in range(1, n):
        followup[i] = followup[i - 1] + 1 if pat[i] == pat[i - 1] else 0
    ap = rng.random(n) < P_AP
    im = {k: v[pat] for k, v in pp.items()}  # patient parameters repeated per image
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    im.update(
        tx=np.clip(rng.normal(0, 0.025, n), -0.06, 0.06), ty=np.clip(rng.normal(0.01, 0.025, n), -0.05, 0.07),
        rot=np.clip(rng.normal(0, 0.03, n), -0.07, 0.07),
        scale=u(0.97, 1.03) * np.where(ap, AP_MAGNIFICATION, 1.0),
        heart_mag=np.where(ap, AP_HEART_EXTRA, 1.0),
        insp=u(-0.03, 0.03) - 0.06 * ap,  # portable AP films are taken with a poorer inspiration
        scap_x=np.where(ap, im["W"] - 0.12, im["W"] + 0.2),
        gain=u(0.92, 1.04) - 0.05 * ap, offset=u(-0.04, 0.03) + 0.04 * ap, gamma=u(0.85, 1.15),
    )
    im["clav"] = im["clav"] - 0.06 * ap  # AP: clavicles project higher
    im["age"] = im["age"] + np.minimum(followup * rng.integers(0, 2, n), 5)
    sigma = u(*SETTINGS[difficulty]["noise"])
    tex_all = rng.standard_normal((len(pp["W"]), 24, 24), dtype=np.float32)
    noise_all = rng.standard_normal((n, size, size), dtype=np.float32) * sigma[:, None, None].astype(np.float32)
    images = np.empty((n, size, size), np.uint8)
    masks = np.empty((n, 2, size, size), np.uint8)
    chunk = max(1, CHUNK_PIXELS // (size * size))
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        p = {k: v[a:b].astype(np.float32)[:, None, None] for k, v in im.items()}
        images[a:b], lungs, heart = _render(p, tex_all[pat[a:b]], noise_all[a:b], size)
        masks[a:b, 0], masks[a:b, 1] = lungs * np.uint8(255), heart * np.uint8(255)

    tag = "" if difficulty == "standard" else f"-{difficulty}"  # the standard demo keeps its old names
    general = torch.from_numpy(np.stack([pp["male"][pat].astype(np.int64), (~ap).astype(np.int64)], 1))
    detailed = torch.from_numpy(
        np.stack([pp["cardiomegaly"][pat] > 0, (im["eff_r"] + im["eff_l"]) > 0, im["nodule"] > 0], 1).astype(np.uint8)
    )
    ims = ImageSet(
        images=torch.from_numpy(images),
        general_names=["sex", "view"],
        general_values={"sex": list(SEX), "view": list(VIEW)},
        general=general,
        findings=list(FINDINGS),
        detailed=detailed,
        patient_id=np.array([str(k + 1) for k in pat]),
        source=[f"phantom{tag}:{seed}:{i}" for i in range(n)],
        masks=torch.from_numpy(masks),
        mask_names=["lungs", "heart"],
        meta={"name": f"demo{tag.replace('-', ':')}", "format": "phantom", "seed": seed, "size": size, "n": n,
              "difficulty": difficulty, "fingerprint": f"phantom{tag}-v{VERSION}-seed{seed}-n{n}-size{size}"},
    )
    ctr = im["ctr"] * im["heart_mag"]
    return Demo(ims, im["age"].astype(np.int64), followup, pat + 1, ctr)


def demo_imageset(n: int = 2000, size: int = 64, seed: int = 0, difficulty: str = "standard") -> ImageSet:
    """The built-in demo dataset: n phantom chest radiographs (sex, view; Cardiomegaly, Effusion, Nodule)."""
    return generate(n, size, seed, difficulty).imageset


def write_demo_folders(out: str | Path, n: int = 2000, seed: int = 0, size: int = 64,
                       difficulty: str = "standard") -> dict[str, Any]:
    """The demo written as OUT/nih (NIH layout), OUT/dicom (+ labels.csv) and OUT/masks; see demo_folders."""
    from medgan_ui.data.demo_folders import write_demo_folders as write  # imports this module

    return write(out, n=n, seed=seed, size=size, difficulty=difficulty)


# ---- a check on images: the cardiothoracic ratio --------------------------------------------
def _otsu(a: np.ndarray) -> np.ndarray:
    """Per-image Otsu threshold of values in [0, 1] ([N, M] -> [N])."""
    bins = 64
    idx = np.clip((a * bins).astype(np.int64), 0, bins - 1)
    hist = np.zeros((a.shape[0], bins))
    np.add.at(hist, (np.arange(a.shape[0])[:, None].repeat(a.shape[1], 1), idx), 1)
    centres = (np.arange(bins) + 0.5) / bins
    w0 = np.cumsum(hist, 1)
    m0 = np.cumsum(hist * centres, 1)
    total, mean = w0[:, -1:], m0[:, -1:]
    w1 = total - w0
    between = (mean * w0 - m0 * total) ** 2 / np.maximum(w0 * w1, 1e-9)
    return centres[np.argmax(between[:, :-1], 1)] + 0.5 / bins


def cardiothoracic_ratio(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Measured cardiothoracic ratio of frontal chest images [N,H,W] (uint8, or float in any range).

    Per image: gray levels are normalised (2nd-98th percentile) and split into lung (dark) and the
    rest by an Otsu threshold over the central chest. On each row in the lower chest (35-85 % of the
    height), walking out from the centre column, the heart is the bright run around the centre and
    the lungs are the dark runs either side of it; the chest width runs to the outer lung edges.
    Rows count only where both lungs are seen, neither is a sliver, and above the first row where
    the right lung's inner edge jumps outwards (the right hemidiaphragm, which would otherwise be
    counted as heart). Ratio = widest heart / widest chest, as a
    radiologist measures it; > 0.5 is cardiomegaly. NaN where no row qualifies (e.g. both bases
    filled by effusion). Used to check that GAN images conditioned on Cardiomegaly show it.
    """
    a = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim == 4:
        a = a[:, 0]
    a = a.astype(np.float32)
    n, h, w = a.shape
    lo, hi = np.percentile(a.reshape(n, -1), [2, 98], axis=1)
    a = np.clip((a - lo[:, None, None]) / np.maximum(hi - lo, 1e-6)[:, None, None], 0, 1)
    a = (a[:, :-2] + a[:, 1:-1] + a[:, 2:]) / 3  # 3-row average against noise
    a = np.pad(a, ((0, 0), (1, 1), (0, 0)), mode="edge")
    centre = a[:, int(0.2 * h) : int(0.8 * h), int(0.1 * w) : int(0.9 * w)].reshape(n, -1)
    dark = a < _otsu(centre)[:, None, None]
    band = dark[:, int(0.35 * h) : int(0.85 * h)]
    c = w // 2
    sides = []
    band = band & (np.roll(band, 1, -1) | np.roll(band, -1, -1))  # drop lone dark pixels (noise)
    for half in (band[:, :, :c][:, :, ::-1], band[:, :, c:]):  # each walks outwards from the centre
        idx = np.arange(half.shape[-1])
        has = half.any(-1)
        first = np.where(has, half.argmax(-1), half.shape[-1])  # heart border
        after = ~half & (idx > first[..., None])
        outer = np.where(after.any(-1), after.argmax(-1), half.shape[-1])  # outer lung edge
        sides.append((has, first, outer))
    (hl, fl, ol), (hr, fr, orr) = sides
    heart, chest = (fl + fr).astype(np.float64), (ol + orr).astype(np.float64)
    ok = hl & hr & ((ol - fl) >= np.maximum(2, 0.12 * chest)) & ((orr - fr) >= np.maximum(2, 0.12 * chest))
    # below the top of the right hemidiaphragm the right lung's inner edge jumps outwards (the heart's
    # right border is nearly vertical): stop there, or the dome would be measured as heart
    seen = np.maximum.accumulate(np.where(ok, fl, -(10**6)), axis=1)  # widest right border so far
    seen = np.concatenate([np.full((n, 1), -(10**6)), seen[:, :-1]], 1)
    below = np.cumsum(ok & (fl - seen >= max(3, round(0.05 * w))) & (seen >= 0), 1) > 0
    ok &= ~below
    heart_max = np.where(ok, heart, -1).max(1)
    chest_max = np.where(ok, chest, -1).max(1)
    return np.where(ok.any(1), heart_max / np.maximum(chest_max, 1), np.nan)
