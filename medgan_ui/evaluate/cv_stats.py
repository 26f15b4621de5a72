"""Statistics for comparing training strategies over cross-validation folds (PAPERS.md 7.2).

* Patient-cluster bootstrap: patients (not images) are resampled with replacement, stratified by
  whether the patient has the target, and every strategy's pooled out-of-fold AUC is recomputed on
  the same resample, so the CI of a difference is paired. Several images of one patient move together.
* Nadeau-Bengio corrected resampled t-test over the J = K x R fold AUC differences.
* Holm's step-down adjustment when several strategies or targets are compared (statsmodels).
* Sensitivity at a fixed specificity (from sklearn's ROC curve).

Inputs are plain numpy arrays so each piece can be checked against a brute-force computation.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats as _st
from sklearn.metrics import roc_curve

__all__ = ["patient_resample_counts", "weighted_auc_rows", "cluster_bootstrap", "corrected_t_test",
           "holm", "sens_at_spec", "bootstrap_p"]

OOF = list[tuple[np.ndarray, np.ndarray]]  # per repeat: (image indices, scores), the pooled out-of-fold predictions


def patient_resample_counts(positive: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, P] multiplicity of each patient in each replicate.

    Replicate b draws, with numpy's default_rng(seed) in this order, n_pos indices among the positive
    patients (rng.integers(0, n_pos, n_pos)) and then n_neg among the negative ones, so every replicate
    keeps the number of positive patients (stratified cluster bootstrap)."""
    positive = np.asarray(positive, bool)
    pos_idx, neg_idx = np.flatnonzero(positive), np.flatnonzero(~positive)
    rng = np.random.default_rng(seed)
    out = np.zeros((int(n_boot), len(positive)), np.int32)
    for b in range(int(n_boot)):
        for idx in (pos_idx, neg_idx):
            if len(idx):
                out[b] += np.bincount(idx[rng.integers(0, len(idx), len(idx))], minlength=len(positive)).astype(np.int32)
    return out


