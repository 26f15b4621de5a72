"""Progressive GAN networks (Karras et al. 2018; PAPERS.md 3.3), class-conditional.

Growth start -> 2*start -> ... -> size; `level` counts doublings done, and `alpha` in [0, 1] fades
the newest block in (alpha = 1: fully grown). Equalised learning rate (weights ~ N(0, 1) scaled at
run time by He's constant), pixel norm after every G conv, minibatch stddev before D's last block.
Conditioning: the label vector (multi-hot findings + encoded general labels) is embedded and
concatenated to z in G; D adds a projection term <embed(y), features> (Miyato & Koyama 2018) to its
score and has an auxiliary multi-label head. Outputs are linear (no tanh), as in Karras.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class EqualLinear(nn.Module):
    def __init__(self, n_in: int, n_out: int, bias: bool = True, gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None
        self.scale = gain / math.sqrt(max(1, n_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class EqualConv2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, gain: float = math.sqrt(2)) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = gain / math.sqrt(c_in * k * k)
        self.pad = k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.pad)


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def minibatch_stddev(x: torch.Tensor, group: int) -> torch.Tensor:
    """Append one feature map: the mean over features of the stddev within groups of images."""
    b, c, h, w = x.shape
    g = max(d for d in range(1, min(group, b) + 1) if b % d == 0)
    y = x.float().reshape(g, -1, c, h, w)
    y = (y - y.mean(dim=0)).pow(2).mean(dim=0).add(1e-8).sqrt().mean(dim=(1, 2, 3))  # [b // g]
    y = y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y.to(x.dtype)], dim=1)


def channels(res: int, fmap_base: int, fmap_max: int) -> int:
    return max(1, min(fmap_base * 2 // res, fmap_max))


def resolutions(start: int, size: int) -> list[int]:
    out = [start]
    while out[-1] < size:
        out.append(out[-1] * 2)
    return out


class PGGenerator(nn.Module):
    def __init__(self, nz: int, n_cond: int, size: int, start: int = 4, fmap_base: int = 8192, fmap_max: int = 512) -> None:
        super().__init__()
        self.res = resolutions(start, size)
        ch = [channels(r, fmap_base, fmap_max) for r in self.res]
        self.start, self.c0 = start, ch[0]
        self.embed = EqualLinear(n_cond, nz, gain=1.0) if n_cond > 0 else None
        n_in = nz * 2 if n_cond > 0 else nz
        self.input = EqualLinear(n_in, ch[0] * start * start, gain=math.sqrt(2) / 4)
        self.input_conv = EqualConv2d(ch[0], ch[0], 3)
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualConv2d(ch[i - 1], ch[i], 3), EqualConv2d(ch[i], ch[i], 3)]) for i in range(1, len(ch)))
        self.to_rgb = nn.ModuleList(EqualConv2d(c, 1, 1, gain=1.0) for c in ch)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None, level: int, alpha: float = 1.0) -> torch.Tensor:
        x = pixel_norm(z)
        if self.embed is not None:
            x = torch.cat([x, pixel_norm(self.embed(cond.to(z.dtype)))], dim=1)
        h = pixel_norm(lrelu(self.input(x).reshape(-1, self.c0, self.start, self.start)))
        h = pixel_norm(lrelu(self.input_conv(h)))
        prev = h
        for i in range(level):
            prev = h
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            for conv in self.blocks[i]:
                h = pixel_norm(lrelu(conv(h)))
        out = self.to_rgb[level](h)
        if level > 0 and alpha < 1.0:
            skip = F.interpolate(self.to_rgb[level - 1](prev), scale_factor=2.0, mode="nearest")
            out = skip + alpha * (out - skip)
        return out


class PGDiscriminator(nn.Module):
    """Returns (score [B], aux logits [B, n_cond])."""

    def __init__(self, n_cond: int, size: int, start: int = 4, fmap_base: int = 8192, fmap_max: int = 512,
                 mbstd_group: int = 4) -> None:
        super().__init__()
        self.res = resolutions(start, size)
        ch = [channels(r, fmap_base, fmap_max) for r in self.res]
        self.mbstd_group = mbstd_group
        self.from_rgb = nn.ModuleList(EqualConv2d(1, c, 1) for c in ch)
        # blocks[i-1] takes resolution res[i] down to res[i-1]
        self.blocks = nn.ModuleList(
            nn.ModuleList([EqualConv2d(ch[i], ch[i], 3), EqualConv2d(ch[i], ch[i - 1], 3)]) for i in range(1, len(ch)))
        c0 = ch[0]
        self.final_conv = EqualConv2d(c0 + 1, c0, 3)
        self.final_fc = EqualLinear(c0 * start * start, c0)
        self.out = EqualLinear(c0, 1, gain=1.0)
        self.project = EqualLinear(n_cond, c0, bias=False, gain=1.0) if n_cond > 0 else None
        self.aux = EqualLinear(c0, n_cond, gain=1.0) if n_cond > 0 else None

    def _block(self, i: int, h: torch.Tensor) -> torch.Tensor:
        for conv in self.blocks[i - 1]:
            h = lrelu(conv(h))
        return F.avg_pool2d(h, 2)

    def forward(self, x: torch.Tensor, level: int, alpha: float = 1.0,
                cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = lrelu(self.from_rgb[level](x))
        if level > 0:
            h = self._block(level, h)
            if alpha < 1.0:
                skip = lrelu(self.from_rgb[level - 1](F.avg_pool2d(x, 2)))
                h = skip + alpha * (h - skip)
            for i in range(level - 1, 0, -1):
                h = self._block(i, h)
        h = lrelu(self.final_conv(minibatch_stddev(h, self.mbstd_group)))
        feat = lrelu(self.final_fc(h.flatten(1)))
        score = self.out(feat).flatten()
        if self.project is None or cond is None:
            return score, feat.new_zeros((feat.shape[0], 0))
        score = score + (self.project(cond.to(feat.dtype)) * feat).sum(dim=1)
        return score, self.aux(feat)
