"""The experiment's controls (arms.py): equal optimiser steps, classic+synthetic and TSTR arms,
synthetic negatives, the dose sweep, and bad control input refused before any training."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.data.provenance import trained_record
from medgan_ui.errors import UserError
from medgan_ui.evaluate import arms as A
from medgan_ui.evaluate import strategies as S
from medgan_ui.evaluate.experiment import ExperimentConfig, run_experiment
from medgan_ui.evaluate.results import table_rows
from medgan_ui.evaluate.train_classifier import steps_per_epoch
from medgan_ui.workspace import Workspace

torch.set_num_threads(1)
TARGET = "Effusion"


@pytest.fixture(scope="module")
def ds():
    return demo_imageset(n=240, size=32, seed=3)


def write_twin_set(ws: Workspace, set_id: str, ds, negatives: bool = True) -> None:
    """A synthetic set of noisy copies of real images, positives (and negatives) with their labels."""
    folder = ws.synthetic_dir(set_id)
    folder.mkdir(parents=True)
    pos = ds.detailed[:, ds.findings.index(TARGET)].numpy().astype(bool)
    rows = np.flatnonzero(pos) if not negatives else np.arange(len(ds))
    g = torch.Generator().manual_seed(0)
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", *ds.general_names, "Finding Labels"])
        for k, i in enumerate(rows[:120]):
            img = (ds.images[i].float() + 8 * torch.randn(ds.size, ds.size, generator=g)).clamp(0, 255).to(torch.uint8)
            Image.fromarray(img.numpy()).save(folder / f"{k:05d}.png")
            lab = ds.general_label(int(i))
            w.writerow([f"{k:05d}.png", *[lab[c] for c in ds.general_names], "|".join(ds.finding_labels(int(i))) or "No Finding"])
    schema = {"general_names": ds.general_names, "general_values": ds.general_values, "findings": ds.findings,
              "image_size": ds.size}
    # these tests check the arms' mechanics, so the set records a generator trained on no patient of the
    # data (leakage has its own tests: test_experiment_leakage.py)
    (folder / "manifest.json").write_text(json.dumps({"kind": "synthetic-set", "schema": schema,
                                                      "trained_on": trained_record(ds, np.array([], int), None)}))


@pytest.fixture(scope="module")
def ws(ds, tmp_path_factory):
    w = Workspace(tmp_path_factory.mktemp("ws"))
    write_twin_set(w, "twin", ds)
    write_twin_set(w, "posonly", ds, negatives=False)
    return w


def _cfg(**kw) -> ExperimentConfig:
    base = dict(targets=[TARGET], strategies=["none", "oversample"], classifier="fridadar", width=0.25,
                folds=2, epochs=1, patience=1, batch_size=32, n_boot=100, seed=0)
    return ExperimentConfig(**{**base, **kw})


def _info(res):
    return {(t["fold"], t["strategy"]): t for t in res["training"]}


def test_equal_steps_gives_every_arm_the_budget_of_none(ds, ws):
    arms = ["none", "undersample", "oversample", "synthetic:twin"]
    out = run_experiment(_cfg(strategies=arms, epochs=2, patience=2, equal_steps=True), ws, dataset=ds)
    r = out["results"]
    for f in r["folds"]:
        budget = 2 * steps_per_epoch(f["train"]["images"], 32)
        steps = {s: _info(r)[(f["index"], s)]["steps"] for s in arms}
        assert steps == {s: budget for s in arms}
        assert all(_info(r)[(f["index"], s)]["max_steps"] == budget for s in arms)
        # oversampled/synthetic arms have more images per pass, so fewer passes; undersample more
        passes = {s: _info(r)[(f["index"], s)]["passes"] for s in arms}
        assert passes["none"] == 2 and passes["oversample"] < 2 < passes["undersample"]
        assert all(_info(r)[(f["index"], s)]["epochs_run"] == 2 for s in arms)  # validated at the same steps
    assert out["results"]["config"]["equal_steps"] is True
    plain = run_experiment(_cfg(strategies=["none", "oversample"], epochs=2, patience=2), ws, dataset=ds)["results"]
    s = {t["strategy"]: t["steps"] for t in plain["training"] if t["fold"] == 0}
    assert s["oversample"] > s["none"]  # without the control: same epochs, more steps


def test_composite_and_tstr_arms_run_and_report(ds, ws):
    arms = ["none", "classic+synthetic:twin", "tstr:synthetic:twin"]
    r = run_experiment(_cfg(strategies=arms), ws, dataset=ds)["results"]
    assert [x["strategy"] for x in table_rows(r)] == arms
    for f in r["folds"]:
        comp, tstr = _info(r)[(f["index"], arms[1])], _info(r)[(f["index"], arms[2])]
        assert comp["n_train_real"] == f["train"]["images"] and comp["n_train_synthetic"] > 0
        # train on synthetic only: a twin of the real training part, positives and negatives
        assert tstr["n_train_real"] == 0 and tstr["n_train_synthetic"] == f["train"]["images"]
        assert tstr["n_synthetic_negative"] == f["train"]["images"] - f["train"][TARGET]
    assert "vs_none" in r["targets"][TARGET][arms[2]]
    assert S.parse_strategy("classic+synthetic:a") == ("classic+synthetic", ["a"])
    assert S.parse_strategy("tstr:synthetic:a+b") == ("tstr", ["a", "b"])


def test_synthetic_negatives_add_one_negative_per_positive(ds, ws):
    src = S.open_source(ws, "twin")
    train = ds.subset(np.arange(120))
    x, y, _, n_neg = A.synthetic_set(src, train, [TARGET], [10], seed=1, negatives=True)
    assert len(x) == 20 and n_neg == 10 and y[:10, 0].all() and not y[10:, 0].any()
    r = run_experiment(_cfg(strategies=["none", "synthetic:twin"], synthetic_negatives=True), ws, dataset=ds)["results"]
    for f in r["folds"]:
        t = _info(r)[(f["index"], "synthetic:twin")]
        need = (f["train"]["images"] - f["train"][TARGET]) - f["train"][TARGET]  # ratio 1: positives reach negatives
        assert t["n_synthetic_negative"] == need and t["n_train_synthetic"] == 2 * need


def test_dose_sweep_gives_one_arm_per_dose(ds, ws):
    r = run_experiment(_cfg(strategies=["none", "synthetic:twin"], doses=[0.5, 2]), ws, dataset=ds)["results"]
    arms = ["none", "synthetic:twin@x0.5", "synthetic:twin@x2"]
    assert [x["strategy"] for x in table_rows(r)] == arms and r["config"]["doses"] == [0.5, 2]
    for f in r["folds"]:
        need = f["train"]["images"] - 2 * f["train"][TARGET]
        assert _info(r)[(f["index"], arms[1])]["n_train_synthetic"] == round(0.5 * need)
        assert _info(r)[(f["index"], arms[2])]["n_train_synthetic"] == 2 * need


@pytest.mark.parametrize("kw, message", [
    (dict(strategies=["none", "synthetic:twin"], doses=[0.5, 0]), r"dose sweep \(--doses\): dose 0 must be a positive multiple"),
    (dict(strategies=["none", "synthetic:twin@x0"]), r"'synthetic:twin@x0': dose 0 must be a positive"),
    (dict(strategies=["none", "oversample"], doses=[1, 2]), r"apply to synthetic-like strategies"),
    (dict(strategies=["none", "classic+oversample"]), r"classic\+ needs a synthetic source"),
    (dict(strategies=["none", "tstr:none"]), r"tstr: needs a synthetic source"),
    (dict(strategies=["none", "synthetic:twin@x-1"]), r"dose -1 must be a positive"),
    (dict(strategies=["none", "tstr:classic+synthetic:twin"]), r"at most one of classic\+ / tstr:"),
    (dict(strategies=["none", "tstr:synthetic:posonly"]), r"has no image without \['Effusion'\].*tstr"),
    (dict(strategies=["none", "synthetic:posonly"], synthetic_negatives=True), r"synthetic negatives are on"),
    # a top-up that adds nothing (positives already at the goal) would be `none` under another name
    (dict(strategies=["none", "synthetic:twin"], synthetic_mode="count", synthetic_value=1),
     r"strategies synthetic:twin: the synthetic count 1 adds no synthetic image in any fold.*--synthetic-count"),
])
def test_bad_controls_refused_before_any_training(ds, tmp_path, ws, kw, message):
    w = Workspace(tmp_path / "ws")
    for name in ("twin", "posonly"):  # the sets, shared read-only
        w.synthetic_dir(name).symlink_to(ws.synthetic_dir(name))
    with pytest.raises(UserError, match=message):
        run_experiment(_cfg(**kw), w, dataset=ds)
    assert not any(w.experiments.iterdir())


def test_synthetic_negatives_come_from_the_positives_general_label_cells(ds, monkeypatch):
    """With a run as source: every negative is asked of the generator with the general labels of a
    drawn positive and its findings less the target, as many per cell as positives."""
    from collections import Counter
    from types import SimpleNamespace

    import medgan_ui.gan.generate as G

    asked: list[tuple[tuple, tuple, int]] = []

    def fake_generate(run, n, general=None, findings=None, seed=0, **kw):
        asked.append((tuple(sorted((general or {}).items())), tuple(findings or ()), n))
        return SimpleNamespace(images=torch.zeros(n, ds.size, ds.size, dtype=torch.uint8))

    monkeypatch.setattr(G, "generate", fake_generate)
    src = S.SyntheticSource("fake", "run", Path("runs/fake"), ds.size, list(ds.general_names),
                            dict(ds.general_values), list(ds.findings), run=object())
    x, y, _, n_neg = A.synthetic_set(src, ds.subset(np.arange(120)), [TARGET], [25], seed=2, negatives=True)
    assert len(x) == 50 and n_neg == 25 and y[:25].all() and not y[25:].any()
    pos = Counter()
    neg = Counter()
    for general, found, n in asked:
        (pos if TARGET in found else neg)[general] += n
        if TARGET not in found:
            assert all(f in ds.findings for f in found)
    assert pos == neg and sum(pos.values()) == 25  # the same general-label cells, the same counts
