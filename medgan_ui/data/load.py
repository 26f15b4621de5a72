"""One entry point for every dataset: read (or fetch from the workspace cache), split, describe.

The cache key is a fingerprint of the source files' names, sizes and modification times (stat only,
no content hashing, so a cache hit costs a directory walk), the read options, the reader and the
split settings. A hit loads one compressed .npz; a miss reads, splits and writes the cache.
Cache folder: <workspace>/datasets/<slug>-<fp[:10]>/ with cache.npz and dataset.json.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medgan_ui.data.imageset import CACHE_VERSION, ImageSet
from medgan_ui.data.readers import detect_format, get_reader
from medgan_ui.data.readers.folders import walked_dir
from medgan_ui.data.readers.base import ReadOptions, Report
from medgan_ui.workspace import Workspace, atomic_write_json, now_iso

# bump when a reader's output changes for the same files, so old caches are not reused
LOADER_VERSION = 1
DEMO_N = 2000
DEMO_SEED = 0


def load_dataset(
    source: str | Path,
    format: str | None = None,
    options: ReadOptions | None = None,
    workspace: Workspace | None = None,
    *,
    stratify: str | None = "auto",
    split_seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    use_cache: bool = True,
) -> ImageSet:
    """Load a dataset folder/file (or "demo", or "demo:hard" = the harder phantom), using the
    workspace cache when it is current.

    stratify: finding name to stratify the patient-level split on, "auto" (the rarest finding that
    can reach every part, see data/split.py) or None. Sets that carry their own split (MedMNIST,
    train/val/test folders) keep it.
    """
    opts = dataclasses.replace(options or ReadOptions(), report=Report())  # fresh report per load
    fractions = tuple(float(f) for f in fractions)
    difficulty = demo_difficulty(source)
    if difficulty is not None:
        fmt, root = "demo", None
    else:
        root = Path(source).expanduser().resolve()
        fmt = format or ("csv" if (opts.csv or opts.image_column) else detect_format(root))
        get_reader(fmt)  # unknown names fail here with the list of formats
    ws = workspace or Workspace()
    split_params = {"stratify": stratify, "seed": split_seed, "fractions": list(fractions)}
    fp = fingerprint(root, fmt, opts, split_params, exclude=ws.root, difficulty=difficulty)
    name = str(source) if root is None else root.stem if root.is_file() else root.name
    cache_dir = ws.dataset_dir(f"{_slug(name)}-{fp[:10]}")
    cache_file = cache_dir / "cache.npz"
    if use_cache and cache_file.is_file():
        try:
            ds = ImageSet.load(cache_file)
        except (OSError, ValueError, KeyError):  # damaged or old cache: rebuild it below
            ds = None
        if ds is not None and ds.meta.get("fingerprint") == fp:
            ds.meta["loaded_from_cache"] = True
            return ds
    ds = _read(root, fmt, opts, difficulty)
    ds.meta.update(name=name, format=fmt, source_root=str(root) if root else "demo")  # named in split errors
    ds = _split(ds, stratify, fractions, split_seed)
    ds.meta.update(
        fingerprint=fp,
        options=opts.cache_key(),
        report=opts.report.to_dict(),
        split_params=split_params,
        loaded_from_cache=False,
    )
    if use_cache:
        ds.save(cache_file)
        atomic_write_json(cache_dir / "dataset.json", _describe(ds))
    return ds


def demo_difficulty(source: str | Path) -> str | None:
    """'demo' -> 'standard', 'demo:hard' -> 'hard', anything else (a path) -> None."""
    s = str(source)
    if s == "demo":
        return "standard"
    if s.startswith("demo:"):
        from medgan_ui.data.phantom import check_difficulty

        return check_difficulty(s[len("demo:"):])
    return None


def _read(root: Path | None, fmt: str, opts: ReadOptions, difficulty: str | None = None) -> ImageSet:
    if root is None:
        from medgan_ui.data.phantom import demo_imageset  # built-in phantom (own module, heavier)

        return demo_imageset(n=DEMO_N, size=opts.size, seed=DEMO_SEED, difficulty=difficulty or "standard")
    return get_reader(fmt).read(root, opts)


def _split(ds: ImageSet, stratify: str | None, fractions: tuple[float, ...], seed: int) -> ImageSet:
    """Patient-level split (split.py resolves "auto" and explains impossible requests)."""
    if ds.split is not None:  # e.g. MedMNIST's official split, or train/val/test folders
        return ds
    from medgan_ui.data.split import assign_split

    return assign_split(ds, stratify, fractions, seed)


# ---- fingerprint ---------------------------------------------------------------------------------
def source_stats(root: Path, opts: ReadOptions, exclude: Path | None = None) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every file a reader could read for this source.

    A superset is fine (it only costs stat calls). Same skip rules as the readers' walk
    (folders.walked_dir); a workspace inside the data folder is left out.
    Plain strings rather than Path objects: this runs on every load, cache hits included.
    """
    if root.is_file():
        st = root.stat()
        out = [(root.name, st.st_size, st.st_mtime_ns)]
    else:
        out = []
        skip = str(exclude) if exclude is not None else None
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if walked_dir(d) and os.path.join(dirpath, d) != skip)
            rel_dir = os.path.relpath(dirpath, root)
            for name in sorted(filenames):
                if not name.startswith("."):
                    st = os.stat(os.path.join(dirpath, name))
                    out.append((name if rel_dir == "." else f"{rel_dir}/{name}", st.st_size, st.st_mtime_ns))
    base = root if root.is_dir() else root.parent
    for extra in (opts.csv, opts.labels_csv):  # label tables may live outside the data folder
        if extra:
            p = Path(extra).expanduser()
            p = p if p.is_absolute() else base / p
            if p.is_file():
                st = p.stat()
                out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return out


def fingerprint(root: Path | None, fmt: str, opts: ReadOptions, split_params: dict[str, Any],
                exclude: Path | None = None, difficulty: str | None = None) -> str:
    h = hashlib.sha256()
    key = {"format": fmt, "options": opts.cache_key(), "split": split_params,
           "cache_version": CACHE_VERSION, "loader_version": LOADER_VERSION}
    if root is None:
        # demo: its "source" is the phantom code itself
        from medgan_ui.data import phantom

        key["demo"] = {"n": DEMO_N, "seed": DEMO_SEED,
                       "code": hashlib.sha256(Path(phantom.__file__).read_bytes()).hexdigest()}
        if difficulty not in (None, "standard"):  # the standard demo keeps its old key
            key["demo"]["difficulty"] = difficulty
    h.update(json.dumps(key, sort_keys=True, default=str).encode())
    if root is not None:
        h.update("".join(f"{rel}\0{size}\0{mtime}\n" for rel, size, mtime in source_stats(root, opts, exclude)).encode())
    return h.hexdigest()


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "dataset"


def _describe(ds: ImageSet) -> dict[str, Any]:
    """dataset.json: what a person (or the UI's dataset list) needs without opening the cache."""
    return {
        "written_at": now_iso(),
        "name": ds.meta["name"],
        "source": ds.meta["source_root"],
        "format": ds.meta["format"],
        "fingerprint": ds.meta["fingerprint"],
        "options": ds.meta["options"],
        "size": ds.size,
        "label_schema": {"general_names": ds.general_names, "general_values": ds.general_values,
                         "findings": ds.findings, "mask_names": ds.mask_names},
        "counts": ds.counts(),
        "split": {"params": ds.meta.get("split_params"), "summary": ds.meta.get("split"),
                  "sizes": None if ds.split is None else np.bincount(ds.split, minlength=3).tolist()},
        "report": ds.meta["report"],
    }
