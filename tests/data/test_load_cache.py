"""load_dataset: the workspace cache (fingerprint, hit, invalidation), split assignment, demo source."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _paths import SHARED_DATA
from medgan_ui.data import ReadOptions, load_dataset
from medgan_ui.errors import UserError
from medgan_ui.workspace import Workspace

DATA = SHARED_DATA
NIH = DATA / "nih-cxr14-1000"
PNEUMONIA = DATA / "medmnist" / "pneumoniamnist.npz"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data {path} not present")
    return path


def _class_folders(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(3)
    for i in range(n):
        folder = root / ("Nodule" if i % 4 == 0 else "normal")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 24), np.uint8)).save(folder / f"img{i:02d}.png")
    return root


def test_nih_second_load_comes_from_the_cache(tmp_path):
    ws = Workspace(tmp_path / "ws")
    first = load_dataset(need(NIH), workspace=ws)
    second = load_dataset(NIH, workspace=ws)
    assert not first.meta["loaded_from_cache"] and second.meta["loaded_from_cache"]
    assert torch.equal(first.images, second.images) and torch.equal(first.detailed, second.detailed)
    assert np.array_equal(first.split, second.split) and list(first.patient_id) == list(second.patient_id)
    for key in ("name", "format", "source_root", "fingerprint", "options", "report", "loaded_from_cache"):
        assert key in second.meta
    assert second.meta["format"] == "nih" and second.meta["report"]["missing_images"] == 111_120
    assert second.general_values == {"sex": ["F", "M"], "view": ["AP", "PA"]}
    # one cache folder named after the source and the fingerprint, with a readable description
    (folder,) = list(ws.datasets.iterdir())
    assert folder.name == f"nih-cxr14-1000-{first.fingerprint[:10]}"
    info = json.loads((folder / "dataset.json").read_text())
    assert info["counts"]["images"] == 1000 and info["fingerprint"] == first.fingerprint
    assert info["label_schema"]["findings"] == first.findings
    assert sum(info["split"]["sizes"]) == 1000 and info["split"]["params"]["stratify"] == "auto"


def test_split_is_patient_level_and_stratified_on_the_rarest_finding(tmp_path):
    ds = load_dataset(need(NIH), workspace=Workspace(tmp_path / "ws"), use_cache=False)
    # Hernia (2 patients) cannot reach 3 parts; Edema (5 patients) is the rarest finding that can
    assert ds.meta["split"]["stratify"] == "Edema"
    assert all(ds.meta["split"]["positive_patients"][p] >= 1 for p in ("train", "val", "test"))
    assert set(np.unique(ds.split)) == {0, 1, 2}
    parts = [set(ds.patient_id[ds.split == k]) for k in range(3)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert not list((tmp_path / "ws" / "datasets").iterdir())  # use_cache=False writes nothing
    with pytest.raises(UserError, match="Pneumonitis"):
        load_dataset(NIH, workspace=Workspace(tmp_path / "ws"), stratify="Pneumonitis", use_cache=False)


def test_fingerprint_follows_files_options_and_split(tmp_path):
    src = _class_folders(tmp_path / "src")
    ws = Workspace(tmp_path / "ws")
    base = load_dataset(src, workspace=ws)
    assert base.meta["format"] == "folders" and len(base) == 12
    assert load_dataset(src, workspace=ws).meta["loaded_from_cache"]
    smaller = load_dataset(src, options=ReadOptions(size=32), workspace=ws)
    assert not smaller.meta["loaded_from_cache"] and smaller.size == 32
    reseeded = load_dataset(src, workspace=ws, split_seed=1)
    assert not reseeded.meta["loaded_from_cache"] and reseeded.fingerprint != base.fingerprint
    # touching one file (new mtime) or adding one invalidates the cache
    f = src / "normal" / "img01.png"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not load_dataset(src, workspace=ws).meta["loaded_from_cache"]
    Image.new("L", (24, 24), 3).save(src / "normal" / "img99.png")
    again = load_dataset(src, workspace=ws)
    assert not again.meta["loaded_from_cache"] and len(again) == 13
    assert len(list(ws.datasets.iterdir())) == 5


def test_workspace_inside_the_source_does_not_break_the_cache(tmp_path):
    src = _class_folders(tmp_path / "src")
    ws = Workspace(src / "medgan-workspace")  # what `medgan data inspect .` does inside a data folder
    first = load_dataset(src, workspace=ws)
    load_dataset(src, options=ReadOptions(size=32), workspace=ws)  # a second cache inside the source
    again = load_dataset(src, workspace=ws, use_cache=False)
    assert again.fingerprint == first.fingerprint and again.meta["report"]["skipped"] == []
    assert load_dataset(src, workspace=ws).meta["loaded_from_cache"]


def test_a_damaged_cache_is_rebuilt(tmp_path):
    src = _class_folders(tmp_path / "src")
    ws = Workspace(tmp_path / "ws")
    first = load_dataset(src, workspace=ws)
    (cache,) = ws.datasets.glob("*/cache.npz")
    cache.write_bytes(b"garbage")
    again = load_dataset(src, workspace=ws)
    assert not again.meta["loaded_from_cache"] and torch.equal(again.images, first.images)
    assert load_dataset(src, workspace=ws).meta["loaded_from_cache"]


def test_medmnist_keeps_its_official_split(tmp_path):
    ds = load_dataset(need(PNEUMONIA), options=ReadOptions(size=28), workspace=Workspace(tmp_path / "ws"))
    assert ds.meta["format"] == "medmnist" and np.bincount(ds.split).tolist() == [4708, 524, 624]


def test_demo_source(tmp_path, monkeypatch):
    pytest.importorskip("medgan_ui.data.phantom")
    import medgan_ui.data.load as load_module

    monkeypatch.setattr(load_module, "DEMO_N", 200)  # same path as the 2,000-image default, 10x less CPU
    ws = Workspace(tmp_path / "ws")
    ds = load_dataset("demo", workspace=ws)
    assert len(ds) == 200 and ds.size == 64 and ds.masks is not None
    assert ds.meta["format"] == "demo" and ds.split is not None
    cached = load_dataset("demo", workspace=ws)
    assert cached.meta["loaded_from_cache"] and torch.equal(cached.images, ds.images)
    assert torch.equal(cached.masks, ds.masks) and cached.mask_names == ds.mask_names


def test_unknown_format_name(tmp_path):
    with pytest.raises(UserError, match="formats are"):
        load_dataset(_class_folders(tmp_path / "src"), format="png", workspace=Workspace(tmp_path / "ws"))
