"""Study creation: balanced by default, warns when not, stores the equivalence margin; the size helper."""
from __future__ import annotations

import pytest

import _study_fixtures as fx
from medgan_ui.errors import UserError
from medgan_ui.study import sample_size
from medgan_ui.study.design import StudyConfig, create_study
from medgan_ui.study.store import StudyStore
from medgan_ui.workspace import Workspace


def test_balanced_by_default_and_margin_stored(tmp_path):
    ws = Workspace(tmp_path / "ws")
    syn = fx.write_synthetic_folder(tmp_path / "syn")
    info = create_study(ws, StudyConfig(name="b", part=None, synthetic=[str(syn)], classes=["Effusion"], real_per_class=3),
                        real=fx.demo())
    assert info.counts["real"] == info.counts["synthetic"] == 6 and info.warnings == []
    settings = StudyStore(ws.studies_db).study(info.study_id)["settings"]
    assert settings["equivalence_margin"] == 0.1 and settings["size_advice"]["text"] == info.size_advice["text"]
    assert "Hillis-Obuchowski-Berbaum" in info.size_advice["text"]


def test_unbalanced_or_uneven_generators_warn_and_bad_margin_is_refused(tmp_path):
    ws = Workspace(tmp_path / "ws")
    s1, s2 = fx.write_synthetic_folder(tmp_path / "s1"), fx.write_synthetic_folder(tmp_path / "s2", seed=9)
    info = create_study(ws, StudyConfig(name="u", part=None, synthetic=[str(s1), str(s2)], classes=["Effusion"],
                                        include_no_finding=False, real_per_class=2, synthetic_per_class=3,
                                        equivalence_margin=0.05), real=fx.demo())
    assert any("not balanced" in w for w in info.warnings) and any("split evenly" in w for w in info.warnings)
    assert StudyStore(ws.studies_db).study(info.study_id)["settings"]["equivalence_margin"] == 0.05
    with pytest.raises(UserError, match="margin"):
        create_study(ws, StudyConfig(name="m", part=None, synthetic=[str(s1)], real_per_class=1, equivalence_margin=0.6),
                     real=fx.demo())


def test_size_helper_behaves_like_power():
    c = sample_size.default_components(50, 50)
    p = [sample_size.power_vs_chance(c, r, 0.6) for r in (2, 5, 10, 20)]
    assert p == sorted(p) and p[0] > 0.05  # more readers, more power
    # at the null the test keeps its size
    assert sample_size.power_vs_chance(c, 5, 0.5) == pytest.approx(0.05, abs=1e-6)
    big = sample_size.default_components(500, 500)
    assert sample_size.power_equivalence(big, 10, 0.1) > sample_size.power_equivalence(c, 10, 0.1)
    # two treatments with the VanDyke estimates (HOB 2008 use them as their pilot): power grows with the difference
    vd = sample_size.Components(0.0007921325, 0.000342009, 0.0003395265, 0.0002358497, 0.0015364254, 0.000204584)
    assert sample_size.power_two_treatments(vd, 5, 0.0) == pytest.approx(0.05, abs=1e-6)
    assert sample_size.power_two_treatments(vd, 5, 0.05) < sample_size.power_two_treatments(vd, 10, 0.05)
    adv = sample_size.study_size_advice(80, 80)
    assert adv["readers_needed_detect"] and adv["readers_needed_equivalence"]
    assert adv["power_detect"][adv["readers"].index(adv["readers_needed_detect"])] >= 0.8


@pytest.mark.parametrize("readers, n, goal, simulated", [
    (10, 100, "equivalence", 0.935), (5, 40, "equivalence", 0.284), (5, 40, "detect", 0.532)])
def test_size_helper_agrees_with_simulated_studies(readers, n, goal, simulated):
    """Analytic power vs the share of 1000 simulated studies that reached the goal (bench/mrmc_coverage.py,
    Dec 2026: equivalence within 0.1 at chance; rejecting chance at separation 0.5, AUC about 0.6).
    The default components are a little conservative; within 0.1 of the simulation."""
    if goal == "equivalence":
        p = sample_size.power_equivalence(sample_size.default_components(n, n), readers, 0.1)
    else:
        p = sample_size.power_vs_chance(sample_size.default_components(n, n, 0.6), readers, 0.6)
    assert abs(p - simulated) < 0.1, p
