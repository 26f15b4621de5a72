"""The UI's small pure helpers: crisp upscaling, zip upload safety, memorisation ranking, export plan,
readable messages, and run status after a restart."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from _imagesets import make_imageset
from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError


def tiny_set(n: int = 12, size: int = 8) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, size, size), dtype=torch.uint8, generator=g)
    general = torch.tensor([[i % 2, (i // 2) % 2] for i in range(n)])
    detailed = torch.zeros(n, 2, dtype=torch.uint8)
    detailed[:3, 0] = 1  # 3 x finding A
    detailed[3:4, 1] = 1  # 1 x finding B
    return make_imageset(images, general_values={"sex": ["F", "M"], "view": ["AP", "PA"]}, general=general,
                         findings=["A", "B"], detailed=detailed, patient_id=np.arange(n).astype(str),
                         source=[f"x{i}" for i in range(n)])


def test_upscale_is_nearest_neighbour():
    from medgan_ui.ui.widgets import side_by_side, upscale

    img = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    big = np.asarray(upscale(img, px=8))
    assert big.shape == (8, 8) and set(np.unique(big)) == {0, 255}  # no smoothed grey in between
    assert (big[:4, :4] == 0).all() and (big[:4, 4:] == 255).all()
    pair = side_by_side(np.zeros((4, 4), np.uint8), np.ones((8, 8), np.uint8))
    assert pair.shape == (8, 18)


def test_zip_upload_is_unpacked_and_path_escape_refused(tmp_path):
    from medgan_ui.ui.data_tab import extract_zip

    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("mydata/a.png", b"x")
    folder = extract_zip(good, tmp_path / "uploads")
    assert folder.name == "mydata" and (folder / "a.png").exists()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../outside.txt", b"x")
    with pytest.raises(UserError, match="unsafe path"):
        extract_zip(evil, tmp_path / "uploads")
    assert not (tmp_path / "outside.txt").exists()


def test_export_plan_tops_up_rare_cells_and_reads_back():
    from medgan_ui.gan.base import LabelSchema
    from medgan_ui.ui.browse_tab import cell_plan, cells_from_plan

    ds = tiny_set()
    plan = cell_plan(LabelSchema.from_imageset(ds), ds, target=2)
    assert len(plan) == 4 * 3  # 2 sexes x 2 views x (A, B, No Finding)
    assert int(plan["real images"].sum()) == len(ds)
    row = plan[(plan.sex == "F") & (plan.view == "AP") & (plan.finding == "A")].iloc[0]
    assert row["real images"] == 1 and row["to generate"] == 1
    cells = cells_from_plan(plan, ["sex", "view"])
    assert sum(n for _, _, n in cells) == int(plan["to generate"].sum())
    assert ({"sex": "F", "view": "AP"}, ["A"], 1) in cells
    plan.loc[0, "to generate"] = -1
    with pytest.raises(UserError, match="negative"):
        cells_from_plan(plan, ["sex", "view"])
    gone = cell_plan(LabelSchema.from_imageset(ds), None, target=2)  # data gone: real counts unknown
    assert list(gone["real images"]) == ["?"] * 12 and list(gone["to generate"]) == [2] * 12


def test_messages_are_plain_sentences():
    import gradio as gr

    from medgan_ui.ui.errors import friendly, message_for

    assert message_for(KeyError("value 'X' not found for general label 'sex'")) == "value 'X' not found for general label 'sex'"
    assert "out of memory" in message_for(MemoryError())

    @friendly
    def bad():
        raise UserError("steps must be at least 1 (got 0)")

    @friendly
    def crash():
        raise RuntimeError("boom")

    with pytest.raises(gr.Error, match="steps must be at least 1"):
        bad()
    with pytest.raises(gr.Error, match="unexpected error .RuntimeError: boom."):
        crash()


def test_messages_name_the_workspace_not_its_path(tmp_path):
    """A message shown in the UI never carries the server's workspace path (the server log does)."""
    import gradio as gr

    from medgan_ui.ui.errors import friendly, hide_folder, message_for

    root = tmp_path / "ws-secret-layout"
    hide_folder(root, "workspace")

    @friendly
    def missing_run():
        raise UserError(f"run 'r1' does not exist in {root / 'runs'}; pick one from the list")

    with pytest.raises(gr.Error) as info:
        missing_run()
    assert str(root) not in info.value.message and "in workspace/runs;" in info.value.message
    msg = message_for(FileNotFoundError(2, "No such file or directory", str(root / "datasets" / "x.npz")))
    assert msg == "No such file or directory: workspace/datasets/x.npz"
    assert "unexpected error" in message_for(RuntimeError(f"bad header in {root}/jobs.json"))
    assert str(root) not in message_for(RuntimeError(f"bad header in {root}/jobs.json"))


def test_run_list_after_restart_shows_interrupted_run(tmp_path):
    from medgan_ui.gan.runs import list_runs
    from medgan_ui.workspace import Workspace, atomic_write_json

    ws = Workspace(tmp_path)
    folder = ws.runs / "gdgan-1"
    folder.mkdir()
    atomic_write_json(folder / "config.json", {"kind": "gdgan", "train": {"preset": "tiny", "steps": 50}})
    # what a killed app leaves behind: the engine said "running" from a process that is gone
    atomic_write_json(folder / "status.json", {"status": "running", "step": 20, "total": 50, "pid": 999_999_999,
                                               "host": "elsewhere"})
    rows = list_runs(ws)
    assert rows == [{"run_id": "gdgan-1", "model": "gdgan", "preset": "tiny", "status": "interrupted", "step": 20,
                     "total": 50, "dataset": None, "checkpoint": None, "updated": None, "message": "",
                     "job_id": None}]


def test_background_dataset_load_says_it_is_still_loading(tmp_path):
    import threading

    from medgan_ui.ui.context import AppContext

    ctx = AppContext.create(tmp_path)
    gate = threading.Event()
    ds = tiny_set()
    ctx.load_in_background(lambda: (gate.wait(10), ds)[1])
    with pytest.raises(UserError, match="still being prepared"):
        ctx.require_dataset()
    gate.set()
    assert ctx.wait_for_dataset(timeout=10) is ds and ctx.require_dataset() is ds and not ctx.loading

    def broken():
        raise UserError("demo cache is damaged")

    ctx2 = AppContext.create(tmp_path)
    ctx2.load_in_background(broken)
    assert ctx2.wait_for_dataset(timeout=10) is None and ctx2.load_error == "demo cache is damaged"
    with pytest.raises(UserError, match="no dataset is loaded"):
        ctx2.require_dataset()


def test_serve_flags_and_auth_pairs():
    import argparse

    from medgan_ui.cli.serve import add_serve_args
    from medgan_ui.security.credentials import parse_pairs

    p = argparse.ArgumentParser()
    add_serve_args(p)
    a = p.parse_args(["--workspace", "w", "--port", "8000", "--auth", "ann:pw1", "--auth", "bob:p:w", "--share",
                      "--admin-password", "secret"])
    assert (a.workspace, a.port, a.share, a.admin_password, a.host) == ("w", 8000, True, "secret", "127.0.0.1")
    assert parse_pairs(a.auth, "--auth") == [("ann", "pw1"), ("bob", "p:w")]
    with pytest.raises(UserError, match="USER:PASSWORD"):
        parse_pairs(["ann"], "--auth")
