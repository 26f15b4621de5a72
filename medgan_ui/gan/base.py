"""The contract between a model family (gdgan, acgan, dcgan, pggan, ...) and the one training engine:
the label schema, the batch, the loss vocabulary and the `ModelFamily` base class.

A model family owns its nets, optimisers, losses and schedule (GDGAN's two stages, PGGAN's growth);
the engine owns everything else: device, data feeding, AMP, EMA bookkeeping hooks, checkpoints,
metrics, stop, resume, DDP. Losses come back as 0-d tensors so the engine can avoid per-step host
syncs (it only calls .item() when it logs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError

if TYPE_CHECKING:
    from medgan_ui.gan.feed import DeviceBatches


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


# ---- the loss vocabulary ----------------------------------------------------------------------------
# train_step returns 0-d tensors under these names (as far as they apply), so metrics.jsonl and the
# Train tab's plots line up across families. A family may add its own keys after these (GDGAN's
# `mse`, PGGAN's `alpha`); the Train tab plots vocabulary keys first, in this order.
LOSS_KEYS: dict[str, str] = {
    "loss": "the single objective of a non-adversarial family (e.g. a diffusion model's denoising loss)",
    "loss_d": "critic / discriminator total loss",
    "loss_g": "generator total loss",
    "d_real": "mean critic output on real images",
    "d_fake": "mean critic output on generated images (WGAN families: d_real - d_fake estimates the distance)",
    "gp": "gradient penalty (WGAN-GP), before its weight",
    "d_aux": "critic's auxiliary label loss (real + fake terms), weighted",
    "g_aux": "generator's auxiliary label loss, weighted",
    "aug_p": "DiffAugment / ADA probability",
}


def loss_order(names: Any) -> list[str]:
    """Vocabulary keys first (in LOSS_KEYS order), then a family's own keys alphabetically."""
    names = set(names)
    return [k for k in LOSS_KEYS if k in names] + sorted(names - set(LOSS_KEYS))


class ModelFamily:
    """What the engine needs from a model family, with the defaults of every optional hook.

    A family module (see gan/registry.py, "Adding a model") subclasses this and fills the class
    attributes: `kind`, `Config` (its settings dataclass, JSON-serialisable), `help` (one line for
    the UI), `presets` ({preset name: {"train": {...}, "model": {...}}} for the names in
    config.PRESETS). The engine owns device, data feeding, AMP, checkpoints, metrics, stop, resume
    and DDP; the family owns its nets, optimisers, losses and schedule.

    Randomness: use the global torch RNG (or generators saved in extra_state) so resume is exact;
    extra_state holds only tensors, numbers, strings, lists and dicts (checkpoints load with
    torch.load(weights_only=True)).
    """

    kind: ClassVar[str] = ""
    Config: ClassVar[type] = object
    help: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    # keyword settings `generate` takes per call (a diffusion model's steps, guidance, strength):
    # name -> one line; gan.generate.generate passes them through and Browse shows controls for them
    sample_options: ClassVar[dict[str, str]] = {}

    def __init__(self, model_cfg: Any, train_cfg: Any, schema: LabelSchema, device: torch.device) -> None:
        self.cfg = model_cfg
        self.train_cfg = train_cfg
        self.schema = schema
        self.device = torch.device(device)
        self.nets: dict[str, torch.nn.Module] = {}  # every net incl. EMA copies, by stable name (checkpoints)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.stage: int | str | None = None  # logged to metrics.jsonl (GDGAN 1/2, PGGAN resolution)

    # ---- settings (class methods: they run before anything is built) -----------------------------
    @classmethod
    def check_config(cls, train: Any, cfg: Any) -> None:
        """Raise UserError for settings of this family that cannot work, naming the field."""

    @classmethod
    def check_data(cls, ds: ImageSet, train: Any, cfg: Any) -> None:
        """Raise UserError when the (training part of the) data cannot train this family as configured."""

    @classmethod
    def experiment_settings(cls, targets: list[str]) -> dict[str, Any]:
        """Model settings the augmentation experiment's gan: strategy adds for these target findings
        (DCGAN per class: only the targets' generators, not one per finding of the dataset)."""
        return {}

    # ---- training ------------------------------------------------------------------------------
    def bind_data(self, ds: ImageSet) -> None:
        """Called once before step 1 with the training part (its images are the feed's device copy):
        label frequencies, per-class row lists. Keep no copy of the images."""

    def next_batch(self, feed: "DeviceBatches") -> Batch:
        """The batch of the next step; a family with its own sampling (DCGAN per class) draws it from the feed here."""
        return feed.next()

    def train_step(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """One optimisation step; returns 0-d loss tensors (no .item()) named from LOSS_KEYS.

        `step` is the 0-based index of this step (= steps completed before it); the engine's step
        counter, metrics and checkpoint names count completed steps (1-based)."""
        raise NotImplementedError

    def update_ema(self, step: int) -> None:
        """Called right after each train_step (train_step itself leaves EMA copies alone)."""

    def images_per_step(self, batch_size: int) -> int:
        """Real images one train_step consumes (for img/s)."""
        return batch_size

    # ---- sampling ------------------------------------------------------------------------------
    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The model's latent input for n samples (the fixed sample grid draws it once)."""
        raise NotImplementedError

    def generate(self, z: torch.Tensor, general: torch.Tensor, detailed: torch.Tensor, ema: bool = True) -> dict[str, torch.Tensor]:
        """{'images': [n,1,H,W] in [-1,1]} plus optional extra views (GDGAN: {'stage1': ...})."""
        raise NotImplementedError

    def generated_findings(self) -> list[str]:
        """The findings this model can be asked for (a DCGAN per class: its classes)."""
        return list(self.schema.findings)

    def check_sample_options(self, options: dict[str, Any]) -> None:
        """Raise UserError for per-call sampling settings (see `sample_options`) this family cannot use."""
        unknown = sorted(set(options) - set(self.sample_options))
        if unknown:
            raise UserError(f"{self.kind} has no sampling setting(s) {unknown}; it takes {sorted(self.sample_options) or 'none'}")

    # ---- resume --------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        """Anything beyond nets/optimisers that resume must restore (augmentation p, phase, alpha)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of extra_state."""
