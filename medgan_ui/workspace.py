"""Where everything lives on disk, and the crash-safe way to write it.

Layout (DESIGN.md):
    datasets/<name>/        cache.npz + dataset.json
    runs/<run-id>/          config.json, manifest.json, checkpoints/, samples/, metrics.jsonl
    synthetic/<set-id>/     images + labels.csv + manifest.json
    experiments/<exp-id>/   config.json, results.json/.csv, roc.png, predictions
    studies.sqlite          reader studies
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_ROOT = "medgan-workspace"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, "r", encoding="utf-8") as fh:
        return json.load(fh)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def new_id(prefix: str) -> str:
    """Sortable, unique, readable: e.g. gdgan-20261122-142501-3fa2."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{secrets.token_hex(2)}"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    """Package version, git revision, python/torch/device facts for manifests."""
    from medgan_ui import __version__

    info: dict[str, Any] = {
        "package_version": __version__,
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # torch is a hard dependency; this only guards odd installs
        info["torch"] = None
    return info


def write_manifest(folder: str | os.PathLike, **fields: Any) -> Path:
    """Every output folder gets a manifest.json: config, seed, versions, fingerprint, times."""
    folder = Path(folder)
    manifest = {"written_at": now_iso(), **environment_info(), **fields}
    return atomic_write_json(folder / "manifest.json", manifest)


class Workspace:
    """A folder holding datasets, runs, synthetic sets, experiments and studies."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        from medgan_ui.security.files import make_private_dir, restrict_new_files

        restrict_new_files()  # every entry point (CLI, studio, reader server, jobs) opens a Workspace first
        self.root = Path(root or os.environ.get("MEDGAN_WORKSPACE") or DEFAULT_ROOT).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        make_private_dir(self.root)
        for sub in ("datasets", "runs", "synthetic", "experiments"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic"

    @property
    def experiments(self) -> Path:
        return self.root / "experiments"

    @property
    def uploads(self) -> Path:
        """Unpacked browser uploads (made on first upload; old ones removed at start-up)."""
        return self.root / "uploads"

    @property
    def studies_db(self) -> Path:
        return self.root / "studies.sqlite"

    def run_dir(self, run_id: str) -> Path:
        return self._child(self.runs, run_id)

    def synthetic_dir(self, set_id: str) -> Path:
        return self._child(self.synthetic, set_id)

    def experiment_dir(self, exp_id: str) -> Path:
        return self._child(self.experiments, exp_id)

    def dataset_dir(self, name: str) -> Path:
        return self._child(self.datasets, name)

    @staticmethod
    def _child(parent: Path, name: str) -> Path:
        # ids come from users (CLI, UI): refuse anything that would escape the workspace
        if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
            raise ValueError(f"invalid id {name!r}: use the plain folder name, e.g. as listed by `medgan runs`")
        return parent / name

    def list_runs(self) -> list[Path]:
        return sorted((p for p in self.runs.iterdir() if p.is_dir()), key=lambda p: p.name)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"
