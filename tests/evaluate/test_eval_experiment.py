"""Tiny end-to-end augmentation comparison on the demo phantom (32 px, 2 folds, 1 epoch) and bad input."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.data.provenance import trained_record
from medgan_ui.data.split import cv_folds
from medgan_ui.errors import UserError
from medgan_ui.evaluate import strategies as S
from medgan_ui.evaluate.experiment import ExperimentConfig, run_experiment, validate
from medgan_ui.evaluate.results import table_rows
from medgan_ui.workspace import Workspace

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ds():
    return demo_imageset(n=360, size=32, seed=3)


def _write_set(ws: Workspace, set_id: str, ds, finding: str, n: int, size: int | None = None,
               values: dict | None = None, rows: np.ndarray | None = None) -> None:
    """A synthetic set as the sampling export writes it: noisy copies of real positives (of `rows`, whose
    patients the manifest records as trained on, as an export of a run does)."""
    folder = ws.synthetic_dir(set_id)
    folder.mkdir(parents=True)
    rows = np.arange(len(ds)) if rows is None else rows
    pos = rows[ds.detailed[rows, ds.findings.index(finding)].numpy().astype(bool)]
    g = torch.Generator().manual_seed(0)
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", *ds.general_names, "Finding Labels"])
        for k in range(n):
            i = int(pos[k % len(pos)])
            img = (ds.images[i].float() + 8 * torch.randn(ds.size, ds.size, generator=g)).clamp(0, 255).to(torch.uint8)
            im = Image.fromarray(img.numpy())
            im = im.resize((size, size)) if size else im
            im.save(folder / f"{k:05d}.png")
            lab = ds.general_label(i)
            w.writerow([f"{k:05d}.png", *[lab[c] for c in ds.general_names], finding])
    schema = {"general_names": ds.general_names, "general_values": values or ds.general_values,
              "findings": ds.findings, "image_size": size or ds.size}
    (folder / "manifest.json").write_text(json.dumps({"kind": "synthetic-set", "schema": schema,
                                                      "trained_on": trained_record(ds, rows, None)}))


def _cfg(**kw) -> ExperimentConfig:
    base = dict(targets=["Effusion"], strategies=["none", "oversample"], classifier="fridadar", width=0.25,
                folds=2, epochs=1, patience=1, batch_size=32, n_boot=200, seed=0)
    return ExperimentConfig(**{**base, **kw})


def test_synthetic_needs_and_strategy_names():
    y = np.zeros((20, 1), bool)
    y[:3, 0] = True
    assert S.synthetic_needs(y, "ratio", 1.0) == [17 - 3]
    assert S.synthetic_needs(y, "ratio", 0.6) == [10 - 3]  # 0.6 x 17 negatives = 10.2
    assert S.synthetic_needs(y, "count", 10) == [7]
    assert S.synthetic_needs(y, "count", 2) == [0]
    assert S.parse_strategy("synthetic:a+b") == ("synthetic", ["a", "b"])
    assert S.parse_strategy("oversample") == ("oversample", [])
    with pytest.raises(UserError, match="unknown strategy"):
        S.parse_strategy("smote")


def test_end_to_end_files_results_and_progress(ds, tmp_path):
    ws = Workspace(tmp_path / "ws")
    folds, _ = cv_folds(ds, ["Effusion"], 2, 1, 0, 0.125)  # the experiment's folds: one set per fold's train part
    for k, f in enumerate(folds):
        _write_set(ws, f"synth-eff{k}", ds, "Effusion", 60, rows=np.flatnonzero(f.split == 0))
    events = []
    cfg = _cfg(strategies=["none", "oversample", "classic", "synthetic:synth-eff0+synth-eff1"])
    out = run_experiment(cfg, ws, on_progress=events.append, dataset=ds)
    d = ws.experiment_dir(out["id"])
    for f in ("config.json", "manifest.json", "results.json", "results.csv", "roc.png", "confusion.png"):
        assert (d / f).is_file(), f
    preds = sorted(p.name for p in (d / "predictions").iterdir())
    assert len(preds) == 8 and "repeat0-fold1-synthetic_synth-eff0_synth-eff1.csv" in preds
    r = json.loads((d / "results.json").read_text())
    assert r["status"] == "done" and r["complete_folds"] == [0, 1] and r["split_kind"] == "patient-level K-fold"
    eff = r["targets"]["Effusion"]
    assert sorted(eff) == sorted(cfg.strategies)
    for s, e in eff.items():
        assert len(e["auc_per_fold"]) == 2 and e["auc_pooled_ci95"][0] <= e["auc_pooled_ci95"][1]
        assert 0 <= e["sensitivity_mean"] <= 1 and len(e["roc_mean"]["fpr"]) == 101
        assert ("vs_none" in e) == (s != "none")
        assert sum(map(sum, e["confusion_sum"])) == sum(p["n_test"] for p in e["per_fold"]) == len(ds)
    # every strategy of a fold is scored on the same test images
    with open(d / "predictions" / "repeat0-fold0-none.csv") as a, open(d / "predictions" / "repeat0-fold0-oversample.csv") as b:
        assert [r_[1] for r_ in csv.reader(a)] == [r_[1] for r_ in csv.reader(b)]
    syn = [t for t in r["training"] if t["strategy"].startswith("synthetic")]
    assert all(t["n_train_synthetic"] > 0 for t in syn)
    for t in syn:  # ratio 1: positives topped up to the number of negatives
        info = r["folds"][t["fold"]]["train"]
        assert info["Effusion"] + t["n_train_synthetic"] == info["images"] - info["Effusion"]
    rows = table_rows(r)
    assert [row["strategy"] for row in rows] == cfg.strategies
    assert events[-1]["progress"] == 1.0 and {"stage", "fold", "strategy", "epoch", "progress", "message"} <= set(
        next(e for e in events if e["stage"] == "train"))


def test_multilabel_and_cooperative_stop(ds, tmp_path):
    ws = Workspace(tmp_path / "ws")
    out = run_experiment(_cfg(targets=["Effusion", "Nodule"], strategies=["none", "undersample"], folds=2),
                         ws, dataset=ds)
    assert set(out["results"]["targets"]) == {"Effusion", "Nodule"}
    calls = {"n": 0}

    def stop_soon() -> bool:
        calls["n"] += 1
        return calls["n"] > 1

    out = run_experiment(_cfg(), ws, should_stop=stop_soon, dataset=ds)
    assert out["status"] == "stopped" and out["results"]["complete_folds"] == []


def test_bad_input_is_caught_before_training(ds, tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(UserError, match="not in dataset"):
        run_experiment(_cfg(targets=["Hernia"]), ws, dataset=ds)
    assert not any(ws.experiments.iterdir())  # rejected before the experiment folder is made
    with pytest.raises(UserError, match=r"folds = 200: .*--folds\) to \d+ or fewer"):
        validate(_cfg(folds=200), ws, ds)
    rare = ds.subset(np.arange(len(ds)))
    col = rare.findings.index("Nodule")
    pats = np.unique(rare.patient_id[rare.detailed[:, col].numpy().astype(bool)])
    rare.detailed[np.isin(rare.patient_id, pats[2:]), col] = 0  # leave two positive patients
    with pytest.raises(UserError, match="only 2 patient"):
        validate(_cfg(targets=["Nodule"]), ws, rare)
    with pytest.raises(UserError, match="nope.pth"):
        validate(_cfg(classifier="resnet18", width=1.0, init=f"imagenet:{tmp_path / 'nope.pth'}"), ws, ds)
    _write_set(ws, "big", ds, "Effusion", 4, size=48)
    with pytest.raises(UserError, match="48x48"):
        validate(_cfg(strategies=["none", "synthetic:big"]), ws, ds)
    _write_set(ws, "other", ds, "Effusion", 4, values={"sex": ["F", "M"], "view": ["LAT", "PA"]})
    with pytest.raises(UserError, match="other labels"):
        validate(_cfg(strategies=["none", "synthetic:other"]), ws, ds)
    with pytest.raises(UserError, match="neither a run"):
        validate(_cfg(strategies=["none", "synthetic:ghost"]), ws, ds)
    nomask = ds.subset(np.arange(len(ds)))
    nomask.masks = None
    with pytest.raises(UserError, match="needs masks"):
        validate(_cfg(init="segmentation"), ws, nomask)
    # a split whose test part holds no positive patient is named, with the patient count
    import medgan_ui.data.split as split_mod

    eff = ds.detailed[:, ds.findings.index("Effusion")].numpy().astype(bool)
    bad = np.where(np.arange(len(ds)) % 3 == 0, 1, 0).astype(np.int8)
    bad[~eff & (np.arange(len(ds)) % 5 == 0)] = 2
    import medgan_ui.evaluate.experiment as exp_mod

    folds = [split_mod.Fold(0, f, bad) for f in range(2)]
    monkeypatch.setattr(exp_mod, "cv_folds", lambda *a, **k: (folds, split_mod.KFOLD))
    with pytest.raises(UserError, match=r"fold 0 \(repeat 0, fold 0\): the test part has no positive image of "
                                        r"'Effusion'.*patients with"):
        validate(_cfg(), ws, ds)


def test_segmentation_init_runs_on_phantom_masks(ds, tmp_path):
    out = run_experiment(_cfg(init="segmentation", seg_epochs=1, folds=2, strategies=["none"]),
                         Workspace(tmp_path / "ws"), dataset=ds)
    seg = out["results"]["training"][0]["segmentation"]
    assert seg is not None and seg["n_images"] > 0


def test_cli_evaluate_and_metrics(tmp_path, capsys):
    """Through the generic path: the phantom written as an NIH folder plus a mask folder, read by the loader."""
    import argparse

    from medgan_ui.cli import evaluate as cli
    from medgan_ui.data.load import load_dataset
    from medgan_ui.data.phantom import write_demo_folders
    from medgan_ui.data.readers.base import ReadOptions

    write_demo_folders(tmp_path / "demo", n=300, seed=3, size=32)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    ws = tmp_path / "ws"
    common = ["--data", str(tmp_path / "demo" / "nih"), "--image-size", "32", "--workspace", str(ws)]
    args = parser.parse_args(["evaluate", *common, "--target", "Effusion", "--strategies", "none,oversample",
                              "--classifier", "fridadar", "--width", "0.25", "--init", "segmentation",
                              "--masks", str(tmp_path / "demo" / "masks"), "--splits", "2", "--epochs", "1",
                              "--n-boot", "200"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "oversample" in out and "auc_pooled" in out and "p_corrected_t_holm" in out and "experiment exp-" in out
    assert "split: patient-level K-fold" in out and "'splits' is deprecated" in out and "sex=F" in out
    exp = Workspace(ws).experiment_dir(out.strip().split("experiment ")[-1].split()[0])
    seg = json.loads((exp / "results.json").read_text())["training"][0]["segmentation"]
    assert seg["n_images"] > 100  # masks matched to the NIH-named images by file stem
    data = load_dataset(tmp_path / "demo" / "nih", options=ReadOptions(size=32), workspace=Workspace(ws))
    _write_set(Workspace(ws), "set-a", data, "Effusion", 30)
    args = parser.parse_args(["metrics", *common, "--run", "set-a", "--n", "20", "--extractor-epochs", "1", "--json"])
    assert args.func(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["models"]["set-a"]["extractor"] == res["extractor"] and "fid_floor" in res["real"]
    assert res["models"]["set-a"]["n"] == res["n"] == res["real_sets"]["reference"]["n_images"] <= 20
    args = parser.parse_args(["metrics", *common, "--run", "set-a", "--n", "20", "--extractor-epochs", "1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "domain IS" in out and "real, held-out patients (reference)" in out and f"n = {res['n']} images" in out
