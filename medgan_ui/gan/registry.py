"""Model kind name -> model family; the engine's only way to build a model."""
from __future__ import annotations

from typing import Any

import torch

from medgan_ui.errors import UserError
from medgan_ui.gan.base import GANModel, LabelSchema
from medgan_ui.data.imageset import ImageSet
from medgan_ui.gan.feed import training_part
from medgan_ui.gan.config import MODEL_CONFIGS, MODEL_KINDS, TrainConfig, config_from_dict, config_to_dict, validate


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


def model_kind(train_cfg, model_cfg) -> str:
    kind = getattr(model_cfg, "kind", None) or getattr(train_cfg, "model", None)
    if kind not in MODEL_KINDS:
        raise UserError(f"unknown model {kind!r}: choose one of {', '.join(MODEL_KINDS)}")
    return kind


def config_dict(train_cfg, model_cfg, schema: LabelSchema) -> dict[str, Any]:
    return {"kind": model_kind(train_cfg, model_cfg), "train": config_to_dict(train_cfg),
            "model": config_to_dict(model_cfg), "schema": schema.to_dict()}


def configs_from_dict(config: dict[str, Any]) -> tuple[Any, Any]:
    """config.json (or a checkpoint's copy) -> (TrainConfig, model config)."""
    try:
        kind = config["kind"]
        return (config_from_dict(config["train"], TrainConfig),
                config_from_dict(config["model"], MODEL_CONFIGS[kind]))
    except KeyError as exc:
        raise UserError(f"run config lacks {exc.args[0]!r}: it was not written by this version of MedGAN Studio") from exc


def validate_run(ds: ImageSet, train_cfg, model_cfg) -> None:
    """Impossible settings -> UserError naming the field and the fix, before anything is computed."""
    kind = model_kind(train_cfg, model_cfg)
    validate(train_cfg, model_cfg)
    steps = int(train_cfg.steps)
    if steps < 1:
        raise UserError(f"steps must be at least 1 (got {steps}); pass --steps N or --epochs N")
    size = int(getattr(model_cfg, "image_size", None) or getattr(train_cfg, "image_size", None) or ds.size)
    if ds.size != size:
        raise UserError(f"dataset {ds.name!r} holds {ds.size}x{ds.size} images but the {kind} config wants "
                        f"{size}x{size}: reload the data with --image-size {size}, or train with --image-size {ds.size}")
    part = training_part(ds)
    where = "the train split of " if ds.split is not None else ""
    batch = int(train_cfg.batch_size)
    if batch < 1 or batch > len(part):
        raise UserError(f"batch size {batch} does not fit {where}dataset {ds.name!r} ({len(part)} images); "
                        f"use --batch-size between 1 and {len(part)}")
    det = part.detailed.sum(0).tolist()
    if kind == "dcgan":  # one generator per class: every modelled class needs images
        # explicit classes must all have images; the default (every finding) is the model's to thin out
        classes = _requested(getattr(model_cfg, "classes", None), ds.findings, "finding")
        empty = [f for f in classes if det[ds.findings.index(f)] == 0]
        if empty:
            raise UserError(f"dcgan trains one generator per finding but {where}dataset {ds.name!r} has no images of "
                            f"{', '.join(empty)}; pick classes that occur with --set classes=A,B "
                            f"(it has {', '.join(f for f, n in zip(ds.findings, det) if n) or 'none'})")
        if getattr(model_cfg, "no_finding", False) and int((part.detailed.sum(1) == 0).sum()) == 0:
            raise UserError(f"{where}dataset {ds.name!r} has no images without findings; use --set no_finding=false")
    for name in _requested(getattr(model_cfg, "general", None), ds.general_names, "general label"):
        col = part.general[:, ds.general_names.index(name)]
        if int((col >= 0).sum()) == 0:
            raise UserError(f"general label {name!r} is unknown for every image in {where}dataset {ds.name!r}")


def _requested(names, available: list[str], what: str) -> list[str]:
    if not names:
        return []
    missing = [n for n in names if n not in available]
    if missing:
        raise UserError(f"{what} {', '.join(map(repr, missing))} not in the dataset; it has {available}")
    return list(names)


