"""Training and model configs: JSON-serialisable dataclasses, named presets, validation.

`make_configs(kind, preset, **overrides)` is the one way the CLI, UI and engine build a run's
settings. Defaults reproduce the papers (PAPERS.md); presets live here and only here so the UI can
show them. Every impossible setting raises `UserError` naming the field before any compute starts.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from medgan_ui.errors import UserError

MODEL_KINDS = ("gdgan", "acgan", "dcgan", "pggan")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENTS = ("none", "diffaug", "ada")
Z_DISTS = ("uniform", "uniform_signed", "normal")  # U[0,1) like torch.rand; U[-1,1]; N(0,1)


@dataclass
class TrainConfig:
    """What the engine needs; model-specific settings live in the model config."""

    model: str = "gdgan"
    preset: str = "paper"
    steps: int = 98_000  # total optimisation steps (GDGAN: both stages together)
    batch_size: int = 32
    seed: int = 7412  # the GDGAN reference seed
    image_size: int = 64
    sample_every: int = 1000
    checkpoint_every: int = 1000
    log_every: int = 50
    device: str = "auto"  # auto = CUDA, then MPS, then CPU
    amp: bool = True  # bf16 autocast where native: CUDA, CPUs with AVX512-BF16/AMX (gan/device.py)
    channels_last: bool = True  # GPU only
    ema_decay: float = 0.999  # EMA copy of every generator, used for sampling
    augment: str = "none"  # limited-data option: none | diffaug | ada
    ada_target: float = 0.6  # ADA: wanted fraction of real images the critic scores "real"
    n_sample_grid: int = 64


@dataclass
class GDGANConfig:
    """GDGAN (PAPERS.md 1.3-1.5); defaults are the official code's settings."""

    nz: int = 128
    z_dist: str = "uniform"  # torch.rand in the reference
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    n_critic: int = 1  # G is updated on every n_critic-th step, as in the reference loop
    gp_lambda: float = 10.0
    # The nine loss weights (reference names: lambda_G1_1, lambda_D1_1, lambda_D1_2, lambda_G2_1,
    # lambda_G2_2, lambda_G2_3, lambda_D2_1, lambda_D2_2, lambda_D2_3).
    g1_aux: float = 1.0
    d1_aux_fake: float = 1.0
    d1_aux_real: float = 1.0
    g2_aux: float = 1.0
    g2_general: float = 1.0
    g2_mse: float = 1.0
    d2_aux_fake: float = 1.0
    d2_aux_real: float = 1.0
    d2_general: float = 1.0  # touches no trainable parameter in the reference (D1 frozen): logged only
    mse_loss: bool = True  # the reference's --mse_loss flag, on by default here
    # A sigmoid bounds the WGAN critic's output: the Wasserstein estimate -E[D(real)] + E[D(fake)]
    # then saturates, the gradient penalty's 1-Lipschitz target no longer describes the critic the loss
    # uses, and gradients to G vanish where the sigmoid is flat. The reference code has it, so it stays
    # available for a faithful reproduction, but it is off by default.
    critic_sigmoid: bool = False
    # "joint": real and fake go through the critic as one batch, so its BatchNorm layers share
    # statistics. The reference passes them separately ("separate"); each BN then normalises away
    # whatever is constant across a batch, so the critic cannot see batch-wide differences such as
    # overall brightness or the presence of lungs, and G learns slowly (on the phantom: noise after
    # 300 steps with "separate", lung fields with "joint"). It is also one pass instead of two.
    critic_batch: str = "joint"
    stage1_fraction: float = 0.5  # share of TrainConfig.steps spent in stage 1 (reference: 20 + 20 epochs)
    stage2_general: str = "batch"  # y1 for G1 in stage 2: "batch" (real batch) or "cyclic" (reference)
    reuse_fakes: bool = True  # False = the reference way (G run again for its own update)
    fc_hidden: int = 1024
    ch1: int = 64
    ch2: int = 128


@dataclass
class ACGANConfig:
    """ACGAN (Odena; Frid-Adar 2.5): DCGAN nets + auxiliary multi-label head on the findings."""

    nz: int = 100
    z_dist: str = "uniform_signed"  # Frid-Adar: z ~ U[-1, 1]
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    aux_weight: float = 1.0
    use_general: bool = False  # also condition on (and classify) the general labels
    g_base: int = 128  # channels of the last hidden G layer; doubles towards 4x4 (64x64: 1024 at 4x4)
    d_base: int = 64  # Radford's 64/128/256/512
    init_std: float = 0.02


