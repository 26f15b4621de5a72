"""The experiment over K-fold cross-validation: statistics recomputed from the written predictions,
official and image-level splits named, too many folds refused before any training."""
from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy import stats as st
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.errors import UserError
from medgan_ui.evaluate.experiment import ExperimentConfig, run_experiment
from medgan_ui.evaluate.results import subgroup_rows, table_rows
from medgan_ui.workspace import Workspace

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ds():
    return demo_imageset(n=300, size=32, seed=3)


def _cfg(**kw) -> ExperimentConfig:
    base = dict(targets=["Effusion"], strategies=["none", "oversample"], classifier="fridadar", width=0.25,
                folds=2, epochs=1, patience=1, batch_size=32, n_boot=100, seed=0)
    return ExperimentConfig(**{**base, **kw})


def _predictions(d, name):
    with open(d / "predictions" / name, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["part"] == "test"]


def test_statistics_match_the_written_predictions(ds, tmp_path):
    ws = Workspace(tmp_path / "ws")
    out = run_experiment(_cfg(targets=["Effusion", "Nodule"], repeats=2), ws, dataset=ds)
    d = ws.experiment_dir(out["id"])
    r = json.loads((d / "results.json").read_text())
    assert r["split_kind"] == "patient-level K-fold" and r["complete_folds"] == [0, 1, 2, 3]
    assert [(f["repeat"], f["fold"]) for f in r["folds"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    p_boot, p_t = [], []
    for target in ("Effusion", "Nodule"):
        per = r["targets"][target]
        for s in ("none", "oversample"):
            pooled = []
            for rep in range(2):  # pooled out-of-fold AUC of each repeat, from the prediction files
                rows = _predictions(d, f"repeat{rep}-fold0-{s}.csv") + _predictions(d, f"repeat{rep}-fold1-{s}.csv")
                assert sorted(int(x["index"]) for x in rows) == list(range(len(ds)))  # every image once per repeat
                pooled.append(roc_auc_score([int(x[f"y_{target}"]) for x in rows], [float(x[f"p_{target}"]) for x in rows]))
            assert per[s]["auc_pooled"] == pytest.approx(np.mean(pooled), abs=1e-5)
            assert per[s]["auc_pooled_ci95"][0] <= per[s]["auc_pooled"] <= per[s]["auc_pooled_ci95"][1] or \
                per[s]["auc_pooled"] in (0.0, 1.0)
            assert per[s]["auc_fold_mean"] == pytest.approx(np.mean(per[s]["auc_per_fold"]))
            assert per[s]["auc_fold_sd"] == pytest.approx(np.std(per[s]["auc_per_fold"], ddof=1))
        v = per["oversample"]["vs_none"]
        dif = np.array(per["oversample"]["auc_per_fold"]) - np.array(per["none"]["auc_per_fold"])
        n_fit = np.mean([f["n_fit"] for f in per["oversample"]["per_fold"]])
        n_test = np.mean([f["n_test"] for f in per["oversample"]["per_fold"]])
        t = dif.mean() / np.sqrt((1 / 4 + n_test / n_fit) * dif.var(ddof=1))  # Nadeau-Bengio, J = 4
        assert v["t_corrected"] == pytest.approx(t) and v["p_corrected_t"] == pytest.approx(2 * st.t.sf(abs(t), 3))
        assert v["diff"] == pytest.approx(per["oversample"]["auc_pooled"] - per["none"]["auc_pooled"])
        assert v["diff_ci95"][0] <= v["diff_ci95"][1] and 0 < v["p_bootstrap"] <= 1
        p_boot.append(v["p_bootstrap"])
        p_t.append(v["p_corrected_t"])
        assert set(r["subgroups"][target]) == {"sex=F", "sex=M", "view=AP", "view=PA"}
    holm_b = multipletests(p_boot, method="holm")[1]
    holm_t = multipletests(p_t, method="holm")[1]
    for i, target in enumerate(("Effusion", "Nodule")):
        v = r["targets"][target]["oversample"]["vs_none"]
        assert v["p_bootstrap_holm"] == pytest.approx(holm_b[i]) and v["p_corrected_t_holm"] == pytest.approx(holm_t[i])
    rows = table_rows(r)
    assert [(x["target"], x["strategy"]) for x in rows] == [("Effusion", "none"), ("Effusion", "oversample"),
                                                          ("Nodule", "none"), ("Nodule", "oversample")]
    assert rows[0]["p_bootstrap"] is None and rows[1]["p_corrected_t_holm"] is not None
    with open(d / "results.csv") as fh:
        assert next(csv.reader(fh))[:4] == ["target", "strategy", "auc_pooled", "ci95_lo"]
    assert (d / "results_subgroups.csv").read_text().count("\n") == 1 + len(subgroup_rows(r)) == 1 + 2 * 4 * 2


def test_official_and_image_level_splits_are_named(ds, tmp_path):
    ws = Workspace(tmp_path / "ws")
    official = dataclasses.replace(ds, split=np.resize(np.array([0, 0, 0, 1, 2, 2], np.int8), len(ds)),
                                   meta={**ds.meta, "split": None})
    out = run_experiment(_cfg(repeats=2, folds=7), ws, dataset=official)
    r = out["results"]
    assert r["split_kind"] == "official split" and len(r["folds"]) == 2
    assert any("official split" in n and "folds = 7 does not apply" in n for n in r["notes"])
    v = r["targets"]["Effusion"]["oversample"]["vs_none"]
    assert np.isnan(v["p_corrected_t"]) and 0 < v["p_bootstrap"] <= 1  # one test set: no resampling to correct
    image_level = dataclasses.replace(ds, meta={**ds.meta, "format": "folders"})
    out = run_experiment(_cfg(strategies=["none"]), ws, dataset=image_level)
    assert out["results"]["split_kind"] == "image-level split: no patient ids"
    assert "split: image-level split: no patient ids" in out["results"]["notes"]


def test_too_many_folds_refused_before_any_compute(ds, tmp_path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(UserError, match=r"folds = 40: .*patient\(s\) with 'Effusion'.*set folds \(--folds\) to \d+ or fewer"):
        run_experiment(_cfg(folds=40), ws, dataset=ds)
    assert not any(ws.experiments.iterdir())
    with pytest.raises(UserError, match="specificity must be between 0 and 1"):
        run_experiment(_cfg(specificity=1.5), ws, dataset=ds)
    old = ExperimentConfig.from_dict({"targets": ["Effusion"], "splits": 3, "fractions": [0.7, 0.1, 0.2]})
    assert old.folds == 3 and old.splits is None and "deprecated" in old.alias_note
