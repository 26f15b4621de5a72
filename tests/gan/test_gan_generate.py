"""Sampling API: load a run, generate with labels and a seed, export PNG and DICOM sets."""
from __future__ import annotations

import csv

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from medgan_ui.errors import UserError
from medgan_ui.gan import engine
from medgan_ui.gan.runs import Run
from medgan_ui.gan.config import make_configs
from medgan_ui.gan.generate import export_dicom, export_png, generate, load_run
from medgan_ui.workspace import Workspace, read_json

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo16):
    ds = demo16
    tc, mc = make_configs("gdgan", "tiny", steps=6)
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    run_id = Run.create(ws, ds, tc, mc).id
    assert engine.train(ds, tc, mc, ws.run_dir(run_id))["status"] == "finished"
    return ws, run_id


def test_generate_is_seeded_and_labelled(trained):
    ws, run_id = trained
    run = load_run(ws.run_dir(run_id), device="cpu")
    assert run.run_id == run_id and run.step == 6 and run.schema.findings == ["Cardiomegaly", "Effusion", "Nodule"]
    assert load_run(ws.run_dir(run_id), device="cpu") is run  # cached
    a = generate(run, 5, {"sex": "F", "view": "AP"}, ["Cardiomegaly"], seed=3)
    b = generate(run, 5, {"sex": "F", "view": "AP"}, ["Cardiomegaly"], seed=3)
    c = generate(run, 5, {"sex": "F", "view": "AP"}, ["Cardiomegaly"], seed=4)
    assert a.images.shape == (5, 16, 16) and a.images.dtype == torch.uint8
    assert a.stage1 is not None and a.stage1.shape == (5, 16, 16)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.labels[0] == {"general": {"sex": "F", "view": "AP"}, "findings": ["Cardiomegaly"]}
    mixed = generate(run, 40, {"view": "PA"}, seed=0)  # sex not named: drawn per image
    assert {lab["general"]["sex"] for lab in mixed.labels} == {"F", "M"}
    assert all(lab["general"]["view"] == "PA" for lab in mixed.labels)
    older = load_run(ws.run_dir(run_id), checkpoint="step_000003", device="cpu")
    assert older.step == 3


def test_bad_labels_name_what_exists(trained):
    ws, run_id = trained
    run = load_run(ws.run_dir(run_id), device="cpu")
    with pytest.raises(UserError, match="Pneumonia.*Cardiomegaly"):
        generate(run, 2, findings=["Pneumonia"])
    with pytest.raises(UserError, match="'X' not found for general label 'sex'"):
        generate(run, 2, {"sex": "X"})
    with pytest.raises(UserError, match="age"):
        generate(run, 2, {"age": "old"})
    with pytest.raises(UserError, match="does not exist"):
        load_run(ws.run_dir(run_id), checkpoint="step_999999")


def test_export_png_set(trained, tmp_path):
    ws, run_id = trained
    run = load_run(ws.run_dir(run_id), device="cpu")
    cells = [({"sex": "M", "view": "PA"}, [], 3), ({"sex": "F", "view": "AP"}, ["Cardiomegaly", "Effusion"], 2)]
    folder = export_png(run, cells, tmp_path / "synthetic", seed=11)
    rows = list(csv.DictReader(open(folder / "labels.csv")))
    assert [r["file"] for r in rows] == [f"{i:05d}.png" for i in range(5)]
    assert list(rows[0]) == ["file", "sex", "view", "Finding Labels"]
    assert rows[0]["Finding Labels"] == "No Finding" and rows[4]["Finding Labels"] == "Cardiomegaly|Effusion"
    assert rows[3]["sex"] == "F" and rows[3]["view"] == "AP"
    img = np.asarray(Image.open(folder / "00004.png"))
    assert img.shape == (16, 16) and img.dtype == np.uint8
    manifest = read_json(folder / "manifest.json")
    assert manifest["run"] == run_id and manifest["checkpoint"] == "step_000006.pt" and manifest["seed"] == 11
    assert manifest["synthetic"] is True and manifest["cells"][1]["findings"] == ["Cardiomegaly", "Effusion"]
    again = export_png(run, cells, tmp_path / "synthetic", seed=11)
    assert again != folder
    assert (np.asarray(Image.open(again / "00004.png")) == img).all()  # same seed, same images
    with pytest.raises(UserError, match="at least 1"):
        export_png(run, [({}, [], 0)], tmp_path / "synthetic")


def test_export_dicom_secondary_capture(trained, tmp_path):
    ws, run_id = trained
    run = load_run(ws.run_dir(run_id), device="cpu")
    folder = export_dicom(run, [({"sex": "F", "view": "AP"}, ["Cardiomegaly"], 2)], tmp_path / "synthetic", seed=1)
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == 2
    png_twin = generate(run, 2, {"sex": "F", "view": "AP"}, ["Cardiomegaly"], seed=1)
    uids = set()
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert "SYNTHETIC" in ds.DerivationDescription and run_id in ds.DerivationDescription
        assert "SYNTHETIC" in ds.ImageComments and "MedGAN Studio" in ds.ImageComments
        assert str(ds.PatientName) == "SYNTHETIC" and ds.PatientID.startswith("SYN-")
        assert ds.PatientSex == "F" and ds.ViewPosition == "AP"
        assert "PatientBirthDate" not in ds and "InstitutionName" not in ds
        assert ds.pixel_array.shape == (16, 16)
        assert (ds.pixel_array == png_twin.images[k].numpy()).all()
        uids |= {ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID}
    assert len(uids) == 6  # fresh UIDs everywhere
    rows = list(csv.DictReader(open(folder / "labels.csv")))
    assert rows[0]["file"] == "00000.dcm" and rows[0]["Finding Labels"] == "Cardiomegaly"


def test_chunking_does_not_change_images(trained):
    ws, run_id = trained
    run = load_run(ws.run_dir(run_id), device="cpu")
    whole = generate(run, 10, {"sex": "M"}, ["Nodule"], seed=5)
    parts = generate(run, 10, {"sex": "M"}, ["Nodule"], seed=5, chunk=3)
    assert torch.equal(whole.images, parts.images) and torch.equal(whole.stage1, parts.stage1)
    assert whole.labels == parts.labels
