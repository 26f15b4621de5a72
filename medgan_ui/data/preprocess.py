"""Any image -> grayscale uint8 square of a chosen size (area/antialiased resize, crop or pad)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from medgan_ui.errors import UserError

MIN_SIZE, MAX_SIZE = 16, 256
FITS = ("crop", "pad")


def check_size(size: int, fit: str = "crop") -> None:
    if not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise UserError(f"image size must be a whole number from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    if fit not in FITS:
        raise UserError(f"fit must be one of {FITS}, got {fit!r}")


def to_gray_array(img: Image.Image) -> np.ndarray:
    """float32 gray in [0, 1] from any PIL mode (16-bit, RGBA on black, palette, CMYK...)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        return np.clip(arr / hi, 0, 1).astype(np.float32)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # composite on black: transparent pixels carry no signal in a radiograph
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def square(arr: np.ndarray, fit: str) -> np.ndarray:
    """Centre crop to the short side, or pad (with the border median) to the long side."""
    h, w = arr.shape
    if h == w:
        return arr
    if fit == "crop":
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        return arr[top : top + s, left : left + s]
    s = max(h, w)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    out = np.full((s, s), np.median(border), dtype=arr.dtype)
    top, left = (s - h) // 2, (s - w) // 2
    out[top : top + h, left : left + w] = arr
    return out


def resize_gray(arr: np.ndarray, size: int) -> np.ndarray:
    """Antialiased resize of a float [0,1] square array; returns uint8."""
    if arr.shape[0] != size:
        # PIL's 'F' mode keeps full precision; BOX is area averaging when shrinking
        resample = Image.Resampling.BOX if arr.shape[0] > size else Image.Resampling.BICUBIC
        arr = np.asarray(Image.fromarray(arr.astype(np.float32), mode="F").resize((size, size), resample))
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)


def prepare(img: Image.Image, size: int = 64, fit: str = "crop") -> np.ndarray:
    """PIL image of any mode and size -> uint8 [size, size]."""
    if img.width == 0 or img.height == 0:
        raise ValueError("image has zero width or height")
    if max(img.width, img.height) > 2 * size:
        # decode-time downscale (JPEG draft) or a cheap pre-shrink keeps 4000x4000 inputs fast
        img.draft("L", (size * 2, size * 2))
    return resize_gray(square(to_gray_array(img), fit), size)


def prepare_array(arr: np.ndarray, size: int = 64, fit: str = "crop") -> np.ndarray:
    """float or int array already in display range [0,1] (or uint8) -> uint8 [size, size]."""
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    return resize_gray(square(a.astype(np.float32), fit), size)