@dataclass
class DCGANConfig:
    """One DCGAN per finding class plus "no finding" (Frid-Adar 2.4)."""

    nz: int = 100
    z_dist: str = "uniform_signed"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    g_base: int = 128
    d_base: int = 64
    init_std: float = 0.02
    classes: list[str] = field(default_factory=list)  # findings to model; empty = every finding
    no_finding: bool = True  # also a generator for images with no finding


@dataclass
class PGGANConfig:
    """Progressive GAN (Karras 2018; PAPERS.md 3.3), class-conditional on general + detailed labels."""

    nz: int = 128
    z_dist: str = "normal"
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    gp_lambda: float = 10.0
    drift: float = 0.001
    aux_weight: float = 1.0  # auxiliary multi-label head in D, on top of the projection term
    n_critic: int = 1
    start_size: int = 4
    phase_steps: int = 0  # steps per growth phase (fade-in or stable); 0 = split `steps` evenly
    fmap_base: int = 8192  # channels at resolution r: min(fmap_base / r * 2, fmap_max) as in Karras
    fmap_max: int = 512
    mbstd_group: int = 4


MODEL_CONFIGS: dict[str, type] = {"gdgan": GDGANConfig, "acgan": ACGANConfig, "dcgan": DCGANConfig,
                                  "pggan": PGGANConfig}

