"""ACGAN baseline (Odena et al.; Frid-Adar 2.5; PAPERS.md 5.3) on the DCGAN nets.

One conditional G for all classes. The condition is the multi-hot findings vector (plus the
encoded general labels when `use_general`), concatenated to z (Frid-Adar add a class embedding to
the noise; with multi-hot findings a concatenation is the natural equivalent). D has a real/fake
logit and an auxiliary head; since findings are multi-hot, the class term is multi-label BCE
instead of Odena's softmax cross-entropy. Losses (non-saturating form):
  D: BCE(real -> 1) + BCE(fake -> 0) + w * (aux(real) + aux(fake))
  G: BCE(fake -> 1) + w * aux(fake)
Fakes are conditioned on the real batch's labels (as GDGAN's stage 1), made once per step and
reused for G's update after D's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from medgan_ui.gan.base import Batch, LabelSchema
from medgan_ui.gan.config import TrainConfig
from medgan_ui.gan.labels import GeneralEncoder, condition_vector
from medgan_ui.gan.losses import masked_bce, nonsat_d, nonsat_g
from medgan_ui.gan.models.common import GANFamily, GANSettings, eval_mode, make_adam
from medgan_ui.gan.nets.dcgan import DCDiscriminator, DCGenerator


@dataclass
class ACGANConfig(GANSettings):
    """ACGAN (Odena; Frid-Adar 2.5): DCGAN nets + auxiliary multi-label head on the findings."""

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    aux_weight: float = 1.0
    use_general: bool = False  # also condition on (and classify) the general labels
    g_base: int = 128  # channels of the last hidden G layer; doubles towards 4x4 (64x64: 1024 at 4x4)
    d_base: int = 64  # Radford's 64/128/256/512
    init_std: float = 0.02


class ACGAN(GANFamily):
    kind = "acgan"
    Config = ACGANConfig
    help = "ACGAN: one conditional GAN with an auxiliary finding classifier (Frid-Adar)."
    presets = {
        "paper": {"train": {"batch_size": 64, "steps": 20_000}, "model": {}},
        "fast-cpu": {"train": {}, "model": {"g_base": 32, "d_base": 16, "lr_g": 2e-4, "lr_d": 2e-4}},
        "tiny": {"train": {}, "model": {"g_base": 8, "d_base": 4, "nz": 16}},
    }

    def __init__(self, cfg: ACGANConfig, train_cfg: TrainConfig, schema: LabelSchema, device: torch.device) -> None:
        super().__init__(cfg, train_cfg, schema, device)
        self.genc = GeneralEncoder(schema, self.device) if cfg.use_general else None
        self.n_cond = len(schema.findings) + (self.genc.dim if self.genc else 0)
        s = self.image_size
        self.add_generator("g", DCGenerator(cfg.nz, self.n_cond, s, cfg.g_base, cfg.init_std))
        self.add_net("d", DCDiscriminator(s, cfg.d_base, self.n_cond, cfg.init_std))
        self.optimizers["g"] = make_adam(self.nets["g"].parameters(), cfg.lr_g, cfg.betas, self.device)
        self.optimizers["d"] = make_adam(self.nets["d"].parameters(), cfg.lr_d, cfg.betas, self.device)

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        cfg, aug = self.cfg, self.augment
        g, d = self.nets["g"], self.nets["d"]
        g.train()
        d.train()
        real = batch.images
        y, mask = condition_vector(self.genc, batch.general, batch.detailed, self.device)
        fake = g(self.noise(real.shape[0]), y)
        d_real, c_real = d(aug(real))
        d_fake, c_fake = d(aug(fake.detach()))
        adv_d = nonsat_d(d_real, d_fake)
        aux_d = cfg.aux_weight * (masked_bce(c_real, y, mask) + masked_bce(c_fake, y, mask))
        loss_d = adv_d + aux_d
        self.optimise("d", loss_d)
        aug.observe(d_real)
        self.set_requires_grad(d, False)
        d_g, c_g = d(aug(fake))
        aux_g = cfg.aux_weight * masked_bce(c_g, y, mask)
        loss_g = nonsat_g(d_g) + aux_g
        self.optimise("g", loss_g)
        self.set_requires_grad(d, True)
        out = {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "d_aux": aux_d.detach(), "g_aux": aux_g.detach(),
               "d_real": d_real.detach().float().mean(), "d_fake": d_fake.detach().float().mean()}
        if aug.enabled:
            out["aug_p"] = aug.p.detach().clone()
        return out

    def generate(self, z: torch.Tensor, general: torch.Tensor, detailed: torch.Tensor, ema: bool = True) -> dict[str, torch.Tensor]:
        y, _ = condition_vector(self.genc, general, detailed, self.device)
        g = self.gen_net("g", ema)
        with eval_mode(g):
            return {"images": g(z.to(self.device), y)}
