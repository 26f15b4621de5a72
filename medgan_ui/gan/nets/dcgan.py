"""DCGAN networks after Frid-Adar et al. 2.4 (also the base of the ACGAN baseline, 2.5).

G: z (+ condition vector) -> FC -> 4x4x(g_base * 2^(n-1)) -> n transposed convs 5x5 stride 2 with
BN + ReLU (none on the output) -> tanh, n = log2(size / 4); at 64x64 that is 4x4x1024 -> 8x8x512 ->
16x16x256 -> 32x32x128 -> 64x64x1 as in the paper's Fig. 5.
D: n strided 5x5 convs (64 -> 32 -> 16 -> 8 -> 4 at 64x64, widths d_base * 2^i = Radford's
64/128/256/512), BN on all but the input layer, LeakyReLU 0.2, then FC -> one logit (the sigmoid
lives in the loss) and, for ACGAN, an auxiliary FC head.
Weights ~ N(0, init_std) (0.02 in the paper); BN scales ~ N(1, init_std), shifts 0 (Radford).
"""
from __future__ import annotations

import torch
import torch.nn as nn


def normal_init(module: nn.Module, std: float) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def n_levels(size: int) -> int:
    return size.bit_length() - 3  # log2(size) - 2 stride-2 layers between 4x4 and size


class DCGenerator(nn.Module):
    def __init__(self, nz: int, n_cond: int, size: int, g_base: int = 128, init_std: float = 0.02) -> None:
        super().__init__()
        n = n_levels(size)
        self.c0 = g_base * 2 ** (n - 1)
        self.fc = nn.Sequential(nn.Linear(nz + n_cond, self.c0 * 16), nn.BatchNorm1d(self.c0 * 16), nn.ReLU(True))
        layers: list[nn.Module] = []
        c = self.c0
        for i in range(n):
            last = i == n - 1
            out = 1 if last else c // 2
            # padding 2 + output_padding 1 doubles the size with a 5x5 kernel ("same" in TF terms)
            layers.append(nn.ConvTranspose2d(c, out, 5, 2, 2, output_padding=1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out), nn.ReLU(True)]
            c = out
        self.deconv = nn.Sequential(*layers)
        normal_init(self, init_std)

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = z if cond is None or cond.shape[1] == 0 else torch.cat([z, cond.to(z.dtype)], dim=1)
        return self.deconv(self.fc(h).reshape(-1, self.c0, 4, 4))


class DCDiscriminator(nn.Module):
    """Returns (logit [B], aux logits [B, n_aux]); n_aux = 0 for plain DCGAN."""

    def __init__(self, size: int, d_base: int = 64, n_aux: int = 0, init_std: float = 0.02) -> None:
        super().__init__()
        n = n_levels(size)
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(n):
            c = d_base * 2 ** i
            layers.append(nn.Conv2d(c_in, c, 5, 2, 2, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, True))
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in * 16, 1)
        self.aux = nn.Linear(c_in * 16, n_aux) if n_aux > 0 else None
        normal_init(self, init_std)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x).flatten(1)
        d = self.fc(h).flatten()
        c = self.aux(h) if self.aux is not None else h.new_zeros((h.shape[0], 0))
        return d, c
