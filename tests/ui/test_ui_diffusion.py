"""The diffusion families in the app: the Train form fits every family (one learning rate for a
single-net model), and Browse shows gd-ddpm's stage pairs with a working strength control."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402

from medgan_ui.gan.registry import kinds  # noqa: E402
from medgan_ui.ui.data_tab import SOURCES  # noqa: E402
from medgan_ui.ui.train_tab import lr_settings, preset_values  # noqa: E402
from medgan_ui.workspace import read_json  # noqa: E402
from _ui_fixtures import exported_folder, running_app  # noqa: E402

LABELS = ["F", "PA", "any", "any"]


@pytest.mark.parametrize("kind", kinds())
def test_train_form_fills_for_every_family(kind):
    v = preset_values(kind, "fast-cpu")
    assert v["lr_g"] > 0 and v["steps"] > 0
    g, d = lr_settings(kind)
    assert (d is None) == (kind in ("ddpm", "gd-ddpm")) and (v["lr_d"] is None) == (d is None)


def test_gd_ddpm_trains_and_browse_shows_stage_pairs_with_strength(tmp_path):
    with running_app(tmp_path / "ws") as (ctx, demo):
        client = Client(demo.local_url, verbose=False, download_files=str(tmp_path / "dl"))
        client.predict(SOURCES[0], "", None, "auto", 32, "crop", "", None, None, [], None, "|", [],
                       api_name="/load_data")
        _status, sel, _ = client.predict("gd-ddpm", "tiny", 6, 8, 1, 1e-3, None, "none", api_name="/start_training")
        run_id = sel["value"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ctx.jobs.active():
            time.sleep(0.5)
        assert ctx.workspace.run_dir(run_id).joinpath("checkpoints").is_dir() and not ctx.jobs.active()

        out = client.predict(run_id, api_name="/select_run")
        info, strength = out[0], out[-1]
        assert "gd-ddpm" in info and "stage 1" in info and "strength" in info
        assert strength["visible"] and strength["value"] == 0.8  # shown, filled with the run's setting

        def images(s: float) -> list[bytes]:
            gallery, *_ = client.predict(run_id, "latest", 3, 5, ["Cardiomegaly"], *LABELS, s, api_name="/generate")
            assert len(gallery) == 3 and all("F · PA · Cardiomegaly" in g["caption"] for g in gallery)
            return [Path(g["image"]).read_bytes() for g in gallery]

        weak, strong = images(0.3), images(1.0)
        assert weak != strong and images(0.3) == weak  # strength moves stage 2; same seed, same images
        from PIL import Image

        one = client.predict(run_id, "latest", 1, 5, [], *LABELS, 0.5, api_name="/generate")[0][0]
        w, h = Image.open(one["image"]).size
        assert w > 1.8 * h  # stage 1 | stage 2 side by side

        plan = client.predict(run_id, 2, api_name="/export_plan")
        note = client.predict(run_id, "latest", plan, "PNG + labels.csv", 0, 0.5, api_name="/export")
        folder = exported_folder(ctx, note)
        assert read_json(folder / "manifest.json")["sampling"] == {"strength": 0.5}  # the slider's strength
