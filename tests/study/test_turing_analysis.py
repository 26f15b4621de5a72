"""The Turing test as an MRMC study: rating scale, simulated studies with known truth (chance, detection,
coverage), equivalence, per-reader CIs, balanced accuracy, binomial only when balanced, generators."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from medgan_ui.errors import UserError
from medgan_ui.study import mrmc, turing
from medgan_ui.study.simulate import simulate_rows


def test_rating_scale_is_one_ordinal_line_from_surely_real_to_surely_synthetic():
    order = [("real", 5), ("real", 4), ("real", 3), ("real", 2), ("real", 1),
             ("synthetic", 1), ("synthetic", 2), ("synthetic", 3), ("synthetic", 4), ("synthetic", 5)]
    assert [turing.turing_rating(c, s, "confidence") for c, s in order] == list(range(1, 11))
    # realism 1 = clearly synthetic .. 5 = clearly real; the call does not move it
    assert [turing.turing_rating("real", s, "realism") for s in (5, 4, 3, 2, 1)] == [1, 2, 3, 4, 5]
    assert turing.turing_rating("synthetic", 2, "realism") == turing.turing_rating("real", 2, "realism")


def test_readers_at_chance_with_a_large_study_conclude_equivalence():
    rows = simulate_rows(10, 120, 120, separation=0.0, seed=1)
    res = turing.turing_analysis(rows, "confidence", margin=0.1, n_perm=500)
    auc = res["auc"]
    assert auc["ci95"][0] < 0.5 < auc["ci95"][1] and auc["p_vs_chance"] > 0.05
    assert auc["readers"] == "random" and auc["n_readers"] == 10
    eq = res["equivalence"]
    assert eq["equivalent"] and 0.4 < eq["ci90"][0] and eq["ci90"][1] < 0.6 and eq["p"] < 0.05
    assert res["conclusion"].startswith("Readers could not tell synthetic from real images within ±0.10 AUC")
    assert res["binomial"] is not None and res["balanced"]  # 120 / 120: the binomial test is allowed
    assert res["balanced_accuracy"]["p_perm"] > 0.01


def test_a_small_study_at_chance_shows_nothing_either_way():
    rows = simulate_rows(3, 12, 12, separation=0.0, seed=4)
    res = turing.turing_analysis(rows, "confidence", n_perm=200)
    assert not res["equivalence"]["equivalent"]
    assert res["conclusion"].startswith("Not shown either way")


def test_readers_who_detect_have_a_ci_excluding_chance():
    rows = simulate_rows(5, 40, 40, separation=1.5, seed=2)
    res = turing.turing_analysis(rows, "confidence", n_perm=500)
    assert res["auc"]["ci95"][0] > 0.5 and res["auc"]["p_vs_chance"] < 0.01
    assert not res["equivalence"]["equivalent"]
    assert res["conclusion"].startswith("Readers told synthetic from real images apart better than chance")
    assert res["balanced_accuracy"]["balanced_accuracy"] > 0.6 and res["balanced_accuracy"]["p_perm"] < 0.01
    for name, p in res["per_reader"].items():  # per-reader DeLong CI around the reader's own AUC
        assert p["ci95"][0] < p["auc"] < p["ci95"][1]
        assert p["p_perm"] <= 0.05


def test_ci_coverage_near_95_percent_at_chance():
    """200 simulated 4-reader studies of 20 + 20 images at chance: the OR 95% CI covers 0.5 about 95% of the time."""
    covered = []
    for rep in range(200):
        long = turing.long_rows(simulate_rows(4, 20, 20, separation=0.0, seed=100 + rep), "confidence")
        res = turing.vs_chance(mrmc.MRMCData.from_rows(long), 0.1, "sim")
        lo, hi = res["auc"]["ci_unclipped"]
        covered.append(lo <= 0.5 <= hi)
    rate = float(np.mean(covered))
    # binomial 99.9% band around 0.95 for 200 draws is about 0.90 .. 0.99
    assert 0.90 <= rate <= 0.99, rate


def test_binomial_only_for_balanced_design_and_permutation_matches_definition():
    rows = simulate_rows(2, 10, 20, separation=0.5, seed=3)
    res = turing.turing_analysis(rows, "confidence", n_perm=300)
    assert not res["balanced"] and res["binomial"] is None
    assert all(p["binomial"] is None for p in res["per_reader"].values())
    # balanced accuracy by hand for one reader
    mine = [r for r in rows if r["reader"] == "R1"]
    sens = np.mean([r["call"] == "synthetic" for r in mine if r["truth"] == "synthetic"])
    spec = np.mean([r["call"] == "real" for r in mine if r["truth"] == "real"])
    assert res["per_reader"]["R1"]["balanced_accuracy"] == pytest.approx((sens + spec) / 2)
    b = turing.binomial(rows[:0] + [r for r in rows if r["truth"] == "real"] + [r for r in rows if r["truth"] == "synthetic"][:20])
    k = sum(r["call"] == r["truth"] for r in [r for r in rows if r["truth"] == "real"] + [r for r in rows if r["truth"] == "synthetic"][:20])
    assert b["p"] == pytest.approx(stats.binomtest(k, 40).pvalue)


def test_reader_who_stopped_early_is_kept_partially_paired():
    rows = simulate_rows(4, 20, 20, separation=1.0, seed=5, stop_after={3: 25})
    res = turing.turing_analysis(rows, "confidence", n_perm=200)
    assert "R4" in res["per_reader"] and res["per_reader"]["R4"]["n"] == 25
    assert res["auc"]["n_readers"] == 4 and res["readers_excluded"] == []
    few = simulate_rows(3, 20, 20, seed=6, stop_after={2: 2})
    assert turing.turing_analysis(few, "confidence", n_perm=50)["readers_excluded"] == ["R3"]


def test_single_reader_is_analysed_with_fixed_readers():
    res = turing.turing_analysis(simulate_rows(1, 30, 30, separation=1.0, seed=7), "confidence", n_perm=200)
    assert res["auc"]["readers"] == "fixed" and "holds for this reader only" in res["conclusion"]
    with pytest.raises(UserError, match="margin"):
        turing.turing_analysis(simulate_rows(1, 5, 5), "confidence", margin=0.7)


def test_two_generators_compared_with_cases_nested_in_generator():
    rows = simulate_rows(5, 40, 40, seed=8, generators={"gdgan": 0.0, "acgan": 2.0})
    res = turing.turing_analysis(rows, "confidence", n_perm=200)
    g = res["generators"]
    assert g["treatments"] == ["acgan", "gdgan"] and g["hardest_to_tell"] == "gdgan"
    d = g["differences"][0]
    assert d["comparison"] == "acgan - gdgan" and d["ci"][0] > 0 and d["p"] < 0.05 and g["test"]["p"] < 0.05
    assert "gdgan's images were harder to tell from real" in g["conclusion"]
    # the real cases are shared: each treatment's AUC uses all 40 real + its own 40 synthetic cases
    long = turing.long_rows(rows, "confidence", by_generator=True)
    assert sum(1 for r in long if r["reader"] == "R1" and r["treatment"] == "gdgan") == 80
    assert mrmc.design_of(mrmc.MRMCData.from_rows(long)) == 1  # partially paired, not fully nested


@pytest.mark.parametrize("est, p, eq, start", [
    (0.7, 0.001, False, "Readers told synthetic from real images apart better"),
    (0.3, 0.001, False, "Readers rated real images as more synthetic"),
    (0.52, 0.02, True, "Readers told synthetic from real images apart slightly better"),
    (0.5, 0.9, True, "Readers could not tell"),
    (0.55, 0.3, False, "Not shown either way")])
def test_conclusion_sentence_for_each_outcome(est, p, eq, start):
    auc = {"estimate": est, "ci_unclipped": [est - 0.05, est + 0.05], "p_vs_chance": p}
    e = {"margin": 0.1, "ci90": [est - 0.04, est + 0.04], "equivalent": eq, "p": 0.01}
    assert turing.conclusion(auc, e, "5 readers").startswith(start)


def test_equivalence_is_two_one_sided_tests():
    e = turing.equivalence(0.52, 0.02, 30, 0.1)
    q = stats.t.ppf(0.95, 30)
    assert e["ci90"] == pytest.approx([0.52 - q * 0.02, 0.52 + q * 0.02])
    assert e["p"] == pytest.approx(max(stats.t.sf((0.52 - 0.4) / 0.02, 30), stats.t.cdf((0.52 - 0.6) / 0.02, 30)))
    assert e["equivalent"] == (e["p"] < 0.05)


def test_old_study_without_margin_uses_the_default(tmp_path):
    import io

    from PIL import Image

    from medgan_ui.study import analysis
    from medgan_ui.study.store import CaseInput, StudyStore

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, format="PNG")
    store = StudyStore(tmp_path / "s.sqlite")
    cases = [CaseInput(t, f"s{i}", {"findings": [], "class": "No Finding", "source_name": t}, buf.getvalue())
             for i, t in enumerate(["real", "synthetic"] * 4)]
    sid, code = store.create_study("old", {"findings": ["No Finding"], "score_kind": "confidence"}, cases)
    truth = {c["id"]: c["truth"] for c in store.cases(sid)}
    for k, name in enumerate(("A", "B")):
        tok = store.sign_in(name, code).token
        while (n := store.next_case(tok)).case_id:
            store.rate(tok, n.case_id, truth[n.case_id] if k == 0 else "real", 3 + sum(map(ord, n.case_id)) % 3, "No Finding")
    res = analysis.analyze(store, sid)
    assert res["turing"]["margin"] == 0.1 and "conclusion" in res["turing"]
    csv_text = analysis.ratings_csv(store.ratings_rows(sid), "confidence")
    assert csv_text.splitlines()[0].startswith("reader,treatment,case,truth,rating,time")
