"""Conditional diffusion models beside the GANs (PAPERS.md 8): `ddpm` and general-to-detailed `gd-ddpm`.

Built on `diffusers`: a `UNet2DModel` made from a config (no weights are downloaded), `DDPMScheduler`
for the training noise and a DDIM or DPM-Solver++ sampler configured from it. The labels reach the
UNet through a learned embedding (an MLP) of [general one-hots | findings multi-hot | dropped flags],
passed as `class_labels` to a UNet built with `class_embed_type="identity"`, which adds it to the
timestep embedding. Classifier-free guidance (Ho & Salimans): during training all labels are dropped
with probability `p_uncond` and the findings alone with `p_drop_findings`; sampling mixes the
conditional and the dropped prediction with `guidance_scale` (1 = conditional only, 0 = unconditional).
An EMA twin of the net ("net_ema", in every checkpoint) is used for sampling.

gd-ddpm carries GDGAN's idea over to one network: stage 1 samples an image conditioned on the
general labels only (findings dropped); stage 2 re-noises it to `strength` (1 = pure noise again)
and denoises it conditioned on the general labels and the findings, guided against the general-only
prediction, so the guidance adds exactly the findings' detail on top of the stage-1 anatomy.

Sampling is deterministic given z (DDIM with eta 0, DPM-Solver++ multistep): z holds the initial
noise, and for gd-ddpm a second channel holds the stage-2 re-noising noise, so the fixed sample grid
and a seed reproduce the same images.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from medgan_ui.errors import UserError
from medgan_ui.gan.base import Batch, LabelSchema, ModelFamily
from medgan_ui.gan.config import TrainConfig
from medgan_ui.gan.device import autocast
from medgan_ui.gan.models.common import eval_mode, lerp_ema, make_adam

SAMPLERS = ("ddim", "dpm-solver")
BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")


@dataclass
class DDPMConfig:
    """Conditional DDPM (Ho et al. 2020) with classifier-free guidance; the UNet is diffusers'."""

    base_channels: int = 64
    channel_mult: str = "1,2,2,4"  # one entry per resolution level; each level but the last halves the size
    attn_levels: str = "2,3"  # levels (0-based) with self-attention blocks; "" for none
    layers_per_block: int = 2
    head_dim: int = 32  # attention head width
    norm_groups: int = 32  # GroupNorm groups; must divide every level's channels
    dropout: float = 0.1
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"  # cosine (Nichol & Dhariwal): better than linear at small sizes
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 500  # linear learning-rate warm-up
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    p_uncond: float = 0.1  # share of training images with every label dropped (the CFG negative)
    p_drop_findings: float = 0.0  # share with only the findings dropped (gd-ddpm's stage 1 needs it)
    sampler: str = "ddim"  # ddim | dpm-solver
    sample_steps: int = 50  # sampler steps (<= num_train_timesteps)
    guidance_scale: float = 2.0  # 1 = conditional only, 0 = unconditional, > 1 stronger conditioning


@dataclass
class GDDDPMConfig(DDPMConfig):
    """gd-ddpm: the same network, findings dropped at random in training; two-stage sampling."""

    p_drop_findings: float = 0.3
    # stage 2 re-noises the stage-1 image this far (0, 1]; 1 = from pure noise. A larger heart needs the
    # coarse shape re-drawn: bench/conditioning_check.py, gd-ddpm fast-cpu after 580 steps, paired
    # heart-ratio gain with Cardiomegaly 0.012 / 0.031 / 0.044 (pairs larger 55 / 70 / 65 %) at
    # strength 0.6 / 0.8 / 1.0; 0.8 keeps most of the stage-1 image and lets the finding change it.
    strength: float = 0.8


