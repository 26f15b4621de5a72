"""Label fidelity: does a generator's "finding requested" image show the finding?

Per fold and per synthetic strategy (gan: / synthetic:), a classifier trained on the fold's real
training images (the `none` strategy's model of the fold, else one trained with the same settings)
scores generated images: for each target, images requested WITH the finding (labels copied from the
fold's real training positives, as the top-up does) and images requested from the same general-label
cells WITHOUT it. The AUC of "requested vs not requested" is the label fidelity: 0.5 = the label is
ignored, 1 = the classifier always tells them apart. Reported per fold and as the mean over folds,
beside the scoring classifier's own AUC on the fold's real test images: fidelity means little when
that classifier cannot find the finding in real images either.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.evaluate import arms as A
from medgan_ui.evaluate import cells as C
from medgan_ui.evaluate.strategies import SyntheticSource, synthetic_for_picks
from medgan_ui.evaluate.train_classifier import predict

N_PER_CLASS = 64  # generated images per side (requested / not requested) and target
SCORER = "_scorer"  # key of the scoring classifier's own AUC on the fold's real test images


def requested_pairs(src: SyntheticSource, train: ImageSet, target: str, targets: list[str], n: int,
                    seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """n images requested with `target` and n requested without it, from the same real training images'
    general labels (and other findings); returns (uint8 images [2n,H,W], 1/0 requested [2n])."""
    rng = np.random.default_rng(seed)
    col = train.findings.index(target)
    pos = np.flatnonzero(train.detailed[:, col].numpy())
    if len(pos) == 0:
        raise UserError(f"label fidelity: the fold's training part has no {target!r} image to copy labels from")
    picks = rng.choice(pos, n, replace=n > len(pos))
    x_pos, _, _ = synthetic_for_picks(src, train, picks, targets, seed)
    without = train.subset(picks)
    without.detailed[:, col] = 0  # the same cells with the finding taken away
    x_neg, _, _ = synthetic_for_picks(src, without, np.arange(len(picks)), targets, seed + 1)
    return torch.cat([x_pos, x_neg]), np.r_[np.ones(len(x_pos)), np.zeros(len(x_neg))]


def fold_fidelity(model: torch.nn.Module, src: SyntheticSource, train: ImageSet, targets: list[str], seed: int,
                  n: int = N_PER_CLASS) -> dict[str, float | None]:
    """{target: AUC} for one fold's source; None (with no error) when a synthetic set lacks the images
    without the finding, which it cannot generate on demand."""
    out: dict[str, float | None] = {}
    for ti, t in enumerate(targets):
        try:
            x, y = requested_pairs(src, train, t, targets, n, seed + 31 * ti)
        except UserError:
            if src.kind == "set":
                out[t] = None
                continue
            raise
        p = predict(model, x)[:, ti]
        out[t] = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None
    return out


def summarise_fidelity(per_fold: dict[str, dict[int, dict[str, float | None]]], targets: list[str],
                       n_folds: int) -> dict[str, dict[str, Any]]:
    """results.json block: {target: {strategy: {"per_fold": [AUC or None per fold], "mean": ...,
    "scorer_real_auc_per_fold": [...], "scorer_real_auc_mean": ...}}}."""
    def series(folds: dict[int, dict[str, float | None]], t: str) -> tuple[list[float | None], float | None]:
        vals = [folds.get(k, {}).get(t) for k in range(n_folds)]
        got = [v for v in vals if v is not None]
        return [None if v is None else round(v, 4) for v in vals], (round(float(np.mean(got)), 4) if got else None)

    out: dict[str, dict[str, Any]] = {t: {} for t in targets}
    scorer = per_fold.get(SCORER, {})
    for spec, folds in per_fold.items():
        if spec == SCORER:
            continue
        for t in targets:
            vals, mean = series(folds, t)
            real_vals, real_mean = series({k: scorer.get(k, {}) for k in folds}, t)
            out[t][spec] = {"per_fold": vals, "mean": mean, "n_per_class": N_PER_CLASS,
                            "scorer_real_auc_per_fold": real_vals, "scorer_real_auc_mean": real_mean}
    return out


def fidelity_for_fold(cfg: Any, plan: Any, ds: ImageSet, part: dict[str, np.ndarray], k: int, sources: list[str],
                      none_model: torch.nn.Module | None, train_none: Callable[[], torch.nn.Module]
                      ) -> dict[str, dict[str, float | None]]:
    """Fold k's label fidelity {source: {target: AUC}} for the given synthetic sources (composite and dose
    arms share their source's), plus SCORER: the scoring classifier's AUC on the fold's real test images.
    The scorer is the fold's `none` model, trained here (train_none) when that cell did not run here."""
    model = none_model if none_model is not None else train_none()
    train = ds.subset(part["train"])
    test = part["test"]
    p_test = predict(model, ds.images[torch.as_tensor(test)])
    real: dict[str, float | None] = {}
    for ti, t in enumerate(cfg.targets):
        y = ds.detailed[torch.as_tensor(test), ds.findings.index(t)].numpy()
        real[t] = float(roc_auc_score(y, p_test[:, ti])) if 0 < y.sum() < len(y) else None
    out = {SCORER: real}
    for spec in sources:
        out[spec] = fold_fidelity(model, plan.sources[spec][k], train, list(cfg.targets), seed=int(cfg.seed) * 1000 + k)
    return out


def owned_sources(plan: Any, k: int, share: tuple[int, int] | None) -> list[str]:
    """The synthetic sources whose fold-k label fidelity this process computes: it owns the fold's first
    cell that uses the source (every source, in one process)."""
    firsts: dict[str, int] = {}
    for j, spec in enumerate(plan.arms):
        src = A.parse_arm(spec).source
        if src in plan.sources:
            firsts.setdefault(src, j)
    return [s for s, j in firsts.items() if C.mine(k * len(plan.arms) + j, share)]


def load_per_fold(plan: Any, out: Path, fingerprint: str) -> dict[str, dict[int, dict[str, float | None]]]:
    """{source: {fold: {target: AUC}}} (and SCORER) from the experiment's fidelity records."""
    per: dict[str, dict[int, dict[str, float | None]]] = {}
    for k, f in enumerate(plan.folds):
        for s in plan.sources:
            rec = C.load_fidelity(out, C.fidelity_name(f.repeat, f.fold, s), fingerprint)
            if rec is not None:
                per.setdefault(s, {})[k] = rec["fidelity"]
                per.setdefault(SCORER, {})[k] = rec["scorer"]
    return per