# Each preset: a description, TrainConfig fields for all kinds, and per kind {"train": ..., "model": ...}.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "description": "The papers' settings at 64x64 (GDGAN official code; Frid-Adar DCGAN/ACGAN; Karras PGGAN).",
        "train": {"image_size": 64, "sample_every": 1000, "checkpoint_every": 1000, "log_every": 50},
        "gdgan": {"train": {"batch_size": 32, "steps": 98_000}, "model": {"stage2_general": "cyclic"}},
        "acgan": {"train": {"batch_size": 64, "steps": 20_000}, "model": {}},
        "dcgan": {"train": {"batch_size": 64, "steps": 20_000}, "model": {}},
        "pggan": {"train": {"batch_size": 32, "steps": 45_000}, "model": {}},
    },
    "fast-cpu": {
        "description": "64x64 with narrow nets for a 2-core CPU (minutes, not days).",
        "train": {"image_size": 64, "batch_size": 32, "steps": 2000, "sample_every": 250,
                  "checkpoint_every": 250, "log_every": 10},
        # The critics' auxiliary heads learn from real images only (d*_aux_fake = 0): trained on fakes
        # too (the reference's 1.0), D's classifier learns whatever code G1 uses for a label instead of
        # the real images' sex/view features. bench/conditioning_check.py, 32x32, 1600 steps: a reader
        # trained on real images recognises sex/view in stage-1 samples 0.57/0.73 with 1.0 and
        # 0.96/0.91 with 0.0; Cardiomegaly's cardiothoracic-ratio gain 0.029 -> 0.059.
        # g2_mse 0.5: the MSE to the stage-1 image resists the anatomy a finding changes (a larger
        # heart). Same check, 32x32, 2400 steps, seeds 0/1 in fp32 and bf16: Cardiomegaly's ratio gain
        # 0.017-0.070 (pairs larger 0.55-0.77; 3 runs) with 1.0, 0.035-0.096 (0.60-0.89; 4 runs) with 0.5.
        "gdgan": {"train": {}, "model": {"fc_hidden": 256, "ch1": 32, "ch2": 64, "d1_aux_fake": 0.0,
                                         "d2_aux_fake": 0.0, "g2_mse": 0.5}},
        "acgan": {"train": {}, "model": {"g_base": 32, "d_base": 16, "lr_g": 2e-4, "lr_d": 2e-4}},
        "dcgan": {"train": {}, "model": {"g_base": 16, "d_base": 8}},
        "pggan": {"train": {}, "model": {"fmap_base": 512, "fmap_max": 64}},
    },
    "tiny": {
        "description": "16x16, tiny widths, a few steps: for tests and smoke runs.",
        "train": {"image_size": 16, "batch_size": 8, "steps": 6, "sample_every": 3, "checkpoint_every": 3,
                  "log_every": 1, "n_sample_grid": 16, "ema_decay": 0.9},
        "gdgan": {"train": {}, "model": {"fc_hidden": 32, "ch1": 4, "ch2": 8, "nz": 16}},
        "acgan": {"train": {}, "model": {"g_base": 8, "d_base": 4, "nz": 16}},
        "dcgan": {"train": {}, "model": {"g_base": 8, "d_base": 4, "nz": 16}},
        "pggan": {"train": {}, "model": {"fmap_base": 64, "fmap_max": 16, "nz": 16}},
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


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def validate(train: TrainConfig, model: Any) -> None:
    """Raise UserError for settings that cannot work, naming the field and what would."""
    kind = train.model
    if kind not in MODEL_KINDS:
        raise UserError(f"model {kind!r} is unknown; choose one of {list(MODEL_KINDS)}")
    if train.steps <= 0:
        raise UserError(f"steps must be at least 1 (got {train.steps})")
    if train.batch_size < 2:
        raise UserError(f"batch_size must be at least 2: batch norm and the minibatch-stddev layer need a batch "
                        f"(got {train.batch_size})")
    for name in ("sample_every", "checkpoint_every", "log_every", "n_sample_grid"):
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
    s = train.image_size
    if kind == "gdgan":
        if s < 8 or s % 4:
            raise UserError(f"GDGAN needs image_size divisible by 4 and at least 8 (got {s}); 64 is the paper's")
    elif not (_is_pow2(s) and 16 <= s <= 128):
        raise UserError(f"{kind.upper()} needs image_size 16, 32, 64 or 128 (got {s})")
    if model.nz <= 0:
        raise UserError(f"nz must be at least 1 (got {model.nz})")
    if model.z_dist not in Z_DISTS:
        raise UserError(f"z_dist {model.z_dist!r} is unknown; choose one of {list(Z_DISTS)}")
    if model.lr_g <= 0 or model.lr_d <= 0:
        raise UserError(f"learning rates must be positive (lr_g={model.lr_g}, lr_d={model.lr_d})")
    if len(model.betas) != 2 or not all(0.0 <= b < 1.0 for b in model.betas):
        raise UserError(f"betas must be two numbers in [0, 1) (got {model.betas})")
    for f in fields(model):
        v = getattr(model, f.name)
        if isinstance(v, float) and not isinstance(v, bool) and v < 0:
            raise UserError(f"{f.name} must not be negative (got {v})")
        if f.name in ("fc_hidden", "ch1", "ch2", "g_base", "d_base", "fmap_base", "fmap_max", "n_critic",
                      "mbstd_group") and v <= 0:
            raise UserError(f"{f.name} must be at least 1 (got {v})")
    if kind == "gdgan":
        if not 0.0 < model.stage1_fraction < 1.0:
            raise UserError(f"stage1_fraction must be between 0 and 1 (got {model.stage1_fraction})")
        if train.steps < 2:
            raise UserError("GDGAN needs steps >= 2 (one stage-1 and one stage-2 step at least)")
        if model.critic_batch not in ("joint", "separate"):
            raise UserError(f"critic_batch must be 'joint' or 'separate' (got {model.critic_batch!r})")
        if model.stage2_general not in ("batch", "cyclic"):
            raise UserError(f"stage2_general must be 'batch' or 'cyclic' (got {model.stage2_general!r})")
    if kind == "pggan":
        if not (_is_pow2(model.start_size) and 4 <= model.start_size <= s):
            raise UserError(f"start_size must be a power of two between 4 and image_size {s} (got {model.start_size})")
        n_phases = 2 * (s.bit_length() - model.start_size.bit_length()) + 1
        if model.phase_steps < 0:
            raise UserError(f"phase_steps must be 0 (split steps evenly) or positive (got {model.phase_steps})")
        if train.steps < n_phases and model.phase_steps == 0:
            raise UserError(f"PGGAN from {model.start_size} to {s} has {n_phases} growth phases; steps must be >= {n_phases}")


def make_configs(kind: str, preset: str = "paper", **overrides: Any) -> tuple[TrainConfig, Any]:
    """Preset + overrides -> validated (TrainConfig, model config). Overrides may name fields of either."""
    if kind not in MODEL_KINDS:
        raise UserError(f"model {kind!r} is unknown; choose one of {list(MODEL_KINDS)}")
    if preset not in PRESETS:
        raise UserError(f"preset {preset!r} is unknown; choose one of {list(PRESETS)}")
    p = PRESETS[preset]
    train = _apply(TrainConfig(model=kind, preset=preset), {**p["train"], **p[kind]["train"]})
    model = _apply(MODEL_CONFIGS[kind](), p[kind]["model"])
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


_CLASSES = {c.__name__: c for c in (TrainConfig, *MODEL_CONFIGS.values())}


def config_from_dict(d: dict[str, Any], cls: type | None = None) -> Any:
    """Inverse of config_to_dict; missing fields take defaults, unknown ones are an error."""
    d = dict(d)
    name = d.pop("config_type", None)
    if cls is None:
        if name not in _CLASSES:
            raise UserError(f"config type {name!r} is unknown; expected one of {sorted(_CLASSES)}")
        cls = _CLASSES[name]
    valid = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - valid)
    if unknown:
        raise UserError(f"config has unknown field(s) {unknown} for {cls.__name__}; valid: {sorted(valid)}")
    return _apply(cls(), d)
