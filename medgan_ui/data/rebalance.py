"""Class rebalancing and classic augmentation, the two non-GAN baselines of the papers.

* Random under- and over-sampling exactly as the GDGAN reference code defines them (PAPERS.md 1.6,
  `datasets.py` of seitalab/GDGAN.pytorch). Classes are the chosen findings plus "no finding"
  (images with none of them). They return index arrays into the (training) set; callers build subsets.
* Frid-Adar et al.'s classic augmentation (PAPERS.md 2.2): rotation, flips, translation, scale, as
  one batched affine_grid / grid_sample call with per-sample parameters from a torch.Generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from medgan_ui.errors import UserError


# ---- under / over-sampling (GDGAN reference code) --------------------------------------------
def _labels(labels: torch.Tensor | np.ndarray, classes: Sequence[int] | None) -> tuple[np.ndarray, list[int]]:
    y = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 2:
        raise ValueError(f"labels must be multi-hot [N, F], got shape {y.shape}")
    cls = list(range(y.shape[1])) if classes is None else [int(c) for c in classes]
    if not cls or any(c < 0 or c >= y.shape[1] for c in cls):
        raise UserError(f"class indices {classes!r} are not columns of labels with {y.shape[1]} findings")
    return y[:, cls].astype(bool), cls


def class_counts(labels: torch.Tensor | np.ndarray, classes: Sequence[int] | None = None) -> np.ndarray:
    """Images per class, then images with none of the classes ("no finding") last, like the
    reference's calc_class_sum (a multi-label image counts once for each of its classes)."""
    y, _ = _labels(labels, classes)
    return np.append(y.sum(0), (~y.any(1)).sum()).astype(np.int64)


def _pools(y: np.ndarray) -> list[np.ndarray]:
    """Image indices per class (columns of the boolean y), then of "no finding"; their sizes are class_counts."""
    return [np.flatnonzero(y[:, i]) for i in range(y.shape[1])] + [np.flatnonzero(~y.any(1))]


def _name(i: int, cls: list[int], names: Sequence[str] | None) -> str:
    if i == len(cls):
        return "no finding"
    return names[cls[i]] if names is not None else f"class {cls[i]}"


def undersample_indices(
    labels: torch.Tensor | np.ndarray,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """For each class, and for "no finding", draw min-count images without replacement.

    Result: (len(classes) + 1) * min-count indices (an image with two findings can be drawn for both,
    as in the reference). Raises UserError when some class has no image (min-count would be 0)."""
    y, cls = _labels(labels, classes)
    pools = _pools(y)
    counts = np.array([len(pool) for pool in pools])
    m = int(counts.min())
    if m == 0:
        empty = _name(int(np.argmin(counts)), cls, names)
        raise UserError(f"cannot undersample: {empty!r} has no images in this set, so every class would get 0")
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(pool, m, replace=False) for pool in pools])


