"""MedMNIST finding names from the official label table (every 2D set), the abnormal class as finding."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medgan_ui.data.readers import READERS
from medgan_ui.data.readers.base import ReadOptions
from medgan_ui.data.readers.medmnist import KNOWN_NAMES

PNEUMONIA = Path(__file__).resolve().parents[3] / "shared" / "data" / "medmnist" / "pneumoniamnist.npz"
# number of classes per 2D set (MedMNIST v2 paper, Table 1)
CLASSES = {"pathmnist": 9, "chestmnist": 14, "dermamnist": 7, "octmnist": 4, "pneumoniamnist": 2, "retinamnist": 5,
           "breastmnist": 2, "bloodmnist": 8, "tissuemnist": 8, "organamnist": 11, "organcmnist": 11, "organsmnist": 11}


def _npz(path: Path, labels: np.ndarray) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, train_images=rng.integers(0, 255, (len(labels), 28, 28), np.uint8), train_labels=labels)
    return path


def test_every_2d_set_has_its_official_names():
    assert {k: len(v) for k, v in KNOWN_NAMES.items()} == CLASSES


def test_breastmnist_finding_is_malignant_label_0(tmp_path):
    ds = READERS["medmnist"].read(_npz(tmp_path / "breastmnist.npz", np.array([[0], [1], [1], [0], [1]])),
                                  ReadOptions(size=28))
    assert ds.findings == ["malignant"]  # label 1 is "normal, benign": never the finding
    assert ds.detailed[:, 0].tolist() == [1, 0, 0, 1, 0]


def test_multiclass_names_and_size_suffixed_files(tmp_path):
    ds = READERS["medmnist"].read(_npz(tmp_path / "organcmnist_64.npz", np.arange(11)[:, None]), ReadOptions(size=28))
    assert ds.findings[:3] == ["bladder", "femur-left", "femur-right"] and ds.findings[-1] == "spleen"
    ds = READERS["medmnist"].read(_npz(tmp_path / "dermamnist.npz", np.arange(7)[:, None]), ReadOptions(size=28))
    assert ds.findings[4] == "melanoma" and ds.detailed.numpy().argmax(1).tolist() == list(range(7))


def test_pneumonia_finding_is_pneumonia():
    if not PNEUMONIA.exists():
        pytest.skip("shared MedMNIST file not present")
    ds = READERS["medmnist"].read(PNEUMONIA, ReadOptions(size=28))
    assert ds.findings == ["pneumonia"] and int(ds.detailed.sum()) == 4273
