"""The cross-validation statistics against independent computations: a brute-force patient-cluster
bootstrap (images really duplicated, sklearn AUC per replicate), the corrected t-test by hand, Holm
by hand and by statsmodels."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from medgan_ui.evaluate import cv_stats


def _patients(n_pat: int = 60, seed: int = 0):
    """Patients with 1-4 images; a fifth of them positive on some (not all) of their images."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, n_pat)
    pid = np.repeat(np.arange(n_pat), counts)
    sick = rng.random(n_pat) < 0.2
    sick[:3] = True
    y = sick[pid] & (rng.random(len(pid)) < 0.8)
    for p in np.flatnonzero(sick):  # every sick patient has at least one positive image
        y[np.flatnonzero(pid == p)[0]] = True
    return pid, y, rng


def test_weighted_auc_rows_equals_sklearn_with_weights_and_ties():
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.3
    s = np.round(rng.normal(size=200) + y, 1)  # rounding makes many ties
    w = rng.integers(0, 4, (30, 200)).astype(float)
    got = cv_stats.weighted_auc_rows(y, s, w)
    want = [roc_auc_score(y, s, sample_weight=row) for row in w]
    np.testing.assert_allclose(got, want, atol=1e-12)
    only_neg = np.where(y, 0.0, 1.0)[None]  # no positive weight: undefined, not an error
    assert np.isnan(cv_stats.weighted_auc_rows(y, s, only_neg))[0]


def test_resample_counts_keep_strata_sizes():
    positive = np.array([True] * 4 + [False] * 9)
    c = cv_stats.patient_resample_counts(positive, 50, seed=3)
    assert c.shape == (50, 13)
    assert (c[:, :4].sum(1) == 4).all() and (c[:, 4:].sum(1) == 9).all()
    np.testing.assert_array_equal(c, cv_stats.patient_resample_counts(positive, 50, seed=3))


def _brute_force(y, pid, oof, n_boot, seed, ref="none"):
    """Resample patients with replacement (stratified), duplicate their images for real, recompute
    each strategy's pooled out-of-fold AUC with sklearn: the definition, one replicate at a time."""
    pats = np.unique(pid)
    positive = np.array([y[pid == p].any() for p in pats])
    pos_p, neg_p = pats[positive], pats[~positive]
    rng = np.random.default_rng(seed)
    reps = {s: [] for s in oof}
    for _ in range(n_boot):
        chosen = list(pos_p[rng.integers(0, len(pos_p), len(pos_p))]) + list(neg_p[rng.integers(0, len(neg_p), len(neg_p))])
        for s, repeats in oof.items():
            aucs = []
            for idx, sc in repeats:
                ys, ss = [], []
                for p in chosen:  # every draw of a patient brings all of its scored images again
                    mine = pid[idx] == p
                    ys.append(y[idx][mine])
                    ss.append(sc[mine])
                aucs.append(roc_auc_score(np.concatenate(ys), np.concatenate(ss)))
            reps[s].append(np.mean(aucs))
    out = {}
    for s, r in reps.items():
        r = np.array(r)
        point = np.mean([roc_auc_score(y[idx], sc) for idx, sc in oof[s]])
        e = {"auc": point, "lo": np.quantile(r, 0.025), "hi": np.quantile(r, 0.975)}
        if s != ref:
            d = r - np.array(reps[ref])
            tail = min((d <= 0).sum(), (d >= 0).sum())
            ref_point = np.mean([roc_auc_score(y[idx], sc) for idx, sc in oof[ref]])
            e.update(diff=point - ref_point, diff_lo=np.quantile(d, 0.025), diff_hi=np.quantile(d, 0.975),
                     p=min(1.0, 2 * (1 + tail) / (1 + n_boot)))
        out[s] = e
    return out


def test_cluster_bootstrap_matches_brute_force():
    pid, y, rng = _patients()
    n = len(y)
    base = y + rng.normal(0, 1.2, n)
    oof = {}
    for s, noise in (("none", 1.0), ("better", 0.5)):
        repeats = []
        for r in range(2):  # two repeats: every image scored once per repeat, in another order
            idx = rng.permutation(n)
            repeats.append((idx, (base + rng.normal(0, noise, n))[idx]))
        oof[s] = repeats
    got = cv_stats.cluster_bootstrap(y, pid, oof, n_boot=120, seed=7)
    want = _brute_force(y, pid, oof, n_boot=120, seed=7)
    for s in oof:
        for k, v in want[s].items():
            assert got[s][k] == pytest.approx(v, abs=1e-10), (s, k)
    assert got["better"]["diff_lo"] < got["better"]["diff"] < got["better"]["diff_hi"]
    assert cv_stats.cluster_bootstrap(y, pid, oof, n_boot=120, seed=7, chunk=7) == got  # chunking changes nothing