def _ints(text: str, name: str) -> list[int]:
    try:
        return [int(v) for v in str(text).replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise UserError(f"{name} must be comma-separated whole numbers like '1,2,2' (got {text!r})") from None


def check_sampling(cfg: DDPMConfig, steps: int, guidance: float, strength: float | None) -> None:
    """The sampling settings (config or per-call), before any compute."""
    if not 1 <= int(steps) <= cfg.num_train_timesteps:
        raise UserError(f"sampling steps must be between 1 and the training schedule's {cfg.num_train_timesteps} "
                        f"(got {steps}); 20-50 is usual with {cfg.sampler}")
    if not float(guidance) >= 0.0:
        raise UserError(f"guidance scale must be 0 or more (got {guidance}): 1 = conditional only, "
                        f"0 = unconditional, 2-5 = stronger label conditioning")
    if strength is not None and not 0.0 < float(strength) <= 1.0:
        raise UserError(f"strength must be in (0, 1] (got {strength}): how far stage 2 re-noises the "
                        f"stage-1 image (1 = from pure noise)")


class LabelEmbedding(nn.Module):
    """[general one-hots | findings multi-hot | 2 dropped flags] -> the UNet's timestep-embedding width."""

    def __init__(self, n_in: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_in, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.mlp(y)


class CondUNet(nn.Module):
    """diffusers' UNet2DModel plus the label embedding, added to its timestep embedding."""

    def __init__(self, cfg: DDPMConfig, size: int, n_cond: int) -> None:
        super().__init__()
        from diffusers import UNet2DModel

        mult, attn = _ints(cfg.channel_mult, "channel_mult"), set(_ints(cfg.attn_levels, "attn_levels"))
        chans = tuple(cfg.base_channels * m for m in mult)
        self.unet = UNet2DModel(
            sample_size=size, in_channels=1, out_channels=1, block_out_channels=chans,
            layers_per_block=cfg.layers_per_block, dropout=cfg.dropout, norm_num_groups=cfg.norm_groups,
            attention_head_dim=cfg.head_dim,
            down_block_types=tuple("AttnDownBlock2D" if i in attn else "DownBlock2D" for i in range(len(chans))),
            up_block_types=tuple("AttnUpBlock2D" if i in attn else "UpBlock2D" for i in reversed(range(len(chans)))),
            class_embed_type="identity")
        self.label = LabelEmbedding(n_cond, chans[0] * 4)  # UNet2DModel's time_embed_dim

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=self.label(y)).sample


class DDPM(ModelFamily):
    kind = "ddpm"
    Config = DDPMConfig
    help = ("DDPM: conditional diffusion (diffusers UNet) with classifier-free guidance and a DDIM/DPM-Solver "
            "sampler; slower to sample than a GAN. 128 px: --image-size 128 --set channel_mult=1,1,2,2,4 --set attn_levels=3,4.")
    sample_options: ClassVar[dict[str, str]] = {
        "steps": "sampler steps", "guidance": "classifier-free guidance scale (1 = conditional only)"}
    presets = {
        # Ho et al. / Nichol & Dhariwal at 64 px: 2 res blocks per level, attention at 16 and 8 px, dropout 0.1
        "paper": {"train": {"batch_size": 64, "steps": 100_000, "ema_decay": 0.9999}, "model": {}},
        # 32 px, 16/32/64 channels, attention at 8 px only: ~0.7 M parameters; on the idle 2-core AMD EPYC
        # box 0.20 s per step of 32 images (2 threads, bf16), so the 4000 steps take about 14 minutes
        # (bench/train_throughput.py --models ddpm --preset fast-cpu).
        # Guidance 3: bench/conditioning_check.py, ddpm after 563 steps (3 min), 64 images per case: the
        # reader finds the requested sex/view in 0.88/0.69 of the images at guidance 2, 0.97/0.78 at 3,
        # 0.98/0.78 at 4; paired heart-ratio gain with Cardiomegaly 0.06 / 0.08 / 0.09, unmeasurable
        # chests 3 / 8 / 13 %.
        "fast-cpu": {"train": {"image_size": 32, "batch_size": 32, "steps": 4000, "sample_every": 500,
                               "checkpoint_every": 500, "log_every": 25},
                     "model": {"base_channels": 16, "channel_mult": "1,2,4", "attn_levels": "2", "layers_per_block": 1,
                               "head_dim": 16, "norm_groups": 8, "dropout": 0.0, "lr": 1e-3, "warmup_steps": 100,
                               "sample_steps": 25, "guidance_scale": 3.0}},
        "tiny": {"train": {}, "model": {"base_channels": 8, "channel_mult": "1,2", "attn_levels": "1", "layers_per_block": 1,
                                        "head_dim": 8, "norm_groups": 4, "dropout": 0.0, "num_train_timesteps": 50,
                                        "warmup_steps": 2, "sample_steps": 4}},
    }
    n_noise: ClassVar[int] = 1  # noise channels per sample in z (gd-ddpm: 2, the second re-noises stage 1)

    # ---- settings ------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, train: TrainConfig, cfg: DDPMConfig) -> None:
        if cfg.num_train_timesteps < 1:
            raise UserError(f"num_train_timesteps must be at least 1 (got {cfg.num_train_timesteps})")
        check_sampling(cfg, cfg.sample_steps, cfg.guidance_scale, getattr(cfg, "strength", None))
        for f in fields(cfg):
            v = getattr(cfg, f.name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise UserError(f"{f.name} must not be negative (got {v})")
        for name in ("base_channels", "layers_per_block", "head_dim", "norm_groups"):
            if getattr(cfg, name) < 1:
                raise UserError(f"{name} must be at least 1 (got {getattr(cfg, name)})")
        mult, attn = _ints(cfg.channel_mult, "channel_mult"), _ints(cfg.attn_levels, "attn_levels")
        if not mult or min(mult) < 1:
            raise UserError(f"channel_mult needs at least one positive entry (got {cfg.channel_mult!r})")
        if any(not 0 <= a < len(mult) for a in attn):
            raise UserError(f"attn_levels {cfg.attn_levels!r} name levels outside 0..{len(mult) - 1} of channel_mult")
        chans = [cfg.base_channels * m for m in mult]
        if any(c % cfg.norm_groups for c in chans):
            raise UserError(f"norm_groups {cfg.norm_groups} must divide every level's channels {chans}")
        if any(chans[a] % cfg.head_dim for a in attn) or (attn and chans[-1] % cfg.head_dim):
            raise UserError(f"head_dim {cfg.head_dim} must divide the channels {chans} of the attention levels")
        size, factor = int(train.image_size), 2 ** (len(mult) - 1)
        if size < 8 or size % factor or size // factor < 2:
            raise UserError(f"image_size {size} does not fit this UNet: its {len(mult)} levels halve the image "
                            f"{len(mult) - 1} times, so the size must be a multiple of {factor} and at least "
                            f"{max(8, 2 * factor)}; use 32, 64 or 128, or change channel_mult")
        if cfg.beta_schedule not in BETA_SCHEDULES:
            raise UserError(f"beta_schedule {cfg.beta_schedule!r} is unknown; choose one of {list(BETA_SCHEDULES)}")
        if train.augment != "none":
            raise UserError(f"augment {train.augment!r} is for a GAN's critic; {cls.kind} trains without it (augment=none)")
        if cfg.sampler not in SAMPLERS:
            raise UserError(f"sampler {cfg.sampler!r} is unknown; choose one of {list(SAMPLERS)}")
        if cfg.lr <= 0:
            raise UserError(f"lr must be positive (got {cfg.lr})")
        if len(cfg.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.betas):
            raise UserError(f"betas must be two numbers in [0, 1) (got {cfg.betas})")
        for name in ("p_uncond", "p_drop_findings"):
            if not 0.0 <= getattr(cfg, name) < 1.0:
                raise UserError(f"{name} must be in [0, 1) (got {getattr(cfg, name)})")

    # ---- construction --------------------------------------------------------------------------
    def __init__(self, cfg: DDPMConfig, train_cfg: TrainConfig, schema: LabelSchema, device: torch.device) -> None:
        super().__init__(cfg, train_cfg, schema, device)
        from diffusers import DDPMScheduler

        self.size = int(train_cfg.image_size)
        self.n_values = [len(schema.general_values[n]) for n in schema.general_names]
        self.n_findings = len(schema.findings)
        self.n_cond = sum(self.n_values) + self.n_findings + 2
        net = CondUNet(cfg, self.size, self.n_cond).to(self.device)
        self.nets["net"] = net
        self.nets["net_ema"] = copy.deepcopy(net).eval().requires_grad_(False)
        self.optimizers["net"] = make_adam(net.parameters(), cfg.lr, cfg.betas, self.device)
        self.scheduler = DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                                       clip_sample=True, timestep_spacing="trailing")
        self._alphas = self.scheduler.alphas_cumprod.to(self.device)

    # ---- labels --------------------------------------------------------------------------------
    def condition(self, general: torch.Tensor, detailed: torch.Tensor, drop_general: torch.Tensor,
                  drop_findings: torch.Tensor) -> torch.Tensor:
        """The embedding's input: one-hot per general column (unknown or dropped = zeros), findings
        (dropped = zeros) and the two dropped flags, so "dropped" differs from "no finding"."""
        general, detailed = general.to(self.device).long(), detailed.to(self.device).float()
        keep_g, keep_f = (~drop_general).float()[:, None], (~drop_findings).float()[:, None]
        parts = [F.one_hot(general[:, j] + 1, k + 1)[:, 1:].float() * keep_g for j, k in enumerate(self.n_values)]
        parts += [detailed * keep_f, drop_general.float()[:, None], drop_findings.float()[:, None]]
        return torch.cat(parts, dim=1)

    def _flags(self, n: int, value: bool) -> torch.Tensor:
        return torch.full((n,), value, dtype=torch.bool, device=self.device)

    # ---- training ------------------------------------------------------------------------------
    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        cfg, net, opt = self.cfg, self.nets["net"], self.optimizers["net"]
        net.train()
        x0 = batch.images.float()
        b = x0.shape[0]
        noise = torch.randn_like(x0)
        t = torch.randint(0, cfg.num_train_timesteps, (b,), device=self.device)
        u = torch.rand(b, 2, device=self.device)
        drop_all = u[:, 0] < cfg.p_uncond
        y = self.condition(batch.general, batch.detailed, drop_all, drop_all | (u[:, 1] < cfg.p_drop_findings))
        a = self._alphas[t].view(b, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise  # DDPMScheduler.add_noise, on the device without copies
        loss = F.mse_loss(net(xt, t, y).float(), noise)
        for group in opt.param_groups:  # warm-up from the step index alone: resume needs no scheduler state
            group["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        return {"loss": loss.detach()}

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        decay = min(float(self.train_cfg.ema_decay), (1.0 + step) / (10.0 + step))  # warm-up as the GANs'
        lerp_ema(self.nets["net_ema"], getattr(self.nets["net"], "module", self.nets["net"]), decay)

    # ---- sampling ------------------------------------------------------------------------------
    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        dev = generator.device if generator is not None else self.device
        return torch.randn(n, self.n_noise, self.size, self.size, generator=generator, device=dev).to(self.device)

    def sampler(self, steps: int):
        """A fresh (stateful) sampler over `steps` steps, configured from the training schedule."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        if self.cfg.sampler == "ddim":  # clips its x0 estimate to [-1, 1] (clip_sample of the training config)
            sched = DDIMScheduler.from_config(self.scheduler.config)
        else:  # without a bound the x0 estimate of the first, nearly pure-noise steps explodes (cosine schedule):
            # dynamic thresholding (Imagen), meant for pixel-space models like this one
            sched = DPMSolverMultistepScheduler.from_config(self.scheduler.config, thresholding=True, sample_max_value=1.0)
        sched.set_timesteps(int(steps), device=self.device)
        return sched

    def denoise(self, net: nn.Module, noise: torch.Tensor, y: torch.Tensor, y_neg: torch.Tensor, steps: int,
                guidance: float, start: torch.Tensor | None = None, strength: float = 1.0) -> torch.Tensor:
        """Run the sampler from pure noise, or (start, strength < 1) from `start` re-noised to `strength`."""
        sched = self.sampler(steps)
        timesteps = sched.timesteps
        if start is not None and strength < 1.0:
            k = max(1, round(steps * strength))  # denoising steps left, as diffusers' img2img pipelines
            first = len(timesteps) - k
            timesteps = timesteps[first:]
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(first)
            x = sched.add_noise(start, noise, timesteps[:1].repeat(noise.shape[0]))
        else:
            x = noise * sched.init_noise_sigma
        both = torch.cat([y, y_neg])
        for t in timesteps:
            xin = sched.scale_model_input(x, t)
            with autocast(self.device, bool(self.train_cfg.amp)):  # the UNet in the run's precision, the sampler in fp32
                if guidance == 1.0:
                    eps = net(xin, t, y).float()
                elif guidance == 0.0:
                    eps = net(xin, t, y_neg).float()
                else:
                    eps_c, eps_n = net(torch.cat([xin, xin]), t, both).float().chunk(2)
                    eps = eps_n + guidance * (eps_c - eps_n)
            x = sched.step(eps, t, x).prev_sample
        return x.clamp(-1.0, 1.0)

    def _options(self, steps: int | None, guidance: float | None, strength: float | None) -> tuple[int, float, float | None]:
        steps = self.cfg.sample_steps if steps is None else int(steps)
        guidance = self.cfg.guidance_scale if guidance is None else float(guidance)
        check_sampling(self.cfg, steps, guidance, strength)
        return steps, guidance, strength

    def check_sample_options(self, options: dict[str, Any]) -> None:
        super().check_sample_options(options)
        strength = options.get("strength", getattr(self.cfg, "strength", None))
        self._options(options.get("steps"), options.get("guidance"), strength)

    def generate(self, z: torch.Tensor, general: torch.Tensor, detailed: torch.Tensor, ema: bool = True, *,
                 steps: int | None = None, guidance: float | None = None) -> dict[str, torch.Tensor]:
        steps, guidance, _ = self._options(steps, guidance, None)
        n, net = z.shape[0], self.nets["net_ema" if ema else "net"]
        no, yes = self._flags(n, False), self._flags(n, True)
        with eval_mode(net):
            y = self.condition(general, detailed, no, no)
            y_neg = self.condition(general, detailed, yes, yes)
            return {"images": self.denoise(net, z.to(self.device)[:, :1], y, y_neg, steps, guidance)}


class GDDDPM(DDPM):
    kind = "gd-ddpm"
    Config = GDDDPMConfig
    help = ("GD-DDPM: general-to-detailed diffusion; stage 1 samples anatomy from the general labels, stage 2 "
            "re-noises it to a strength and adds the findings (one network, GDGAN's idea).")
    sample_options: ClassVar[dict[str, str]] = {
        **DDPM.sample_options, "strength": "how far stage 2 re-noises the stage-1 image (0, 1]"}
    presets = {name: {"train": dict(row["train"]), "model": dict(row["model"])} for name, row in DDPM.presets.items()}
    n_noise = 2

    def __init__(self, cfg: GDDDPMConfig, train_cfg: TrainConfig, schema: LabelSchema, device: torch.device) -> None:
        if not schema.general_names or not schema.findings:
            raise UserError("gd-ddpm needs at least one general label (e.g. sex or view) for stage 1 and one "
                            "finding for stage 2; this dataset lacks one of them. Use ddpm instead.")
        super().__init__(cfg, train_cfg, schema, device)

    def generate(self, z: torch.Tensor, general: torch.Tensor, detailed: torch.Tensor, ema: bool = True, *,
                 steps: int | None = None, guidance: float | None = None,
                 strength: float | None = None) -> dict[str, torch.Tensor]:
        strength = self.cfg.strength if strength is None else float(strength)
        steps, guidance, strength = self._options(steps, guidance, strength)
        n, net = z.shape[0], self.nets["net_ema" if ema else "net"]
        no, yes = self._flags(n, False), self._flags(n, True)
        z = z.to(self.device)
        with eval_mode(net):
            y_general = self.condition(general, detailed, no, yes)  # findings dropped
            x1 = self.denoise(net, z[:, :1], y_general, self.condition(general, detailed, yes, yes), steps, guidance)
            y_full = self.condition(general, detailed, no, no)
            x2 = self.denoise(net, z[:, 1:2], y_full, y_general, steps, guidance, start=x1, strength=strength)
        return {"images": x2, "stage1": x1}
