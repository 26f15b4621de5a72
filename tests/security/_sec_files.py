"""Small files for the security tests: DICOMs with lying or broken headers, pixel bombs tiny on disk."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

DX = "1.2.840.10008.5.1.4.1.1.1.1"


def write_dicom(path: Path, rows: int = 16, cols: int = 16, pixels: bytes | None = None,
                text_tags: dict[int, str] | None = None) -> Path:
    """An 8-bit DICOM; `text_tags` writes tags as LO text (how a broken exporter stores 'abc' in IS/DS)."""
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = DX, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = DX, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientSex, ds.ViewPosition = "DX", path.stem, "F", "PA"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    rng = np.random.default_rng(len(path.name))
    ds.PixelData = pixels if pixels is not None else rng.integers(0, 255, rows * cols, dtype=np.uint8).tobytes()
    for tag, text in (text_tags or {}).items():
        ds.add(DataElement(tag, "LO", text))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


NUMBER_OF_FRAMES, RESCALE_SLOPE = 0x00280008, 0x00281053


def dicom_bomb_folder(folder: Path) -> Path:
    """Four good files, a header claiming 60000 x 60000 pixels (16 bytes of data), and two with text in
    numeric tags (NumberOfFrames, RescaleSlope)."""
    for i in range(4):
        write_dicom(folder / f"ok{i}.dcm")
    write_dicom(folder / "sub" / "huge.dcm", 60000, 60000, pixels=bytes(16))
    write_dicom(folder / "frames.dcm", text_tags={NUMBER_OF_FRAMES: "abc"})
    write_dicom(folder / "slope.dcm", text_tags={RESCALE_SLOPE: "x1"})
    return folder


def png_bomb_folder(folder: Path, side: int = 12000) -> Path:
    """Class folders with a few small PNGs and one side x side PNG of zeros (a few hundred KB on disk)."""
    rng = np.random.default_rng(3)
    for i in range(4):
        sub = folder / ("Nodule" if i % 2 else "normal")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(sub / f"{i}.png")
    Image.new("L", (side, side)).save(folder / "Nodule" / "huge.png", optimize=False)
    return folder
