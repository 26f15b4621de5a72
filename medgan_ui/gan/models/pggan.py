"""Progressive GAN family: growth schedule by step, WGAN-GP + drift, class-conditional.

Schedule: with L resolutions (start .. size) there are 2L - 1 equal phases of the run: stable at
the start resolution, then for each new resolution a fade-in (alpha 0 -> 1) and a stable phase;
the last phase also takes the steps left over by the division (or, with `phase_steps` set, every
phase has that length and the final one runs until the end). Level and alpha are plain Python
numbers computed from the step, so no step waits for the device. Real images are average-pooled
to the current resolution and, during a fade-in, blended with their 2x-coarser version the same
way the generator's output is (Karras et al. 2018).
Losses: D = E[D(fake)] - E[D(real)] + gp_lambda * GP + drift * E[D(real)^2] + w * (aux_real + aux_fake);
G = -E[D(fake)] + w * aux_fake. Fakes are made once per step and reused for G's update.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from medgan_ui.gan.base import Batch, LabelSchema
from medgan_ui.gan.config import TrainConfig
from medgan_ui.gan.labels import GeneralEncoder, condition_vector
from medgan_ui.gan.losses import gradient_penalty, masked_bce
from medgan_ui.errors import UserError
from medgan_ui.gan.models.common import GANFamily, WGANSettings, is_pow2, eval_mode, make_adam
from medgan_ui.gan.nets.pggan import PGDiscriminator, PGGenerator, resolutions


@dataclass
class PGGANConfig(WGANSettings):
    """Progressive GAN (Karras 2018; PAPERS.md 3.3), class-conditional on general + detailed labels."""

    nz: int = 128
    z_dist: str = "normal"
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)  # Karras
    drift: float = 0.001
    aux_weight: float = 1.0  # auxiliary multi-label head in D, on top of the projection term
    start_size: int = 4
    phase_steps: int = 0  # steps per growth phase (fade-in or stable); 0 = split `steps` evenly
    fmap_base: int = 8192  # channels at resolution r: min(fmap_base / r * 2, fmap_max) as in Karras
    fmap_max: int = 512
    mbstd_group: int = 4


class PGGAN(GANFamily):
    kind = "pggan"
    Config = PGGANConfig
    help = "Progressive GAN: grows from 4x4 to full size, conditional on all labels."
    presets = {
        "paper": {"train": {"batch_size": 32, "steps": 45_000}, "model": {}},
        "fast-cpu": {"train": {}, "model": {"fmap_base": 512, "fmap_max": 64}},
        "tiny": {"train": {}, "model": {"fmap_base": 64, "fmap_max": 16, "nz": 16}},
    }
    zero_ok = ("phase_steps",)  # 0 = split the steps evenly over the growth phases

    @classmethod
    def check_config(cls, train: TrainConfig, model: PGGANConfig) -> None:
        super().check_config(train, model)
        s = int(train.image_size)
        if not (is_pow2(model.start_size) and 4 <= model.start_size <= s):
            raise UserError(f"start_size must be a power of two between 4 and image_size {s} (got {model.start_size})")
        n_phases = 2 * (s.bit_length() - model.start_size.bit_length()) + 1
        if model.phase_steps < 0:
            raise UserError(f"phase_steps must be 0 (split steps evenly) or positive (got {model.phase_steps})")
        if train.steps < n_phases and model.phase_steps == 0:
            raise UserError(f"PGGAN from {model.start_size} to {s} has {n_phases} growth phases; steps must be >= {n_phases}")

    def __init__(self, cfg: PGGANConfig, train_cfg: TrainConfig, schema: LabelSchema, device: torch.device) -> None:
        super().__init__(cfg, train_cfg, schema, device)
        self.genc = GeneralEncoder(schema, self.device)
        self.n_cond = len(schema.findings) + self.genc.dim
        s, w = self.image_size, dict(start=cfg.start_size, fmap_base=cfg.fmap_base, fmap_max=cfg.fmap_max)
        self.res = resolutions(cfg.start_size, s)
        self.add_generator("g", PGGenerator(cfg.nz, self.n_cond, s, **w))
        self.add_net("d", PGDiscriminator(self.n_cond, s, mbstd_group=cfg.mbstd_group, **w))
        self.optimizers["g"] = make_adam(self.nets["g"].parameters(), cfg.lr_g, cfg.betas, self.device)
        self.optimizers["d"] = make_adam(self.nets["d"].parameters(), cfg.lr_d, cfg.betas, self.device)
        self.n_phases = 2 * len(self.res) - 1
        self.phase_len = cfg.phase_steps or max(1, self.total_steps // self.n_phases)
        self.level, self.alpha = 0, 1.0
        self.stage = self.res[0]

    def schedule(self, step: int) -> tuple[int, float]:
        """(level, alpha) for the 0-based step index."""
        phase = min(step // self.phase_len, self.n_phases - 1)
        level = (phase + 1) // 2
        if phase % 2 == 1:  # fade-in phase
            return level, min(1.0, (step - phase * self.phase_len) / self.phase_len)
        return level, 1.0

    def _set_step(self, step: int) -> None:
        self.level, self.alpha = self.schedule(step)
        self.stage = self.res[self.level]

    def real_at_level(self, x: torch.Tensor) -> torch.Tensor:
        res = self.res[self.level]
        if x.shape[-1] != res:
            x = F.avg_pool2d(x, x.shape[-1] // res)
        if self.level > 0 and self.alpha < 1.0:
            coarse = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2.0, mode="nearest")
            x = coarse + self.alpha * (x - coarse)
        return x

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        cfg, aug = self.cfg, self.augment
        self._set_step(step)
        level, alpha = self.level, self.alpha
        g, d = self.nets["g"], self.nets["d"]
        g.train()
        d.train()
        y, mask = condition_vector(self.genc, batch.general, batch.detailed, self.device)
        real = self.real_at_level(batch.images.float())
        update_g = self.generator_turn(step)
        z = self.noise(real.shape[0])
        if update_g:
            fake = g(z, y, level, alpha)
        else:
            with torch.no_grad():
                fake = g(z, y, level, alpha)
        xr, xf = aug(real), aug(fake.detach())
        d_real, c_real = d(xr, level, alpha, y)
        d_fake, c_fake = d(xf, level, alpha, y)
        gp = gradient_penalty(lambda t: d(t, level, alpha, y)[0], xr, xf)
        mean_real, mean_fake = d_real.float().mean(), d_fake.float().mean()
        drift = d_real.float().pow(2).mean()
        aux_d = cfg.aux_weight * (masked_bce(c_real, y, mask) + masked_bce(c_fake, y, mask))
        loss_d = -(mean_real - mean_fake) + cfg.gp_lambda * gp + cfg.drift * drift + aux_d
        self.optimise("d", loss_d)
        aug.observe(d_real, d_fake.detach().float().mean())
        out = {"loss_d": loss_d.detach(), "d_real": mean_real.detach(), "d_fake": mean_fake.detach(),
               "gp": gp.detach(), "d_aux": aux_d.detach(),
               "alpha": torch.full((), alpha, device=self.device)}
        if aug.enabled:
            out["aug_p"] = aug.p.detach().clone()
        if update_g:
            self.set_requires_grad(d, False)
            d_g, c_g = d(aug(fake), level, alpha, y)
            aux_g = cfg.aux_weight * masked_bce(c_g, y, mask)
            loss_g = -d_g.float().mean() + aux_g
            self.optimise("g", loss_g)
            self.set_requires_grad(d, True)
            out.update(loss_g=loss_g.detach(), g_aux=aux_g.detach())
        return out

    def generate(self, z: torch.Tensor, general: torch.Tensor, detailed: torch.Tensor, ema: bool = True) -> dict[str, torch.Tensor]:
        """Images at the current resolution, nearest-upscaled to image_size, clamped to [-1, 1]."""
        y, _ = condition_vector(self.genc, general, detailed, self.device)
        g = self.gen_net("g", ema)
        with eval_mode(g):
            x = g(z.to(self.device), y, self.level, self.alpha).float()
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="nearest")
        return {"images": x.clamp(-1.0, 1.0)}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "level": self.level, "alpha": float(self.alpha), "phase_len": self.phase_len}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.phase_len = int(state.get("phase_len", self.phase_len))
        self.level = int(state.get("level", self.level))
        self.alpha = float(state.get("alpha", self.alpha))
        self.stage = self.res[self.level]
