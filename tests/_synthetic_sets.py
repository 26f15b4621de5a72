"""A synthetic set on disk in the sampling export layout, for tests of code that reads such sets."""
from __future__ import annotations

import csv
import json

import torch
from PIL import Image

from medgan_ui.workspace import Workspace


def write_synthetic_set(ws: Workspace, set_id: str, ds, rows_idx, noise: float, size: int | None = None) -> None:
    """A synthetic set in the sampling export layout: PNGs + labels.csv + manifest.json."""
    folder = ws.synthetic_dir(set_id)
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(len(set_id))
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", *ds.general_names, "Finding Labels"])
        for k, i in enumerate(rows_idx):
            img = ds.images[i].float() + noise * torch.randn(ds.size, ds.size, generator=g)
            arr = img.clamp(0, 255).to(torch.uint8).numpy()
            im = Image.fromarray(arr)
            if size:
                im = im.resize((size, size))
            im.save(folder / f"{k:05d}.png")
            lab = ds.general_label(int(i))
            w.writerow([f"{k:05d}.png", *[lab[n] for n in ds.general_names], "|".join(ds.finding_labels(int(i))) or "No Finding"])
    schema = {"general_names": ds.general_names, "general_values": ds.general_values, "findings": ds.findings,
              "image_size": size or ds.size}
    (folder / "manifest.json").write_text(json.dumps({"kind": "synthetic-set", "schema": schema}))
