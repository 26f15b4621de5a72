"""Empirical (trapezoidal) ROC AUCs of reader x treatment groups and their covariance over cases.

Each group g (one reader under one treatment) rated its own set of cases, which may differ between
groups (cases nested within readers or treatments, a reader who stopped early). Everything here is
built from the per-case structural components of DeLong et al. (1988):
  V10_g(p) = mean over g's negatives y of psi(x_p, y)   (one per positive case p)
  V01_g(q) = mean over g's positives x of psi(x, y_q)   (one per negative case q)
with psi = 1, 1/2, 0 for x > y, x = y, x < y; AUC_g = mean V10_g = mean V01_g.

DeLong covariance, any pairing. For groups g, h with m_g, m_h positives (n_g, n_h negatives) of which
m_gh (n_gh) are shared:
  Cov = m_gh / (m_g m_h) * s10_gh + n_gh / (n_g n_h) * s01_gh,
  s10_gh = sum over shared positives of (V10_g - AUC_g)(V10_h - AUC_h) / (m_gh - 1), s01 likewise.
Fully paired (m_gh = m_g = m_h) this is exactly DeLong's S10/m + S01/n (as MRMCaov's `DeLong()`,
which refuses anything but fully paired data); pairs with no shared case get 0. The weights are those
of the two-sample U-statistic covariance with partially overlapping samples (Gallas & Brown 2008,
"Reader studies for validation of CAD systems", Neural Networks 21:387; the iMRMC arbitrary-design
estimator), so a reader who stopped early contributes exactly on the cases he or she read.

Jackknife covariance, as MRMCaov's `jackknife()`: leave out each case of the union of all groups' cases
in turn, recompute every group's AUC (a group that did not read the case keeps its AUC), and take
(c-1)/c * sum of products of deviations, c = number of cases in the union. Leaving one case out of an
empirical AUC has a closed form (removing positive p: (m AUC - V10(p)) / (m - 1)), so no refitting is
needed. Because the leave-one-out values of an AUC average exactly to the AUC, a case that a group did
not read contributes 0: pairs of groups that share no case get covariance exactly 0, as the OR model
for nested designs requires (Obuchowski & Rockette 1995; Hillis 2007). One consequence, kept for
agreement with MRMCaov: a group that read c_g of the c cases gets the factor (c-1)/c, not (c_g-1)/c_g,
so its variance is (c-1) c_g / (c (c_g-1)) of its own-case jackknife (0.7 % more for VanDyke `case2`).
The Turing analysis uses DeLong, where each pair is weighted by its own case counts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


@dataclass
class GroupROC:
    """One reader under one treatment: case indices (into the union of cases) and components."""

    pos: np.ndarray  # case indices of the positives, in rating order of `v10`
    neg: np.ndarray
    v10: np.ndarray  # structural component per positive
    v01: np.ndarray  # per negative
    auc: float


def group_roc(case_idx: np.ndarray, truth: np.ndarray, rating: np.ndarray) -> GroupROC:
    """AUC and DeLong structural components of one group, by midranks (O(n log n))."""
    truth = np.asarray(truth).astype(bool)
    rating = np.asarray(rating, dtype=float)
    x, y = rating[truth], rating[~truth]
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"an AUC with a covariance needs >= 2 positive and >= 2 negative cases (got {m} and {n})")
    tz = rankdata(np.concatenate([x, y]))
    v10 = (tz[:m] - rankdata(x)) / n  # negatives below each positive (ties 1/2), over n
    v01 = 1.0 - (tz[m:] - rankdata(y)) / m  # positives above each negative (ties 1/2), over m
    auc = float(v10.mean())
    return GroupROC(np.asarray(case_idx)[truth], np.asarray(case_idx)[~truth], v10, v01, auc)


def delong_cov(groups: list[GroupROC]) -> np.ndarray:
    """DeLong covariance of the group AUCs on shared cases (module docstring)."""
    k = len(groups)
    cov = np.zeros((k, k))
    for a in range(k):
        for b in range(a, k):
            cov[a, b] = cov[b, a] = _part(groups[a].pos, groups[a].v10, groups[a].auc, groups[b].pos, groups[b].v10, groups[b].auc) \
                + _part(groups[a].neg, groups[a].v01, groups[a].auc, groups[b].neg, groups[b].v01, groups[b].auc)
    return cov


def _part(ia: np.ndarray, va: np.ndarray, auc_a: float, ib: np.ndarray, vb: np.ndarray, auc_b: float) -> float:
    shared, pa, pb = np.intersect1d(ia, ib, assume_unique=True, return_indices=True)
    s = len(shared)
    if s < 2:
        return 0.0
    prod = float(np.sum((va[pa] - auc_a) * (vb[pb] - auc_b))) / (s - 1)
    return s / (len(ia) * len(ib)) * prod


def jackknife_values(groups: list[GroupROC], n_cases: int) -> np.ndarray:
    """[n_cases, groups] AUC of each group with each case of the union left out (closed form)."""
    out = np.tile(np.array([g.auc for g in groups]), (n_cases, 1))
    for j, g in enumerate(groups):
        m, n = len(g.v10), len(g.v01)
        out[g.pos, j] = (m * g.auc - g.v10) / (m - 1)
        out[g.neg, j] = (n * g.auc - g.v01) / (n - 1)
    return out


def jackknife_cov(groups: list[GroupROC], n_cases: int) -> np.ndarray:
    """MRMCaov's jackknife: (c-1)/c * crossprod of centred leave-one-case-out AUCs over the union."""
    vals = jackknife_values(groups, n_cases)
    dev = vals - vals.mean(axis=0)
    return (n_cases - 1) / n_cases * dev.T @ dev


def roc_points(truth: np.ndarray, rating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical ROC operating points (FPR, TPR), one per distinct rating threshold, from (0,0) to (1,1)."""
    truth = np.asarray(truth).astype(bool)
    rating = np.asarray(rating, dtype=float)
    thresholds = np.unique(rating)[::-1]
    tpr = [0.0] + [float((rating[truth] >= t).mean()) for t in thresholds]
    fpr = [0.0] + [float((rating[~truth] >= t).mean()) for t in thresholds]
    return np.array(fpr), np.array(tpr)
