"""DCGAN per class (Frid-Adar 2.4): one independent G/D pair per finding, plus one for "no finding".

Per-class batches: `bind_data(ds)` (called by the engine once, with the training part) records the
row indices of each class. `next_batch(feed)` draws `batch_size` rows per class through the feed
(global torch RNG, so resume replays them), class after class in one Batch, and train_step updates
every class's pair on its own rows. A row with several findings counts for each of them. Classes
without a single training image are left untrained (their names are in `untrained_classes`).
Sampling picks one generator per requested label: the first requested finding in the model's class
order, or "no finding" for an all-zero finding vector.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.gan.base import Batch, LabelSchema
from medgan_ui.gan.config import TrainConfig
from medgan_ui.gan.feed import DeviceBatches, training_part
from medgan_ui.gan.losses import nonsat_d, nonsat_g
from medgan_ui.gan.models.common import GANFamily, GANSettings, eval_mode, make_adam
from medgan_ui.gan.nets.dcgan import DCDiscriminator, DCGenerator

NO_FINDING = "No Finding"


@dataclass
class DCGANConfig(GANSettings):
    """One DCGAN per finding class plus "no finding" (Frid-Adar 2.4); the GANSettings defaults are its own."""

    g_base: int = 128
    d_base: int = 64
    init_std: float = 0.02
    classes: list[str] = field(default_factory=list)  # findings to model; empty = every finding
    no_finding: bool = True  # also a generator for images with no finding


class DCGANPerClass(GANFamily):
    kind = "dcgan"
    Config = DCGANConfig
    help = "DCGAN: one unconditional GAN per finding (Frid-Adar)."
    presets = {
        "paper": {"train": {"batch_size": 64, "steps": 20_000}, "model": {}},
        "fast-cpu": {"train": {}, "model": {"g_base": 16, "d_base": 8}},
        "tiny": {"train": {}, "model": {"g_base": 8, "d_base": 4, "nz": 16}},
    }

    @classmethod
    def check_data(cls, ds: ImageSet, train: TrainConfig, cfg: DCGANConfig) -> None:
        """Explicitly named classes must all have training images; the default (every finding) is thinned
        out by bind_data."""
        part = training_part(ds)
        where = "the train split of " if ds.split is not None else ""
        det = part.detailed.sum(0).tolist()
        missing = [c for c in cfg.classes if c not in ds.findings]
        if missing:
            raise UserError(f"finding {', '.join(map(repr, missing))} not in the dataset; it has {ds.findings}")
        empty = [f for f in cfg.classes if det[ds.findings.index(f)] == 0]
        if empty:
            raise UserError(f"dcgan trains one generator per finding but {where}dataset {ds.name!r} has no images of "
                            f"{', '.join(empty)}; pick classes that occur with --set classes=A,B "
                            f"(it has {', '.join(f for f, n in zip(ds.findings, det) if n) or 'none'})")
        if cfg.no_finding and int((part.detailed.sum(1) == 0).sum()) == 0:
            raise UserError(f"{where}dataset {ds.name!r} has no images without findings; use --set no_finding=false")

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
        self._rows = [r.to(self.device) for r in rows]
        self.untrained_classes = empty

    @classmethod
    def experiment_settings(cls, targets: list[str]) -> dict[str, Any]:
        return {"classes": list(targets)}  # + "no finding", which also draws the negatives

    def generated_findings(self) -> list[str]:
        return [c for c in self.classes if c != NO_FINDING]

    def images_per_step(self, batch_size: int) -> int:
        return batch_size * sum(1 for r in self._rows if r.numel()) if self._rows else batch_size

    def next_batch(self, feed: DeviceBatches) -> Batch:
        """`batch_size` rows of every trained class, class after class."""
        if not self._rows:
            raise RuntimeError("DCGAN per class needs bind_data(training set) before its first batch")
        parts = [feed.draw(rows, feed.batch_size) for rows in self._rows if rows.numel()]
        return Batch(images=torch.cat([p.images for p in parts]), general=torch.cat([p.general for p in parts]),
                     detailed=torch.cat([p.detailed for p in parts]), extra={"per_class": feed.batch_size})

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        b = int(batch.extra["per_class"])
        reals = iter(batch.images.split(b))
        aug = self.augment
        losses_d, losses_g, means_real, means_fake = [], [], [], []
        for i, name in enumerate(self.classes):
            if self._rows[i].numel() == 0:
                continue
            g, d = self.nets[f"g{i}"], self.nets[f"d{i}"]
            g.train()
            d.train()
            real = next(reals)
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
            means_real.append(d_real.detach().float().mean())
            means_fake.append(d_fake.detach().float().mean())
        out = {"loss_d": torch.stack(losses_d).mean(), "loss_g": torch.stack(losses_g).mean(),
               "d_real": torch.stack(means_real).mean(), "d_fake": torch.stack(means_fake).mean()}
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
