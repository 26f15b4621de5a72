"""Limited-data augmentation for the discriminator: DiffAugment and ADA-style adaptive strength.

DiffAugment (Zhao et al. 2020) applies the same family of differentiable transforms to real AND fake
images right before D, so G still gets gradients and D cannot memorise the few real images. For
grayscale we use brightness + contrast (no saturation), translation (1/8 of the size, zero-padded
with the mid value) and cutout (a square of half the size set to the mid value).

ADA-style (Karras et al. 2020): the same transforms, each applied per image with probability p; p is
nudged every few steps by the sign of (r_t - target), r_t = E[sign(D(real) - centre)] where the
centre is 0 for logits and the batch mean of D(fake) for WGAN critics (whose output has no fixed
zero). p stays on the device as a 0-d tensor so no step needs a host sync; extra_state saves it.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

ADA_INTERVAL = 4  # steps between p updates (Karras: 4)
ADA_SPEED_IMAGES = 100_000  # images for p to move 0 -> 1 (Karras: 500k; our runs are much shorter)


class Augmenter:
    def __init__(self, mode: str, target: float, device: torch.device, value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        if mode not in ("none", "diffaug", "ada"):
            raise ValueError(f"augment mode {mode!r}")
        self.mode = mode
        self.target = float(target)
        self.lo, self.hi = value_range
        self.p = torch.tensor(1.0 if mode == "diffaug" else 0.0, device=device)
        self._acc = torch.zeros((), device=device)
        self._count = 0
        self._images = 0

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return x
        return diff_augment(x, self.p, self.lo, self.hi)

    def observe(self, d_real: torch.Tensor, centre: torch.Tensor | float = 0.0) -> None:
        """Feed D's output on real images (after each D step); only ADA uses it."""
        if self.mode != "ada":
            return
        self._acc = self._acc + torch.sign(d_real.detach().float().flatten() - centre).mean()
        self._count += 1
        self._images += int(d_real.shape[0])
        if self._count >= ADA_INTERVAL:
            rt = self._acc / self._count
            step = self._images / ADA_SPEED_IMAGES
            self.p = (self.p + torch.sign(rt - self.target) * step).clamp(0.0, 1.0)
            self._acc = torch.zeros_like(self._acc)
            self._count = 0
            self._images = 0

    def state_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "p": self.p.detach().cpu(), "acc": self._acc.detach().cpu(),
                "count": self._count, "images": self._images}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        dev = self.p.device
        self.p = torch.as_tensor(state["p"], dtype=torch.float32).to(dev).reshape(())
        self._acc = torch.as_tensor(state.get("acc", 0.0), dtype=torch.float32).to(dev).reshape(())
        self._count = int(state.get("count", 0))
        self._images = int(state.get("images", 0))


def diff_augment(x: torch.Tensor, p: torch.Tensor, lo: float = -1.0, hi: float = 1.0) -> torch.Tensor:
    """Brightness, contrast, translation, cutout; each applied per image with probability p
    (p = 1 is plain DiffAugment). Differentiable in x."""
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    half, mid = (hi - lo) / 2.0, (hi + lo) / 2.0

    def on() -> torch.Tensor:  # per-image 0/1 gate
        return (torch.rand(b, 1, 1, 1, device=dev) < p).to(dt)

    # brightness: shift by U[-0.5, 0.5] of the half range
    x = x + (torch.rand(b, 1, 1, 1, device=dev, dtype=dt) - 0.5) * half * on()
    # contrast: scale around the image mean by U[0.5, 1.5]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = x + (x - mean) * ((torch.rand(b, 1, 1, 1, device=dev, dtype=dt) - 0.5) * on())  # exact no-op when off
    # translation by up to 1/8 of the size, padded with the mid value
    sh, sw = max(1, h // 8), max(1, w // 8)
    gate = on().reshape(b, 1, 1).long()
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), device=dev) * gate
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), device=dev) * gate
    gy, gx = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    gy = (gy.unsqueeze(0) + ty + sh).clamp(0, h + 2 * sh - 1)
    gx = (gx.unsqueeze(0) + tx + sw).clamp(0, w + 2 * sw - 1)
    padded = F.pad(x, [sw, sw, sh, sh], value=mid)
    bi = torch.arange(b, device=dev).reshape(b, 1, 1)
    x = padded.permute(0, 2, 3, 1)[bi, gy, gx].permute(0, 3, 1, 2)
    # cutout: a half-size square at a random place set to the mid value
    ch, cw = max(1, h // 2), max(1, w // 2)
    oy = torch.randint(0, h + 1, (b, 1, 1), device=dev) - ch // 2  # top-left; may hang over the edge
    ox = torch.randint(0, w + 1, (b, 1, 1), device=dev) - cw // 2
    yy, xx = torch.arange(h, device=dev).reshape(1, h, 1), torch.arange(w, device=dev).reshape(1, 1, w)
    inside = (yy >= oy) & (yy < oy + ch) & (xx >= ox) & (xx < ox + cw)
    cut = inside.unsqueeze(1).to(dt) * on()
    x = x * (1.0 - cut) + mid * cut
    return x.contiguous()
