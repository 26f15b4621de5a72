"""What every model family shares: EMA generators, optimisers, augmentation, noise, mode handling."""
from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
import torch.nn as nn

from medgan_ui.gan.augment import Augmenter
from medgan_ui.gan.base import LabelSchema
from medgan_ui.gan.config import TrainConfig


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


class GANFamily:
    """Base for the four families. Subclasses fill self.nets / self.optimizers and name their
    generators in self.generators (each gets an EMA twin "<name>_ema" used for sampling)."""

    kind = ""

    def __init__(self, model_cfg: Any, train_cfg: TrainConfig, schema: LabelSchema, device: torch.device,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> None:
        self.cfg = model_cfg
        self.train_cfg = train_cfg
        self.schema = schema
        self.device = torch.device(device)
        self.image_size = int(train_cfg.image_size)
        self.total_steps = int(train_cfg.steps)
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
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
            live, ema = self._unwrap(self.nets[name]), self.nets[name + "_ema"]
            ep, lp = list(ema.parameters()), list(live.parameters())
            torch._foreach_lerp_(ep, [p.detach() for p in lp], 1.0 - decay)
            for eb, lb in zip(ema.buffers(), live.buffers()):
                eb.copy_(lb)

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

    def images_per_step(self, batch_size: int) -> int:
        """Real images one train_step consumes (for img/s); per-class models use several batches."""
        return batch_size

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
