"""DCGAN per class (Frid-Adar 2.4): one independent G/D pair per finding, plus one for "no finding".

Per-class batches: `bind_data(ds)` (called by the engine once, with the training part) records the
row indices of each class and keeps a reference to the set's uint8 images (not a copy). Each
train_step then draws `batch_size` rows per class with the global torch RNG (so resume replays
them), converts them to [-1, 1] on the device and updates every class's pair on its own rows; the
engine's mixed batch is not used. A row with several findings counts for each of them. Classes
without a single training image are left untrained (their names are in `untrained_classes`).
Sampling picks one generator per requested label: the first requested finding in the model's class
order, or "no finding" for an all-zero finding vector.
"""
from __future__ import annotations

from typing import Any

import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.gan.base import Batch, LabelSchema
from medgan_ui.gan.config import DCGANConfig, TrainConfig
from medgan_ui.gan.feed import to_model_range
from medgan_ui.gan.losses import nonsat_d, nonsat_g
from medgan_ui.gan.models.common import GANFamily, eval_mode, make_adam
from medgan_ui.gan.nets.dcgan import DCDiscriminator, DCGenerator

NO_FINDING = "No Finding"


class DCGANPerClass(GANFamily):
    kind = "dcgan"

    def __init__(self, cfg: DCGANConfig, train_cfg: TrainConfig, schema: LabelSchema, device: torch.device) -> None:
        super().__init__(cfg, train_cfg, schema, device)
        wanted = list(cfg.classes) or list(schema.findings)
        unknown = [c for c in wanted if c not in schema.findings]
        if unknown:
            raise UserError(f"DCGAN classes {unknown} are not findings of this dataset; it has {schema.findings}")
        self.classes: list[str] = wanted + ([NO_FINDING] if cfg.no_finding else [])
        if not self.classes:
            raise UserError("DCGAN needs at least one class: the dataset has no findings and no_finding is off")
        s = self.image_size
        for i in range(len(self.classes)):
            self.add_generator(f"g{i}", DCGenerator(cfg.nz, 0, s, cfg.g_base, cfg.init_std))
            self.add_net(f"d{i}", DCDiscriminator(s, cfg.d_base, 0, cfg.init_std))
            self.optimizers[f"g{i}"] = make_adam(self.nets[f"g{i}"].parameters(), cfg.lr_g, cfg.betas, self.device)
            self.optimizers[f"d{i}"] = make_adam(self.nets[f"d{i}"].parameters(), cfg.lr_d, cfg.betas, self.device)
        self._images: torch.Tensor | None = None
        self._rows: list[torch.Tensor] = []
        self.untrained_classes: list[str] = []

    def bind_data(self, ds: ImageSet) -> None:
        """Per-class row lists of the training part; classes named explicitly must have images."""
        det = ds.detailed.bool()
        rows, empty = [], []
        for name in self.classes:
            mask = ~det.any(dim=1) if name == NO_FINDING else det[:, ds.findings.index(name)]
            idx = torch.nonzero(mask).flatten()
            rows.append(idx)
            if idx.numel() == 0:
                empty.append(name)
        if empty and self.cfg.classes and any(c in self.cfg.classes for c in empty):
            counts = {n: int(r.numel()) for n, r in zip(self.classes, rows)}
            raise UserError(f"DCGAN classes {[c for c in empty if c in self.cfg.classes]} have no training images "
                            f"(images per class: {counts}); drop them from 'classes'")
        if len(empty) == len(self.classes):
            raise UserError(f"none of the DCGAN classes {self.classes} has a training image")
        # on the training device (uint8), so a step's per-class batches need no host copy; the engine
        # passes the feed's device tensor, so there this is no second copy
        self._images = ds.images.to(self.device)
        self._rows = [r.to(self.device) for r in rows]
        self.untrained_classes = empty

    def images_per_step(self, batch_size: int) -> int:
        return batch_size * sum(1 for r in self._rows if r.numel()) if self._rows else batch_size

    def _class_batch(self, i: int, n: int) -> torch.Tensor:
        rows = self._rows[i]
        pick = rows[torch.randint(rows.numel(), (n,)).to(rows.device)]
        return to_model_range(self._images[pick])

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        if self._images is None:
            raise RuntimeError("DCGAN per class needs bind_data(training set) before train_step")
        b = batch.images.shape[0]
        aug = self.augment
        losses_d, losses_g = [], []
        for i, name in enumerate(self.classes):
            if self._rows[i].numel() == 0:
                continue
            g, d = self.nets[f"g{i}"], self.nets[f"d{i}"]
            g.train()
            d.train()
            real = self._class_batch(i, b)
            fake = g(self.noise(b))
            d_real, _ = d(aug(real))
            d_fake, _ = d(aug(fake.detach()))
            loss_d = nonsat_d(d_real, d_fake)
            self.optimise(f"d{i}", loss_d)
            aug.observe(d_real)  # one shared strength for all classes
            self.set_requires_grad(d, False)
            loss_g = nonsat_g(d(aug(fake))[0])
            self.optimise(f"g{i}", loss_g)
            self.set_requires_grad(d, True)
            losses_d.append(loss_d.detach())
            losses_g.append(loss_g.detach())
        out = {"loss_d": torch.stack(losses_d).mean(), "loss_g": torch.stack(losses_g).mean()}
        if aug.enabled:
            out["aug_p"] = aug.p.detach().clone()
        return out

    def class_index(self, detailed: torch.Tensor) -> torch.Tensor:
        """Per row: index into self.classes (first requested finding the model has, else no finding)."""
        det = detailed.detach().cpu().float() > 0.5
        idx = torch.full((det.shape[0],), -1, dtype=torch.long)
        for i in reversed(range(len(self.classes))):
            name = self.classes[i]
            if name != NO_FINDING:
                idx[det[:, self.schema.findings.index(name)]] = i
        none_rows = ~det.any(dim=1)
        if NO_FINDING in self.classes:
            idx[none_rows] = self.classes.index(NO_FINDING)
        missing = idx < 0
        if bool(missing.any()):
            r = int(torch.nonzero(missing)[0])
            want = [f for f, on in zip(self.schema.findings, det[r].tolist()) if on] or ["no finding"]
            raise UserError(f"this DCGAN run has no generator for {want}; its classes are {self.classes}")
        return idx

    def generate(self, z: torch.Tensor, general: torch.Tensor, detailed: torch.Tensor, ema: bool = True) -> dict[str, torch.Tensor]:
        z = z.to(self.device)
        idx = self.class_index(detailed)
        out = torch.empty(z.shape[0], 1, self.image_size, self.image_size, device=self.device)
        for i in torch.unique(idx).tolist():
            rows = torch.nonzero(idx == i).flatten().to(self.device)
            g = self.gen_net(f"g{i}", ema)
            with eval_mode(g):
                out[rows] = g(z[rows]).float()
        return {"images": out}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "classes": list(self.classes)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "classes" in state and list(state["classes"]) != self.classes:
            raise UserError(f"checkpoint was trained on DCGAN classes {state['classes']}, this config has {self.classes}")
        super().load_extra_state(state)
