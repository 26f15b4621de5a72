"""Experiment arms beyond the base strategies: the controls of the augmentation experiment.

An arm is one strategy column of the results. Spec grammar (parsed by `parse_arm`):

* a base strategy or a synthetic-like source: none | classic | undersample | oversample | synthetic:ID[+ID...]
  (and gan:MODEL[@PRESET][:STEPS] where the gan module is present; anything strategies.parse_strategy knows);
* `classic+SOURCE`  - classic augmentation applied on top of the real + synthetic training set (Frid-Adar);
* `tstr:SOURCE`     - train on synthetic only (positives and negatives, a synthetic twin of the fold's real
                      training set: the same general labels and findings image by image), validate and test on real;
* a `@xD` suffix on a synthetic-like arm - dose D: D x the synthetic amount (the dose sweep writes these labels).

Other controls (config fields): `equal_steps` gives every arm the optimiser-step budget of `none`
(epochs x steps per epoch over the fold's real training images, validated every none-epoch of steps;
cell.train_cell); `synthetic_negatives` adds, for every
synthetic positive, a synthetic negative of the same general-label cell, so "generated" is not a label.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.evaluate import strategies as S

SYNTHETIC_LIKE = ("synthetic", "gan")  # sources of generated images; gan: trains one generator per fold
DOSE = S.DOSE_SUFFIX


def is_synthetic(name: str) -> bool:
    """True for a source of generated images ("synthetic", "gan")."""
    return name in SYNTHETIC_LIKE


@dataclass(frozen=True)
class Arm:
    spec: str  # the label in the results, as given (or as the dose sweep wrote it)
    name: str  # none | classic | undersample | oversample | synthetic | gan | tstr
    source: str = ""  # the synthetic-like source spec ("synthetic:A", "gan:..."): the key of Plan.sources
    source_kind: str = ""  # "synthetic" | "gan" | ""
    ids: list[str] = field(default_factory=list)
    classic: bool = False  # classic augmentation on the training batches
    dose: float = 1.0

    @property
    def synthetic(self) -> bool:
        return bool(self.source)


def _dose(what: str, text: str) -> float:
    try:
        d = float(text)
    except ValueError:
        raise UserError(f"{what}: dose '@x{text}' is not a number; write e.g. synthetic:ID@x0.5") from None
    if not math.isfinite(d) or d <= 0:
        raise UserError(f"{what}: dose {text} must be a positive multiple of the synthetic amount "
                        "(e.g. 0.5 or 2); a dose of 0 is the 'none' arm")
    return d


def parse_arm(spec: str) -> Arm:
    """Any strategy spec -> Arm; a malformed one -> UserError naming it."""
    s = spec.strip()
    dose = 1.0
    m = DOSE.search(s)
    if m:
        dose, s = _dose(f"strategy {spec!r}", m.group(1)), s[:m.start()]
    classic = tstr = False
    if s.startswith("classic+"):
        classic, s = True, s[len("classic+"):]
    elif s.startswith("tstr:"):
        tstr, s = True, s[len("tstr:"):]
    if s.startswith(S.CONTROL_PREFIXES) or DOSE.search(s):
        raise UserError(f"strategy {spec!r}: at most one of classic+ / tstr: and one dose @xD, e.g. "
                        "classic+synthetic:ID@x0.5")
    name, ids = S.parse_strategy(s)  # the inner spec: a base strategy or a source
    if (classic or tstr or m) and not is_synthetic(name):
        what = "classic+" if classic else "tstr:" if tstr else "a dose @x"
        raise UserError(f"strategy {spec!r}: {what} needs a synthetic source after it (synthetic:ID or gan:MODEL), "
                        f"not {s!r}")
    src = s if is_synthetic(name) else ""
    return Arm(spec.strip(), "tstr" if tstr else name, src, name if src else "", ids, classic or name == "classic", dose)


def parse_doses(text: str) -> list[float]:
    """'0.25, 0.5,1' -> [0.25, 0.5, 1.0] (the dose sweep of the CLI's --doses and the Compare tab)."""
    try:
        return [float(d) for d in str(text or "").replace(" ", "").split(",") if d]
    except ValueError:
        raise UserError(f"doses {text!r}: give multiples joined by commas, e.g. 0.5,1,2") from None


def control_arms(sources: list[str], classic: bool = False, tstr: bool = False) -> list[str]:
    """The composite (classic+SRC) and train-on-synthetic (tstr:SRC) arms of synthetic sources."""
    return [f"classic+{s}" for s in sources if classic] + [f"tstr:{s}" for s in sources if tstr]


def expand_doses(strategies: list[str], doses: list[float]) -> list[str]:
    """Each synthetic-like strategy once per dose (label SPEC@xD); others, and specs with a dose, as given."""
    if not doses:
        return list(strategies)
    for d in doses:
        _dose("dose sweep (--doses)", f"{d:g}")
    if len(set(doses)) != len(doses):
        raise UserError(f"doses repeat: {doses}")
    out: list[str] = []
    for s in strategies:
        a = parse_arm(s)
        out += [f"{s}@x{d:g}" for d in doses] if a.synthetic and not DOSE.search(s) else [s]
    if out == list(strategies):
        raise UserError(f"doses {doses} apply to synthetic-like strategies (synthetic:ID, gan:MODEL, classic+..., "
                        "tstr:...); none is chosen")
    if len(set(out)) != len(out):
        raise UserError(f"strategies repeat after the dose sweep: {out}")
    return out


def synthetic_set(src: S.SyntheticSource, train: ImageSet, targets: list[str], needs: list[int], seed: int,
                  negatives: bool) -> tuple[torch.Tensor, np.ndarray, int, int]:
    """Synthetic positives for `needs`, plus (negatives=True) one negative per positive drawn from the same
    real image's general-label cell without the target findings. Returns (images, labels, distinct, n_negative)."""
    picks = S.synthetic_picks(train, targets, needs, seed)
    if not len(picks):
        return torch.zeros(0, train.size, train.size, dtype=torch.uint8), np.zeros((0, len(targets)), bool), 0, 0
    x, y, distinct = S.synthetic_for_picks(src, train, picks, targets, seed)
    if not negatives:
        return x, y, distinct, 0
    xn, yn, dn = S.synthetic_for_picks(src, train, picks, targets, seed + 104729, without=targets)
    return torch.cat([x, xn]), np.concatenate([y, yn]), distinct + dn, len(xn)


def tstr_set(src: S.SyntheticSource, train: ImageSet, targets: list[str], dose: float,
             seed: int) -> tuple[torch.Tensor, np.ndarray, int]:
    """The synthetic twin of the real training set: one synthetic image per real image (dose x as many,
    drawn at random), with its general labels and findings, so the label mix matches the real one."""
    n = len(train)
    m = max(1, int(round(dose * n)))
    picks = np.arange(n) if m == n else np.random.default_rng(seed).choice(n, m, replace=m > n)
    return S.synthetic_for_picks(src, train, picks, targets, seed)


def check_source_for(arm: Arm, src: S.SyntheticSource, targets: list[str], negatives: bool) -> None:
    """A synthetic set must hold negatives when the arm draws them (tstr, synthetic negatives)."""
    if src.kind != "set" or not (arm.name == "tstr" or negatives):
        return
    tset = frozenset(targets)
    if not any(not (S._row_findings(r) & tset) for r in src.rows or []):
        why = "tstr trains on synthetic negatives too" if arm.name == "tstr" else "synthetic negatives are on"
        raise UserError(f"strategy {arm.spec!r}: synthetic set {src.ident!r} has no image without {targets}, but "
                        f"{why}; export negatives (No Finding) into the set too")


@dataclass
class TrainingSet:
    x: torch.Tensor  # uint8 [N,H,W]
    y: np.ndarray  # bool [N,T]
    n_real: int
    n_synthetic: int = 0
    n_distinct: int = 0
    n_synthetic_negative: int = 0


def training_set(cfg, arm: Arm, src: S.SyntheticSource | None, ds: ImageSet, labels: np.ndarray,
                 tr: np.ndarray, seed: int) -> TrainingSet:
    """The arm's training images for a fold (tr: the fold's real training rows); src: its synthetic source."""
    from medgan_ui.data.rebalance import oversample_indices, undersample_indices

    if arm.name == "tstr":
        x, y, distinct = tstr_set(src, ds.subset(tr), cfg.targets, arm.dose, seed)
        return TrainingSet(x, y, 0, len(x), distinct, int((~y.any(axis=1)).sum()))
    y_tr = labels[tr]
    if arm.name == "undersample":
        idx = tr[np.sort(undersample_indices(y_tr, seed=seed, names=cfg.targets))]
    elif arm.name == "oversample":
        idx = tr[np.sort(oversample_indices(y_tr, seed=seed, names=cfg.targets))]
    else:
        idx = tr
    x, y = ds.images[torch.as_tensor(idx)], labels[idx]
    if src is None:
        return TrainingSet(x, y, len(idx))
    needs = [int(round(n * arm.dose)) for n in S.synthetic_needs(y_tr, cfg.synthetic_mode, cfg.synthetic_value)]
    xs, ys, distinct, n_neg = synthetic_set(src, ds.subset(tr), cfg.targets, needs, seed, cfg.synthetic_negatives)
    return TrainingSet(torch.cat([x, xs]), np.concatenate([y, ys]), len(idx), len(xs), distinct, n_neg)
