"""Shared helpers for the reader-study tests: a tiny demo study without any GAN training.

Synthetic images are phantom images of another seed, blurred and re-noised: different content from
the real ones (as a GAN's would be), written as a sampling export (PNGs + labels.csv).
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from medgan_ui.data.imageset import ImageSet

import torch

torch.set_num_threads(1)  # 2 shared cores: thread oversubscription makes the phantom ~5x slower


@lru_cache(maxsize=4)
def demo(n: int = 240, seed: int = 0) -> ImageSet:
    from medgan_ui.data.phantom import demo_imageset

    return demo_imageset(n=n, size=64, seed=seed)


def write_synthetic_folder(folder: Path, n: int = 240, seed: int = 7) -> Path:
    """A synthetic set folder as `medgan sample` exports it: PNGs plus labels.csv."""
    ds = demo(n, seed)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "sex", "view", "findings"])
        for i in range(len(ds)):
            img = Image.fromarray(ds.images[i].numpy()).filter(ImageFilter.GaussianBlur(0.8))
            arr = np.clip(np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (64, 64)), 0, 255).astype(np.uint8)
            name = f"sample_{i:05d}.png"
            # saved with default compression and a text chunk, as a careless exporter might: the study must strip it
            info = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
            info.add_text("generator", "gdgan")
            Image.fromarray(arr, mode="L").save(folder / name, pnginfo=info)
            g = ds.general_label(i)
            w.writerow([name, g["sex"], g["view"], "|".join(ds.finding_labels(i)) or "No Finding"])
    return folder


def make_study(workspace, name: str = "Test study", real_per_class: int = 4, synthetic_per_class: int = 4,
               repeats: int = 0, score_kind: str = "confidence", classes=None, tmp: Path | None = None):
    from medgan_ui.study.design import StudyConfig, create_study

    syn = write_synthetic_folder((tmp or workspace.root) / "synthetic-export")
    cfg = StudyConfig(name=name, real="demo", part=None, synthetic=[str(syn)], classes=classes,
                      real_per_class=real_per_class, synthetic_per_class=synthetic_per_class,
                      repeats=repeats, score_kind=score_kind, seed=3)
    return create_study(workspace, cfg, real=demo())
