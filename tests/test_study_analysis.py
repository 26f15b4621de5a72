"""Statistics of the visual Turing test against hand-computed values and scipy/sklearn/statsmodels."""
from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from PIL import Image

from medgan_ui.study import analysis
from medgan_ui.study.store import CaseInput, StudyStore

TRUTH = ["synthetic"] * 3 + ["real"] * 3
FINDINGS = [["Nodule"], [], ["Effusion"], ["Nodule"], [], ["Effusion", "Nodule"]]
A = {"call": ["synthetic", "synthetic", "real", "real", "real", "synthetic"], "score": [5, 3, 2, 4, 1, 2],
     "finding": ["Nodule", "No Finding", "Nodule", "Nodule", "Effusion", "Nodule"]}
B = {"call": ["synthetic", "real", "real", "real", "synthetic", "synthetic"], "score": [4, 4, 3, 5, 2, 1],
     "finding": ["Nodule", "Nodule", "Effusion", "Nodule", "No Finding", "Effusion"]}


def rows_for(name: str, r: dict, repeat_of=None) -> list[dict]:
    return [{"reader": name, "case_id": f"c{i}", "truth": TRUTH[i], "source": f"s{i}", "repeat_of": repeat_of,
             "labels": {"findings": FINDINGS[i], "class": "x", "source_name": "real:demo" if TRUTH[i] == "real" else "synthetic:set1"},
             "call": r["call"][i], "score": r["score"][i], "finding": r["finding"][i], "comment": "", "ms": 1000 * (i + 1),
             "created": "t", "updated": "t"} for i in range(6)]


def test_reader_stats_match_hand_computation():
    s = analysis.call_stats(rows_for("A", A), "confidence")
    assert s["correct"] == 4 and s["n"] == 6
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["p_value"] == pytest.approx(44 / 64)  # P(X>=4) + P(X<=2) for Bin(6, 1/2)
    assert s["sensitivity"] == pytest.approx(2 / 3) and s["specificity"] == pytest.approx(2 / 3)
    # signed scores [5, 3, -2 | -4, -1, 2]: 7 of 9 synthetic/real pairs ordered correctly
    assert s["auc"] == pytest.approx(7 / 9)
    assert s["finding_accuracy"]["synthetic"]["accuracy"] == pytest.approx(2 / 3)
    assert s["finding_accuracy"]["real"]["accuracy"] == pytest.approx(2 / 3)
    assert s["median_ms"] == pytest.approx(3500)


def test_reader_stats_match_scipy_and_sklearn():
    from scipy.stats import binomtest
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    truth = rng.choice(["real", "synthetic"], 80)
    calls = rng.choice(["real", "synthetic"], 80)
    score = rng.integers(1, 6, 80)
    rows = [{"reader": "R", "case_id": str(i), "truth": t, "call": c, "score": int(x), "finding": None, "ms": None,
             "labels": {"findings": []}} for i, (t, c, x) in enumerate(zip(truth, calls, score))]
    balanced = rows[:0]
    for want in ("real", "synthetic"):  # the first 30 of each truth: a balanced subset
        balanced += [r for r in rows if r["truth"] == want][:30]
    for kind in ("confidence", "realism"):
        s = analysis.call_stats(rows, kind)
        # behaviour changed on purpose (issue 12): no binomial test when real/synthetic are unbalanced
        assert (truth == "synthetic").sum() != 40 and s["p_value"] is None
        sb = analysis.call_stats(balanced, kind)
        k = sum(r["truth"] == r["call"] for r in balanced)
        assert sb["p_value"] == pytest.approx(binomtest(k, 60, 0.5).pvalue)
        signed = np.where(calls == "synthetic", score, -score) if kind == "confidence" else -score
        assert s["auc"] == pytest.approx(roc_auc_score(truth == "synthetic", signed))


def test_kappas_hand_computed_and_statsmodels():
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    ag = analysis.agreement(rows_for("A", A) + rows_for("B", B), "call")
    # agreement 4/6, both readers 50/50 -> chance 1/2 -> kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert ag["pairs"][0]["agreement"] == pytest.approx(4 / 6)
    assert ag["pairs"][0]["cohen_kappa"] == pytest.approx(1 / 3)
    assert ag["pairs"][0]["cohen_kappa"] == pytest.approx(cohen_kappa_score(A["call"], B["call"]))
    assert ag["fleiss_kappa"] == pytest.approx(1 / 3)  # P-bar 4/6, P_e 1/2 for this table
    rng = np.random.default_rng(1)
    for raters, cats in ((4, 2), (5, 4), (3, 3)):
        table = np.array([np.bincount(rng.integers(0, cats, raters), minlength=cats) for _ in range(40)])
        assert analysis.fleiss_kappa(table) == pytest.approx(sm_fleiss(table))
    table = np.array([[3, 0], [0, 3], [3, 0], [1, 2]])
    assert analysis.fleiss_kappa(table) == pytest.approx(sm_fleiss(table))


def test_repeats_only_feed_intra_reader_consistency():
    rows = rows_for("A", A)
    rep = dict(rows[0], case_id="c0-again", repeat_of="c0", call="real", score=2)
    res = analysis.analyze_rows(rows + [rep], "confidence")
    assert res["per_reader"]["A"]["n"] == 6  # repeat not counted twice in accuracy
    assert res["intra_reader"]["A"] == {"n": 1, "call_agreement": 0.0, "mean_abs_score_diff": 3.0}
    assert res["per_source"]["synthetic:set1"]["mean_score"] == pytest.approx((5 + 3 + 2) / 3)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    return buf.getvalue()


def test_analyze_export_figure_and_turing_block(tmp_path):
    store = StudyStore(tmp_path / "s.sqlite")
    cases = [CaseInput(TRUTH[i], f"s{i}", {"findings": FINDINGS[i], "class": "x", "source_name": TRUTH[i]}, _png()) for i in range(6)]
    sid, code = store.create_study("analysis", {"findings": ["Effusion", "Nodule", "No Finding"], "score_kind": "confidence"}, cases)
    truth_of = {c["id"]: c["truth"] for c in store.cases(sid)}
    for name, ans in (("A", A), ("B", B)):
        tok = store.sign_in(name, code).token
        # answer in the reader's own order, giving each case the answer of the matching fixture row
        by_truth = {"synthetic": [0, 1, 2], "real": [3, 4, 5]}
        while (nxt := store.next_case(tok)).case_id:
            i = by_truth[truth_of[nxt.case_id]].pop(0)
            store.rate(tok, nxt.case_id, ans["call"][i], ans["score"][i], ans["finding"][i])
    res = analysis.analyze(store, sid)
    assert res["n_ratings"] == 12 and res["n_readers"] == 2
    assert res["per_reader"]["A"]["accuracy"] == pytest.approx(4 / 6)
    rows = store.ratings_rows(sid)
    text = analysis.ratings_csv(rows)
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == 12 and set(parsed[0]) == set(analysis.CSV_FIELDS)
    fig = analysis.summary_figure(res, rows, tmp_path / "fig.png")
    with Image.open(fig) as im:
        assert im.size[0] > 500
    block = analysis.turing_test_block(res)
    assert block["readers"] == 2 and block["ratings"] == 12
    assert block["accuracy"] == pytest.approx((4 + 2) / 12)  # A 4/6, B 2/6
    assert set(block["agreement"]) == {"fleiss_kappa_call", "mean_cohen_kappa_call", "fleiss_kappa_finding"}
