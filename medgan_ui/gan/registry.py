"""The model families by kind, and what every caller needs from them: build, validate, (de)serialise.

Adding a model
--------------
1. Write `medgan_ui/gan/models/<kind>.py` after an existing one (acgan.py is the shortest GAN;
   a non-GAN family such as a diffusion model subclasses `base.ModelFamily` directly). The module
   holds everything about the family:
   - its settings dataclass (JSON-serialisable fields with the paper's defaults),
   - a `ModelFamily` subclass with `kind`, `Config`, `help` (one line for the Train tab) and
     `presets` (its rows for the preset names in config.PRESETS: {"train": {...}, "model": {...}}),
   - `check_config(train, cfg)` / `check_data(ds, train, cfg)` class methods raising UserError,
   - the hooks (`train_step`, `generate`, `noise`, optionally `bind_data`, `next_batch`,
     `update_ema`, `extra_state`, ...), returning losses named from `base.LOSS_KEYS`.
2. Add the class to `_family_classes()` below: one line.
The CLI's --model, the Train tab's model list and help, presets, validation, checkpoints, sampling
and the family-contract test (tests/gan/test_family_contract.py) pick it up from here.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.gan.base import LabelSchema, ModelFamily
from medgan_ui.gan.config import TrainConfig, config_from_dict, config_to_dict, validate
from medgan_ui.gan.feed import training_part


def _family_classes() -> list[type[ModelFamily]]:
    # imported here: the families import gan.config, which asks this module for them
    from medgan_ui.gan.models.acgan import ACGAN
    from medgan_ui.gan.models.dcgan import DCGANPerClass
    from medgan_ui.gan.models.ddpm import DDPM, GDDDPM
    from medgan_ui.gan.models.gdgan import GDGAN
    from medgan_ui.gan.models.pggan import PGGAN

    return [GDGAN, ACGAN, DCGANPerClass, PGGAN, DDPM, GDDDPM]


@lru_cache(maxsize=None)
def families() -> dict[str, type[ModelFamily]]:
    """kind -> family class, in the order the UI and the CLI list them."""
    return {cls.kind: cls for cls in _family_classes()}


def kinds() -> list[str]:
    return list(families())


def family(kind: str) -> type[ModelFamily]:
    fams = families()
    if kind not in fams:
        raise UserError(f"model {kind!r} is unknown; choose one of {list(fams)}")
    return fams[kind]


def build_model(kind: str, model_cfg: Any, train_cfg: TrainConfig, schema: LabelSchema, device: torch.device) -> ModelFamily:
    """Build a model family on `device` (nets, EMA twins, optimisers). Settings are validated first."""
    fam = family(kind)
    if train_cfg.model != kind:
        raise UserError(f"training config is for model {train_cfg.model!r}, not {kind!r}")
    validate(train_cfg, model_cfg)
    if schema.image_size != train_cfg.image_size:
        raise UserError(f"the dataset's images are {schema.image_size}x{schema.image_size} but image_size is "
                        f"{train_cfg.image_size}; prepare the data at {train_cfg.image_size} or set image_size={schema.image_size}")
    return fam(model_cfg, train_cfg, schema, torch.device(device))


def model_kind(train_cfg: TrainConfig, model_cfg: Any) -> str:
    """The family a pair of configs is for (the training config names it)."""
    return family(train_cfg.model).kind


def config_dict(train_cfg: TrainConfig, model_cfg: Any, schema: LabelSchema) -> dict[str, Any]:
    """What config.json (and each checkpoint) records about a run's settings."""
    return {"kind": model_kind(train_cfg, model_cfg), "train": config_to_dict(train_cfg),
            "model": config_to_dict(model_cfg), "schema": schema.to_dict()}


def configs_from_dict(config: dict[str, Any]) -> tuple[TrainConfig, Any]:
    """config.json (or a checkpoint's copy) -> (TrainConfig, model config)."""
    try:
        kind = config["kind"]
        return (config_from_dict(config["train"], TrainConfig), config_from_dict(config["model"], family(kind).Config))
    except KeyError as exc:
        raise UserError(f"run config lacks {exc.args[0]!r}: it was not written by this version of MedGAN Studio") from exc


def validate_run(ds: ImageSet, train_cfg: TrainConfig, model_cfg: Any) -> None:
    """Settings + data that cannot train -> UserError naming the field and the fix, before any compute."""
    kind = model_kind(train_cfg, model_cfg)
    validate(train_cfg, model_cfg)
    size = int(train_cfg.image_size)
    if ds.size != size:
        raise UserError(f"dataset {ds.name!r} holds {ds.size}x{ds.size} images but the {kind} config wants "
                        f"{size}x{size}: reload the data with --image-size {size}, or train with --image-size {ds.size}")
    part = training_part(ds)
    batch = int(train_cfg.batch_size)
    if batch > len(part):
        where = "the train split of " if ds.split is not None else ""
        raise UserError(f"batch size {batch} does not fit {where}dataset {ds.name!r} ({len(part)} images); "
                        f"use --batch-size between 2 and {len(part)}")
    family(kind).check_data(ds, train_cfg, model_cfg)
