"""The built-in demo phantom: deterministic, NIH-like labels, visible label effects, sane masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score

from medgan_ui.data.phantom import PREVALENCE, cardiothoracic_ratio, demo_imageset, generate

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def demo():
    return generate(1000, 64, seed=0)


def test_same_seed_same_images_other_seed_differs():
    a, b, c = demo_imageset(60, 32, seed=5), demo_imageset(60, 32, seed=5), demo_imageset(60, 32, seed=6)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert torch.equal(a.detailed, b.detailed) and list(a.patient_id) == list(b.patient_id)
    assert not torch.equal(a.images, c.images)


def test_schema(demo):
    ds = demo.imageset
    assert ds.images.shape == (1000, 64, 64) and ds.images.dtype == torch.uint8
    assert ds.general_names == ["sex", "view"]
    assert ds.general_values == {"sex": ["F", "M"], "view": ["AP", "PA"]}
    assert ds.findings == ["Cardiomegaly", "Effusion", "Nodule"]
    assert ds.mask_names == ["lungs", "heart"] and ds.masks.shape == (1000, 2, 64, 64)
    assert set(np.unique(ds.masks.numpy())) == {0, 255}
    assert ds.source[7] == "phantom:0:7"
    assert ds.meta["name"] == "demo" and ds.meta["format"] == "phantom"
    assert (ds.general >= 0).all()
    # images use the gray range: black air outside the body, white dense centre
    assert ds.images.float().mean() > 60 and ds.images.max() > 240 and ds.images.min() < 30


def test_prevalences_are_nih_like_and_per_patient(demo):
    ds = demo.imageset
    counts = ds.counts()
    for f, p in PREVALENCE.items():
        assert abs(counts["findings"][f] - p * len(ds)) <= 6, (f, counts["findings"][f])
    # findings and sex belong to the patient: identical across each patient's follow-ups
    for pid in np.unique(ds.patient_id)[:200]:
        rows = np.flatnonzero(ds.patient_id == pid)
        assert (ds.detailed[rows] == ds.detailed[rows[0]]).all()
        assert (ds.general[rows, 0] == ds.general[rows[0], 0]).all()
    per_patient = np.bincount(np.unique(ds.patient_id, return_inverse=True)[1])
    assert per_patient.min() >= 1 and per_patient.max() <= 6 and per_patient.mean() > 2.5
    assert (per_patient > 1).mean() > 0.5
    # findings co-occur sometimes but are not tied together
    det = ds.detailed.numpy()
    assert det[:, 0].sum() < det[:, 1].sum() and det[:, 2].sum() < det[:, 1].sum()


def test_followups_share_anatomy(demo):
    ds = demo.imageset
    x = ds.images.float().reshape(len(ds), -1).numpy()
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    view = ds.general[:, 1].numpy()
    same, other = [], []
    for i in range(300):
        j = i + 1
        if ds.patient_id[j] == ds.patient_id[i] and view[i] == view[j]:
            same.append(float(x[i] @ x[j]) / x.shape[1])
        k = (i + 500) % len(ds)
        if ds.patient_id[k] != ds.patient_id[i] and view[i] == view[k]:
            other.append(float(x[i] @ x[k]) / x.shape[1])
    assert np.mean(same) > np.mean(other) + 0.02


@pytest.mark.parametrize("label", ["sex", "view"])
def test_general_labels_are_visible(demo, label):
    ds = demo.imageset.subset(np.arange(500))
    x = F.avg_pool2d(ds.images[:, None].float() / 255, 4).reshape(len(ds), -1).numpy()
    y = ds.general[:, ds.general_names.index(label)].numpy()
    # grouped by patient, so a model cannot just recognise the patient
    acc = cross_val_score(LogisticRegression(max_iter=3000), x, y, groups=ds.patient_id, cv=GroupKFold(4)).mean()
    assert acc > 0.85, acc


def test_cardiothoracic_ratio_separates_cardiomegaly(demo):
    ds = demo.imageset
    ratio = cardiothoracic_ratio(ds.images)
    cm = ds.detailed[:, 0].numpy().astype(bool)
    assert np.isnan(ratio).mean() < 0.02
    assert np.nanmean(ratio[cm]) > 0.5 > np.nanmean(ratio[~cm])
    assert np.nanmean(ratio[cm] > 0.5) > 0.8 and np.nanmean(ratio[~cm] < 0.5) > 0.95
    # it measures the drawn ratio, not just the label
    ok = ~np.isnan(ratio)
    assert np.corrcoef(ratio[ok], demo.ctr[ok])[0, 1] > 0.7
    # drawn ratios themselves follow the rule
    assert (demo.ctr[cm] > 0.5).all() and (demo.ctr[~cm] < 0.5).all()


def test_cardiothoracic_ratio_accepts_float_batches(demo):
    ims = demo.imageset.images[:20]
    as_float = ims[:, None].float() / 127.5 - 1  # a GAN's [-1, 1] output, [B,1,H,W]
    np.testing.assert_allclose(cardiothoracic_ratio(as_float), cardiothoracic_ratio(ims), atol=1e-6)


def test_effusion_whitens_the_lung_bases(demo):
    ds = demo.imageset
    im, lungs = ds.images.numpy().astype(float), ds.masks[:, 0].numpy() > 0
    lower = np.zeros_like(lungs)
    lower[:, 40:] = True  # lower third of the film
    base = [im[i][lungs[i] & lower[i]].mean() for i in range(len(ds))]
    eff = ds.detailed[:, 1].numpy().astype(bool)
    assert np.mean(np.array(base)[eff]) > np.mean(np.array(base)[~eff]) + 20


def test_masks_are_inside_the_body_and_sensible(demo):
    ds = demo.imageset
    im, m = ds.images.numpy(), ds.masks.numpy() > 0
    assert m[:, 0].reshape(len(ds), -1).sum(1).min() > 300  # two lungs at 64x64
    assert m[:, 1].reshape(len(ds), -1).sum(1).min() > 60
    assert not (m[:, 0] & m[:, 1]).any()
    # no mask pixel in the black air outside the body; lungs darker than the heart
    assert (im[m[:, 0]] > 15).mean() > 0.99 and (im[m[:, 1]] > 15).all()
    assert im[m[:, 0]].mean() + 60 < im[m[:, 1]].mean()
    # the heart is left of the patient's midline (image right), the lungs either side
    cols = np.arange(64)
    heart_centre = (m[:, 1].sum(1) * cols).sum(1) / m[:, 1].sum((1, 2))
    assert (heart_centre > 32).mean() > 0.95


def test_bad_arguments():
    from medgan_ui.errors import UserError

    with pytest.raises(UserError):
        demo_imageset(10, size=8)
    with pytest.raises(ValueError):
        demo_imageset(0)


def test_write_demo_folders_round_trip(tmp_path):
    import csv

    import pydicom

    from medgan_ui.data.phantom import write_demo_folders
    from medgan_ui.errors import UserError

    out = tmp_path / "demo"
    info = write_demo_folders(out, n=30, seed=2, size=32)
    ref = demo_imageset(30, 32, seed=2)
    assert info["images"] == 30 and info["nih"]["images"] == 30 and info["dicom"]["images"] == 30
    with open(out / "nih" / "Data_Entry_2017_demo.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                       "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
    assert len(rows) == 31 and rows[1][0] == "00000001_000.png" and rows[1][3] == "1"
    assert {r[1] for r in rows[1:]} >= {"No Finding"}
    pngs = sorted((out / "nih" / "images_001" / "images").glob("*.png"))
    assert len(pngs) == 30 and len(list((out / "masks" / "heart").glob("*.png"))) == 30
    d = pydicom.dcmread(sorted((out / "dicom").glob("*.dcm"))[0])
    assert d.PatientSex in ("F", "M") and d.ViewPosition in ("AP", "PA") and d.PatientAge.endswith("Y")
    assert d.PhotometricInterpretation == "MONOCHROME2" and d.BitsStored == 8 and d.Rows == 32
    assert d.PatientID == "1" and len(d.SOPInstanceUID) > 10
    # every reader gets back exactly the phantom's images and labels
    readers = pytest.importorskip("medgan_ui.data.readers")
    from medgan_ui.data.readers.base import ReadOptions

    for fmt, folder, opts in (("nih", out / "nih", ReadOptions(size=32)),
                              ("dicom", out / "dicom", ReadOptions(size=32, labels_csv="labels.csv"))):
        ds = readers.get_reader(fmt).read(folder, opts)
        order = np.argsort([p.rsplit("/", 1)[-1] for p in ds.source])
        assert torch.equal(ds.images[order], ref.images), fmt
        cols = [ds.findings.index(f) for f in ref.findings if f in ds.findings]
        assert torch.equal(ds.detailed[order][:, cols], ref.detailed[:, [ref.findings.index(ds.findings[c]) for c in cols]])
        assert list(ds.patient_id[order]) == list(ref.patient_id)
        assert all(ds.general_label(int(order[i])) == ref.general_label(i) for i in range(30))
    # same seed -> same files; never writes into a non-empty folder
    with pytest.raises(UserError, match="not empty"):
        write_demo_folders(out, n=5)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        write_demo_folders(tmp_path / "file", n=5)