def oversample_indices(
    labels: torch.Tensor | np.ndarray,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> np.ndarray:
    """All images, plus for each class (max-count - count) extra draws with replacement from its images.

    The reference assumes "no finding" is the largest class and tops up only the findings; if it is
    not, it is topped up the same way here instead of failing the reference's assertion."""
    y, cls = _labels(labels, classes)
    pools = _pools(y)
    top = max(len(pool) for pool in pools)
    rng = np.random.default_rng(seed)
    extra = []
    for i, pool in enumerate(pools):
        if top - len(pool) > 0:
            if len(pool) == 0:
                raise UserError(f"cannot oversample: {_name(i, cls, names)!r} has no images to draw copies from")
            extra.append(rng.choice(pool, top - len(pool), replace=True))
    return np.concatenate([np.arange(len(y))] + extra)


# ---- classic augmentation (Frid-Adar et al.) -------------------------------------------------
@dataclass
class ClassicAugment:
    """Frid-Adar's classic augmentation. Each output is rotated, then gets one of: nothing, a flip,
    a translation or a scaling, in the paper's proportions 1 : N_flip : N_trans : N_scale = 1:3:7:5
    (its N = N_rot * (1 + N_flip + N_trans + N_scale) copies per image)."""

    rotate_deg: tuple[float, float] = (0.0, 180.0)  # paper: random angle in [0, 180] degrees
    flip_lr: bool = True  # paper: up-down and left-right flips
    flip_ud: bool = True
    max_shift: float = 4.0 / 64  # paper: (x, y) shift in (-p, p), p = min(4 px, 0.1 d); as a fraction of the side
    # paper: tissue margin 0.1d-0.4d around the lesion (ROI 1.2d-1.8d wide); for a whole image that
    # is a zoom of 1.2/1.5 to 1.8/1.5 around the middle margin
    scale: tuple[float, float] = (0.8, 1.2)
    weights: tuple[float, float, float, float] = (1.0, 3.0, 7.0, 5.0)  # none, flip, translate, scale
    padding: str = "reflection"  # what rotated-in corners show: "reflection", "border" or "zeros"

    def __post_init__(self) -> None:
        if self.padding not in ("reflection", "border", "zeros"):
            raise UserError(f"padding must be reflection, border or zeros, got {self.padding!r}")
        if self.scale[0] <= 0 or self.scale[1] < self.scale[0]:
            raise UserError(f"scale range must be positive and ordered, got {self.scale!r}")
        if min(self.weights) < 0 or sum(self.weights) <= 0:
            raise UserError(f"weights must be non-negative and not all 0, got {self.weights!r}")


FRID_ADAR = ClassicAugment()
# for whole chest films: anatomy has an up and a down, so small rotations and no up-down flips
CHEST = ClassicAugment(rotate_deg=(-10.0, 10.0), flip_ud=False, weights=(1.0, 3.0, 7.0, 5.0))


def classic_params(b: int, generator: torch.Generator, cfg: ClassicAugment = FRID_ADAR) -> dict[str, torch.Tensor]:
    """Per-sample random parameters: angle (rad), op (0 none, 1 flip, 2 translate, 3 scale),
    flip signs fx, fy (+-1), shift tx, ty (normalised units), zoom s."""
    u = torch.rand(b, 8, generator=generator)
    lo, hi = cfg.rotate_deg
    angle = torch.deg2rad(lo + (hi - lo) * u[:, 0])
    w = torch.tensor(cfg.weights, dtype=torch.float64)
    if not (cfg.flip_lr or cfg.flip_ud):
        w[1] = 0
    cum = torch.cumsum(w / w.sum(), 0)
    op = torch.searchsorted(cum, u[:, 1].double().contiguous(), right=True).clamp(max=3)
    # flip kinds: left-right, up-down or both, among those allowed
    kinds = [(lr, ud) for lr, ud in ((True, False), (False, True), (True, True)) if (cfg.flip_lr or not lr) and (cfg.flip_ud or not ud)]
    kind = (u[:, 2] * len(kinds)).long().clamp(max=max(len(kinds) - 1, 0))
    table = torch.tensor(kinds or [(False, False)], dtype=torch.bool)
    lr, ud = table[kind, 0], table[kind, 1]
    is_flip, is_shift, is_scale = op == 1, op == 2, op == 3
    fx = torch.where(is_flip & lr, -1.0, 1.0)
    fy = torch.where(is_flip & ud, -1.0, 1.0)
    shift = 2 * cfg.max_shift  # image side = 2 normalised units
    tx = torch.where(is_shift, (2 * u[:, 3] - 1) * shift, 0.0)
    ty = torch.where(is_shift, (2 * u[:, 4] - 1) * shift, 0.0)
    s = torch.where(is_scale, cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * u[:, 5], 1.0)
    return {"angle": angle, "op": op, "fx": fx, "fy": fy, "tx": tx, "ty": ty, "s": s}


def apply_params(x: torch.Tensor, p: dict[str, torch.Tensor], padding: str = "reflection") -> torch.Tensor:
    """Warp a float batch [B,C,H,W] with the given parameters (one grid_sample for the batch)."""
    if not torch.is_floating_point(x) or x.ndim != 4:
        raise ValueError(f"augmentation needs a float batch [B,C,H,W], got {x.dtype} {tuple(x.shape)}")
    dev, dt = x.device, x.dtype
    cos, sin = torch.cos(p["angle"]).to(dev, dt), torch.sin(p["angle"]).to(dev, dt)
    fx, fy, s = p["fx"].to(dev, dt), p["fy"].to(dev, dt), p["s"].to(dev, dt)
    # output pixel -> input pixel: flip, then rotate, then zoom (s > 1 shows less tissue), then shift
    theta = torch.stack(
        [
            torch.stack([cos * fx / s, -sin * fy / s, p["tx"].to(dev, dt)], -1),
            torch.stack([sin * fx / s, cos * fy / s, p["ty"].to(dev, dt)], -1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    # bilinear weights sum to 1, so values stay in the input's range (up to rounding)
    return out.clamp(x.amin(), x.amax())


def augment(x: torch.Tensor, generator: torch.Generator, cfg: ClassicAugment = FRID_ADAR) -> torch.Tensor:
    """One classic-augmented copy of each image in a float batch [B,C,H,W]."""
    return apply_params(x, classic_params(x.shape[0], generator, cfg), cfg.padding)


def expand_classic(
    images: torch.Tensor,
    n_out: int,
    generator: torch.Generator,
    cfg: ClassicAugment = FRID_ADAR,
    batch: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """n_out augmented images from a float batch [N,C,H,W], each source used as evenly as possible.

    Returns (augmented [n_out,C,H,W], source index [n_out]) so callers can copy the labels."""
    if n_out < 0:
        raise UserError(f"number of augmented images must be >= 0, got {n_out}")
    n = images.shape[0]
    if n == 0 and n_out > 0:
        raise UserError("cannot augment an empty set of images")
    rounds = math.ceil(n_out / max(n, 1))
    order = [torch.randperm(n, generator=generator) for _ in range(rounds)]
    src = torch.cat(order)[:n_out] if order else torch.zeros(0, dtype=torch.long)
    out = images.new_empty((n_out, *images.shape[1:]))
    for a in range(0, n_out, batch):
        idx = src[a : a + batch]
        out[a : a + len(idx)] = augment(images[idx.to(images.device)], generator, cfg)
    return out, src
