"""Full-state checkpoints: atomic files, a `latest` pointer, keep-last-k, and RNG capture/restore.

A checkpoint holds everything resume needs to continue exactly where a run stopped: every net
(EMA copies included), every optimiser, the step, all RNG streams (torch CPU/CUDA, numpy, python,
the batch sampler), the model's extra state (augmentation p, PGGAN phase/alpha) and the configs.
Files load with torch.load(weights_only=True), so numpy objects are converted to tensors on save.
"""
from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan_ui.errors import UserError
from medgan_ui.workspace import atomic_write_bytes, atomic_write_text

FORMAT = 1
_NAME = re.compile(r"^step_(\d{6,})\.pt$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}.pt"


def rng_state(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": _plain(random.getstate()),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(_tuples(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _plain(obj: Any) -> Any:
    """numpy scalars/arrays -> python numbers/tensors so weights_only loading accepts them."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _tuples(obj: Any) -> Any:
    """random.setstate needs the nested tuples back."""
    return tuple(_tuples(v) for v in obj) if isinstance(obj, list) else obj


def save(folder: Path, step: int, state: dict[str, Any], keep: int = 3) -> Path:
    """Write checkpoints/step_XXXXXX.pt atomically, then point `latest` at it, then prune old ones."""
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "step": step, **_plain(state)}, buf)
    path = atomic_write_bytes(folder / checkpoint_name(step), buf.getvalue())
    atomic_write_text(folder / "latest", path.name + "\n")
    if keep > 0:
        for old in list_checkpoints(folder)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))  # type: ignore[union-attr]


def resolve(folder: Path, name: str | None = None) -> Path:
    """The file for `name` (step_000100, step_000100.pt, or None = latest), with a clear message if absent."""
    if name:
        fname = name if name.endswith(".pt") else name + ".pt"
        path = folder / fname
        if not path.is_file():
            have = ", ".join(p.stem for p in list_checkpoints(folder)) or "none"
            raise UserError(f"checkpoint {path} does not exist; this run has: {have}")
        return path
    pointer = folder / "latest"
    if pointer.is_file():
        path = folder / pointer.read_text().strip()
        if path.is_file():
            return path
    found = list_checkpoints(folder)
    if not found:
        raise UserError(f"no checkpoint in {folder}: the run stopped before its first checkpoint; start it again")
    return found[-1]


def load(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, wrong file, unpickling refusal: all mean "unusable"
        raise UserError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
                        f"resume from an earlier one with --checkpoint, or start a new run") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT or "nets" not in state:
        raise UserError(f"checkpoint {path} is not a MedGAN Studio checkpoint (format {FORMAT})")
    return state
