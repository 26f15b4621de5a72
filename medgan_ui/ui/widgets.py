"""Small shared pieces: crisp image grids with captions, and the label text under each image."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

DISPLAY_PX = 192  # small images are upscaled with nearest-neighbour so 64x64 pixels stay crisp


def upscale(img: np.ndarray, px: int = DISPLAY_PX) -> Image.Image:
    """uint8 [H,W] -> PIL grayscale, enlarged by a whole factor (no smoothing: pixels stay square)."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    factor = max(1, px // max(arr.shape[:2]))
    pil = Image.fromarray(arr, mode="L")
    return pil.resize((arr.shape[1] * factor, arr.shape[0] * factor), Image.Resampling.NEAREST) if factor > 1 else pil


def gallery_items(images: Sequence[np.ndarray] | np.ndarray, captions: Sequence[str], px: int = DISPLAY_PX) -> list[tuple[Image.Image, str]]:
    """What gr.Gallery takes: (image, caption) pairs."""
    return [(upscale(np.asarray(img), px), cap) for img, cap in zip(images, captions)]


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 2) -> np.ndarray:
    """Two same-size images next to each other with a thin white gap (GDGAN stage 1 -> stage 2)."""
    left, right = np.asarray(left), np.asarray(right)
    if left.shape != right.shape:  # stage 1 may be smaller: repeat its pixels up to stage-2 size
        f = max(1, right.shape[0] // left.shape[0])
        left = np.kron(left, np.ones((f, f), dtype=np.uint8))[: right.shape[0], : right.shape[1]]
    sep = np.full((right.shape[0], gap), 255, dtype=np.uint8)
    return np.concatenate([left, sep, right], axis=1)


def label_caption(general: dict[str, str | None], findings: Sequence[str]) -> str:
    """'F · AP · Cardiomegaly' (unknown general values are left out)."""
    parts = [v for v in general.values() if v]
    parts.append(", ".join(findings) if findings else "No Finding")
    return " · ".join(parts)


def tile(images: np.ndarray, cols: int = 8, pad: int = 2) -> np.ndarray:
    """uint8 [n,H,W] -> one uint8 grid image with white gaps."""
    n, h, w = images.shape
    rows = (n + cols - 1) // cols
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[i]
    return out
