"""Statistics for one set of scored images: AUC, fast DeLong, Youden threshold, sens/spec, ROC points.

Everything takes plain numpy arrays (labels 0/1, scores any real numbers) so it can be checked against
scikit-learn and hand-computed cases. DeLong treats images as independent: valid for two classifiers
on the same test images of distinct patients. Comparisons over cross-validation folds, with several
images per patient, use cv_stats.py (patient-cluster bootstrap, corrected t-test, Holm).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats as _st
from sklearn.metrics import roc_curve

__all__ = [
    "auc", "delong_cov", "delong_test", "youden_threshold",
    "confusion_at", "sens_spec", "roc_points", "welch_t",
]


def _split(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(bool).ravel()
    s = np.asarray(s, dtype=np.float64)
    if s.ndim == 1:
        s = s[None, :]
    if s.shape[-1] != y.shape[0]:
        raise ValueError(f"scores have {s.shape[-1]} entries, labels {y.shape[0]}")
    if y.all() or not y.any():
        raise ValueError("AUC needs at least one positive and one negative case")
    return s[:, y], s[:, ~y]


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count 1/2); equals sklearn.metrics.roc_auc_score."""
    return float(delong_cov(y, s)[0][0])


def delong_cov(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fast DeLong (Sun & Xu 2014): AUCs of k score vectors [k, n] and their k x k covariance.

    Midranks replace the O(m*n) pairwise kernel, so this is O(k * n log n).
    """
    pos, neg = _split(y, scores)
    m, n = pos.shape[1], neg.shape[1]
    tx = _st.rankdata(pos, axis=1)  # midranks within positives
    ty = _st.rankdata(neg, axis=1)  # within negatives
    tz = _st.rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # within all
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v01 = (tz[:, :m] - tx) / n  # per-positive structural components
    v10 = 1.0 - (tz[:, m:] - ty) / m  # per-negative structural components
    k = aucs.shape[0]
    sx = np.atleast_2d(np.cov(v01)) if m > 1 else np.zeros((k, k))
    sy = np.atleast_2d(np.cov(v10)) if n > 1 else np.zeros((k, k))
    return aucs, sx / m + sy / n


def delong_test(y: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> dict[str, float]:
    """Two correlated ROC curves on the same cases: z and two-sided p for AUC1 - AUC2."""
    aucs, cov = delong_cov(y, np.vstack([np.ravel(s1), np.ravel(s2)]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    if var <= 1e-15:
        # identical rankings: no evidence of a difference (not an error)
        z, p = 0.0, 1.0
    else:
        z = diff / float(np.sqrt(var))
        p = float(2 * _st.norm.sf(abs(z)))
    return {"auc1": float(aucs[0]), "auc2": float(aucs[1]), "diff": diff, "z": float(z), "p": p}


def youden_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """Threshold maximising sensitivity + specificity - 1 (chosen on validation, applied to test)."""
    fpr, tpr, thr = roc_curve(np.asarray(y).astype(int), np.asarray(s, dtype=np.float64))
    finite = np.isfinite(thr)  # sklearn prepends +inf (predict nothing positive)
    j = np.where(finite, tpr - fpr, -np.inf)
    return float(thr[int(np.argmax(j))])


def confusion_at(y: np.ndarray, s: np.ndarray, threshold: float) -> np.ndarray:
    """[[TN, FP], [FN, TP]] with 'positive' meaning score >= threshold (sklearn's convention)."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(s, dtype=np.float64) >= threshold
    return np.array([[int((~y & ~pred).sum()), int((~y & pred).sum())],
                     [int((y & ~pred).sum()), int((y & pred).sum())]])


def sens_spec(cm: np.ndarray) -> dict[str, float]:
    """Sensitivity TP/(TP+FN), specificity TN/(TN+FP), accuracy, from [[TN, FP], [FN, TP]]."""
    (tn, fp), (fn, tp) = np.asarray(cm)
    nan = float("nan")
    return {
        "sensitivity": tp / (tp + fn) if tp + fn else nan,
        "specificity": tn / (tn + fp) if tn + fp else nan,
        "accuracy": (tp + tn) / max(tn + fp + fn + tp, 1),
    }


def roc_points(y: np.ndarray, s: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """ROC curve thinned to at most max_points (for JSON results and the interactive plot)."""
    fpr, tpr, _ = roc_curve(np.asarray(y).astype(int), np.asarray(s, dtype=np.float64))
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def welch_t(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Welch's unequal-variance t-test (scipy), as the GDGAN paper used for inception scores."""
    res = _st.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False)
    return {"t": float(res.statistic), "p": float(res.pvalue)}
