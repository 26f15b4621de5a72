"""Readers: NIH subset counts, generic CSV + folder, class folders, MedMNIST, detection."""
from __future__ import annotations

import csv
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _paths import SHARED_DATA
from medgan_ui.data.readers import READERS, detect_format, get_reader
from medgan_ui.data.readers.base import ReadOptions
from medgan_ui.errors import UserError

DATA = SHARED_DATA
NIH = DATA / "nih-cxr14-1000"
PNEUMONIA = DATA / "medmnist" / "pneumoniamnist.npz"
NIH_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
              "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data {path} not present")
    return path


@pytest.fixture(scope="module")
def nih_set():
    opts = ReadOptions()
    ds = READERS["nih"].read(need(NIH), opts)
    return ds, opts.report


def test_nih_subset_counts_match_the_data_readme(nih_set):
    ds, report = nih_set
    c = ds.counts()
    assert len(ds) == 1000 and c["patients"] == 264
    assert report.missing_images == 111_120
    assert report.skipped == []
    assert ds.general_names == ["sex", "view"]
    assert c["general"]["sex"] == {"F": 509, "M": 491}
    assert c["general"]["view"] == {"AP": 363, "PA": 637}
    assert c["no_finding"] == 499
    expect = {"Effusion": 170, "Infiltration": 162, "Atelectasis": 95, "Cardiomegaly": 83, "Nodule": 39,
              "Pneumothorax": 40, "Hernia": 9}
    assert {f: c["findings"][f] for f in expect} == expect
    assert c["finding_patients"]["Effusion"] == 52
    assert c["finding_patients"]["Cardiomegaly"] == 24
    assert c["finding_patients"]["Pneumothorax"] == 7
    assert ds.findings == sorted(ds.findings) and "No Finding" not in ds.findings
    assert ds.images.shape == (1000, 64, 64) and str(ds.images.dtype) == "torch.uint8"
    # one patient has 66 images (data README)
    assert np.unique(ds.patient_id, return_counts=True)[1].max() == 66


def test_nih_row_labels_match_the_csv(nih_set):
    ds, _ = nih_set
    with gzip.open(NIH / "Data_Entry_2017_v2020.csv.gz", "rt", newline="") as fh:
        rows = {r["Image Index"]: r for r in csv.DictReader(fh)}
    for i in (0, 137, 999):
        row = rows[Path(ds.source[i]).name]
        assert ds.patient_id[i] == row["Patient ID"]
        assert ds.general_label(i) == {"sex": row["Patient Gender"], "view": row["View Position"]}
        expected = sorted(f for f in row["Finding Labels"].split("|") if f != "No Finding")
        assert ds.finding_labels(i) == expected


def _mini_nih(tmp: Path, extra_rows: list[list[str]] = ()) -> Path:
    """A few real NIH PNGs split over two archive folders, with a gzipped Data_Entry CSV."""
    root = tmp / "nih"
    names = sorted(p.name for p in (need(NIH) / "images").iterdir())[:6]
    for k, name in enumerate(names):
        dest = root / f"images_00{1 + k % 2}" / "images"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(NIH / "images" / name, dest / name)
    with gzip.open(NIH / "Data_Entry_2017_v2020.csv.gz", "rt", newline="") as fh:
        rows = [r for r in csv.reader(fh)][1:]
    keep = [r for r in rows if r[0] in names] + [r for r in rows if r[0] not in names][:3] + list(extra_rows)
    with gzip.open(root / "Data_Entry_2017_test.csv.gz", "wt", newline="") as fh:
        csv.writer(fh).writerows([NIH_HEADER, *keep])
    return root


def test_nih_archive_layout_age_bands_and_unknown_values(tmp_path):
    root = _mini_nih(tmp_path, [["odd_000.png", "Nodule|Mass", "0", "77", "45", "O", "LL", "1", "1", "1", "1"]])
    Image.fromarray(np.full((80, 60), 90, np.uint8)).save(root / "images_002" / "images" / "odd_000.png")
    assert detect_format(root) == "nih"
    opts = ReadOptions(age_bands=True)
    ds = READERS["nih"].read(root, opts)
    assert len(ds) == 7 and opts.report.missing_images == 3
    i = [Path(s).name for s in ds.source].index("odd_000.png")
    assert ds.general_label(i) == {"sex": None, "view": None, "age_band": "40-59"}
    assert ds.finding_labels(i) == ["Mass", "Nodule"] and ds.patient_id[i] == "77"
    assert any("'O'" in n and "sex" in n for n in opts.report.notes)
    assert any("'LL'" in n and "view" in n for n in opts.report.notes)
    assert ds.general_values["sex"] == ["F", "M"]