def test_cluster_bootstrap_subgroup_is_the_bootstrap_of_the_subgroup():
    pid, y, rng = _patients(80, seed=2)
    n = len(y)
    idx = np.arange(n)
    oof = {"none": [(idx, y + rng.normal(0, 1, n))], "b": [(idx, y + rng.normal(0, 0.7, n))]}
    rows = (pid % 2) == 0  # a per-patient label, as sex is
    got = cv_stats.cluster_bootstrap(y, pid, oof, n_boot=60, seed=1, rows=rows)
    keep = np.flatnonzero(rows)
    sub = {s: [(np.arange(len(keep)), v[0][1][keep])] for s, v in oof.items()}
    want = _brute_force(y[keep], pid[keep], sub, n_boot=60, seed=1)
    for s in oof:
        for k, v in want[s].items():
            assert got[s][k] == pytest.approx(v, abs=1e-10), (s, k)


def test_cluster_ci_is_wider_than_an_image_level_one_when_patients_repeat():
    """Images of one patient are near copies: resampling them as independent understates the spread."""
    rng = np.random.default_rng(5)
    n_pat = 80
    pid = np.repeat(np.arange(n_pat), 6)
    sick = rng.random(n_pat) < 0.3
    y = sick[pid]
    s = (sick + rng.normal(0, 1, n_pat))[pid] + rng.normal(0, 0.05, len(pid))
    oof = {"none": [(np.arange(len(y)), s)]}
    cluster = cv_stats.cluster_bootstrap(y, pid, oof, n_boot=400, seed=0)["none"]
    images = cv_stats.cluster_bootstrap(y, np.arange(len(y)), oof, n_boot=400, seed=0)["none"]
    assert cluster["hi"] - cluster["lo"] > 1.5 * (images["hi"] - images["lo"])


def test_corrected_t_by_hand():
    d = [0.03, 0.01, 0.05, -0.01, 0.04, 0.02, 0.00, 0.03, 0.06, 0.02]  # K = 5 folds x R = 2 repeats
    n_train, n_test = 800.0, 200.0
    J = len(d)
    mean = sum(d) / J
    var = sum((x - mean) ** 2 for x in d) / (J - 1)
    t = mean / ((1 / J + n_test / n_train) * var) ** 0.5
    p = 2 * st.t.sf(abs(t), J - 1)
    got = cv_stats.corrected_t_test(d, n_train, n_test)
    assert got["t"] == pytest.approx(t) and got["p"] == pytest.approx(p) and got["df"] == J - 1
    # the plain paired t-test over folds is anti-conservative: smaller p than the corrected one
    assert st.ttest_1samp(d, 0).pvalue < got["p"]
    assert np.isnan(cv_stats.corrected_t_test([0.02] * 4, n_train, n_test)["p"])  # no spread
    assert np.isnan(cv_stats.corrected_t_test([0.02], n_train, n_test)["p"])  # one fold


def test_holm_by_hand_and_statsmodels():
    p = [0.01, 0.04, 0.03, 0.2]
    # by hand: sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1 = 0.04, 0.09, 0.08, 0.2; running max; cap 1
    want = {0: 0.04, 2: 0.09, 1: 0.09, 3: 0.2}
    got = cv_stats.holm(p)
    for i, v in want.items():
        assert got[i] == pytest.approx(v)
    assert got == pytest.approx(list(multipletests(p, method="holm")[1]))
    with_nan = cv_stats.holm([0.01, float("nan"), 0.04])  # NaN (no test) is left out of the family
    assert np.isnan(with_nan[1]) and with_nan[0] == pytest.approx(0.02) and with_nan[2] == pytest.approx(0.04)


def test_bootstrap_p_and_sens_at_spec():
    assert cv_stats.bootstrap_p(np.full(99, 0.1)) == pytest.approx(2 / 100)  # never 0
    assert cv_stats.bootstrap_p(np.r_[np.full(50, 0.1), np.full(50, -0.1)]) == 1.0
    y = np.array([0] * 10 + [1] * 4)
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.85, 0.97, 0.3, 0.99])
    # specificity >= 0.9 allows one false positive (0.95): positives above 0.95 are 0.97 and 0.99
    assert cv_stats.sens_at_spec(y, s, 0.9) == pytest.approx(0.5)
    assert cv_stats.sens_at_spec(y, s, 0.8) == pytest.approx(0.75)  # two FPs: 0.85 too
