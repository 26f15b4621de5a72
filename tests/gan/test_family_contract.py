"""The contract every registered model family keeps; a new family in gan/registry.py runs it too.

Per family, at 16x16 on the demo phantom through the Run API: a few steps train and log losses from
the shared vocabulary; stop + resume gives bit-for-bit the weights, extra state and loss curves of a
straight run; the run samples (seeded) and exports a PNG set that loads back.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from medgan_ui.data.imageset import ImageSet
from medgan_ui.gan import checkpoint as ck
from medgan_ui.gan.base import LOSS_KEYS, ModelFamily
from medgan_ui.gan.config import PRESETS, make_configs
from medgan_ui.gan.generate import export_png, generate, load_run
from medgan_ui.gan.registry import families, family, kinds
from medgan_ui.gan.runs import Run
from medgan_ui.workspace import Workspace


def stop_and_resume_vs_straight(ws: Workspace, ds: ImageSet, kind: str, **over) -> Run:
    """2N = 12 steps straight and as 6 + resume 6 (GDGAN switches stage at step 6, so the resumed half
    is all stage 2); asserts they agree exactly and returns the straight run."""
    tc, mc = make_configs(kind, "tiny", steps=12, log_every=2, checkpoint_every=4, sample_every=4, **over)
    straight = Run.create(ws, ds, tc, mc)
    assert straight.train(ds)["status"] == "finished"

    resumed = Run.create(ws, ds, tc, mc)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 6

    first = resumed.train(ds, should_stop=stop)
    assert first["status"] == "stopped" and first["step"] == 6
    assert resumed.status()["status"] == "stopped" and resumed.status()["step"] == 6
    second = resumed.resume(dataset=ds)
    assert second["status"] == "finished" and second["step"] == 12

    a = ck.load(straight.checkpoint())
    b = ck.load(resumed.checkpoint())
    assert a["step"] == b["step"] == 12
    assert set(a["nets"]) == set(b["nets"])
    for net in a["nets"]:
        for name, t in a["nets"][net].items():
            assert torch.equal(t, b["nets"][net][name]), f"{net}.{name} differs after resume"
    assert a["extra"] == b["extra"]
    ma, mb = straight.metrics(), resumed.metrics()
    assert [m["step"] for m in ma] == [m["step"] for m in mb] == [2, 4, 6, 8, 10, 12]
    assert [m["losses"] for m in ma] == [m["losses"] for m in mb]  # no loss spike: identical curves
    return straight


def test_registry_lists_every_family_once():
    assert kinds() == ["gdgan", "acgan", "dcgan", "pggan", "ddpm", "gd-ddpm"]
    for kind, fam in families().items():
        assert issubclass(fam, ModelFamily) and fam.kind == kind and fam.help
        assert set(fam.presets) <= set(PRESETS), f"{kind} has rows for unknown presets"


@pytest.mark.parametrize("kind", kinds())
def test_family_contract(tmp_path, deterministic, demo16, kind):
    fam = family(kind)
    for preset in PRESETS:  # every preset builds and validates
        train, model = make_configs(kind, preset)
        assert isinstance(model, fam.Config)

    run = stop_and_resume_vs_straight(Workspace(tmp_path / "ws"), demo16, kind)
    logged = set(run.metrics()[-1]["losses"])
    assert "loss" in logged or {"loss_d", "loss_g"} <= logged, f"{kind} logs {sorted(logged)}"
    assert logged & set(LOSS_KEYS), "losses must use the shared vocabulary (gan.base.LOSS_KEYS)"
    assert run.latest_sample.is_file()

    loaded = load_run(run.dir, device="cpu")
    a = generate(loaded, 4, findings=["Cardiomegaly"], seed=3)
    assert a.images.shape == (4, 16, 16) and a.images.dtype == torch.uint8
    assert torch.equal(a.images, generate(loaded, 4, findings=["Cardiomegaly"], seed=3).images)

    folder = export_png(loaded, [({}, [], 2), ({}, ["Cardiomegaly"], 1)], tmp_path / "synthetic", seed=1)
    rows = list(csv.DictReader(open(folder / "labels.csv")))
    assert [r["Finding Labels"] for r in rows] == ["No Finding", "No Finding", "Cardiomegaly"]
    img = np.asarray(Image.open(folder / "00002.png"))
    assert img.shape == (16, 16) and img.dtype == np.uint8


def test_resume_keeps_adaptive_augmentation_state(tmp_path, deterministic, demo16):
    stop_and_resume_vs_straight(Workspace(tmp_path / "ws"), demo16, "acgan", augment="ada")