def _write_images(folder: Path, names: list[str], size=(40, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, size[::-1], dtype=np.uint8)).save(folder / name)


def test_generic_csv_with_separator_column(tmp_path):
    _write_images(tmp_path / "imgs" / "a", ["p1_1.png", "p1_2.png"])
    _write_images(tmp_path / "imgs" / "b", ["p2_1.jpg", "p3_1.bmp"])
    rows = [["file", "sex", "scanner", "dx", "subject"],
            ["a/p1_1.png", "F", "GE", "Tumor;Cyst", "s1"],
            ["p1_2.png", "F", "Siemens", "", "s1"],
            ["p2_1.jpg", "M", "GE", "Cyst", "s2"],
            ["p3_1.bmp", "", "GE", "none", "s3"],
            ["gone.png", "M", "GE", "Cyst", "s4"]]
    with open(tmp_path / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    assert detect_format(tmp_path) == "csv"
    opts = ReadOptions(image_column="file", general_columns=["sex", "scanner"], finding_column="dx",
                       finding_separator=";", no_finding_value="none", patient_column="subject", size=32)
    ds = READERS["csv"].read(tmp_path, opts)
    assert len(ds) == 4 and opts.report.missing_images == 1 and ds.size == 32
    assert ds.findings == ["Cyst", "Tumor"]
    assert ds.general_values == {"sex": ["F", "M"], "scanner": ["GE", "Siemens"]}
    by_name = {Path(s).name: i for i, s in enumerate(ds.source)}
    assert ds.finding_labels(by_name["p1_1.png"]) == ["Cyst", "Tumor"]
    assert ds.finding_labels(by_name["p3_1.bmp"]) == []
    assert ds.general_label(by_name["p3_1.bmp"])["sex"] is None
    assert list(ds.patient_id) == ["s1", "s1", "s2", "s3"]


def test_generic_csv_with_01_columns_and_guessed_image_column(tmp_path):
    _write_images(tmp_path, ["x1.png", "x2.png", "x3.png"])
    with open(tmp_path / "meta.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["id", "img", "effusion", "nodule"], ["1", "x1.png", "1", "0"],
                                  ["2", "x2.png", "0", "0"], ["3", "x3.png", "true", "yes"]])
    opts = ReadOptions(finding_columns=["nodule", "effusion"])
    ds = READERS["csv"].read(tmp_path, opts)
    assert ds.findings == ["nodule", "effusion"]  # the order the user gave
    assert ds.detailed.tolist() == [[0, 1], [0, 0], [1, 1]]
    assert list(ds.patient_id) == ["x1", "x2", "x3"] and ds.general_names == []


def test_generic_csv_missing_column_lists_the_columns(tmp_path):
    _write_images(tmp_path, ["x1.png"])
    (tmp_path / "labels.csv").write_text("image,sex\nx1.png,F\n")
    with pytest.raises(UserError) as err:
        READERS["csv"].read(tmp_path, ReadOptions(image_column="image", general_columns=["gender"]))
    assert "'gender'" in str(err.value) and "image, sex" in str(err.value)


def test_class_folders_any_format_and_normal_folder(tmp_path):
    _write_images(tmp_path / "Pneumonia", ["a.png", "b.jpg"], size=(50, 70))
    _write_images(tmp_path / "NORMAL", ["c.tif", "d.bmp", "e.webp"])
    _write_images(tmp_path / "covid", ["f.gif"])
    assert detect_format(tmp_path) == "folders"
    opts = ReadOptions(size=16, fit="pad")
    ds = READERS["folders"].read(tmp_path, opts)
    assert len(ds) == 6 and ds.size == 16 and opts.report.skipped == []
    assert ds.findings == ["Pneumonia", "covid"] and ds.general_names == []
    labels = {Path(s).name: ds.finding_labels(i) for i, s in enumerate(ds.source)}
    assert labels == {"a.png": ["Pneumonia"], "b.jpg": ["Pneumonia"], "c.tif": [], "d.bmp": [], "e.webp": [],
                      "f.gif": ["covid"]}
    assert sorted(ds.patient_id) == ["a", "b", "c", "d", "e", "f"]


