"""DICOM reader: a round trip from NIH PNGs through pydicom, pixel mapping, skips, pydicom's own files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGLosslessSV1, generate_uid  # noqa: E402

from _paths import SHARED_DATA
from medgan_ui.data.readers import detect_format, dicom  # noqa: E402
from medgan_ui.data.readers.base import ReadOptions  # noqa: E402
from medgan_ui.errors import UserError  # noqa: E402

NIH_IMAGES = SHARED_DATA / "nih-cxr14-1000" / "images"
DX = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


def nih_pixels(k: int) -> np.ndarray:
    if not NIH_IMAGES.is_dir():
        pytest.skip("shared NIH images not present")
    name = sorted(p.name for p in NIH_IMAGES.iterdir())[k]
    return np.asarray(Image.open(NIH_IMAGES / name).convert("L"))


def write_dcm(path: Path, stored: np.ndarray | None, *, bits: int = 8, photometric: str = "MONOCHROME2",
              window=(128, 256), slope=None, intercept=None, sex="F", view="PA", age=None, pid="P1",
              frames: int = 1, syntax=ExplicitVRLittleEndian, pixel_data: bytes | None = None) -> str:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = DX, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientSex, ds.ViewPosition = "DX", pid, sex, view
    if age:
        ds.PatientAge = age
    if stored is not None:
        ds.Rows, ds.Columns = stored.shape[-2:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (8 if bits == 8 else 16), bits, bits - 1, 0
        if frames > 1:
            ds.NumberOfFrames = frames
        if window:
            ds.WindowCenter, ds.WindowWidth = window
        if slope is not None:
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = pixel_data or stored.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
        if pixel_data:
            ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds.SOPInstanceUID


def test_round_trip_from_nih_pngs(tmp_path):
    a, b, c, d = (nih_pixels(k) for k in range(4))
    write_dcm(tmp_path / "plain.dcm", a, sex="M", view="AP", age="045Y", pid="7")
    write_dcm(tmp_path / "mono1.dcm", 255 - b, photometric="MONOCHROME1")
    # 16-bit stored values with slope/intercept; the (multi-valued) window undoes them exactly:
    # modality = (200*c + 1000) * 0.5 - 100 = 100*c + 400, window [400, 25900] -> c / 255
    write_dcm(tmp_path / "wide16.dcm", c.astype(np.uint16) * 200 + 1000, bits=16, slope=0.5, intercept=-100,
              window=([13150.5, 40], [25501, 80]))
    write_dcm(tmp_path / "bits12.dcm", d.astype(np.uint16) * 16, bits=12, window=None)  # no window: min/max
    assert detect_format(tmp_path) == "dicom"
    opts = ReadOptions(size=64, age_bands=True)
    ds = dicom.read(tmp_path, opts)
    assert opts.report.skipped == []
    got = {Path(s).name: ds.images[i].numpy() for i, s in enumerate(ds.source)}
    assert np.array_equal(got["plain.dcm"], a)
    assert np.array_equal(got["mono1.dcm"], b)  # MONOCHROME1 inverted back
    assert np.array_equal(got["wide16.dcm"], c)
    lo, hi = int(d.min()), int(d.max())
    expect = np.rint((d.astype(np.float64) - lo) / (hi - lo) * 255).astype(np.uint8)
    assert np.abs(got["bits12.dcm"].astype(int) - expect).max() <= 1
    i = [Path(s).name for s in ds.source].index("plain.dcm")
    assert ds.general_label(i) == {"sex": "M", "view": "AP", "age_band": "40-59"}
    assert ds.patient_id[i] == "7" and ds.findings == []


def test_user_window_overrides_the_file(tmp_path):
    a = nih_pixels(0)
    write_dcm(tmp_path / "x.dcm", a, window=(10, 20))
    ds = dicom.read(tmp_path, ReadOptions(window=(128, 256)))
    assert np.array_equal(ds.images[0].numpy(), a)


def test_unreadable_files_are_skipped_with_reasons(tmp_path):
    a = nih_pixels(0)
    write_dcm(tmp_path / "good.dcm", a)
    write_dcm(tmp_path / "nopixels.dcm", None)
    write_dcm(tmp_path / "multi.dcm", np.stack([a, a, a]), frames=3)
    write_dcm(tmp_path / "lossless.dcm", a, syntax=JPEGLosslessSV1,
              pixel_data=encapsulate([b"\xff\xd8\xff\xc3 not really a jpeg \xff\xd9"]))
    (tmp_path / "readme.txt").write_text("exported from PACS")  # documentation: ignored silently
    (tmp_path / "IM0001").write_text("a text file without extension")
    Image.fromarray(a).save(tmp_path / "preview.png")
    (tmp_path / "empty.dcm").write_bytes(b"")
    ds = dicom.read(tmp_path, ReadOptions())
    assert len(ds) == 1
    reasons = {Path(s.path).name: s.reason for s in ds_report(ds, tmp_path)}
    assert "no pixel data" in reasons["nopixels.dcm"]
    assert "multi-frame" in reasons["multi.dcm"] and "3 frames" in reasons["multi.dcm"]
    assert "JPEG Lossless" in reasons["lossless.dcm"] and "cannot be decoded" in reasons["lossless.dcm"]
    assert "not a DICOM file" in reasons["IM0001"] and "readme.txt" not in reasons
    assert "ordinary image" in reasons["preview.png"]
    assert "empty" in reasons["empty.dcm"]


def ds_report(ds, root):
    opts = ReadOptions()
    dicom.read(root, opts)
    return opts.report.skipped


def test_findings_from_labels_csv_by_name_or_uid(tmp_path):
    a, b, c = (nih_pixels(k) for k in range(3))
    write_dcm(tmp_path / "img" / "one.dcm", a)
    uid = write_dcm(tmp_path / "img" / "two.dcm", b)
    write_dcm(tmp_path / "img" / "three.dcm", c)
    (tmp_path / "labels.csv").write_text(
        f"SOPInstanceUID,Finding Labels\none.dcm,Effusion|Nodule\n{uid},No Finding\nmissing.dcm,Nodule\n")
    opts = ReadOptions(labels_csv=str(tmp_path / "labels.csv"))
    ds = dicom.read(tmp_path / "img", opts)
    labels = {Path(s).name: ds.finding_labels(i) for i, s in enumerate(ds.source)}
    assert labels == {"one.dcm": ["Effusion", "Nodule"], "two.dcm": []}
    assert opts.report.missing_images == 1
    assert any(Path(s.path).name == "three.dcm" and "no row" in s.reason for s in opts.report.skipped)
    (tmp_path / "bad.csv").write_text("name,comment\none.dcm,x\n")
    with pytest.raises(UserError, match="name, comment"):
        dicom.read(tmp_path / "img", ReadOptions(labels_csv=str(tmp_path / "bad.csv")))


def test_findings_from_sub_folders(tmp_path):
    a, b = nih_pixels(0), nih_pixels(1)
    write_dcm(tmp_path / "Cardiomegaly" / "x.dcm", a, pid="1")
    write_dcm(tmp_path / "Normal" / "y.dcm", b, pid="2")
    ds = dicom.read(tmp_path, ReadOptions())
    assert ds.findings == ["Cardiomegaly"] and sorted(ds.detailed.sum(1).tolist()) == [0, 1]


def test_pydicom_bundled_files(tmp_path):
    from pydicom.data import get_testdata_file

    names = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "JPEG-lossy.dcm", "rtplan.dcm"]
    found = {n: get_testdata_file(n, download=False) for n in names}
    if not found["CT_small.dcm"] or not found["MR_small.dcm"]:
        pytest.skip("pydicom's bundled test files are not installed")
    for n, p in found.items():
        if p:
            shutil.copy(p, tmp_path / n)
    opts = ReadOptions(size=128)  # CT_small is 128x128: no resampling, so min/max stay exact
    ds = dicom.read(tmp_path, opts)
    names_read = {Path(s).name for s in ds.source}
    assert {"CT_small.dcm", "MR_small.dcm"} <= names_read
    skipped = {Path(s.path).name: s.reason for s in opts.report.skipped}
    if found["rtplan.dcm"]:
        assert "no pixel data" in skipped["rtplan.dcm"]
    for n in ("JPEG2000.dcm", "JPEG-lossy.dcm"):  # decoded if a plugin can, else skipped with the syntax named
        if found[n]:
            assert (n in names_read) != (n in skipped)
            if n in skipped:
                assert "cannot be decoded" in skipped[n]
    ct = [Path(s).name for s in ds.source].index("CT_small.dcm")
    assert ds.general_label(ct)["sex"] is None  # CT_small has PatientSex 'O'
    assert any("'O'" in note for note in opts.report.notes)
    img = ds.images[ct].numpy()
    assert img.min() == 0 and img.max() == 255  # no window tags: min/max of the data
