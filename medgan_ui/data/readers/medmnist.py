"""MedMNIST-style .npz: {train,val,test}_images (N,H,W) or (N,H,W,3) and {part}_labels.

The official split is kept in ImageSet.split instead of re-splitting (published baselines use it).
Findings from the labels:
  * binary (N,1) with values 0/1      -> one finding (the positive class),
  * multi-class (N,1) with values 0..K -> one finding per class (exactly one on per image),
  * multi-label (N,K) 0/1, e.g. ChestMNIST -> K findings.
Finding names: ReadOptions.finding_columns if given (in label index order; for a binary task the
one positive name), else the official MedMNIST v2 label table below (every 2D set; for BreastMNIST
the finding is label 0, malignant, since its label 1 is "normal, benign"), else "positive" /
"class_<i>". Patient id = f"{part}-{i}": MedMNIST files carry no patient ids.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from medgan_ui.data.imageset import SPLIT_NAMES, ImageSet
from medgan_ui.data.preprocess import prepare_array
from medgan_ui.data.readers.base import ReadOptions
from medgan_ui.errors import UserError

NAME = "medmnist"

# Official label names of every 2D MedMNIST v2 set (medmnist.INFO[...]["label"], in label index order).
# The file stem picks the entry (chestmnist.npz, chestmnist_64.npz, ...); longest key first, so
# "organamnist" is not taken for another organ set.
KNOWN_NAMES: dict[str, list[str]] = {
    "pathmnist": ["adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle", "normal colon mucosa",
                  "cancer-associated stroma", "colorectal adenocarcinoma epithelium"],
    "chestmnist": ["atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule", "pneumonia",
                   "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis", "pleural", "hernia"],
    "dermamnist": ["actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                   "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
                   "vascular lesions"],
    "octmnist": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "retinamnist": ["0", "1", "2", "3", "4"],  # diabetic retinopathy grade (ordinal)
    "breastmnist": ["malignant", "normal, benign"],
    "bloodmnist": ["basophil", "eosinophil", "erythroblast",
                   "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte", "monocyte",
                   "neutrophil", "platelet"],
    "tissuemnist": ["Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule", "Glomerular endothelial cells",
                    "Interstitial endothelial cells", "Leukocytes", "Podocytes", "Proximal Tubule Segments",
                    "Thick Ascending Limb"],
    **{f"organ{v}mnist": ["bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver",
                          "lung-left", "lung-right", "pancreas", "spleen"] for v in "acs"},
}
# Binary sets: the label index that is the finding (the abnormal class). BreastMNIST's label 1 is
# "normal, benign", so its finding is label 0, malignant; every other binary set's finding is label 1.
FINDING_LABEL: dict[str, int] = {"breastmnist": 0, "pneumoniamnist": 1}


def known_names(stem: str) -> tuple[list[str] | None, int]:
    """(official label names, finding label for a binary set) for a file stem, or (None, 1)."""
    for key in sorted(KNOWN_NAMES, key=len, reverse=True):
        if stem.startswith(key):
            return KNOWN_NAMES[key], FINDING_LABEL.get(key, 1)
    return None, 1


def find_npz(path: Path) -> Path:
    if path.is_file():
        return path
    hits = sorted(path.glob("*.npz")) if path.is_dir() else []
    if len(hits) != 1:
        listed = ", ".join(p.name for p in hits) or "none"
        raise UserError(f"give the .npz file itself: {path} holds {len(hits)} .npz files ({listed})")
    return hits[0]


def detect(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() == ".npz"
    return path.is_dir() and len(list(path.glob("*.npz"))) == 1


def read(path: Path, opts: ReadOptions) -> ImageSet:
    file = find_npz(Path(path).resolve())
    try:
        z = np.load(file, allow_pickle=False)
        keys = set(z.files)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"cannot read {file} as a .npz archive: {exc}") from None
    with z:
        parts = [p for p in SPLIT_NAMES if f"{p}_images" in keys]
        if not parts:
            raise UserError(f"{file.name} has no train_images/val_images/test_images arrays (it has {sorted(keys)})")
        imgs, labels, split, pids, sources = [], [], [], [], []
        for p in parts:
            if f"{p}_labels" not in keys:
                raise UserError(f"{file.name} has {p}_images but no {p}_labels array")
            x, y = z[f"{p}_images"], z[f"{p}_labels"]
            if y.ndim == 1:
                y = y[:, None]
            if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)) or len(x) != len(y):
                raise UserError(f"{file.name}: {p}_images has shape {x.shape} with {len(y)} labels; expected "
                                "(N,H,W) or (N,H,W,3) 2-D images (3-D MedMNIST volumes are not supported)")
            imgs.append(x)
            labels.append(y.astype(np.int64))
            split.append(np.full(len(x), SPLIT_NAMES.index(p), dtype=np.int8))
            pids += [f"{p}-{i}" for i in range(len(x))]
            sources += [f"{file}:{p}:{i}" for i in range(len(x))]
    images = np.concatenate(imgs)
    y = np.concatenate(labels)
    findings, det = _findings(y, file.stem.lower(), opts)
    out = np.empty((len(images), opts.size, opts.size), dtype=np.uint8)
    for i, im in enumerate(images):
        gray = im.mean(axis=-1) if im.ndim == 3 else im  # RGB -> gray (MedMNIST colour sets: path, derma, blood)
        out[i] = prepare_array(gray.astype(np.float32) / 255.0, opts.size, opts.fit)
    split_all = np.concatenate(split)
    counts = ", ".join(f"{p} {int((split_all == SPLIT_NAMES.index(p)).sum())}" for p in parts)
    opts.report.notes.append(f"official MedMNIST split kept: {counts}")
    return ImageSet(
        images=torch.from_numpy(out),
        general_names=[],
        general_values={},
        general=torch.zeros((len(out), 0), dtype=torch.int64),
        findings=findings,
        detailed=torch.from_numpy(det),
        patient_id=np.asarray(pids, dtype=str),
        source=sources,
        split=split_all,
    )


def _findings(y: np.ndarray, stem: str, opts: ReadOptions) -> tuple[list[str], np.ndarray]:
    given = list(opts.finding_columns)
    known, on = known_names(stem)
    if y.shape[1] > 1:  # multi-label
        names = given or (known if known and len(known) == y.shape[1] else [f"class_{i}" for i in range(y.shape[1])])
        _check_count(names, y.shape[1])
        return names, (y > 0).astype(np.uint8)
    k = int(y.max()) + 1 if y.size else 1
    if y.min() < 0:
        raise UserError("MedMNIST labels must be 0 or greater")
    if k <= 2:  # binary: finding = the abnormal class (label 1, or the set's FINDING_LABEL), the other = no finding
        name = given[0] if len(given) == 1 else (given[on] if len(given) == 2 else
                                                   known[on] if known and len(known) == 2 else "positive")
        return [name], (y[:, :1] == on).astype(np.uint8)
    names = given or (known if known and len(known) == k else [f"class_{i}" for i in range(k)])
    _check_count(names, k)
    det = np.zeros((len(y), k), dtype=np.uint8)
    det[np.arange(len(y)), y[:, 0]] = 1
    return names, det


def _check_count(names: list[str], k: int) -> None:
    if len(names) != k:
        raise UserError(f"{len(names)} finding names given for {k} label columns/classes")
