"""What every model family shares: EMA generators, optimisers, augmentation, noise, mode handling."""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Iterable

import torch
import torch.nn as nn

from medgan_ui.errors import UserError
from medgan_ui.gan.diffaugment import Augmenter
from medgan_ui.gan.base import LabelSchema, ModelFamily
from medgan_ui.gan.config import TrainConfig

Z_DISTS = ("uniform", "uniform_signed", "normal")  # U[0,1) like torch.rand; U[-1,1]; N(0,1)


@dataclass
class GANSettings:
    """Settings every GAN family has; the defaults (Radford's DCGAN, Frid-Adar's z ~ U[-1, 1]) live here
    once, and a family's config redeclares only the ones its paper sets differently."""

    nz: int = 100
    z_dist: str = "uniform_signed"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass
class WGANSettings(GANSettings):
    """What the WGAN-GP families (GDGAN, PGGAN) add."""

    n_critic: int = 1  # G is updated on every n_critic-th step (critic on every step), as in the reference loop
    gp_lambda: float = 10.0


def make_adam(params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel where torch has one for this device: one pass over each big FC
    weight instead of several (on the CPU the optimiser step is a sizeable part of a GDGAN step)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), foreach=device.type != "cpu")


def sample_noise(n: int, nz: int, dist: str, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    gen_dev = generator.device if generator is not None else device
    if dist == "normal":
        z = torch.randn(n, nz, generator=generator, device=gen_dev)
    else:
        z = torch.rand(n, nz, generator=generator, device=gen_dev)
        if dist == "uniform_signed":
            z = z * 2.0 - 1.0
    return z.to(device)


@torch.no_grad()
def lerp_ema(ema: nn.Module, live: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * live for parameters; buffers copied (every family's EMA twin)."""
    ep, lp = list(ema.parameters()), list(live.parameters())
    torch._foreach_lerp_(ep, [p.detach() for p in lp], 1.0 - decay)
    for eb, lb in zip(ema.buffers(), live.buffers()):
        eb.copy_(lb)


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class GANFamily(ModelFamily):
    """What the GAN families share. Subclasses fill self.nets / self.optimizers and name their
    generators in self.generators (each gets an EMA twin "<name>_ema" used for sampling).
    Their Config has nz, z_dist, lr_g, lr_d and betas."""

    zero_ok: ClassVar[tuple[str, ...]] = ()  # int settings that may be 0 (all others are counts or widths)

    @classmethod
    def check_image_size(cls, size: int) -> None:
        if not (is_pow2(size) and 16 <= size <= 128):
            raise UserError(f"{cls.kind.upper()} needs image_size 16, 32, 64 or 128 (got {size})")

    @classmethod
    def check_config(cls, train: TrainConfig, model: Any) -> None:
        cls.check_image_size(int(train.image_size))
        if model.nz <= 0:
            raise UserError(f"nz must be at least 1 (got {model.nz})")
        if model.z_dist not in Z_DISTS:
            raise UserError(f"z_dist {model.z_dist!r} is unknown; choose one of {list(Z_DISTS)}")
        if model.lr_g <= 0 or model.lr_d <= 0:
            raise UserError(f"learning rates must be positive (lr_g={model.lr_g}, lr_d={model.lr_d})")
        if len(model.betas) != 2 or not all(0.0 <= b < 1.0 for b in model.betas):
            raise UserError(f"betas must be two numbers in [0, 1) (got {model.betas})")
        for f in fields(model):
            v = getattr(model, f.name)
            if isinstance(v, float) and v < 0:
                raise UserError(f"{f.name} must not be negative (got {v})")
            if isinstance(v, int) and not isinstance(v, bool) and f.name not in cls.zero_ok and v <= 0:
                raise UserError(f"{f.name} must be at least 1 (got {v})")

    def __init__(self, model_cfg: Any, train_cfg: TrainConfig, schema: LabelSchema, device: torch.device,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        super().__init__(model_cfg, train_cfg, schema, device)
        self.image_size = int(train_cfg.image_size)
        self.total_steps = int(train_cfg.steps)
        self.generators: list[str] = []
        self.frozen_ema: set[str] = set()  # generators whose EMA stops following (GDGAN's G1 in stage 2)
        self.ema_start: dict[str, int] = {}  # step where a generator starts training (GDGAN's G2), for warm-up
        self.augment = Augmenter(train_cfg.augment, train_cfg.ada_target, self.device, value_range)
        self.stage: int | str = 1

    # ---- construction helpers -------------------------------------------------------------------
    def add_generator(self, name: str, net: nn.Module) -> None:
        net = net.to(self.device)
        ema = copy.deepcopy(net).eval().requires_grad_(False)
        self.nets[name] = net
        self.nets[name + "_ema"] = ema
        self.generators.append(name)

    def add_net(self, name: str, net: nn.Module) -> None:
        self.nets[name] = net.to(self.device)

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return sample_noise(n, self.cfg.nz, self.cfg.z_dist, self.device, generator)

    # ---- EMA (the engine calls update_ema right after each train_step) ---------------------------
    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        # warm-up (as in timm/StyleGAN-style EMAs): early on the average would mostly hold the random
        # init, which matters for the short runs this tool makes
        for name in self.generators:
            if name in self.frozen_ema:
                continue
            k = max(0, step - self.ema_start.get(name, 0))  # steps since this generator began training
            decay = min(float(self.train_cfg.ema_decay), (1.0 + k) / (10.0 + k))
            lerp_ema(self.nets[name + "_ema"], self._unwrap(self.nets[name]), decay)

    @staticmethod
    def _unwrap(net: nn.Module) -> nn.Module:
        return getattr(net, "module", net)

    # ---- helpers for train_step -----------------------------------------------------------------
    @staticmethod
    def set_requires_grad(net: nn.Module, flag: bool) -> None:
        for p in net.parameters():
            p.requires_grad_(flag)

    def optimise(self, name: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def generator_turn(self, step: int) -> bool:
        """WGAN families (WGANSettings): whether the 0-based step also updates the generator."""
        return (step + 1) % self.cfg.n_critic == 0

    def gen_net(self, name: str, ema: bool) -> nn.Module:
        return self.nets[name + "_ema"] if ema else self.nets[name]

    # ---- resume ----------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"augment": self.augment.state_dict(), "stage": self.stage}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "augment" in state:
            self.augment.load_state_dict(state["augment"])
        self.stage = state.get("stage", self.stage)


class eval_mode:
    """Context manager: nets in eval mode, gradients off; restores each net's previous mode."""

    def __init__(self, *nets: nn.Module) -> None:
        self.nets = nets
        self.modes: list[bool] = []

    def __enter__(self) -> None:
        self.modes = [n.training for n in self.nets]
        for n in self.nets:
            n.eval()
        self._ng = torch.no_grad()
        self._ng.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._ng.__exit__(*exc)
        for n, m in zip(self.nets, self.modes):
            n.train(m)
