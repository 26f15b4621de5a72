"""The hard phantom: findings near their threshold, loadable as 'demo:hard'; the standard demo unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import medgan_ui.data.load as load_mod
from medgan_ui.data.load import load_dataset
from medgan_ui.data.phantom import SETTINGS, generate
from medgan_ui.data.readers.base import ReadOptions
from medgan_ui.errors import UserError
from medgan_ui.workspace import Workspace

torch.set_num_threads(1)


def test_standard_demo_is_unchanged():
    """Values of the phantom before difficulties existed (same random draws in the same order)."""
    d = generate(40, 32, seed=0)
    np.testing.assert_allclose(d.ctr[:5], [0.379152, 0.379152, 0.405692, 0.405692, 0.379152], atol=1e-6)
    assert d.imageset.detailed.numpy().sum(0).tolist() == [1, 6, 2] and d.age[:5].tolist() == [28, 28, 30, 31, 28]
    assert d.imageset.meta["name"] == "demo" and d.imageset.meta["fingerprint"] == "phantom-v1-seed0-n40-size32"
    assert torch.equal(d.imageset.images, generate(40, 32, seed=0, difficulty="standard").imageset.images)


def test_hard_findings_sit_near_the_threshold():
    std, hard = generate(800, 32, seed=1), generate(800, 32, seed=1, difficulty="hard")
    assert hard.imageset.meta["name"] == "demo:hard" and hard.imageset.source[0].startswith("phantom-hard:")
    # same patients, labels and prevalences; only the look of the findings changes
    assert torch.equal(std.imageset.detailed, hard.imageset.detailed)
    y = hard.imageset.detailed[:, 0].numpy().astype(bool)
    lo, hi = SETTINGS["hard"]["ctr_pos"]
    drawn = hard.ctr / np.where(hard.imageset.general[:, 1].numpy() == 0, 1.07, 1.0)  # undo AP heart magnification
    assert (drawn[y] >= lo - 1e-6).all() and (drawn[y] <= hi + 1e-6).all()
    # the ratio a reader sees (AP magnified) overlaps: normals above 0.5, positives below it
    assert (hard.ctr[~y] > 0.5).any() and roc_auc_score(y, hard.ctr) < 0.99 and roc_auc_score(y, std.ctr) == 1.0
    noise = lambda d: float(np.median(np.abs(np.diff(d.imageset.images.float().numpy(), axis=2))))  # noqa: E731
    assert noise(hard) > 1.5 * noise(std)  # flat areas: the median step between neighbours is noise
    with pytest.raises(UserError, match="difficulty must be one of"):
        generate(10, 32, difficulty="extreme")


def test_demo_hard_loads_as_a_data_source(tmp_path, monkeypatch):
    monkeypatch.setattr(load_mod, "DEMO_N", 120)
    ws = Workspace(tmp_path / "ws")
    hard = load_dataset("demo:hard", options=ReadOptions(size=32), workspace=ws)
    plain = load_dataset("demo", options=ReadOptions(size=32), workspace=ws)
    assert hard.meta["name"] == "demo:hard" and hard.fingerprint != plain.fingerprint
    assert not torch.equal(hard.images, plain.images) and hard.split is not None
    assert load_dataset("demo:hard", options=ReadOptions(size=32), workspace=ws).meta["loaded_from_cache"]
    with pytest.raises(UserError, match="difficulty"):
        load_dataset("demo:nope", options=ReadOptions(size=32), workspace=ws)
