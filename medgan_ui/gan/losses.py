"""Loss pieces shared by the model families (WGAN-GP, masked multi-label BCE, drift)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani Alg. 1): mean over the batch of (||grad_xhat D(xhat)||_2 - 1)^2, with
    xhat = eps*real + (1-eps)*fake, eps ~ U[0,1] per sample."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    xhat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    out = critic(xhat)
    (grad,) = torch.autograd.grad(out.sum(), xhat, create_graph=True)
    norm = grad.float().flatten(1).norm(2, dim=1)
    return ((norm - 1.0) ** 2).mean()


def masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """BCE-with-logits averaged over the known entries (all entries when mask is None)."""
    if logits.shape[1] == 0:
        return logits.float().sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    if mask is None:
        return loss.mean()
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def nonsat_d(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN discriminator loss on logits: BCE(real -> 1) + BCE(fake -> 0)."""
    return F.softplus(-d_real.float()).mean() + F.softplus(d_fake.float()).mean()


def nonsat_g(d_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: BCE(fake -> 1)."""
    return F.softplus(-d_fake.float()).mean()
