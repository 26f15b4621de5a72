"""The checks themselves, without a server: the path allow-list, zip limits, pixel limits, DICOM tags."""
from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from medgan_ui.data.readers.base import ReadOptions
from medgan_ui.errors import UserError
from medgan_ui.security import limits
from medgan_ui.security.paths import PathPolicy, hide_paths, is_loopback, plain_name, relative_name


@pytest.mark.parametrize("host,expected", [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("[::1]", True),
                                           ("localhost", True), ("0.0.0.0", False), ("", False), ("::", False),
                                           ("10.0.0.5", False), ("example.org", False), (None, False)])
def test_loopback_hosts(host, expected):
    assert is_loopback(host) is expected


def test_network_server_without_data_root_reads_only_its_workspace(tmp_path):
    ws = tmp_path / "ws" / "uploads"
    ws.mkdir(parents=True)
    (tmp_path / "data").mkdir()
    policy = PathPolicy.for_server("0.0.0.0", [], [ws])
    assert not policy.allow_any
    for p in (str(tmp_path / "data"), "/etc/passwd", "data"):
        with pytest.raises(UserError, match="--data-root"):
            policy.resolve(p)
    assert policy.resolve(str(ws)) == ws.resolve()


def test_loopback_reads_any_folder_but_system_ones(tmp_path):
    policy = PathPolicy.for_server("127.0.0.1", [], [])
    assert policy.allow_any and policy.resolve(str(tmp_path)) == tmp_path.resolve()
    for p in ("/proc/self/cmdline", "/etc/passwd", "/sys", "/dev/zero", "/proc/../etc/shadow", "/ok\0/etc"):
        with pytest.raises(UserError, match="outside the folders"):
            policy.resolve(p)


def test_any_folder_only_for_a_browser_on_this_machine(tmp_path):
    from types import SimpleNamespace as NS

    policy = PathPolicy.for_server("127.0.0.1", [], [])
    local = NS(client=NS(host="127.0.0.1"), headers={"host": "127.0.0.1:7860"})
    assert policy.for_request(local) is policy and policy.for_request(None) is policy
    for remote in (NS(client=NS(host="10.0.0.7"), headers={}),
                   NS(client=NS(host="127.0.0.1"), headers={"X-Forwarded-For": "10.0.0.7"}),
                   NS(client=NS(host="127.0.0.1"), headers={"forwarded": "for=10.0.0.7"}),
                   NS(client=None, headers={})):
        with pytest.raises(UserError, match="browser on the server itself"):
            policy.for_request(remote).resolve(str(tmp_path))
    roots = PathPolicy.for_server("127.0.0.1", [tmp_path], [])  # with --data-root the request does not matter
    assert roots.for_request(NS(client=NS(host="10.0.0.7"), headers={})).resolve(str(tmp_path)) == tmp_path.resolve()


def test_data_roots_confine_paths_symlinks_included(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "set").mkdir(parents=True)
    (outside / "private").mkdir(parents=True)
    (data / "link").symlink_to(outside)
    policy = PathPolicy.for_server("127.0.0.1", [data], [])
    assert not policy.allow_any
    assert policy.resolve("set") == (data / "set").resolve() == policy.resolve(str(data / "set"))
    for p in (str(outside), str(outside / "nope"), "../outside", "set/../../outside", "link", "link/private", "~"):
        with pytest.raises(UserError) as err:
            policy.resolve_existing(p)
        assert "outside the folders" in str(err.value) and str(outside) not in str(err.value).replace(p, "")
    # the same words whether the outside path exists or not
    msgs = set()
    for p in (str(outside / "private"), str(outside / "missing")):
        with pytest.raises(UserError) as err:
            policy.resolve_existing(p, "x")
        msgs.add(str(err.value).replace(p, "P"))
    assert len(msgs) == 1
    with pytest.raises(UserError, match="does not exist"):
        policy.resolve_existing("set/missing")
    with pytest.raises(UserError, match="not a folder"):
        PathPolicy.for_server("127.0.0.1", [tmp_path / "missing"], [])
    for whole in ("/", "/proc", "/dev/shm"):
        with pytest.raises(UserError, match="whole server or a system folder"):
            PathPolicy.for_server("127.0.0.1", [whole], [])
    if Path("/etc/ssl").is_dir():  # a --data-root may name a folder under /etc or /run; /etc itself stays closed
        named = PathPolicy.for_server("127.0.0.1", ["/etc/ssl"], [])
        assert named.resolve("/etc/ssl") == Path("/etc/ssl").resolve()
        with pytest.raises(UserError):
            named.resolve("/etc/passwd")


