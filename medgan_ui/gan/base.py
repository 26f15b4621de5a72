"""The contract between the networks (gdgan, acgan, dcgan, pggan) and the one training engine.

A model family owns its nets, optimisers, losses and schedule (GDGAN's two stages, PGGAN's growth);
the engine owns everything else: device, data feeding, AMP, EMA bookkeeping hooks, checkpoints,
metrics, stop, resume, DDP. Losses come back as 0-d tensors so the engine can avoid per-step host
syncs (it only calls .item() when it logs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from medgan_ui.data.imageset import ImageSet


@dataclass
class LabelSchema:
    """The label vocabulary a run was trained on; stored in config.json so sampling can map names."""

    general_names: list[str]
    general_values: dict[str, list[str]]
    findings: list[str]
    image_size: int

    @classmethod
    def from_imageset(cls, ds: ImageSet) -> "LabelSchema":
        return cls(list(ds.general_names), {k: list(v) for k, v in ds.general_values.items()}, list(ds.findings), ds.size)

    def general_codes(self, labels: dict[str, str]) -> list[int]:
        """{'sex': 'F', 'view': 'AP'} -> codes, with a message naming what exists on a bad name."""
        codes = []
        for name in self.general_names:
            value = labels.get(name)
            if value is None:
                codes.append(-1)
                continue
            if value not in self.general_values[name]:
                raise KeyError(f"value {value!r} not found for general label {name!r}; it has {self.general_values[name]}")
            codes.append(self.general_values[name].index(value))
        unknown = set(labels) - set(self.general_names)
        if unknown:
            raise KeyError(f"general label(s) {sorted(unknown)} not in this run; it has {self.general_names}")
        return codes

    def finding_vector(self, findings: list[str]) -> list[float]:
        for f in findings:
            if f not in self.findings:
                raise KeyError(f"finding {f!r} not in this run; it has {self.findings}")
        return [1.0 if f in findings else 0.0 for f in self.findings]

    def to_dict(self) -> dict[str, Any]:
        return {"general_names": self.general_names, "general_values": self.general_values,
                "findings": self.findings, "image_size": self.image_size}


@dataclass
class Batch:
    images: torch.Tensor  # float [B, 1, H, W] in [-1, 1], on the training device
    general: torch.Tensor  # long [B, G] codes, -1 unknown
    detailed: torch.Tensor  # float [B, F] multi-hot
    extra: dict[str, Any] = field(default_factory=dict)


class GANModel(Protocol):
    """What the engine needs from a model family."""

    kind: str  # "gdgan" | "acgan" | "dcgan" | "pggan"
    nets: dict[str, torch.nn.Module]  # every net incl. EMA generator(s), by stable name
    optimizers: dict[str, torch.optim.Optimizer]

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """One optimisation step (critic + generator); returns 0-d loss tensors (no .item()).

        `step` is the 0-based index of this step (= steps completed before it); the engine's step
        counter, metrics and checkpoint names count completed steps (1-based)."""

    def generate(self, z: torch.Tensor, general: torch.Tensor, detailed: torch.Tensor, ema: bool = True) -> dict[str, torch.Tensor]:
        """{'images': [n,1,H,W] in [-1,1]} plus, for GDGAN, {'stage1': ...}."""

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The model's latent distribution (uniform for GDGAN/DCGAN as in the papers)."""

    def extra_state(self) -> dict[str, Any]:
        """Anything beyond nets/optimisers that resume must restore (augmentation p, phase, alpha)."""

    def load_extra_state(self, state: dict[str, Any]) -> None: ...


# Optional hooks the engine (medgan_ui/gan/engine.py) calls when a model defines them:
#   bind_data(ds: ImageSet) -> None   once, before step 1, with the training part (label frequencies,
#                                     per-class sample lists); it must not keep a copy of the images.
#                                     (DCGAN-per-class keeps a reference to ds.images and draws its own
#                                     per-class rows each step with the global RNG; it ignores Batch.)
#   update_ema(step: int) -> None     right after each train_step; train_step itself leaves EMA alone.
#   stage: int | str                  attribute written to metrics.jsonl (GDGAN 1/2, PGGAN resolution).
# Randomness: use the global torch RNG (or generators saved in extra_state) so resume is exact;
# extra_state must hold only tensors, numbers, strings, lists and dicts (checkpoints load with
# torch.load(weights_only=True)).
