"""Render a grid of demo phantom images (with labels) to a PNG, to look at: python bench/phantom_grid.py OUT.png"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from medgan_ui.data.phantom import generate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--cols", type=int, default=8)
    ap.add_argument("--masks", action="store_true", help="outline lung and heart masks")
    args = ap.parse_args()
    demo = generate(args.n, args.size, args.seed)
    ds = demo.imageset
    # show every finding at least once, then fill with the first images
    det = ds.detailed.numpy()
    picks = [int(np.flatnonzero(det[:, j])[0]) for j in range(det.shape[1]) if det[:, j].any()]
    picks += [i for i in range(len(ds)) if i not in picks][: args.rows * args.cols - len(picks)]
    fig, axes = plt.subplots(args.rows, args.cols, figsize=(2 * args.cols, 2.2 * args.rows))
    for ax, i in zip(axes.ravel(), picks):
        ax.imshow(ds.images[i].numpy(), cmap="gray", vmin=0, vmax=255)
        if args.masks and ds.masks is not None:
            ax.contour(ds.masks[i, 0].numpy(), levels=[127], colors="c", linewidths=0.6)
            ax.contour(ds.masks[i, 1].numpy(), levels=[127], colors="r", linewidths=0.6)
        g = ds.general_label(i)
        f = ",".join(x[:4] for x in ds.finding_labels(i)) or "-"
        ax.set_title(f"p{ds.patient_id[i]} {g['sex']} {g['view']} {f}\nctr {demo.ctr[i]:.2f}", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)


if __name__ == "__main__":
    main()
