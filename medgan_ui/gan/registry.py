"""Model kind name -> model family; the engine's only way to build a model."""
from __future__ import annotations

from typing import Any

import torch

from medgan_ui.errors import UserError
from medgan_ui.gan.base import GANModel, LabelSchema
from medgan_ui.gan.config import MODEL_KINDS, TrainConfig, validate


def _families() -> dict[str, type]:
    # imported here so `medgan_ui.gan.config` (used by the UI) does not pull in every net
    from medgan_ui.gan.models.acgan import ACGAN
    from medgan_ui.gan.models.dcgan import DCGANPerClass
    from medgan_ui.gan.models.gdgan import GDGAN
    from medgan_ui.gan.models.pggan import PGGAN

    return {"gdgan": GDGAN, "acgan": ACGAN, "dcgan": DCGANPerClass, "pggan": PGGAN}


def build_model(kind: str, model_cfg: Any, train_cfg: TrainConfig, schema: LabelSchema, device: torch.device) -> GANModel:
    """Build a model family on `device` (nets, EMA twins, optimisers). Settings are validated first."""
    if kind not in MODEL_KINDS:
        raise UserError(f"model {kind!r} is unknown; choose one of {list(MODEL_KINDS)}")
    if train_cfg.model != kind:
        raise UserError(f"training config is for model {train_cfg.model!r}, not {kind!r}")
    validate(train_cfg, model_cfg)
    if schema.image_size != train_cfg.image_size:
        raise UserError(f"the dataset's images are {schema.image_size}x{schema.image_size} but image_size is "
                        f"{train_cfg.image_size}; prepare the data at {train_cfg.image_size} or set image_size={schema.image_size}")
    return _families()[kind](model_cfg, train_cfg, schema, torch.device(device))
