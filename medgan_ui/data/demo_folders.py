"""The demo phantom written to disk as real-world layouts, so every reader can be shown on it.

    OUT/nih/Data_Entry_2017_demo.csv     official NIH ChestX-ray14 columns, one row per image
    OUT/nih/images_001/images/*.png      00000001_000.png = patient 1, follow-up 0 (NIH naming)
    OUT/dicom/*.dcm + labels.csv         one Secondary Capture file per image (8-bit MONOCHROME2,
                                         PatientID/Sex/Age, ViewPosition); findings by file name
    OUT/masks/{lungs,heart}/*.png        segmentation masks, same names as the NIH images
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medgan_ui.data.phantom import Demo, generate
from medgan_ui.errors import UserError
from medgan_ui.workspace import atomic_write_text

NIH_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
              "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
FIELD_OF_VIEW_MM = 400.0  # a chest film is about 40 cm across: gives the pixel spacing
SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is a file: give a new or empty folder for the demo dataset")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out} is not empty: give a new or empty folder (the demo never overwrites files)")


def _csv_text(rows: list[list[Any]], header: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _labels(demo: Demo, i: int) -> str:
    return "|".join(demo.imageset.finding_labels(i)) or "No Finding"


def image_names(demo: Demo) -> list[str]:
    return [f"{p:08d}_{f:03d}" for p, f in zip(demo.patient_num, demo.followup)]


def write_nih(demo: Demo, folder: Path) -> dict[str, Any]:
    ds = demo.imageset
    names = image_names(demo)
    img_dir = folder / "images_001" / "images"
    img_dir.mkdir(parents=True)
    spacing = round(FIELD_OF_VIEW_MM / ds.size, 4)
    rows = []
    for i, name in enumerate(names):
        Image.fromarray(ds.images[i].numpy()).save(img_dir / f"{name}.png")
        g = ds.general_label(i)
        rows.append([f"{name}.png", _labels(demo, i), int(demo.followup[i]), int(demo.patient_num[i]),
                     int(demo.age[i]), g["sex"], g["view"], ds.size, ds.size, spacing, spacing])
    csv_path = atomic_write_text(folder / "Data_Entry_2017_demo.csv", _csv_text(rows, NIH_HEADER))
    return {"folder": str(folder), "images": len(names), "csv": str(csv_path)}


def write_dicom(demo: Demo, folder: Path, seed: int) -> dict[str, Any]:
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = demo.imageset
    folder.mkdir(parents=True)
    rows = []
    for i, name in enumerate(image_names(demo)):
        # UIDs derived from seed and index: the same demo always gets the same UIDs
        study_uid = generate_uid(entropy_srcs=[f"medgan-phantom-study-{seed}-{demo.patient_num[i]}"])
        sop_uid = generate_uid(entropy_srcs=[f"medgan-phantom-image-{seed}-{i}"])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SC_SOP_CLASS
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        d = Dataset()
        d.file_meta = meta
        d.SOPClassUID, d.SOPInstanceUID = SC_SOP_CLASS, sop_uid
        d.StudyInstanceUID, d.SeriesInstanceUID = study_uid, generate_uid(entropy_srcs=[f"{sop_uid}-series"])
        d.Modality, d.ConversionType = "DX", "SYN"  # a synthetic image, not from a modality
        g = ds.general_label(i)
        d.PatientName = f"Phantom^{int(demo.patient_num[i]):05d}"
        d.PatientID = str(int(demo.patient_num[i]))
        d.PatientSex, d.PatientAge = g["sex"], f"{int(demo.age[i]):03d}Y"
        d.ViewPosition = g["view"]
        d.SeriesNumber, d.InstanceNumber = 1, int(demo.followup[i]) + 1
        d.ImageComments = f"MedGAN Studio demo phantom, seed {seed}, image {i}"
        d.Rows = d.Columns = ds.size
        d.SamplesPerPixel, d.PhotometricInterpretation = 1, "MONOCHROME2"
        d.BitsAllocated, d.BitsStored, d.HighBit, d.PixelRepresentation = 8, 8, 7, 0
        d.WindowCenter, d.WindowWidth = 128, 256  # the identity window: stored value v displays as v/255
        d.PixelData = np.ascontiguousarray(ds.images[i].numpy()).tobytes()
        d.save_as(folder / f"{name}.dcm", enforce_file_format=True)
        rows.append([f"{name}.dcm", sop_uid, _labels(demo, i)])
    csv_path = atomic_write_text(folder / "labels.csv", _csv_text(rows, ["file", "SOPInstanceUID", "Finding Labels"]))
    return {"folder": str(folder), "images": len(rows), "labels_csv": str(csv_path), "pydicom": pydicom.__version__}


def write_masks(demo: Demo, folder: Path) -> dict[str, Any]:
    ds = demo.imageset
    assert ds.masks is not None  # the phantom always draws them
    names = image_names(demo)
    for k, mask_name in enumerate(ds.mask_names):
        sub = folder / mask_name
        sub.mkdir(parents=True)
        for i, name in enumerate(names):
            Image.fromarray(ds.masks[i, k].numpy()).save(sub / f"{name}.png")
    return {"folder": str(folder), "masks": list(ds.mask_names), "images": len(names)}


README = """MedGAN Studio demo dataset (procedural chest radiograph phantom, seed {seed}, {n} images, {size}x{size})

nih/    NIH ChestX-ray14 layout:   medgan data inspect {out}/nih
dicom/  DICOM + labels.csv:        medgan data inspect {out}/dicom --labels-csv labels.csv
masks/  lung and heart masks (PNG, 0/255), same names as the NIH images

Generated by medgan_ui.data.phantom; nothing here is patient data.
"""


def write_demo_folders(out: str | Path, n: int = 2000, seed: int = 0, size: int = 64,
                       difficulty: str = "standard") -> dict[str, Any]:
    """Write the demo phantom as an NIH-layout folder, a DICOM folder and mask folders under OUT.

    OUT must be new or empty (UserError otherwise). Returns what was written, with counts."""
    out = Path(out)
    _check_out(out)
    demo = generate(n, size, seed, difficulty)
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"out": str(out), "images": n, "patients": demo.imageset.n_patients(), "seed": seed,
                            "size": size, "difficulty": difficulty, "findings": demo.imageset.counts()["findings"]}
    info["nih"] = write_nih(demo, out / "nih")
    info["dicom"] = write_dicom(demo, out / "dicom", seed)
    info["masks"] = write_masks(demo, out / "masks")
    atomic_write_text(out / "README.txt", README.format(seed=seed, n=n, size=size, out=out))
    return info
