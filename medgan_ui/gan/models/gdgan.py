"""GDGAN (PAPERS.md 1.3-1.5): stage 1 trains G1/D1 on general labels, stage 2 trains G2/D2 on
detailed labels with G1 and D1 frozen (eval mode, no gradients to their weights).

Each step does its work once (`reuse_fakes=True`, the default): the generator output made for the
critic step is detached for the critic's loss and then reused, after the critic update, for the
generator's loss; during the generator update the critic's weights do not collect gradients. The
reference loop (`reuse_fakes=False`) runs the generator again with the same z and lets the critic
loss backpropagate into G; it is kept so a benchmark can time both on the same nets. Both give the
same losses and weights (same seed, critic_batch="separate"), except that the reference way updates
G's BatchNorm running statistics twice per step (they only matter in eval mode, i.e. for sampling).
With critic_batch="joint" (the default) the critic sees real and fake as one batch in both updates;
the reference way always passes them separately.

Pixel range: the nets work in [0, 1] like the reference (see nets/gdgan.py); batches arrive in
[-1, 1] and samples leave in [-1, 1].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from medgan_ui.errors import UserError
from medgan_ui.gan.base import Batch, LabelSchema
from medgan_ui.gan.config import TrainConfig
from medgan_ui.gan.labels import GeneralEncoder, cyclic_codes
from medgan_ui.gan.losses import gradient_penalty, masked_bce
from medgan_ui.gan.models.common import GANFamily, WGANSettings, eval_mode, make_adam
from medgan_ui.gan.nets.gdgan import Critic, Generator1, Generator2


@dataclass
class GDGANConfig(WGANSettings):
    """GDGAN (PAPERS.md 1.3-1.5); defaults are the official code's settings."""

    nz: int = 128
    z_dist: str = "uniform"  # torch.rand in the reference
    # The nine loss weights (reference names: lambda_G1_1, lambda_D1_1, lambda_D1_2, lambda_G2_1,
    # lambda_G2_2, lambda_G2_3, lambda_D2_1, lambda_D2_2, lambda_D2_3).
    g1_aux: float = 1.0
    d1_aux_fake: float = 1.0
    d1_aux_real: float = 1.0
    g2_aux: float = 1.0
    g2_general: float = 1.0
    g2_mse: float = 1.0
    d2_aux_fake: float = 1.0
    d2_aux_real: float = 1.0
    d2_general: float = 1.0  # touches no trainable parameter in the reference (D1 frozen): logged only
    mse_loss: bool = True  # the reference's --mse_loss flag, on by default here
    # A sigmoid bounds the WGAN critic's output: the Wasserstein estimate -E[D(real)] + E[D(fake)]
    # then saturates, the gradient penalty's 1-Lipschitz target no longer describes the critic the loss
    # uses, and gradients to G vanish where the sigmoid is flat. The reference code has it, so it stays
    # available for a faithful reproduction, but it is off by default.
    critic_sigmoid: bool = False
    # "joint": real and fake go through the critic as one batch, so its BatchNorm layers share
    # statistics. The reference passes them separately ("separate"); each BN then normalises away
    # whatever is constant across a batch, so the critic cannot see batch-wide differences such as
    # overall brightness or the presence of lungs, and G learns slowly (on the phantom: noise after
    # 300 steps with "separate", lung fields with "joint"). It is also one pass instead of two.
    critic_batch: str = "joint"
    stage1_fraction: float = 0.5  # share of TrainConfig.steps spent in stage 1 (reference: 20 + 20 epochs)
    stage2_general: str = "batch"  # y1 for G1 in stage 2: "batch" (real batch) or "cyclic" (reference)
    reuse_fakes: bool = True  # False = the reference way (G run again for its own update)
    fc_hidden: int = 1024
    ch1: int = 64
    ch2: int = 128


