"""Statistics checked against scikit-learn, scipy and cases worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score

from medgan_ui.evaluate import stats


def _pairwise_delong(y, s1, s2):
    """Textbook O(m*n) DeLong (DeLong et al. 1988) to check the fast midrank version."""
    y = np.asarray(y).astype(bool)
    comps = []
    for s in (s1, s2):
        x, z = s[y], s[~y]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        comps.append((psi.mean(axis=1), psi.mean(axis=0), psi.mean()))
    m, n = y.sum(), (~y).sum()
    v10 = np.vstack([c[0] for c in comps])
    v01 = np.vstack([c[1] for c in comps])
    cov = np.cov(v10) / m + np.cov(v01) / n
    return np.array([c[2] for c in comps]), cov


def test_auc_equals_sklearn_including_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # rounding makes ties
    assert stats.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_delong_hand_computed_case():
    # positives 0.9, 0.4; negatives 0.6, 0.2, 0.1
    # V10 = [1, 2/3] -> AUC 5/6, S10 = 1/18; V01 = [1/2, 1, 1] -> S01 = 1/12
    # var = S10/2 + S01/3 = 1/36 + 1/36 = 1/18
    y = np.array([1, 1, 0, 0, 0])
    s = np.array([0.9, 0.4, 0.6, 0.2, 0.1])
    aucs, cov = stats.delong_cov(y, s)
    assert aucs[0] == pytest.approx(5 / 6)
    assert cov[0, 0] == pytest.approx(1 / 18)


def test_delong_matches_pairwise_definition_and_gives_p():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 120)
    s1 = rng.normal(size=120) + 1.2 * y
    s2 = s1 + rng.normal(scale=1.5, size=120)
    a_fast, c_fast = stats.delong_cov(y, np.vstack([s1, s2]))
    a_slow, c_slow = _pairwise_delong(y, s1, s2)
    np.testing.assert_allclose(a_fast, a_slow, atol=1e-12)
    np.testing.assert_allclose(c_fast, c_slow, atol=1e-12)
    res = stats.delong_test(y, s1, s2)
    var = c_slow[0, 0] + c_slow[1, 1] - 2 * c_slow[0, 1]
    z = (a_slow[0] - a_slow[1]) / np.sqrt(var)
    assert res["z"] == pytest.approx(z)
    assert res["p"] == pytest.approx(2 * st.norm.sf(abs(z)))
    assert res["auc1"] > res["auc2"]
    same = stats.delong_test(y, s1, s1 * 2 + 3)  # same ranking -> no difference
    assert same["p"] == 1.0 and same["diff"] == 0.0


def test_youden_threshold_hand_case():
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.65, 0.5, 0.7, 0.9])
    # J at each cut: 0.9 -> 1/3; 0.7 -> 2/3; 0.65 -> 2/3 + 3/4 - 1; 0.5 -> 1 + 3/4 - 1 = 0.75 (max)
    assert stats.youden_threshold(y, s) == pytest.approx(0.5)
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.3, 0.35, 0.9])  # perfectly separable: threshold 0.35 gives J = 1
    assert stats.youden_threshold(y, s) == pytest.approx(0.35)


def test_confusion_and_sens_spec_from_hand_matrix():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    s = np.array([.9, .8, .7, .2, .6, .1, .1, .1, .3, .4])
    cm = stats.confusion_at(y, s, 0.5)
    np.testing.assert_array_equal(cm, [[5, 1], [1, 3]])
    ss = stats.sens_spec(cm)
    assert ss["sensitivity"] == pytest.approx(3 / 4)
    assert ss["specificity"] == pytest.approx(5 / 6)
    assert ss["accuracy"] == pytest.approx(0.8)
    # Frid-Adar Table I, Met vs rest: TP 44, FN 20, FP 1+18, TN 52+0+0+47 -> 68.7 % / 83.9 %
    frid = stats.sens_spec(np.array([[99, 19], [20, 44]]))
    assert frid["sensitivity"] == pytest.approx(0.687, abs=1e-3)  # the paper truncates 68.75
    assert round(100 * frid["specificity"], 1) == 83.9


def test_roc_points_and_welch():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    s = rng.normal(size=1000) + y
    pts = stats.roc_points(y, s, max_points=50)
    assert len(pts["fpr"]) <= 50 and pts["fpr"][0] == 0.0 and pts["tpr"][-1] == 1.0
    a, b = rng.normal(size=10), rng.normal(1, 2, size=10)
    ref = st.ttest_ind(a, b, equal_var=False)
    w = stats.welch_t(a, b)
    assert w["t"] == pytest.approx(ref.statistic) and w["p"] == pytest.approx(ref.pvalue)


def test_auc_refuses_single_class():
    with pytest.raises(ValueError):
        stats.auc(np.zeros(5), np.arange(5.0))
