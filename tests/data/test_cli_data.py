"""`medgan data inspect` / `medgan data demo` through the real CLI entry point (only the data area loaded)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from _paths import SHARED_DATA
import medgan_ui.cli as cli

DATA = SHARED_DATA
NIH = DATA / "nih-cxr14-1000"


@pytest.fixture()
def medgan(monkeypatch, capsys):
    """Run `medgan ...` in-process; returns (rc, stdout, stderr)."""
    monkeypatch.setattr(cli, "AREAS", ("data",))  # the other areas have their own tests

    def run(*argv: str):
        rc = cli.main(list(argv))
        out = capsys.readouterr()
        return rc, out.out, out.err

    return run


def test_inspect_nih_json_gives_the_readme_counts(medgan, tmp_path):
    if not NIH.exists():
        pytest.skip("shared NIH subset not present")
    rc, out, err = medgan("data", "inspect", str(NIH), "--json", "--workspace", str(tmp_path / "ws"))
    assert rc == 0, err
    d = json.loads(out)
    assert d["format"] == "nih" and d["images"] == 1000 and d["patients"] == 264
    assert d["missing_images"] == 111_120 and d["skipped"] == []
    assert d["general"] == {"sex": {"F": 509, "M": 491}, "view": {"AP": 363, "PA": 637}}
    assert d["no_finding"] == 499 and d["findings"]["Effusion"] == 170 and d["findings"]["Hernia"] == 9
    assert d["finding_patients"]["Cardiomegaly"] == 24
    assert d["cells"]["sex"]["F"]["Hernia"] + d["cells"]["sex"]["M"]["Hernia"] == 9
    assert sum(d["split"].values()) == 1000 and d["split_stratified_on"] == "Edema"
    rc, out, _ = medgan("data", "inspect", str(NIH), "--workspace", str(tmp_path / "ws"))
    assert rc == 0 and "from cache" in out and "111120 label rows have no image" in out
    assert "Effusion" in out and "sex x finding" in out


def test_inspect_text_lists_every_skipped_file(medgan, tmp_path):
    src = tmp_path / "cases"
    (src / "Effusion").mkdir(parents=True)
    (src / "normal").mkdir()
    for i in range(4):
        Image.fromarray(np.full((30, 40), 20 * i, np.uint8)).save(src / ("Effusion" if i == 0 else "normal") / f"{i}.png")
    (src / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (src / "normal" / "scan.docx").write_bytes(b"PK")
    rc, out, _ = medgan("data", "inspect", str(src), "--size", "16", "--fit", "pad", "--workspace", str(tmp_path / "ws"))
    assert rc == 0
    assert "images    4" in out and "skipped   2 files" in out
    assert "broken.png: not a readable image" in out and "scan.docx: not an image file" in out


def test_inspect_generic_csv_options(medgan, tmp_path):
    src = tmp_path / "study"
    src.mkdir()
    for i in range(5):
        Image.new("L", (20, 20), 40 * i).save(src / f"c{i}.png")
    (src / "table.csv").write_text("file,site,pneumo,subject\nc0.png,A,1,s1\nc1.png,B,0,s1\nc2.png,B,0,s2\n"
                                   "c3.png,B,0,s3\nc4.png,A,1,s4\n")
    args = ["data", "inspect", str(src), "--json", "--workspace", str(tmp_path / "ws"), "--csv", "table.csv",
            "--image-column", "file", "--general-columns", "site", "--finding-columns", "pneumo",
            "--patient-column", "subject"]
    rc, out, err = medgan(*args)
    assert rc == 0, err
    d = json.loads(out)
    assert d["format"] == "csv" and d["images"] == 5 and d["patients"] == 4
    assert d["general"] == {"site": {"A": 2, "B": 3}} and d["findings"] == {"pneumo": 2}
    assert sum(d["split"].values()) == 5 and min(d["split"].values()) >= 1
    # a dataset too small for three parts: a clear error, and the way out (train-only split) works
    (src / "table.csv").write_text("file,site,pneumo,subject\nc0.png,A,1,s1\nc1.png,B,0,s1\n")
    rc, _, err = medgan(*args)
    assert rc == 2 and "too few for a patient-level split" in err
    rc, out, err = medgan(*args, "--fractions", "1", "0", "0", "--stratify", "none")
    assert rc == 0, err
    assert json.loads(out)["split"] == {"train": 2, "val": 0, "test": 0}
    rc, _, err = medgan(*args[:-6], "--general-columns", "scanner")
    assert rc == 2 and "'scanner'" in err and "file, site, pneumo, subject" in err and "Traceback" not in err


def test_inspect_dicom_with_window(medgan, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm", download=False)
    if not ct:
        pytest.skip("pydicom test files not installed")
    (tmp_path / "dcm").mkdir()
    shutil.copy(ct, tmp_path / "dcm" / "ct.dcm")
    rc, out, err = medgan("data", "inspect", str(tmp_path / "dcm"), "--window", "40", "400", "--json",
                          "--fractions", "1", "0", "0", "--workspace", str(tmp_path / "ws"))  # one patient
    assert rc == 0, err
    d = json.loads(out)
    assert d["format"] == "dicom" and d["images"] == 1 and d["general"]["sex"]["unknown"] == 1
    assert pydicom.dcmread(tmp_path / "dcm" / "ct.dcm").PatientSex == "O"


def test_errors_are_one_line_without_traceback(medgan, tmp_path):
    rc, out, err = medgan("data", "inspect", str(tmp_path / "nope"), "--workspace", str(tmp_path / "ws"))
    assert rc == 2 and "does not exist" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    rc, _, err = medgan("data", "inspect", str(tmp_path / "empty"), "--workspace", str(tmp_path / "ws"))
    assert rc == 2 and "empty" in err
    rc, _, err = medgan("data", "inspect", str(tmp_path / "empty"), "--format", "tiff", "--workspace", str(tmp_path / "ws"))
    assert rc == 2 and "formats are" in err
    with pytest.raises(SystemExit):
        medgan("data", "inspect", str(tmp_path), "--size", "large")


def test_demo_writes_folders_every_reader_can_load(medgan, tmp_path):
    phantom = pytest.importorskip("medgan_ui.data.phantom")
    if not hasattr(phantom, "write_demo_folders"):
        pytest.skip("phantom.write_demo_folders not available yet")
    rc, out, err = medgan("data", "demo", str(tmp_path / "demo"), "--n", "24", "--seed", "1")
    assert rc == 0, err
    seen = {}
    for sub in ("nih", "dicom"):
        rc, out, err = medgan("data", "inspect", str(tmp_path / "demo" / sub), "--json", "--fractions", "1", "0", "0",
                              "--workspace", str(tmp_path / "ws"))
        assert rc == 0, err
        d = json.loads(out)
        assert d["format"] == sub and d["images"] == 24 and d["skipped"] == [] and d["missing_images"] == 0
        seen[sub] = d
    # the same phantom through two readers: the same labels (DICOM findings from its labels.csv)
    for key in ("general", "findings", "no_finding", "patients"):
        assert seen["nih"][key] == seen["dicom"][key], key
