"""Reader registry: every format selectable by name and auto-detected in a fixed order.

Order matters: the most specific layouts come first (a MedMNIST .npz, NIH's own CSV name,
DICOM files), then the generic CSV + folder, then plain class sub-folders.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType

from medgan_ui.data.readers import csv_folder, dicom, folders, medmnist, nih
from medgan_ui.errors import UserError

READERS: dict[str, ModuleType] = {m.NAME: m for m in (medmnist, nih, dicom, csv_folder, folders)}

DESCRIPTIONS = {
    "medmnist": "MedMNIST-style .npz with train/val/test images and labels",
    "nih": "NIH ChestX-ray14: Data_Entry_2017*.csv(.gz) + PNGs below the folder",
    "dicom": "folder of DICOM files (*.dcm or files with a DICM header)",
    "csv": "one labels CSV + image folder (name the columns with --image-column ...)",
    "folders": "one sub-folder per finding (ROOT/<finding>/<images>)",
}


def formats_help() -> str:
    return "; ".join(f"{name} = {DESCRIPTIONS[name]}" for name in READERS)


def get_reader(name: str) -> ModuleType:
    if name not in READERS:
        raise UserError(f"unknown format {name!r}; formats are: {', '.join(READERS)}")
    return READERS[name]


def detect_format(path: str | Path) -> str:
    """Name of the first reader that recognises the path, or a UserError that lists the formats."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if path.is_dir() and not any(path.iterdir()):
        raise UserError(f"folder {path} is empty: nothing to load")
    for name, reader in READERS.items():
        if reader.detect(path):
            return name
    raise UserError(f"cannot tell the format of {path}; choose one with --format. Formats: {formats_help()}")