def weighted_auc_rows(y: np.ndarray, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUC of one score vector under each row of image weights w [B, n] (ties count one half).

    Equals sklearn's roc_auc_score(y, s, sample_weight=w[b]) (checked in tests); sklearn takes one
    weight vector per call (about 2 ms each), this scores all bootstrap replicates in one pass.
    NaN where a row leaves no positive or no negative weight."""
    y = np.asarray(y, bool)
    _, group = np.unique(np.asarray(s, np.float64), return_inverse=True)  # tie groups in score order
    n_groups = int(group.max()) + 1 if len(group) else 0
    w = np.atleast_2d(np.asarray(w, np.float64))
    pos = np.zeros((w.shape[0], n_groups))
    neg = np.zeros((w.shape[0], n_groups))
    for g_w, mask in ((pos, y), (neg, ~y)):  # weight per tie group (columns), summed image by image
        order = np.argsort(group[mask], kind="stable")
        g = group[mask][order]
        cs = np.cumsum(w[:, mask][:, order], axis=1)
        ends = np.flatnonzero(np.r_[g[1:] != g[:-1], True]) if len(g) else np.zeros(0, int)
        sums = np.diff(np.concatenate([np.zeros((w.shape[0], 1)), cs[:, ends]], axis=1), axis=1)
        g_w[:, g[ends]] = sums
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each group
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a difference: twice the smaller tail mass at 0, with the
    (1 + count) / (1 + B) correction so a finite bootstrap never reports p = 0."""
    d = np.asarray(diffs, float)
    d = d[np.isfinite(d)]
    if not len(d):
        return float("nan")
    tail = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return float(min(1.0, 2 * (1 + tail) / (1 + len(d))))


def _pooled(y: np.ndarray, oof: OOF, w_img: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """Mean over repeats of the pooled out-of-fold AUC, per replicate (w_img [B, N] image weights)."""
    per_repeat = []
    for idx, s in oof:
        keep = idx if rows is None else idx[rows[idx]]
        sk = s if rows is None else s[rows[idx]]
        per_repeat.append(weighted_auc_rows(y[keep], sk, w_img[:, keep]))
    return np.mean(per_repeat, axis=0)


def cluster_bootstrap(y: np.ndarray, patient: np.ndarray, oof: dict[str, OOF], n_boot: int = 1000,
                      seed: int = 0, reference: str | None = "none", rows: np.ndarray | None = None,
                      alpha: float = 0.05, chunk: int | None = None) -> dict[str, dict[str, float]]:
    """Pooled out-of-fold AUC per strategy with a patient-cluster bootstrap CI, and the paired
    difference against `reference` with its CI and bootstrap p-value.

    y: 0/1 label per image (all images of the dataset); patient: patient index per image (0..P-1);
    oof: strategy -> per repeat (image indices, scores); rows: optional boolean mask per image
    (a subgroup such as sex = F: AUCs are computed on those images only). Patients resampled: those
    with an out-of-fold prediction, stratified on whether any of their scored images is positive."""
    y = np.asarray(y, bool)
    patient = np.asarray(patient)
    scored = np.zeros(len(y), bool)
    for idx, _ in next(iter(oof.values())):
        scored[idx] = True
    if rows is not None:
        scored &= rows
    pats, local = np.unique(patient[scored], return_inverse=True)
    positive = np.zeros(len(pats), bool)
    positive[local[y[scored]]] = True
    counts = patient_resample_counts(positive, n_boot, seed)
    to_local = np.full(int(patient.max()) + 1, -1)
    to_local[pats] = np.arange(len(pats))
    img_local = to_local[patient]
    reps: dict[str, list[np.ndarray]] = {s: [] for s in oof}
    chunk = chunk or max(1, min(200, 2_000_000 // max(len(y), 1)))  # [chunk, N] weights: about 16 MB
    for a in range(0, int(n_boot), chunk):
        c = counts[a:a + chunk]
        w_img = np.where(img_local >= 0, c[:, np.maximum(img_local, 0)], 0).astype(np.float64)
        for s, folds in oof.items():
            reps[s].append(_pooled(y, folds, w_img, rows))
    ones = np.ones((1, len(y)))
    q = [alpha / 2, 1 - alpha / 2]
    out: dict[str, dict[str, float]] = {}
    for s, folds in oof.items():
        r = np.concatenate(reps[s])
        point = float(_pooled(y, folds, ones, rows)[0])
        lo, hi = np.nanquantile(r, q) if np.isfinite(r).any() else (np.nan, np.nan)
        e = {"auc": point, "lo": float(lo), "hi": float(hi), "n_valid": int(np.isfinite(r).sum())}
        if reference is not None and s != reference and reference in oof:
            d = r - np.concatenate(reps[reference])
            ref_point = float(_pooled(y, oof[reference], ones, rows)[0])
            dlo, dhi = np.nanquantile(d, q) if np.isfinite(d).any() else (np.nan, np.nan)
            e.update(diff=point - ref_point, diff_lo=float(dlo), diff_hi=float(dhi), p=bootstrap_p(d))
        out[s] = e
    return out


def corrected_t_test(diffs: Sequence[float], n_train: float, n_test: float) -> dict[str, float]:
    """Nadeau & Bengio (2003) corrected resampled t-test (Bouckaert & Frank 2004 for repeated K-fold).

    t = mean(d) / sqrt((1/J + n_test/n_train) var(d)), df = J - 1, two-sided p from scipy's t.
    n_train: images the models learned from (train + validation), n_test: images scored, per fold.
    Needs J >= 2; with zero variance t and p are NaN (no spread to test against)."""
    d = np.asarray(list(diffs), float)
    J = len(d)
    nan = float("nan")
    if J < 2:
        return {"t": nan, "df": float(max(J - 1, 0)), "p": nan, "mean": float(d.mean()) if J else nan}
    var = float(d.var(ddof=1))
    if var <= 0:
        return {"t": nan, "df": float(J - 1), "p": nan, "mean": float(d.mean())}
    t = float(d.mean() / np.sqrt((1 / J + n_test / n_train) * var))
    return {"t": t, "df": float(J - 1), "p": float(2 * _st.t.sf(abs(t), J - 1)), "mean": float(d.mean())}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (statsmodels multipletests); NaN entries stay NaN and are
    left out of the family."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(list(pvalues), float)
    out = np.full(len(p), np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out.tolist()


def sens_at_spec(y: np.ndarray, s: np.ndarray, specificity: float = 0.9) -> float:
    """Highest sensitivity among thresholds whose specificity is at least `specificity`."""
    fpr, tpr, _ = roc_curve(np.asarray(y).astype(int), np.asarray(s, np.float64))
    ok = fpr <= 1 - specificity + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0
