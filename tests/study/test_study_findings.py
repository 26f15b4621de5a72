"""Finding answers on real vs synthetic images: sensitivity/specificity with Wilson CIs, recognition."""
from __future__ import annotations

import pytest
from statsmodels.stats.proportion import proportion_confint

from medgan_ui.study.findings import finding_stats
from medgan_ui.study.simulate import simulate_rows


def row(truth: str, cls: str, findings: list[str], finding: str) -> dict:
    return {"truth": truth, "labels": {"class": cls, "findings": findings}, "finding": finding, "repeat_of": None}


def test_hand_counted_sensitivity_specificity():
    rows = [row("real", "Effusion", ["Effusion"], "Effusion"), row("real", "Effusion", ["Effusion"], "No Finding"),
            row("real", "No Finding", [], "No Finding"), row("synthetic", "Effusion", ["Effusion"], "No Finding"),
            row("synthetic", "No Finding", [], "Effusion"), row("synthetic", "No Finding", [], "No Finding")]
    out = finding_stats(rows, ["Effusion", "No Finding"])
    eff = out["per_class"]["Effusion"]
    assert eff["real"]["sensitivity"]["k"] == 1 and eff["real"]["sensitivity"]["n"] == 2
    assert eff["real"]["specificity"]["p"] == 1.0 and eff["synthetic"]["sensitivity"]["p"] == 0.0
    assert eff["synthetic"]["specificity"]["p"] == 0.5
    lo, hi = proportion_confint(1, 2, method="wilson")
    assert eff["real"]["sensitivity"]["ci95"] == pytest.approx([lo, hi])
    rec = out["recognition"]["Effusion"]
    assert rec["real"]["p"] == 0.5 and rec["synthetic"]["p"] == 0.0 and rec["difference"]["estimate"] == -0.5


def test_finding_less_recognised_in_synthetic_images_is_reported():
    rows = simulate_rows(4, 60, 60, seed=3, finding_hit={"real": 0.9, "synthetic": 0.4})
    rec = finding_stats(rows, ["Effusion", "No Finding"])["recognition"]["Effusion"]
    assert rec["difference"]["ci95"][1] < 0 and rec["p"] < 0.001
    assert rec["text"].endswith("recognised less often in synthetic images.")
    same = finding_stats(simulate_rows(2, 30, 30, seed=4), ["Effusion"])["recognition"]["Effusion"]
    assert same["difference"]["ci95"][0] < 0 < same["difference"]["ci95"][1]
