"""The training config, named presets, validation, JSON round trips.

`make_configs(kind, preset, **overrides)` is the one way the CLI, UI and engine build a run's
settings. Defaults reproduce the papers (PAPERS.md). The preset names, descriptions and shared
training settings are here; each family's own rows and its model config dataclass are in its module
(gan/models/<kind>.py, found through gan/registry.py). Every impossible setting raises `UserError`
naming the field before any compute starts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, fields
from typing import Any

from medgan_ui.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENTS = ("none", "diffaug", "ada")


@dataclass
class TrainConfig:
    """What the engine needs; model-specific settings live in the family's config (gan/models/*.py)."""

    model: str = "gdgan"
    preset: str = "paper"
    steps: int = 98_000  # total optimisation steps (GDGAN: both stages together)
    batch_size: int = 32
    seed: int = 7412  # the GDGAN reference seed
    image_size: int = 64
    sample_every: int = 1000
    checkpoint_every: int = 1000
    log_every: int = 50
    keep_checkpoints: int = 3  # older step_*.pt files are deleted; `latest` always stays
    device: str = "auto"  # auto = CUDA, then MPS, then CPU
    amp: bool = True  # bf16 autocast where native: CUDA, CPUs with AVX512-BF16/AMX (gan/device.py)
    channels_last: bool = True  # GPU only
    ema_decay: float = 0.999  # EMA copy of every generator, used for sampling
    augment: str = "none"  # limited-data option: none | diffaug | ada
    ada_target: float = 0.6  # ADA: wanted fraction of real images the critic scores "real"
    n_sample_grid: int = 64


# Each preset: a description and the TrainConfig fields every family shares. The model-specific rows
# ({"train": ..., "model": ...}) live in each family's module as `presets[name]`.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "description": "The papers' settings at 64x64 (GDGAN official code; Frid-Adar DCGAN/ACGAN; Karras PGGAN).",
        "train": {"image_size": 64, "sample_every": 1000, "checkpoint_every": 1000, "log_every": 50},
    },
    "fast-cpu": {
        "description": "64x64 with narrow nets for a 2-core CPU (minutes, not days).",
        "train": {"image_size": 64, "batch_size": 32, "steps": 2000, "sample_every": 250,
                  "checkpoint_every": 250, "log_every": 10},
    },
    "tiny": {
        "description": "16x16, tiny widths, a few steps: for tests and smoke runs.",
        "train": {"image_size": 16, "batch_size": 8, "steps": 6, "sample_every": 3, "checkpoint_every": 3,
                  "log_every": 1, "n_sample_grid": 16, "ema_decay": 0.9},
    },
}


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Turn CLI/JSON values into the field's type, or explain what was expected."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
            return tuple(float(v) for v in value)
        if isinstance(default, list):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            return [str(v) for v in value]
        if isinstance(default, str):
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise UserError(f"setting {name!r}: cannot use {value!r}; expected a {type(default).__name__} like {default!r}")


def _apply(cfg: Any, values: dict[str, Any]) -> Any:
    defaults = {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    return dataclasses.replace(cfg, **{k: _coerce(k, v, defaults[k]) for k, v in values.items()})


def validate(train: TrainConfig, model: Any) -> None:
    """Raise UserError for settings that cannot work, naming the field and what would."""
    from medgan_ui.gan.registry import family

    fam = family(train.model)
    if train.steps <= 0:
        raise UserError(f"steps must be at least 1 (got {train.steps})")
    if train.batch_size < 2:
        raise UserError(f"batch_size must be at least 2: batch norm and the minibatch-stddev layer need a batch "
                        f"(got {train.batch_size})")
    for name in ("sample_every", "checkpoint_every", "log_every", "n_sample_grid", "keep_checkpoints"):
        if getattr(train, name) <= 0:
            raise UserError(f"{name} must be at least 1 (got {getattr(train, name)})")
    if train.device not in DEVICES:
        raise UserError(f"device {train.device!r} is unknown; choose one of {list(DEVICES)}")
    if train.augment not in AUGMENTS:
        raise UserError(f"augment {train.augment!r} is unknown; choose one of {list(AUGMENTS)}")
    if not 0.0 <= train.ema_decay < 1.0:
        raise UserError(f"ema_decay must be in [0, 1) (got {train.ema_decay})")
    if not 0.0 < train.ada_target < 1.0:
        raise UserError(f"ada_target must be in (0, 1) (got {train.ada_target})")
    if not isinstance(model, fam.Config):
        raise UserError(f"model settings are {type(model).__name__}, but {train.model} needs {fam.Config.__name__}")
    fam.check_config(train, model)


def make_configs(kind: str, preset: str = "paper", **overrides: Any) -> tuple[TrainConfig, Any]:
    """Preset + overrides -> validated (TrainConfig, model config). Overrides may name fields of either."""
    from medgan_ui.gan.registry import family

    fam = family(kind)
    if preset not in PRESETS:
        raise UserError(f"preset {preset!r} is unknown; choose one of {list(PRESETS)}")
    row = fam.presets.get(preset, {})
    train = _apply(TrainConfig(model=kind, preset=preset), {**PRESETS[preset]["train"], **row.get("train", {})})
    model = _apply(fam.Config(), row.get("model", {}))
    train_names = {f.name for f in fields(TrainConfig)} - {"model", "preset"}
    model_names = {f.name for f in fields(model)}
    unknown = sorted(set(overrides) - train_names - model_names)
    if unknown:
        raise UserError(f"unknown setting(s) {unknown} for {kind}; valid: training {sorted(train_names)}, "
                        f"model {sorted(model_names)}")
    train = _apply(train, {k: v for k, v in overrides.items() if k in train_names})
    model = _apply(model, {k: v for k, v in overrides.items() if k in model_names})
    validate(train, model)
    return train, model


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-ready dict with the class name, so config_from_dict can rebuild it."""
    d = asdict(cfg)
    for k, v in d.items():
        if isinstance(v, tuple):
            d[k] = list(v)
    return {"config_type": type(cfg).__name__, **d}


def config_from_dict(d: dict[str, Any], cls: type | None = None) -> Any:
    """Inverse of config_to_dict; missing fields take defaults, unknown ones are an error."""
    d = dict(d)
    name = d.pop("config_type", None)
    if cls is None:
        from medgan_ui.gan.registry import families

        classes = {c.__name__: c for c in (TrainConfig, *(f.Config for f in families().values()))}
        if name not in classes:
            raise UserError(f"config type {name!r} is unknown; expected one of {sorted(classes)}")
        cls = classes[name]
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - valid)
    if unknown:
        raise UserError(f"config has unknown field(s) {unknown} for {cls.__name__}; valid: {sorted(valid)}")
    return _apply(cls(), d)
