"""Batches straight from the dataset's uint8 tensor held on the training device.

No DataLoader and no per-batch PIL decode: the images are moved to the device once; a batch is an
index gather plus one uint8 -> float conversion to [-1, 1] on the device. Each epoch is a fresh
permutation drawn from a seeded CPU generator (the same stream on CPU and GPU, and saved in
checkpoints so resume continues the same order); the last incomplete batch is dropped, as in the
reference code (`drop_last`).
"""
from __future__ import annotations

from typing import Any

import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.gan.base import Batch


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W] -> float [B, 1, H, W] in [-1, 1], the range batches reach the models in."""
    return images.unsqueeze(1).float().mul_(2.0 / 255.0).sub_(1.0)


def training_part(ds: ImageSet) -> ImageSet:
    """The GAN trains on the train split only (as the reference code); unsplit data is used whole."""
    return ds.part("train") if ds.split is not None else ds


class DeviceBatches:
    def __init__(self, ds: ImageSet, batch_size: int, device: torch.device, seed: int,
                 channels_last: bool = False) -> None:
        if batch_size > len(ds):
            raise ValueError(f"batch {batch_size} > {len(ds)} images")
        self.device = device
        self.batch_size = batch_size
        self.channels_last = channels_last
        self.images = ds.images.to(device)
        self.general = ds.general.to(device)
        self.detailed = ds.detailed.to(device=device, dtype=torch.float32)
        self.n = len(ds)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.perm: torch.Tensor | None = None
        self.pos = 0
        self.epoch = 0

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def next(self) -> Batch:
        if self.perm is None or self.pos + self.batch_size > self.n:
            self.perm = torch.randperm(self.n, generator=self.generator).to(self.device)
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        x = to_model_range(self.images[idx])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(images=x, general=self.general[idx], detailed=self.detailed[idx])

    def draw(self, rows: torch.Tensor, n: int) -> Batch:
        """n images drawn with replacement from `rows` (device indices) with the global torch RNG, so
        resume replays them; for families that sample by class (DCGAN per class)."""
        pick = rows[torch.randint(rows.numel(), (n,)).to(rows.device)]
        x = to_model_range(self.images[pick])
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(images=x, general=self.general[pick], detailed=self.detailed[pick])

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "pos": self.pos, "epoch": self.epoch,
                "perm": None if self.perm is None else self.perm.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.pos = int(state["pos"])
        self.epoch = int(state["epoch"])
        self.perm = None if state["perm"] is None else state["perm"].to(self.device)