class GDGAN(GANFamily):
    kind = "gdgan"
    Config = GDGANConfig
    help = "GDGAN: two stages, general labels (sex, view) then findings; the paper's method."
    presets = {
        "paper": {"train": {"batch_size": 32, "steps": 98_000}, "model": {"stage2_general": "cyclic"}},
        # The critics' auxiliary heads learn from real images only (d*_aux_fake = 0): trained on fakes
        # too (the reference's 1.0), D's classifier learns whatever code G1 uses for a label instead of
        # the real images' sex/view features. bench/conditioning_check.py, 32x32, 1600 steps: a reader
        # trained on real images recognises sex/view in stage-1 samples 0.57/0.73 with 1.0 and
        # 0.96/0.91 with 0.0; Cardiomegaly's cardiothoracic-ratio gain 0.029 -> 0.059.
        # g2_mse 0.5: the MSE to the stage-1 image resists the anatomy a finding changes (a larger
        # heart). Same check, 32x32, 2400 steps, seeds 0/1 in fp32 and bf16: Cardiomegaly's ratio gain
        # 0.017-0.070 (pairs larger 0.55-0.77; 3 runs) with 1.0, 0.035-0.096 (0.60-0.89; 4 runs) with 0.5.
        "fast-cpu": {"train": {}, "model": {"fc_hidden": 256, "ch1": 32, "ch2": 64, "d1_aux_fake": 0.0,
                                            "d2_aux_fake": 0.0, "g2_mse": 0.5}},
        "tiny": {"train": {}, "model": {"fc_hidden": 32, "ch1": 4, "ch2": 8, "nz": 16}},
    }

    @classmethod
    def check_image_size(cls, size: int) -> None:
        if size < 8 or size % 4:
            raise UserError(f"GDGAN needs image_size divisible by 4 and at least 8 (got {size}); 64 is the paper's")

    @classmethod
    def check_config(cls, train: TrainConfig, model: GDGANConfig) -> None:
        super().check_config(train, model)
        if not 0.0 < model.stage1_fraction < 1.0:
            raise UserError(f"stage1_fraction must be between 0 and 1 (got {model.stage1_fraction})")
        if train.steps < 2:
            raise UserError("GDGAN needs steps >= 2 (one stage-1 and one stage-2 step at least)")
        if model.critic_batch not in ("joint", "separate"):
            raise UserError(f"critic_batch must be 'joint' or 'separate' (got {model.critic_batch!r})")
        if model.stage2_general not in ("batch", "cyclic"):
            raise UserError(f"stage2_general must be 'batch' or 'cyclic' (got {model.stage2_general!r})")

    def __init__(self, cfg: GDGANConfig, train_cfg: TrainConfig, schema: LabelSchema, device: torch.device) -> None:
        super().__init__(cfg, train_cfg, schema, device, value_range=(0.0, 1.0))
        self.genc = GeneralEncoder(schema, self.device)
        n1, n2 = self.genc.dim, len(schema.findings)
        if n1 == 0:
            raise UserError("GDGAN needs at least one general label column (e.g. sex or view) for stage 1; "
                            "this dataset has none. Use acgan, dcgan or pggan instead.")
        if n2 == 0:
            raise UserError("GDGAN needs at least one finding (detailed label) for stage 2; this dataset has none.")
        s, w = self.image_size, dict(fc_hidden=cfg.fc_hidden, ch1=cfg.ch1, ch2=cfg.ch2)
        self.add_generator("g1", Generator1(cfg.nz, n1, s, **w))
        self.add_net("d1", Critic(n1, s, sigmoid=cfg.critic_sigmoid, **w))
        self.add_generator("g2", Generator2(n2, s, **w))
        self.add_net("d2", Critic(n2, s, sigmoid=cfg.critic_sigmoid, **w))
        for name, lr in (("g1", cfg.lr_g), ("d1", cfg.lr_d), ("g2", cfg.lr_g), ("d2", cfg.lr_d)):
            self.optimizers[name] = make_adam(self.nets[name].parameters(), lr, cfg.betas, self.device)
        self.stage1_steps = min(self.total_steps - 1, max(1, round(self.total_steps * cfg.stage1_fraction)))
        self.ema_start["g2"] = self.stage1_steps
        self._cyclic: torch.Tensor | None = None

    # ---- stage handling -------------------------------------------------------------------------
    def stage_of(self, step: int) -> int:
        """Stage of the 0-based step index `step`."""
        return 1 if step < self.stage1_steps else 2

    def _apply_stage(self, stage: int) -> None:
        """(Re)assert modes every step: the engine or a sampler may have flipped them."""
        self.stage = stage
        frozen = stage == 2
        for name in ("g1", "d1"):
            self.nets[name].train(not frozen)
            self.set_requires_grad(self.nets[name], not frozen)
        for name in ("g2", "d2"):
            self.nets[name].train(True)
        # G2 learns from the G1 that sampling uses (the EMA copy), so that copy stops moving in stage 2
        self.frozen_ema = {"g1"} if frozen else set()

    def _stage1_source(self) -> torch.nn.Module:
        return self.nets["g1_ema"] if self.train_cfg.ema_decay > 0 else self.nets["g1"]

    # ---- one step -------------------------------------------------------------------------------
    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        return self._step(batch, step, reuse=self.cfg.reuse_fakes)

    def reference_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """The official code's way: G run a second time for its update (for benchmarks)."""
        return self._step(batch, step, reuse=False)

    def _step(self, batch: Batch, step: int, reuse: bool) -> dict[str, torch.Tensor]:
        stage = self.stage_of(step)
        self._apply_stage(stage)
        cfg = self.cfg
        real = (batch.images.float() + 1.0) * 0.5  # engine range [-1,1] -> reference range [0,1]
        y1, m1 = self.genc(batch.general)
        b = real.shape[0]
        update_g = self.generator_turn(step)
        z = self.noise(b)
        if stage == 1:
            gen = lambda: self.nets["g1"](z, y1)  # noqa: E731
            out = self._adversarial(gen, "d1", "g1", real, y1, m1, (cfg.d1_aux_fake, cfg.d1_aux_real, cfg.g1_aux),
                                    None, None, update_g, reuse)
        else:
            if cfg.stage2_general == "cyclic":  # the reference's generate_class_vec for y1
                if self._cyclic is None or self._cyclic.shape[0] != b:
                    self._cyclic = cyclic_codes(self.schema, b, self.device)
                y1, m1 = self.genc(self._cyclic)
            y2 = batch.detailed.float()
            g1 = self._stage1_source()
            g1.eval()
            with torch.no_grad():
                x1 = g1(z, y1)
            gen = lambda: self.nets["g2"](x1, y2)  # noqa: E731
            d1 = self.nets["d1"]

            def g_extra(fake: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
                general = masked_bce(d1(fake)[1], y1, m1)
                loss = cfg.g2_general * general
                logs = {"g_general": (cfg.g2_general * general).detach(),
                        "d2_general": (cfg.d2_general * general).detach()}
                if cfg.mse_loss:
                    mse = F.mse_loss(fake.float(), x1.float())
                    loss = loss + cfg.g2_mse * mse
                    logs["mse"] = (cfg.g2_mse * mse).detach()
                return loss, logs

            def d_extra(fake: torch.Tensor) -> torch.Tensor:
                # reference only: D1's general term inside D2's loss; it trains nothing but costs a pass
                return cfg.d2_general * masked_bce(d1(fake)[1], y1, m1)

            out = self._adversarial(gen, "d2", "g2", real, y2, None, (cfg.d2_aux_fake, cfg.d2_aux_real, cfg.g2_aux),
                                    g_extra, d_extra, update_g, reuse)
        return out  # the stage itself is the `stage` attribute, which the engine logs

    def _adversarial(self, gen: Callable[[], torch.Tensor], d_name: str, g_name: str, real: torch.Tensor,
                     y: torch.Tensor, mask: torch.Tensor | None, w: tuple[float, float, float],
                     g_extra: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]] | None,
                     d_extra: Callable[[torch.Tensor], torch.Tensor] | None,
                     update_g: bool, reuse: bool) -> dict[str, torch.Tensor]:
        """One WGAN-GP critic update plus (when update_g) one generator update, with aux heads."""
        cfg, aug = self.cfg, self.augment
        d = self.nets[d_name]
        b = real.shape[0]
        w_aux_fake, w_aux_real, w_g_aux = w
        if reuse and not update_g:
            with torch.no_grad():
                fake = gen()
        else:
            fake = gen()  # reuse: kept for G's loss; reference: the critic loss also backprops into G
        xr, xf = aug(real), aug(fake.detach() if reuse else fake)
        joint = self.cfg.critic_batch == "joint" and reuse
        if joint:  # one pass, shared BatchNorm statistics (see GDGANConfig.critic_batch)
            d_both, c_both = d(torch.cat([xr, xf]))
            d_real, d_fake, c_real, c_fake = d_both[:b], d_both[b:], c_both[:b], c_both[b:]
        else:
            d_real, c_real = d(xr)
            d_fake, c_fake = d(xf)
        gp = gradient_penalty(lambda t: d(t)[0], xr, xf)
        mean_real, mean_fake = d_real.float().mean(), d_fake.float().mean()
        aux_real = w_aux_real * masked_bce(c_real, y, mask)
        aux_fake = w_aux_fake * masked_bce(c_fake, y, mask)
        loss_d = -(mean_real - mean_fake) + cfg.gp_lambda * gp + aux_real + aux_fake
        logs: dict[str, torch.Tensor] = {}
        if d_extra is not None and not reuse:
            extra = d_extra(fake)
            logs["d2_general"] = extra.detach()
            self.optimise(d_name, loss_d + extra)
        else:
            self.optimise(d_name, loss_d)
        aug.observe(d_real, d_fake.detach().float().mean())
        logs.update(loss_d=loss_d.detach(), d_real=mean_real.detach(), d_fake=mean_fake.detach(), gp=gp.detach(),
                    d_aux=(aux_real + aux_fake).detach())
        if aug.enabled:
            logs["aug_p"] = aug.p.detach().clone()
        if not update_g:
            return logs
        if reuse:
            self.set_requires_grad(d, False)  # G's update needs no critic weight gradients
        else:
            fake = gen()  # the reference runs G again (same z, same weights -> same images)
        if joint:
            d_g, c_g = d(torch.cat([xr.detach(), aug(fake)]))
            d_g, c_g = d_g[b:], c_g[b:]
        else:
            d_g, c_g = d(aug(fake))
        g_aux = w_g_aux * masked_bce(c_g, y, mask)
        loss_g = -d_g.float().mean() + g_aux
        if g_extra is not None:
            extra_loss, extra_logs = g_extra(fake)
            loss_g = loss_g + extra_loss
            if not reuse:
                extra_logs.pop("d2_general", None)
            logs.update(extra_logs)
        self.optimise(g_name, loss_g)
        if reuse:
            self.set_requires_grad(d, True)
        logs.update(loss_g=loss_g.detach(), g_aux=g_aux.detach())
        return logs

    # ---- sampling -------------------------------------------------------------------------------
    def generate(self, z: torch.Tensor, general: torch.Tensor, detailed: torch.Tensor, ema: bool = True) -> dict[str, torch.Tensor]:
        """Stage-1 and stage-2 images in [-1, 1]; before stage 2 has started, 'images' = stage 1."""
        y1, _ = self.genc(general.to(self.device))
        g1 = self.gen_net("g1", ema)
        g2 = self.gen_net("g2", ema)
        with eval_mode(g1, g2):
            x1 = g1(z.to(self.device), y1)
            x2 = g2(x1, detailed.to(self.device).float()) if self.stage == 2 else x1
        return {"images": x2 * 2.0 - 1.0, "stage1": x1 * 2.0 - 1.0}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "stage1_steps": self.stage1_steps}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self.stage1_steps = int(state.get("stage1_steps", self.stage1_steps))
        self.ema_start["g2"] = self.stage1_steps
        self._apply_stage(int(self.stage))
