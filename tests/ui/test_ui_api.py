"""The app through its HTTP API (gradio_client), launched in-process on a free port with a temp workspace.

Happy path: load the demo, train with the tiny preset, see steps advance, stop, generate in Browse.
Bad input: every mistake gives a readable message (no traceback) and leaves no run or job behind.
"""
from __future__ import annotations

import re
import time

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from _paths import SHARED_DATA
from medgan_ui.ui.data_tab import SOURCES  # noqa: E402
from _ui_fixtures import DEMO_N, exported_folder, running_app  # noqa: E402

LABELS = ["F", "AP", "any", "any"]  # the four general-label dropdowns of the Browse tab
ADMIN = "ui-api-admin"  # the Rate tab then builds its admin panel too (its page text is checked for paths)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    with running_app(ws, admin_password=ADMIN) as (ctx, demo):
        yield ctx, Client(demo.local_url, verbose=False, download_files=str(ws / "downloads"))


def load_args(source: str, path: str = "", upload=None, size: int = 32) -> list:
    # source, path, upload, format, size, fit, csv, image col, patient col, general cols, finding col, sep, finding cols
    return [source, path, upload, "auto", size, "crop", "", None, None, [], None, "|", []]


def train_args(steps=2000, batch=8, lr_g=2e-4, preset="tiny") -> list:
    return ["gdgan", preset, steps, batch, 1, lr_g, 2e-4, "none"]


def refused(client: Client, *args, api_name: str) -> str:
    """Call an endpoint that must fail; return its message after checking it is readable."""
    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    msg = str(info.value)
    assert msg and "Traceback" not in msg and "File \"" not in msg
    return msg


def step_of(live_html: str) -> int:
    m = re.search(r"id='mg-step'>(\d+)<", live_html)
    assert m, live_html
    return int(m.group(1))


def status_of(live_html: str) -> str:
    m = re.search(r"class='mg-st-([a-z ]+)'", live_html)
    assert m, live_html
    return m.group(1)


def test_start_and_browse_before_anything_is_loaded(app):
    ctx, client = app
    assert "no dataset is loaded" in refused(client, *train_args(), api_name="/start_training")
    assert "no trained run" in refused(client, None, "latest", 16, 0, [], "any", "any", "any", "any",
                                      api_name="/generate")
    assert client.predict(None, api_name="/refresh_runs")["value"] is None
    assert ctx.workspace.list_runs() == [] and ctx.jobs.active() == []


def test_bad_sources_give_plain_messages(app, tmp_path):
    ctx, client = app
    msg = refused(client, *load_args(SOURCES[1], str(tmp_path / "no-such-folder")), api_name="/load_data")
    assert "does not exist" in msg and "no-such-folder" in msg
    notes = tmp_path / "notes.txt"
    notes.write_text("not a dataset")
    assert "format" in refused(client, *load_args(SOURCES[1], str(notes)), api_name="/load_data")
    assert "type the path" in refused(client, *load_args(SOURCES[1], "  "), api_name="/load_data")
    assert "choose a .zip" in refused(client, *load_args(SOURCES[2]), api_name="/load_data")
    msg = refused(client, *load_args(SOURCES[2], upload=handle_file(str(notes))), api_name="/load_data")
    assert "zip" in msg  # Gradio's own file-type check names the accepted type
    fake = tmp_path / "fake.zip"
    fake.write_text("not a zip archive")
    msg = refused(client, *load_args(SOURCES[2], upload=handle_file(str(fake))), api_name="/load_data")
    assert "fake.zip is not a .zip file" in msg
    assert ctx.dataset is None


def test_load_demo_shows_counts_preview_and_split(app):
    ctx, client = app
    status, info, preview, counts, _chart, split, skipped_note, _skipped = client.predict(
        *load_args(SOURCES[0]), api_name="/load_data")
    assert "Loaded" in status and f"{DEMO_N:,} images" in info
    assert len(preview) == 24 and all(item["caption"] for item in preview)
    header = counts["headers"]
    assert header[:2] == ["group", "images"] and "No Finding" in header
    assert counts["data"][0][:2] == ["all", DEMO_N]
    assert "train" in split and "test" in split
    assert "skipped" in skipped_note.lower() or "nothing was skipped" in skipped_note
    assert ctx.dataset is not None and len(ctx.dataset) == DEMO_N and ctx.dataset.size == 32


def test_out_of_range_settings_start_nothing(app):
    ctx, client = app
    assert "steps must be at least 1" in refused(client, *train_args(steps=-5), api_name="/start_training")
    assert "learning rate" in refused(client, *train_args(lr_g=-1.0), api_name="/start_training")
    assert "batch size" in refused(client, *train_args(batch=100_000), api_name="/start_training")
    assert "nothing to stop" in refused(client, None, api_name="/stop_training")
    assert ctx.workspace.list_runs() == [] and ctx.jobs.active() == []


