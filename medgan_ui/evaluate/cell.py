"""One cell of the augmentation experiment: train and score one (fold, strategy).

The training set comes from arms.py (real part, top-up, controls); the classifier from classifiers.py,
initialised from the same seed for every strategy of a fold; early stopping on the fold's validation
patients; predictions on its validation and test parts. experiment.py runs the cells in turn (or a
process's share of them, cells.py) and writes each record as soon as it is done.
"""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.rebalance import CHEST, FRID_ADAR, augment
from medgan_ui.errors import UserError
from medgan_ui.evaluate import arms as A
from medgan_ui.evaluate.classifiers import build_classifier
from medgan_ui.evaluate.train_classifier import TrainSettings, predict, steps_per_epoch, train_classifier
from medgan_ui.security.csv_cells import csv_writer
from medgan_ui.workspace import atomic_write_text


def classic_augment(preset: str) -> Callable:
    """Frid-Adar's classic augmentation; 'chest' keeps anatomy upright (small rotations, no up-down flip)."""
    cfg = {"chest": CHEST, "frid-adar": FRID_ADAR}[preset]
    return lambda x, gen: augment(x, gen, cfg)


def train_cell(cfg: Any, plan: Any, ds: ImageSet, labels: np.ndarray, part: dict[str, np.ndarray],
         k: int, spec: str, device: torch.device, on_epoch: Callable, stop: Callable[[], bool],
         seg_cache: dict[int, tuple[dict, dict]]) -> dict[str, Any]:
    """Train and score one (fold k, strategy)."""
    t0 = time.perf_counter()
    arm = A.parse_arm(spec)
    seed = cfg.seed * 1000 + k  # the same for every strategy of fold k (repeats of an official split differ here)
    tr = part["train"]
    src = plan.sources[arm.source][k] if arm.source_kind in ("synthetic", "gan") else None
    ts = A.training_set(cfg, arm, src, ds, labels, tr, seed)
    torch.manual_seed(seed)  # same initial weights for every strategy of this fold
    model = build_classifier(cfg.classifier, len(cfg.targets), ds.size, cfg.width, cfg.init).to(device)
    mean_of = ts.x if arm.name == "tstr" else ds.images[torch.as_tensor(tr)]  # tstr sees no real training image
    model.set_mean_image(mean_of.to(device).unsqueeze(1).float() / 255.0)
    seg = None
    if cfg.init == "segmentation" and plan.masks is not None:
        from medgan_ui.evaluate.segmentation import freeze_encoder, pretrain_segmentation

        if k not in seg_cache:  # the U-Net depends on the fold only, not on the strategy
            m_idx, m, _ = plan.masks
            keep = np.isin(m_idx, tr)  # only training-part images: the test part must not shape features
            if keep.sum() < 2:
                raise UserError(f"fold {k}: fewer than 2 training images have masks; segmentation init needs more")
            info = pretrain_segmentation(model, ds.images[torch.as_tensor(m_idx[keep])],
                                         m[torch.as_tensor(np.flatnonzero(keep))], epochs=cfg.seg_epochs,
                                         batch_size=cfg.batch_size, lr=cfg.lr, seed=seed, device=device,
                                         should_stop=stop)
            seg_cache[k] = ({n: v.detach().clone() for n, v in model.state_dict().items()}, info)
        state, seg = seg_cache[k]
        model.load_state_dict(state)
        if cfg.freeze_encoder:
            freeze_encoder(model)
    max_steps = every = None
    if cfg.equal_steps:  # none's budget, validated (and patience counted) every none-epoch of steps: arms with
        every = steps_per_epoch(len(tr), cfg.batch_size)  # more images make fewer passes over them, cut mid-pass
        max_steps = cfg.epochs * every
    settings = TrainSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience,
                             monitor=cfg.monitor, optimizer=cfg.optimizer, seed=seed, max_steps=max_steps,
                             eval_every=every)
    va, te = part["val"], part["test"]
    res = train_classifier(model, ts.x, torch.from_numpy(ts.y.astype(np.float32)),
                           ds.images[torch.as_tensor(va)], torch.from_numpy(labels[va].astype(np.float32)),
                           settings, augment=classic_augment(cfg.classic) if arm.classic else None,
                           on_epoch=on_epoch, should_stop=stop)
    return {
        "fold": k, "strategy": spec, "stopped": res.stopped, "n_train_real": int(ts.n_real),
        "n_train_synthetic": int(ts.n_synthetic), "n_synthetic_negative": int(ts.n_synthetic_negative),
        "n_synthetic_distinct": int(ts.n_distinct), "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
        "steps": res.steps, "max_steps": max_steps,
        "passes": round(res.steps / steps_per_epoch(len(ts.x), cfg.batch_size), 3),  # epochs over its own data
        "history": res.history, "seconds": round(time.perf_counter() - t0, 2), "segmentation": seg,
        "y_val": labels[va], "p_val": predict(model, ds.images[torch.as_tensor(va)]),
        "y_test": labels[te], "p_test": predict(model, ds.images[torch.as_tensor(te)]), "model": model,
    }


def write_predictions(path: Path, ds: ImageSet, targets: list[str], part: dict[str, np.ndarray], rec: dict) -> None:
    buf = io.StringIO()
    w = csv_writer(buf)  # patient ids and sources come from the user's data: no formulas
    w.writerow(["part", "index", "patient_id", "source", *[f"y_{t}" for t in targets], *[f"p_{t}" for t in targets]])
    for pname, y, p in (("val", rec["y_val"], rec["p_val"]), ("test", rec["y_test"], rec["p_test"])):
        for r, i in enumerate(part[pname]):
            w.writerow([pname, int(i), ds.patient_id[i], ds.source[i], *y[r].astype(int).tolist(),
                        *[float(f"{v:.9g}") for v in p[r]]])  # 9 digits: float32 round-trips, ranks kept
    atomic_write_text(path, buf.getvalue())