def test_csv_names_relative_with_a_table_suffix(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "labels.csv").write_text("a,b\n")
    (data / "sub" / "t.tsv").write_text("a\tb\n")
    (tmp_path / "secret.csv").write_text("s\n")
    (data / "evil.csv").symlink_to(tmp_path / "secret.csv")
    policy = PathPolicy.for_server("127.0.0.1", [data], [])
    assert policy.resolve_csv("labels.csv", data) == data / "labels.csv"
    assert policy.resolve_csv("sub/t.tsv", data) == data / "sub" / "t.tsv"
    for name, word in (("/etc/passwd", "relative"), ("../secret.csv", "relative"), ("~/x.csv", "relative"),
                       ("sub/../../secret.csv", "relative"), ("labels.txt", "must end in"),
                       ("evil.csv", "outside the folders"), ("missing.csv", "not in the data folder"), ("", "relative")):
        with pytest.raises(UserError, match=word):
            policy.resolve_csv(name, data)


def test_display_names_hide_the_server_layout(tmp_path):
    root = tmp_path / "set"
    assert relative_name(root / "a" / "b.png", root) == "a/b.png"
    assert relative_name("/elsewhere/c.dcm", root) == "c.dcm"
    assert relative_name(root / "x.png", "demo") == "x.png"
    msg = f"no readable images found in {root} (e.g. {root}/a.png)"
    assert hide_paths(msg, [(root, "mydata")]) == "no readable images found in mydata (e.g. mydata/a.png)"
    assert plain_name("step_000100", "checkpoint") == "step_000100"
    for bad in ("../x", "/etc/passwd", "..", "a\\b", ".hidden", ""):
        with pytest.raises(UserError, match="plain name"):
            plain_name(bad, "checkpoint")