def test_train_see_progress_stop_then_generate(app):
    ctx, client = app
    status, sel, _runs = client.predict(*train_args(), api_name="/start_training")
    run_id = sel["value"]
    assert "Started" in status and run_id
    # Start twice: refused with a message, no second run
    assert "already" in refused(client, *train_args(), api_name="/start_training")
    assert len(ctx.workspace.list_runs()) == 1

    seen_steps, grid = [], None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (len(set(seen_steps)) < 3 or grid is None):
        live, _loss, sample, *_ = client.predict(run_id, api_name="/train_status")
        seen_steps.append(step_of(live))
        if isinstance(sample, str) and sample.endswith(".png"):
            grid = sample
        time.sleep(0.5)
    assert len(set(seen_steps)) >= 3 and seen_steps == sorted(seen_steps), seen_steps
    assert grid is not None

    msg, _ = client.predict(run_id, api_name="/stop_training")
    assert "stopping" in msg
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = client.predict(run_id, api_name="/train_status")[0]
        if status_of(live) == "stopped":
            break
        time.sleep(0.5)
    assert status_of(live) == "stopped" and ctx.jobs.active() == []
    assert step_of(live) < 2000

    assert client.predict(None, api_name="/refresh_runs")["value"] == run_id
    info, *_ = client.predict(run_id, api_name="/select_run")
    assert "gdgan" in info and "stage 1" in info  # GDGAN shows both stages side by side
    gallery, note, _nn = client.predict(run_id, "latest", 16, 3, ["Cardiomegaly"], *LABELS, api_name="/generate")
    assert len(gallery) == 16
    assert all("F · AP · Cardiomegaly" in item["caption"] for item in gallery)
    # a label the run does not know is a message too
    msg = refused(client, run_id, "latest", 4, 0, ["Fracture"], *LABELS, api_name="/generate")
    assert "Fracture" in msg

    # export a set that tops every label cell up to 3 images
    plan = client.predict(run_id, 3, api_name="/export_plan")
    assert plan["headers"] == ["sex", "view", "finding", "real images", "to generate"]
    wanted = sum(row[4] for row in plan["data"])
    note = client.predict(run_id, "latest", plan, "PNG + labels.csv", 0, api_name="/export")
    assert f"Wrote **{wanted:,}** synthetic images" in note
    folder = exported_folder(ctx, note)
    assert len(list(folder.glob("*.png"))) == wanted and (folder / "labels.csv").is_file()
    note = client.predict(run_id, "latest", plan, "DICOM", 0, api_name="/export")
    folder = exported_folder(ctx, note)
    assert len(list(folder.glob("*.dcm"))) == wanted
    assert "at least 1" in refused(client, run_id, 0, api_name="/export_plan")


def test_resume_and_bad_resume(app):
    ctx, client = app
    assert "choose a run" in refused(client, None, 10, api_name="/resume_training")
    assert "not found" in refused(client, "gdgan-nope", 10, api_name="/resume_training")
    run_id = ctx.workspace.list_runs()[-1].name
    msg, _ = client.predict(run_id, 2000, api_name="/resume_training")
    assert "Resuming" in msg
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ctx.jobs.active():
        time.sleep(0.2)
    job = ctx.jobs.job_for_run(run_id)
    ctx.jobs.stop(job["id"])
    assert ctx.jobs.wait(job["id"], timeout=60)["status"] in ("stopped", "done")


def test_real_nih_folder_reports_rows_without_images(app):
    nih = SHARED_DATA / "nih-cxr14-1000"
    if not nih.is_dir():
        pytest.skip("shared NIH sample not present")
    ctx, client = app
    status, info, preview, _counts, _chart, _split, skipped_note, _skipped = client.predict(
        *load_args(SOURCES[1], str(nih)), api_name="/load_data")
    assert "Loaded" in status and "1,000 images" in info and "264 patients" in info
    assert "format `nih`" in info
    assert "111,120 label row(s) have no image file" in skipped_note
    assert any("Cardiomegaly" in item["caption"] for item in preview)  # rare findings are previewed
    assert ctx.dataset.name == "nih-cxr14-1000"


def test_generic_csv_with_column_mapping(app, tmp_path):
    import numpy as np
    from PIL import Image

    ctx, client = app
    folder = tmp_path / "mydata"
    (folder / "img").mkdir(parents=True)
    rows = ["file,sex,findings,pid"]
    rng = np.random.default_rng(0)
    for i in range(30):
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(folder / "img" / f"{i}.png")
        rows.append(f"img/{i}.png,{'FM'[i % 2]},{'Nodule' if i % 5 == 0 else 'No Finding'},p{i // 2}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    cols = client.predict(str(folder), None, "", api_name="/read_columns")
    assert cols[-1] == "Columns of the CSV: file, sex, findings, pid"
    args = load_args(SOURCES[1], str(folder), size=16)
    args[3] = "csv"
    args[6:12] = ["labels.csv", "file", "pid", ["sex"], "findings", "|"]
    status, info, *_ = client.predict(*args, api_name="/load_data")
    assert "30 images" in info and "15 patients" in info and "Nodule" in info
    assert ctx.dataset.general_names == ["sex"]


def test_workspace_files_are_not_served(app):
    import urllib.error
    import urllib.request

    ctx, client = app
    secret = ctx.workspace.root / "jobs.json"
    assert secret.exists()
    for route in ("gradio_api/file=", "file="):
        try:
            with urllib.request.urlopen(f"{client.src.rstrip('/')}/{route}{secret}", timeout=10) as r:
                body = r.read()
        except urllib.error.HTTPError as exc:
            assert exc.code in (403, 404)
        else:
            assert b'"jobs"' not in body


def test_pages_do_not_show_the_workspace_path(app):
    """A demo server on a hospital network must not tell web users its folder layout: the header
    names the workspace folder only, and nothing on the page or in its config has the full path."""
    import urllib.request

    ctx, client = app
    root = str(ctx.workspace.root)
    for route in ("", "config"):
        with urllib.request.urlopen(f"{client.src.rstrip('/')}/{route}", timeout=30) as r:
            body = r.read().decode("utf-8")
        assert root not in body and root.replace("/", "\\/") not in body, route
        assert ctx.workspace.root.name in body  # the header still says which workspace this is
        assert "study database studies.sqlite: integrity ok" in body  # the admin panel's start-up check
    msg = refused(client, "no-such-run", "latest", 16, 0, [], "any", "any", "any", "any", api_name="/generate")
    assert root not in msg and "does not exist in workspace/runs" in msg, msg