def test_class_folders_with_general_labels_csv(tmp_path):
    _write_images(tmp_path / "data" / "Nodule", ["a.png"])
    _write_images(tmp_path / "data" / "no_finding", ["b.png", "c.png"])
    (tmp_path / "gen.csv").write_text("name,sex\na.png,M\nb.png,F\n")
    opts = ReadOptions(labels_csv=str(tmp_path / "gen.csv"), general_columns=["sex"])
    ds = READERS["folders"].read(tmp_path / "data", opts)
    assert len(ds) == 2 and ds.general_values == {"sex": ["F", "M"]}
    assert any("c.png" in s.path and "no row" in s.reason for s in opts.report.skipped)


def test_medmnist_pneumonia_keeps_the_official_split():
    opts = ReadOptions(size=28)
    ds = READERS["medmnist"].read(need(PNEUMONIA), opts)
    assert np.bincount(ds.split).tolist() == [4708, 524, 624]
    assert ds.findings == ["pneumonia"] and int(ds.detailed.sum()) == 4273
    assert ds.patient_id[0] == "train-0" and ds.patient_id[-1] == "test-623"
    with np.load(PNEUMONIA) as z:  # 28 -> 28: pixels come through unchanged
        assert np.array_equal(ds.images[4708].numpy(), z["val_images"][0])


def test_medmnist_multilabel_rgb_and_multiclass(tmp_path):
    rng = np.random.default_rng(1)
    ml = tmp_path / "chestmnist.npz"
    np.savez(ml, train_images=rng.integers(0, 255, (5, 28, 28), np.uint8),
             train_labels=rng.integers(0, 2, (5, 14), np.uint8),
             test_images=rng.integers(0, 255, (3, 28, 28), np.uint8), test_labels=np.zeros((3, 14), np.uint8))
    ds = READERS["medmnist"].read(ml, ReadOptions(size=16))
    assert len(ds.findings) == 14 and ds.findings[1] == "cardiomegaly" and np.bincount(ds.split).tolist() == [5, 0, 3]
    mc = tmp_path / "tissue.npz"
    rgb = rng.integers(0, 255, (4, 28, 28, 3), np.uint8)
    np.savez(mc, train_images=rgb, train_labels=np.array([[0], [2], [1], [2]]))
    ds = READERS["medmnist"].read(mc, ReadOptions())
    assert ds.findings == ["class_0", "class_1", "class_2"]
    assert ds.detailed.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert ds.images.shape == (4, 64, 64)
    named = READERS["medmnist"].read(mc, ReadOptions(finding_columns=["a", "b", "c"]))
    assert named.findings == ["a", "b", "c"]
    binary = tmp_path / "other.npz"
    np.savez(binary, val_images=rgb, val_labels=np.array([0, 1, 1, 0]))
    assert READERS["medmnist"].read(binary, ReadOptions()).findings == ["positive"]


def test_medmnist_bad_archives(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="broken.npz"):
        READERS["medmnist"].read(tmp_path / "broken.npz", ReadOptions())
    np.savez(tmp_path / "vol.npz", train_images=np.zeros((2, 8, 8, 8), np.uint8), train_labels=np.zeros((2, 1)))
    with pytest.raises(UserError, match="3-D"):
        READERS["medmnist"].read(tmp_path / "vol.npz", ReadOptions())


def test_detection_and_unknown_format(tmp_path):
    assert detect_format(need(NIH)) == "nih"
    assert detect_format(need(PNEUMONIA)) == "medmnist"
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(UserError, match="nih.*csv.*folders"):
        detect_format(tmp_path)
    with pytest.raises(UserError, match="formats are"):
        get_reader("jpeg")
    with pytest.raises(UserError, match="16 to 256"):
        ReadOptions(size=512)


