"""Fold x strategy cells on disk: scale-out over processes, resume, and the merge.

Every (fold, strategy) cell is independent. Its record (predictions, training summary) is written to
experiments/<id>/cells/<cell>.json as soon as it finishes, so

* a stopped experiment resumes: re-run with the same id and config and finished cells are reused;
* each fold's label fidelity per synthetic source goes to fidelity/<cell>.json, computed by the process
  that owns the first cell using that source in the fold;
* N processes share one experiment: process i of N (0-based: `--cells i/N`, e.g. a Slurm array
  `--array=0-7` with `--cells $SLURM_ARRAY_TASK_ID/8`; under torchrun the CLI reads RANK/WORLD_SIZE) runs
  the cells c with c % N == i, c = fold x n_strategies + strategy (round robin, so each process gets a
  mix of folds and strategies); whichever process finds every cell on disk merges, and
  `medgan evaluate --merge ID` merges explicitly.

No process group or pool: the cells share nothing but the folder.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from medgan_ui.errors import UserError
from medgan_ui.workspace import atomic_write_json, read_json

ARRAYS = {"y_val": bool, "p_val": np.float32, "y_test": bool, "p_test": np.float32, "idx_test": np.int64}
IGNORED = ("device", "name", "n_boot", "specificity")  # settings that do not change a cell's record


def experiment_dir(ws: Any, exp_id: str) -> Path:
    """The folder of a user-given experiment id (--id, --merge): a plain name inside the workspace."""
    try:
        return ws.experiment_dir(exp_id)
    except ValueError as exc:
        raise UserError(f"experiment id {exp_id!r}: {exc}") from None


def cell_name(repeat: int, fold: int, spec: str) -> str:
    return f"repeat{repeat}-fold{fold}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', spec)}"


def share_from_env() -> str | None:
    """torchrun's RANK/WORLD_SIZE as 'i/N' when WORLD_SIZE > 1 (read by the CLI only: an app is never a share)."""
    world = os.environ.get("WORLD_SIZE", "").strip()
    return f"{os.environ.get('RANK', '0').strip() or 0}/{world}" if world and world != "1" else None


def parse_cells(text: str | None) -> tuple[int, int] | None:
    """'i/N' (0-based i) -> (i, N); None or '' -> None (every cell)."""
    if text is None or text == "":
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise UserError(f"--cells {text!r}: write i/N, process i (0-based) of N, e.g. 0/4 "
                        "(Slurm: --cells $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or i >= n:
        raise UserError(f"--cells {text}: process index {i} must be below the process count {n} (0-based: 0/{n} "
                        f"to {n - 1}/{n})" if n >= 1 else f"--cells {text}: the process count must be at least 1")
    return i, n


def mine(cell: int, share: tuple[int, int] | None) -> bool:
    return share is None or cell % share[1] == share[0]


def check_config(out: Path, cfg: dict[str, Any], exp_id: str) -> None:
    """An existing experiment folder may be resumed or shared only under the same settings."""
    path = out / "config.json"
    if not path.is_file():
        return
    old = read_json(path)
    diff = sorted(k for k in set(old) | set(cfg) if k not in IGNORED and old.get(k) != cfg.get(k))
    if diff:
        shown = "; ".join(f"{k}: {old.get(k)!r} there, {cfg.get(k)!r} now" for k in diff[:5])
        raise UserError(f"experiment {exp_id!r} already exists with other settings ({shown}); resume it with the "
                        "same settings or choose another --id")


def save_cell(out: Path, name: str, rec: dict[str, Any], fingerprint: str) -> None:
    data = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in rec.items()}
    atomic_write_json(out / "cells" / f"{name}.json", {**data, "dataset_fingerprint": fingerprint})


def load_cell(out: Path, name: str, fingerprint: str) -> dict[str, Any] | None:
    """A finished cell's record, or None when it is not on disk (or half-written by a crash)."""
    path = out / "cells" / f"{name}.json"
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except ValueError:
        return None
    if data.pop("dataset_fingerprint", None) != fingerprint:
        raise UserError(f"{path}: was computed on another dataset (fingerprint differs); the experiment's data "
                        "changed: choose another --id")
    for k, dt in ARRAYS.items():
        data[k] = np.asarray(data[k], dtype=dt)
    return data


def fidelity_name(repeat: int, fold: int, source: str) -> str:
    return "fidelity-" + cell_name(repeat, fold, source)


def save_fidelity(out: Path, name: str, rec: dict[str, Any], fingerprint: str) -> None:
    """A fold's label fidelity for one synthetic source (label_fidelity.py), kept like a cell."""
    atomic_write_json(out / "fidelity" / f"{name}.json", {**rec, "dataset_fingerprint": fingerprint})


def load_fidelity(out: Path, name: str, fingerprint: str) -> dict[str, Any] | None:
    path = out / "fidelity" / f"{name}.json"
    try:
        data = read_json(path) if path.is_file() else None
    except ValueError:
        return None  # half-written by a crash: computed again
    return data if data is not None and data.pop("dataset_fingerprint", None) == fingerprint else None


def missing(out: Path, names: list[str]) -> list[str]:
    return [n for n in names if not (out / "cells" / f"{n}.json").is_file()]
