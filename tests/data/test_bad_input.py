"""Bad input: every broken file is skipped with a reason or stopped with a clear UserError; the source
folder is never modified (hashes and mtimes before and after loading)."""
from __future__ import annotations

import csv
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _paths import SHARED_DATA
from medgan_ui.data import ReadOptions
from medgan_ui.data.readers import READERS, detect_format
from medgan_ui.errors import UserError
from medgan_ui.workspace import Workspace

NIH_IMAGES = SHARED_DATA / "nih-cxr14-1000" / "images"


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def messy(tmp_path) -> Path:
    """A CSV + folder dataset with one of every kind of bad file."""
    root = tmp_path / "messy"
    a, b = root / "a", root / "b"
    a.mkdir(parents=True)
    b.mkdir()
    rng = np.random.default_rng(0)
    if NIH_IMAGES.is_dir():
        (a / "real.png").write_bytes((NIH_IMAGES / sorted(os.listdir(NIH_IMAGES))[0]).read_bytes())
    else:
        Image.fromarray(rng.integers(0, 255, (64, 64), np.uint8)).convert("RGB").save(a / "real.png")
    (b / "real.png").write_bytes(_png_bytes(Image.new("L", (64, 64), 7)))  # duplicate name
    (a / "corrupt.png").write_bytes(rng.integers(0, 255, 500, np.uint8).tobytes())
    full = _png_bytes(Image.fromarray(rng.integers(0, 255, (200, 200), np.uint8)))
    (a / "truncated.png").write_bytes(full[: len(full) // 2])
    (a / "zero.png").write_bytes(b"")
    (a / "notes.txt").write_text("scanned on Tuesday")
    (a / "text.png").write_text("this is not a picture")
    Image.fromarray(np.full((40, 40), 32768, np.uint16)).save(a / "sixteen.png")
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[:20] = (200, 200, 200, 255)  # bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(a / "rgba.png")
    big = np.zeros((4000, 4000), np.uint8)
    big[:, :2000] = 255
    Image.fromarray(big).save(b / "huge.png")
    Image.new("L", (30, 30), 50).save(b / "odd_label.png")
    rows = [["image", "sex", "effusion"]] + [[n, "F", "0"] for n in
            ("real.png", "corrupt.png", "truncated.png", "zero.png", "text.png", "sixteen.png", "rgba.png", "huge.png")]
    rows.append(["odd_label.png", "M", "maybe"])
    with open(root / "labels.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return root


def _snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_size, st.st_mtime_ns)
    return out


def test_every_bad_file_is_skipped_with_a_reason(messy):
    opts = ReadOptions(image_column="image", general_columns=["sex"], finding_columns=["effusion"])
    ds = READERS["csv"].read(messy, opts)
    names = sorted(Path(s).name for s in ds.source)
    assert names == ["huge.png", "real.png", "rgba.png", "sixteen.png"]
    reasons = {str(Path(s.path).relative_to(messy)): s.reason for s in opts.report.skipped}
    assert "not a readable image" in reasons["a/corrupt.png"]
    assert "truncated" in reasons["a/truncated.png"]
    assert "empty file" in reasons["a/zero.png"]
    assert "not an image file" in reasons["a/notes.txt"]
    assert "not a readable image" in reasons["a/text.png"]
    assert "duplicate image name" in reasons["b/real.png"] and "a/real.png" in reasons["b/real.png"]
    assert "'maybe'" in reasons["b/odd_label.png"] and "effusion" in reasons["b/odd_label.png"]
    assert len(reasons) == 7
    img = {Path(s).name: ds.images[i].numpy() for i, s in enumerate(ds.source)}
    assert abs(int(img["sixteen.png"].mean()) - 128) <= 1  # 16-bit mid-grey -> 8-bit mid-grey
    assert img["rgba.png"][:30].min() == 200 and img["rgba.png"][34:].max() == 0  # transparent -> black
    assert img["huge.png"][:, :30].min() == 255 and img["huge.png"][:, 34:].max() == 0
    assert ds.images.shape == (4, 64, 64)


def test_load_never_modifies_the_source(messy, tmp_path):
    from medgan_ui.data import load_dataset

    before = _snapshot(messy)
    opts = ReadOptions(image_column="image", general_columns=["sex"], finding_columns=["effusion"])
    ws = Workspace(tmp_path / "ws")
    first = load_dataset(messy, None, opts, ws, stratify=None)
    second = load_dataset(messy, None, opts, ws, stratify=None)
    assert not first.meta["loaded_from_cache"] and second.meta["loaded_from_cache"]
    assert len(second.meta["report"]["skipped"]) == 7
    assert _snapshot(messy) == before
    assert list(ws.datasets.iterdir())  # the cache went to the workspace, not the source


def test_csv_without_named_column_lists_columns(messy):
    with pytest.raises(UserError) as err:
        READERS["csv"].read(messy, ReadOptions(image_column="image", finding_column="Finding Labels"))
    msg = str(err.value)
    assert "labels.csv" in msg and "'Finding Labels'" in msg and "image, sex, effusion" in msg


def test_empty_folder_names_the_folder(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    with pytest.raises(UserError, match="nothing_here.*empty"):
        detect_format(empty)
    with pytest.raises(UserError, match="nothing_here"):
        READERS["folders"].read(empty, ReadOptions())


def test_folder_of_only_broken_files_is_a_clear_error(tmp_path):
    (tmp_path / "Nodule").mkdir()
    (tmp_path / "Nodule" / "x.png").write_bytes(b"")
    (tmp_path / "Nodule" / "y.png").write_text("nope")
    with pytest.raises(UserError) as err:
        READERS["folders"].read(tmp_path, ReadOptions())
    assert str(tmp_path) in str(err.value) and "x.png: empty file" in str(err.value)


def test_unknown_general_values_become_unknown_with_a_note(tmp_path):
    Image.new("L", (20, 20), 9).save(tmp_path / "p.png")
    Image.new("L", (20, 20), 9).save(tmp_path / "q.png")
    (tmp_path / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Patient ID,Patient Gender,View Position\n"
        "p.png,Hernia,1,X,PA\nq.png,No Finding,2,M,\n")
    opts = ReadOptions()
    ds = READERS["nih"].read(tmp_path, opts)
    assert ds.general[:, 0].tolist() == [-1, 1] and ds.general[:, 1].tolist() == [1, -1]
    assert any("'X'" in n for n in opts.report.notes) and any("without a value" in n for n in opts.report.notes)
    assert ds.counts()["general"]["sex"] == {"F": 0, "M": 1, "unknown": 1}


def test_missing_source_and_bad_size_are_user_errors(tmp_path):
    from medgan_ui.data import load_dataset

    with pytest.raises(UserError, match="does_not_exist"):
        load_dataset(tmp_path / "does_not_exist", workspace=Workspace(tmp_path / "ws"))
    with pytest.raises(UserError, match="fit"):
        ReadOptions(fit="stretch")