# ---- zips ------------------------------------------------------------------------------------------
def make_zip(path: Path, entries: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("entries,kwargs,word", [
    ({"a.png": bytes(5 * 2**20)}, {}, "MEDGAN_ZIP_MAX_RATIO"),
    ({"a.bin": os.urandom(2**20), "b.bin": os.urandom(2**20)}, {"max_total_mb": 1}, "MEDGAN_ZIP_MAX_TOTAL_MB"),
    ({f"{i}.png": b"x" for i in range(11)}, {"max_files": 10}, "MEDGAN_ZIP_MAX_FILES"),
    ({"ok.png": b"x", "../../up.png": b"x"}, {}, "unsafe path"),
    ({"ok.png": b"x", "/abs/path.png": b"x"}, {}, "unsafe path"),
    ({"ok.png": b"x", "C:/win.png": b"x"}, {}, "unsafe path"),
])
def test_zip_limits_refuse_and_leave_nothing(tmp_path, entries, kwargs, word):
    up = tmp_path / "uploads"
    with pytest.raises(UserError, match=word):
        limits.safe_unzip(make_zip(tmp_path / "in.zip", entries), up, **kwargs)
    assert list(up.iterdir()) == []  # no partial folder, no temporary folder
    assert not (tmp_path / "up.png").exists() and not Path("/abs/path.png").exists()


def test_zip_whose_headers_understate_sizes_is_refused(tmp_path, monkeypatch):
    """The declared-size check is only a first one: an entry declaring 1 KB gives at most 1 KB and then
    fails its checksum, so the archive is refused as damaged, with nothing left behind."""
    z = make_zip(tmp_path / "in.zip", {"a.bin": bytes(3 * 2**20)})
    real_infolist = zipfile.ZipFile.infolist

    def understated(self):
        infos = real_infolist(self)
        for i in infos:
            i.file_size = 1024
        return infos

    monkeypatch.setattr(zipfile.ZipFile, "infolist", understated)
    with pytest.raises(UserError, match="damaged"):
        limits.safe_unzip(z, tmp_path / "up", max_total_mb=2)
    assert list((tmp_path / "up").iterdir()) == []


def test_good_zip_reused_and_old_uploads_cleaned(tmp_path):
    up = tmp_path / "uploads"
    z = make_zip(tmp_path / "in.zip", {"set/a/1.png": b"x", "set/b/2.png": b"y", "__MACOSX/._x": b"z"})
    first = limits.safe_unzip(z, up)
    assert limits.safe_unzip(z, up) == first and len(list(up.iterdir())) == 1
    assert limits.dataset_folder(first).name == "set"
    assert not (first / "__MACOSX").exists()
    old, kept, tmp = up / "upload-old", up / "upload-kept", up / ".tmp-crashed"
    for d in (old, kept, tmp):
        d.mkdir()
        past = time.time() - 100 * 3600
        os.utime(d, (past, past))
    removed = limits.clean_old_uploads(up, max_age_h=72, keep=[kept / "set"])
    assert sorted(removed) == [".tmp-crashed", "upload-old"]
    assert first.exists() and kept.exists()


# ---- pixel limits ------------------------------------------------------------------------------------
def test_png_over_the_pixel_limit_is_skipped_before_decoding(tmp_path, monkeypatch):
    from medgan_ui.data.readers.folders import load_image

    assert Image.MAX_IMAGE_PIXELS == limits.MAX_IMAGE_PIXELS  # set explicitly, not PIL's default
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    for side in (1200, 2000):  # over the limit (PIL warns) and over twice the limit (PIL raises)
        Image.new("L", (side, side)).save(tmp_path / f"{side}.png")
        opts = ReadOptions(size=16)
        assert load_image(tmp_path / f"{side}.png", opts) is None
        reason = opts.report.skipped[0].reason
        assert f"{side * side:,} pixels" in reason and "MEDGAN_MAX_IMAGE_PIXELS" in reason
    Image.new("L", (900, 900)).save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png", ReadOptions(size=16)) is not None


def test_dicom_size_checked_before_pixels_and_bad_tags_skipped(tmp_path):
    pytest.importorskip("pydicom")
    from _sec_files import dicom_bomb_folder, write_dicom

    from medgan_ui.data.readers import dicom

    folder = dicom_bomb_folder(tmp_path / "dcm")
    write_dicom(folder / "cols.dcm", text_tags={0x00280011: "wide"})  # Columns as text
    opts = ReadOptions(size=16)
    ds = dicom.read(folder, opts)
    assert len(ds) == 4
    reasons = {Path(s.path).relative_to(folder).as_posix(): s.reason for s in opts.report.skipped}
    assert "image too large: 3,600,000,000 pixels" in reasons["sub/huge.dcm"]
    assert "tag NumberOfFrames is not a whole number ('abc')" in reasons["frames.dcm"]
    assert "tag RescaleSlope is not a number ('x1')" in reasons["slope.dcm"]
    assert "Columns" in reasons["cols.dcm"]


def test_upload_limit_reaches_gradio():
    import inspect

    from medgan_ui.ui import app

    assert limits.upload_limit_bytes() == limits.MAX_UPLOAD_MB * 2**20
    assert "max_file_size=limits.upload_limit_bytes()" in inspect.getsource(app.serve)