def test_csv_paths_with_repeated_file_names_chexpert_style(tmp_path):
    root = tmp_path / "CheXpert-v1.0-small"
    for p in ("patient1/study1", "patient2/study1", "patient2/study2"):
        _write_images(root / "train" / p, ["view1_frontal.jpg"])
    (root / "train.csv").write_text(
        "Path,Sex,Frontal/Lateral,Cardiomegaly\n"
        "CheXpert-v1.0-small/train/patient1/study1/view1_frontal.jpg,Male,Frontal,1.0\n"
        "CheXpert-v1.0-small/train/patient2/study1/view1_frontal.jpg,Female,Frontal,0.0\n"
        "CheXpert-v1.0-small/train/patient2/study2/view1_frontal.jpg,Female,Frontal,\n"
        "CheXpert-v1.0-small/train/patient3/study1/view1_frontal.jpg,Female,Frontal,1.0\n")
    opts = ReadOptions(image_column="Path", general_columns=["Sex"], finding_columns=["Cardiomegaly"])
    ds = READERS["csv"].read(root, opts)
    assert len(ds) == 3 and opts.report.missing_images == 1 and opts.report.skipped == []
    assert ds.detailed[:, 0].tolist() == [1, 0, 0]
    assert [p.split("/")[2] for p in ds.patient_id] == ["patient1", "patient2", "patient2"]
    assert len(set(ds.patient_id)) == 3  # default id: the entry without extension, unique per image


def test_csv_entries_without_extension_isic_style(tmp_path):
    _write_images(tmp_path / "images", ["ISIC_001.jpg", "ISIC_002.jpg"])
    (tmp_path / "GroundTruth.csv").write_text("image,MEL,NV\nISIC_001,1.0,0.0\nISIC_002,0.0,1.0\n")
    opts = ReadOptions(image_column="image", finding_columns=["MEL", "NV"])
    assert detect_format(tmp_path) == "csv"
    ds = READERS["csv"].read(tmp_path, opts)
    assert ds.detailed.tolist() == [[1, 0], [0, 1]] and list(ds.patient_id) == ["ISIC_001", "ISIC_002"]


def test_class_folders_inside_train_val_test_keep_that_split(tmp_path):
    for part, n in (("train", 3), ("val", 1), ("test", 2)):
        _write_images(tmp_path / part / "PNEUMONIA", [f"{part}_p{i}.jpeg" for i in range(n)])
        _write_images(tmp_path / part / "NORMAL", [f"{part}_n{i}.jpeg" for i in range(n)])
    _write_images(tmp_path / "__MACOSX" / "train" / "NORMAL", ["._junk.jpeg"])
    assert detect_format(tmp_path) == "folders"
    opts = ReadOptions()
    ds = READERS["folders"].read(tmp_path, opts)
    assert len(ds) == 12 and np.bincount(ds.split).tolist() == [6, 2, 4]
    assert ds.findings == ["PNEUMONIA"] and int(ds.detailed.sum()) == 6 and opts.report.skipped == []


def test_class_folders_skip_mask_folders_and_report_archives(tmp_path):
    _write_images(tmp_path / "COVID" / "images", ["c1.png", "c2.png"])
    _write_images(tmp_path / "COVID" / "masks", ["c1.png", "c2.png"])
    _write_images(tmp_path / "Normal" / "images", ["n1.png"])
    (tmp_path / "COVID.metadata.xlsx").write_bytes(b"PK")
    (tmp_path / "images_002.tar.gz").write_bytes(b"\x1f\x8b")
    opts = ReadOptions()
    ds = READERS["folders"].read(tmp_path, opts)
    assert len(ds) == 3 and ds.findings == ["COVID"]
    reasons = {str(Path(s.path).relative_to(tmp_path)): s.reason for s in opts.report.skipped}
    assert set(reasons) == {"COVID/masks/c1.png", "COVID/masks/c2.png", "images_002.tar.gz"}
    assert "mask" in reasons["COVID/masks/c1.png"] and "unpack" in reasons["images_002.tar.gz"]


def test_semicolon_csv_from_european_excel(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "labels.csv").write_text("bild;geschlecht;befund\na.png;F;Nodule\nb.png;M;No Finding\n")
    opts = ReadOptions(general_columns=["geschlecht"], finding_column="befund")
    ds = READERS["csv"].read(tmp_path, opts)
    assert ds.general_values == {"geschlecht": ["F", "M"]} and ds.detailed.tolist() == [[1], [0]]
