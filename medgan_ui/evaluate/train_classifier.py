"""Train one classifier with early stopping on validation, and predict.

Images stay a uint8 tensor [N, H, W] moved to the device once (DESIGN.md); each batch is converted
to float [0, 1] on the device. Labels are multi-hot [N, T] (T targets, BCE-with-logits as in GDGAN's
classifier; T = 1 is the binary case). The model kept is the best validation epoch: validation AUC
(MedMNIST's rule) by default, or validation loss (GDGAN's rule).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from medgan_ui.evaluate.classifiers import Classifier
from medgan_ui.evaluate.segmentation import frozen_encoder_eval
from medgan_ui.evaluate.stats import auc

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # float [B,1,H,W] in [0,1] -> same


@dataclass
class TrainSettings:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    patience: int = 5  # epochs without validation improvement before stopping
    monitor: str = "auc"  # "auc" (higher is better) or "loss"
    weight_decay: float = 0.0
    optimizer: str = "adam"  # "adam" (GDGAN, MedMNIST) or "sgd" (Frid-Adar: Nesterov, momentum 0.9)
    seed: int = 0
    eval_batch: int = 256
    max_steps: int | None = None  # optimisation-step budget (equal-steps control): stops mid-epoch when spent
    eval_every: int | None = None  # validate (and count patience) every so many steps instead of every epoch


@dataclass
class TrainResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: bool = False
    seconds: float = 0.0
    steps: int = 0  # optimisation steps taken


def _batches(n: int, batch_size: int, gen: torch.Generator, dev: torch.device) -> Iterator[torch.Tensor]:
    """Index batches, a new permutation per pass, drawn lazily (so augmentation draws interleave as before)."""
    stop_at = _used(n, batch_size)
    while True:
        perm = torch.randperm(n, generator=gen).to(dev)
        for s in range(0, stop_at, batch_size):
            yield perm[s:s + batch_size]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps of one epoch over n images (a last batch of one is dropped, as in training)."""
    return max(1, math.ceil(_used(n, batch_size) / batch_size))


def _used(n: int, batch_size: int) -> int:
    """Images a pass uses: a last batch of one is dropped (BatchNorm cannot train on a single image)."""
    return n - 1 if n % batch_size == 1 and n > 1 else n


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(1).float().div_(255.0)


@torch.no_grad()
def predict(model: Classifier, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Sigmoid probabilities [N, T] for uint8 images [N, H, W]."""
    dev = next(model.parameters()).device
    model.eval()
    out = []
    for s in range(0, len(images), batch):
        x = _as_float(images[s:s + batch].to(dev, non_blocking=True))
        out.append(torch.sigmoid(model(x)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def _val_score(y: np.ndarray, p: np.ndarray, loss: float, monitor: str) -> float:
    if monitor == "loss":
        return -loss
    aucs = [auc(y[:, t], p[:, t]) for t in range(y.shape[1]) if 0 < y[:, t].sum() < len(y)]
    return float(np.mean(aucs)) if aucs else -loss


def train_classifier(
    model: Classifier,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    settings: TrainSettings,
    augment: Augment | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train in place; on return the model holds the best-validation weights."""
    dev = next(model.parameters()).device
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    xt, yt = x_train.to(dev), y_train.float().to(dev)
    xv, yv = x_val.to(dev), y_val.float()
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=settings.lr, momentum=0.9, nesterov=True,
                                                     weight_decay=settings.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    best_state = copy.deepcopy(model.state_dict())
    best, best_epoch, bad = -math.inf, 0, 0
    history: list[dict[str, float]] = []
    stopped = False
    n = len(xt)
    per_round = settings.eval_every or steps_per_epoch(n, settings.batch_size)
    batches = _batches(n, settings.batch_size, gen, dev)
    steps = 0
    for epoch in range(1, settings.epochs + 1):  # a round: one pass over the data, or eval_every steps
        model.train()
        frozen_encoder_eval(model)
        total, seen = 0.0, 0
        for _ in range(per_round):
            if settings.max_steps is not None and steps >= settings.max_steps:
                break
            idx = next(batches)
            x = _as_float(xt[idx])
            if augment is not None:
                x = augment(x, gen)
            loss = F.binary_cross_entropy_with_logits(model(x), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            steps += 1
        spent = settings.max_steps is not None and steps >= settings.max_steps
        p_val = predict(model, xv, settings.eval_batch)
        val_loss = float(F.binary_cross_entropy(torch.from_numpy(p_val).clamp(1e-7, 1 - 1e-7), yv))
        score = _val_score(yv.numpy(), p_val, val_loss, settings.monitor)
        rec = {"epoch": epoch, "train_loss": total / max(seen, 1), "val_loss": val_loss, "val_score": score}
        history.append(rec)
        if score > best:
            best, best_epoch, bad = score, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
        if on_epoch:
            on_epoch(rec)
        if should_stop and should_stop():
            stopped = True
            break
        if bad >= settings.patience or spent:
            break
    model.load_state_dict(best_state)
    return TrainResult(best_epoch, float(best), len(history), history, stopped, time.perf_counter() - t0, steps)
