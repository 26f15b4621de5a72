"""GDGAN networks as in the official code (PAPERS.md 1.3): MLP-conv nets, s = image size (s % 4 == 0).

Pixel range: the reference trains on images in [0, 1] with a Sigmoid generator output, and its
critic, gradient penalty and MSE term all live in that range. These nets keep exactly that; the
GDGAN model family maps the engine's [-1, 1] batches to [0, 1] on the way in and back on the way
out, so losses and their weights mean what they mean in the reference.
Layers use .flatten/.reshape (never .view) so channels_last inputs work.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def xavier_init(module: nn.Module) -> None:
    """Reference init: Xavier-uniform for Linear/Conv/ConvT weights, zero biases; BN keeps defaults."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _decoder(ch1: int, ch2: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(ch2, ch1, 4, 2, 1), nn.BatchNorm2d(ch1), nn.ReLU(True),
        nn.ConvTranspose2d(ch1, 1, 4, 2, 1), nn.Sigmoid(),
    )


def _encoder(ch1: int, ch2: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, ch1, 4, 2, 1), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ch1, ch2, 4, 2, 1), nn.BatchNorm2d(ch2), nn.LeakyReLU(0.2, True),
    )


class Generator1(nn.Module):
    """G1(z, y1): concat -> FC 1024 -> FC ch2*(s/4)^2 -> 2 transposed convs -> [B,1,s,s] in [0,1]."""

    def __init__(self, nz: int, n_general: int, size: int, fc_hidden: int = 1024, ch1: int = 64, ch2: int = 128) -> None:
        super().__init__()
        self.ch2, self.s4 = ch2, size // 4
        self.fc = nn.Sequential(
            nn.Linear(nz + n_general, fc_hidden), nn.BatchNorm1d(fc_hidden), nn.ReLU(True),
            nn.Linear(fc_hidden, ch2 * self.s4 ** 2), nn.BatchNorm1d(ch2 * self.s4 ** 2), nn.ReLU(True),
        )
        self.deconv = _decoder(ch1, ch2)
        xavier_init(self)

    def forward(self, z: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, y1.to(z.dtype)], dim=1))
        return self.deconv(h.reshape(-1, self.ch2, self.s4, self.s4))


class Generator2(nn.Module):
    """G2(x1, y2): image-to-image. Conv encoder -> concat y2 -> FC 1024 -> FC -> decoder, in [0,1]."""

    def __init__(self, n_detailed: int, size: int, fc_hidden: int = 1024, ch1: int = 64, ch2: int = 128) -> None:
        super().__init__()
        self.ch2, self.s4 = ch2, size // 4
        flat = ch2 * self.s4 ** 2
        self.enc = _encoder(ch1, ch2)
        self.fc = nn.Sequential(
            nn.Linear(flat + n_detailed, fc_hidden), nn.BatchNorm1d(fc_hidden), nn.ReLU(True),
            nn.Linear(fc_hidden, flat), nn.BatchNorm1d(flat), nn.ReLU(True),
        )
        self.deconv = _decoder(ch1, ch2)
        xavier_init(self)

    def forward(self, x1: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
        h = self.enc(x1).flatten(1)
        h = self.fc(torch.cat([h, y2.to(h.dtype)], dim=1))
        return self.deconv(h.reshape(-1, self.ch2, self.s4, self.s4))


class Critic(nn.Module):
    """D1 / D2: conv encoder -> FC 1024 -> (critic [B], aux logits [B, n_aux]).

    `sigmoid=True` reproduces the reference's Sigmoid on the critic head (see models.gdgan.GDGANConfig.critic_sigmoid
    for why it is off by default).
    """

    def __init__(self, n_aux: int, size: int, fc_hidden: int = 1024, ch1: int = 64, ch2: int = 128,
                 sigmoid: bool = False) -> None:
        super().__init__()
        s4 = size // 4
        self.enc = _encoder(ch1, ch2)
        self.fc = nn.Sequential(nn.Linear(ch2 * s4 * s4, fc_hidden), nn.BatchNorm1d(fc_hidden), nn.LeakyReLU(0.2, True))
        self.critic = nn.Linear(fc_hidden, 1)
        self.aux = nn.Linear(fc_hidden, n_aux)
        self.sigmoid = sigmoid
        xavier_init(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(self.enc(x).flatten(1))
        d = self.critic(h).flatten()
        if self.sigmoid:
            d = torch.sigmoid(d)
        return d, self.aux(h)
