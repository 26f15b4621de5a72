"""Attacks on a real `python launch.py` over HTTP, the way a script bypassing the page would send them.

One studio server on 127.0.0.1 with `--data-root DATA` and an admin password. Every handler that takes
a path (Data tab folder and CSV fields, Compare's weights and extractor fields and run/set ids, Browse's
checkpoint, the study admin's real/synthetic folders) is fed /proc/self/cmdline, /etc/passwd, a folder
outside DATA, a symlink leading out of DATA and '..' escapes: each is refused with a plain message, no
response carries a secret, and nothing changes outside the workspace. Then zip bombs, oversize uploads
and pixel bombs (PNG and DICOM, tiny on disk), and DICOM files with non-numeric tags.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import secrets
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from _sec_files import dicom_bomb_folder, png_bomb_folder
from _study_fixtures import gradio_call, gradio_config, start_server, stop_server
from medgan_ui.ui.data_tab import SOURCES

SECRET = "SECRET123"
OUTSIDE_MARK = "TOPSECRET_COLUMN"
LEAKS = (SECRET, OUTSIDE_MARK, "root:x:0:0", "launch.py")  # launch.py: in /proc/self/cmdline
ENV = {"MEDGAN_MAX_UPLOAD_MB": "8", "MEDGAN_ZIP_MAX_TOTAL_MB": "10", "MEDGAN_ZIP_MAX_FILES": "50"}


def png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def class_folders(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        png(root / ("Nodule" if i % 2 else "normal") / f"img{i}.png", rng.integers(0, 255, (24, 24), dtype=np.uint8))
    (root / "labels.csv").write_text("file,sex\n" + "".join(f"img{i}.png,{'FM'[i % 2]}\n" for i in range(n)))
    return root


def snapshot(base: Path, skip: Path) -> dict[str, str]:
    """Every file under base except the workspace, with a hash of its content."""
    out = {}
    for dirpath, dirs, files in os.walk(base):
        dirs[:] = [d for d in dirs if Path(dirpath, d) != skip]
        for f in files:
            p = Path(dirpath, f)
            out[str(p)] = "link" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("sec")
    data, outside, ws = base / "data", base / "outside", base / "ws"
    class_folders(data / "ds1")
    class_folders(outside / "private")
    (outside / "secret.csv").write_text(f"{OUTSIDE_MARK},b\n1,2\n")
    (outside / "weights.pt").write_bytes(b"not really weights")
    (data / "link").symlink_to(outside)  # a symlink inside the data root leading out of it
    (data / "ds1" / "evil.csv").symlink_to(outside / "secret.csv")
    (ws / "runs" / "fake-run" / "checkpoints").mkdir(parents=True)  # for Browse's checkpoint field
    (ws / "runs" / "fake-run" / "config.json").write_text("{}")
    png_bomb_folder(data / "pngbomb")
    if importlib.util.find_spec("pydicom") is not None:
        dicom_bomb_folder(data / "dcmbomb")
    before = snapshot(base, ws)
    proc, url = start_server(ws, SECRET, reader_only=False, extra_args=["--data-root", str(data)], env=ENV)
    try:
        yield {"url": url, "base": base, "data": data, "outside": outside, "ws": ws, "before": before,
               "fn": {d["api_name"]: d["id"] for d in gradio_config(url)["dependencies"]}, "pid": proc.pid}
    finally:
        stop_server(proc)
    assert snapshot(base, ws) == before  # source data unchanged, nothing written outside the workspace


def call(srv, api: str, data: list, session: str | None = None) -> dict:
    msg = gradio_call(srv["url"], srv["fn"][api], data, session)
    body = json.dumps(msg)
    for leak in LEAKS:
        assert leak not in body, (api, data, leak)
    assert str(srv["ws"]) not in body, (api, data)  # never the server's own folder layout
    return msg


def refused(srv, api: str, data: list, session: str | None = None) -> str:
    msg = call(srv, api, data, session)
    assert msg.get("success") is False, (api, data, msg)
    text = (msg.get("output") or {}).get("error") or ""
    assert text and "Traceback" not in text and 'File "' not in text
    return text


def load_args(source: str, path: str = "", upload=None, csv: str = "", fmt: str = "auto") -> list:
    return [source, path, upload, fmt, 16, "crop", csv, None, None, [], None, "|", []]


def attack_paths(srv) -> list[str]:
    out = srv["outside"]
    return ["/proc/self/cmdline", "/proc/self/environ", "/etc/passwd", "/etc", str(out), str(out / "secret.csv"),
            str(out / "private"), str(srv["data"] / "link"), str(srv["data"] / "link" / "private"),
            "../outside/private", "ds1/../../outside", "~/", "link/private"]


OUTSIDE_WORDS = ("outside the folders", "relative to the data folder", "must end in", "not a plain name")


def test_data_tab_folder_and_csv_fields(server):
    for p in attack_paths(server):
        for api, args in (("read_columns", [p, None, ""]), ("load_data", load_args(SOURCES[1], p))):
            msg = refused(server, api, args)
            assert any(w in msg for w in OUTSIDE_WORDS), (p, msg)
            assert "does not exist" not in msg  # never tells whether an outside path exists
    ds1 = str(server["data"] / "ds1")
    for name in ("/proc/self/cmdline", "/etc/passwd", "../../outside/secret.csv", str(server["outside"] / "secret.csv"),
                 "evil.csv", "../link/secret.csv", "cmdline", "~/x.csv"):
        for api, args in (("read_columns", [ds1, None, name]), ("load_data", load_args(SOURCES[1], ds1, csv=name))):
            msg = refused(server, api, args)
            assert any(w in msg for w in OUTSIDE_WORDS), (name, msg)
    # inside the data root: relative or absolute, both work
    assert call(server, "read_columns", ["ds1", None, "labels.csv"])["success"]
    msg = call(server, "load_data", load_args(SOURCES[1], "ds1"))
    assert msg["success"] and "Loaded" in json.dumps(msg["output"]["data"][0])
    assert "does not exist" in refused(server, "load_data", load_args(SOURCES[1], "no-such-set"))


def test_compare_weights_extractor_and_ids(server):
    call(server, "load_data", load_args(SOURCES[1], str(server["data"] / "ds1")))  # Compare needs loaded data
    form = [["Nodule"], ["none"], [], "resnet18", 0.25, "imagenet", "", 1, 1, 1, 8, 1e-3, 1.0, 0, [], ""]
    for p in attack_paths(server) + [str(server["outside"] / "weights.pt")]:
        form[6] = p
        assert any(w in refused(server, "compare_start", form) for w in OUTSIDE_WORDS), p
        for kind in ("inception", "domain"):
            assert any(w in refused(server, "compare_metrics", [["x"], f"{kind}:{p}", 10, None]) for w in OUTSIDE_WORDS)
    form[5], form[6] = "scratch", ""
    for ident in ("../../outside", "/etc", "..", "a/b"):
        form[2] = [ident]
        assert "not a plain name" in refused(server, "compare_start", form)
        assert "not a plain name" in refused(server, "compare_metrics", [[ident], "domain", 10, None])
    jobs = server["ws"] / "jobs.json"  # nothing was queued by the refused calls
    assert not jobs.exists() or "metrics" not in jobs.read_text() and "compare" not in jobs.read_text()
    assert list((server["ws"] / "experiments").iterdir()) == []


def test_browse_checkpoint_and_ids(server):
    general = ["any"] * 4
    for ckpt in ("../../../outside/weights", str(server["outside"] / "weights.pt"), "/proc/self/cmdline", ".."):
        assert "not a plain name" in refused(server, "generate", ["fake-run", ckpt, 4, 0, [], *general, 0.8])
        table = {"headers": ["sex", "images"], "data": [["F", 1]]}
        assert "not a plain name" in refused(server, "export", ["fake-run", ckpt, table, "PNG + labels.csv", 0, 0.8])
    for run in ("../../outside", "/etc"):
        refused(server, "select_run", [run])
        refused(server, "compare_show", [run])


def test_study_admin_folders(server):
    session = secrets.token_hex(8)
    fn = {d["id"]: d for d in gradio_config(server["url"])["dependencies"]}
    login = next(i for i, d in fn.items() if d["api_name"] == "on_login")
    create = next(i for i, d in fn.items() if d["api_name"] == "on_create")
    assert gradio_call(server["url"], login, [SECRET], session)["success"]
    for p in attack_paths(server):
        for real, syn in ((p, []), ("demo", [p])):
            msg = gradio_call(server["url"], create, [None, "x", real, "test", syn, "", 2, 2, 0, "realism", 0, 0.1, 5], session)
            body = json.dumps(msg)
            assert all(leak not in body for leak in LEAKS)
            assert "outside the folders" in body, (p, body[:400])


def test_loopback_without_data_root_serves_paths_only_to_this_machine(tmp_path):
    """No --data-root on 127.0.0.1: the local browser may name folders (never /proc or /etc); a request
    that came through a reverse proxy may not."""
    class_folders(tmp_path / "local")
    proc, url = start_server(tmp_path / "ws", SECRET, reader_only=False)
    try:
        fn = {d["api_name"]: d["id"] for d in gradio_config(url)["dependencies"]}
        args = [str(tmp_path / "local"), None, ""]
        assert gradio_call(url, fn["read_columns"], args)["success"]
        proxied = gradio_call(url, fn["read_columns"], args, headers={"X-Forwarded-For": "10.1.2.3"})
        assert proxied["success"] is False and "browser on the server itself" in proxied["output"]["error"]
        for p in ("/proc/self/cmdline", "/etc/passwd", "/proc/self"):
            msg = gradio_call(url, fn["read_columns"], [p, None, ""])
            assert msg["success"] is False and "outside the folders" in msg["output"]["error"]
            assert all(leak not in json.dumps(msg) for leak in LEAKS)
    finally:
        stop_server(proc)


# ---- uploads --------------------------------------------------------------------------------------
def upload(srv, name: str, payload: bytes) -> httpx.Response:
    return httpx.post(srv["url"] + "/gradio_api/upload", files={"files": (name, payload)}, timeout=60)


def load_upload(srv, name: str, payload: bytes) -> dict:
    r = upload(srv, name, payload)
    assert r.status_code == 200, r.text
    fd = {"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}
    return call(srv, "load_data", load_args(SOURCES[2], upload=fd))


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def uploads_left(srv) -> list[str]:
    d = srv["ws"] / "uploads"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_zip_bombs_and_oversize_upload_leave_nothing(server):
    rng = np.random.default_rng(1)
    bombs = {
        "ratio.zip": ({"set/a.png": bytes(8 * 2**20)}, "MEDGAN_ZIP_MAX_RATIO"),  # 8 MB of zeros in 8 KB
        # 12 MB of 4-symbol noise (packs ~4:1, so no ratio alarm) against MEDGAN_ZIP_MAX_TOTAL_MB=10
        "total.zip": ({f"set/{i}.png": rng.integers(0, 4, 2**20, dtype=np.uint8).tobytes() for i in range(12)},
                      "MEDGAN_ZIP_MAX_TOTAL_MB"),
        "count.zip": ({f"set/{i}.png": b"x" for i in range(60)}, "MEDGAN_ZIP_MAX_FILES"),
        "slip.zip": ({"../../../../escape.png": b"x", "set/a.png": b"x"}, "unsafe path"),
    }
    for name, (entries, word) in bombs.items():
        payload = zip_bytes(entries)
        assert len(payload) < 8 * 2**20
        msg = load_upload(server, name, payload)
        assert msg["success"] is False and word in msg["output"]["error"], (name, msg)
        assert uploads_left(server) == [], name  # the temporary folder is gone
    assert not (server["base"] / "escape.png").exists()
    r = upload(server, "big.zip", os.urandom(9 * 2**20))  # over MEDGAN_MAX_UPLOAD_MB=8
    assert r.status_code == 413 and SECRET not in r.text


def test_upload_field_cannot_name_a_server_file(server):
    """A forged upload value pointing at a server file is refused by Gradio before the handler runs."""
    cache = Path(upload(server, "x.zip", zip_bytes({"a.png": b"x"})).json()[0]).parent
    for p in ("/etc/passwd", "/proc/self/cmdline", str(server["outside"] / "secret.csv"),
              f"{cache}/../../../../../etc/passwd"):
        fd = {"path": p, "orig_name": "x.zip", "meta": {"_type": "gradio.FileData"}}
        for api, args in (("load_data", load_args(SOURCES[2], upload=fd)), ("read_columns", ["", fd, ""])):
            msg = call(server, api, args)
            assert msg.get("success") is False, (p, msg)
            assert msg["output"]["error"] is None  # refused before the handler (ours always say why)
    log = "".join(p.read_text() for p in server["ws"].glob("server-*.log"))
    assert log.count("because it was not uploaded by a user") >= 8  # Gradio's own check of upload values


def test_good_zip_is_unpacked_once_and_reused(server):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        rng = np.random.default_rng(2)
        for i in range(6):
            img = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(img, format="PNG")
            zf.writestr(f"mine/{'A' if i % 2 else 'normal'}/{i}.png", img.getvalue())
    for _ in range(2):
        msg = load_upload(server, "mine.zip", buf.getvalue())
        assert msg["success"], msg
    assert len(uploads_left(server)) == 1


# ---- pixel bombs and bad DICOM tags ------------------------------------------------------------------
def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_pixel_bombs_and_bad_tags_are_skipped_with_reasons(server):
    peak = vm_hwm_mb(server["pid"])
    msg = call(server, "load_data", load_args(SOURCES[1], "pngbomb"))
    body = json.dumps(msg)
    assert msg["success"], body[:500]
    assert "4 images" in body and "Nodule/huge.png" in body and "image too large" in body
    msg = call(server, "load_data", load_args(SOURCES[1], "dcmbomb", fmt="dicom"))
    body = json.dumps(msg)
    assert msg["success"], body[:500]
    assert "4 images" in body
    for file, reason in (("sub/huge.dcm", "image too large"), ("frames.dcm", "tag NumberOfFrames"),
                         ("slope.dcm", "tag RescaleSlope")):
        assert f'["{file}", "' in body and reason in body, (file, reason)
    assert str(server["data"]) not in body  # files named relative to the dataset folder
    assert vm_hwm_mb(server["pid"]) - peak < 300  # no 12000 x 12000 or 60000 x 60000 decode
