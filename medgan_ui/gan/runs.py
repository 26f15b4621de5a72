"""Run folders: validation before compute, config.json, status.json and metrics.jsonl bookkeeping.

runs/<run-id>/ config.json   train + model config, label schema, dataset name/fingerprint/source
               manifest.json  versions, seed, times (workspace.write_manifest)
               status.json    running / finished / stopped / failed / interrupted, step, pid
               metrics.jsonl  one line per log window; on resume, lines after the checkpoint's step are
                              dropped so step counts stay consistent
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.gan.base import LabelSchema
from medgan_ui.gan.config import config_from_dict, config_to_dict
from medgan_ui.gan.config import validate as check_config
from medgan_ui.workspace import atomic_write_json, atomic_write_text, now_iso, read_json

KINDS = ("gdgan", "acgan", "dcgan", "pggan")


def model_kind(train_cfg, model_cfg) -> str:
    kind = getattr(model_cfg, "kind", None) or getattr(train_cfg, "model", None)
    if kind not in KINDS:
        raise UserError(f"unknown model {kind!r}: choose one of {', '.join(KINDS)}")
    return kind


def training_part(ds: ImageSet) -> ImageSet:
    """The GAN trains on the train split only (as the reference code); unsplit data is used whole."""
    return ds.part("train") if ds.split is not None else ds


def config_dict(train_cfg, model_cfg, schema: LabelSchema) -> dict[str, Any]:
    return {"kind": model_kind(train_cfg, model_cfg), "train": config_to_dict(train_cfg),
            "model": config_to_dict(model_cfg), "schema": schema.to_dict()}


def configs_from_dict(config: dict[str, Any]) -> tuple[Any, Any]:
    """config.json (or a checkpoint's copy) -> (TrainConfig, model config)."""
    from medgan_ui.gan.config import MODEL_CONFIGS, TrainConfig

    try:
        kind = config["kind"]
        return (config_from_dict(config["train"], TrainConfig),
                config_from_dict(config["model"], MODEL_CONFIGS[kind]))
    except KeyError as exc:
        raise UserError(f"run config lacks {exc.args[0]!r}: it was not written by this version of MedGAN Studio") from exc


def validate(ds: ImageSet, train_cfg, model_cfg) -> None:
    """Impossible settings -> UserError naming the field and the fix, before anything is computed."""
    kind = model_kind(train_cfg, model_cfg)
    check_config(train_cfg, model_cfg)
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


# ---- status.json -------------------------------------------------------------------------------------
def write_status(run_dir: Path, status: str, step: int, total: int, *, message: str = "",
                 checkpoint: str | None = None) -> None:
    old = read_status(run_dir)
    atomic_write_json(run_dir / "status.json", {
        "status": status, "step": step, "total": total, "message": message,
        "checkpoint": checkpoint or old.get("checkpoint"), "pid": os.getpid(), "host": socket.gethostname(),
        "started": old.get("started") if old.get("status") == "running" else now_iso(), "updated": now_iso()})


def read_status(run_dir: Path) -> dict[str, Any]:
    try:
        return read_json(run_dir / "status.json")
    except (OSError, ValueError):
        return {}


# ---- metrics.jsonl -----------------------------------------------------------------------------------
def append_metrics(path: Path, line: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")
        fh.flush()


def truncate_metrics(path: Path, step: int) -> None:
    """Keep lines up to `step` (the checkpoint resumed from); a torn last line from a kill is dropped too."""
    if not path.exists():
        return
    kept = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(raw)["step"] <= step:
                kept.append(raw)
        except (ValueError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(k + "\n" for k in kept))


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out
