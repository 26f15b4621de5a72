"""Compare tab: form -> config, an experiment run as a background job through the app's API, results shown."""
from __future__ import annotations

import time

import pytest
import torch

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.errors import UserError
from medgan_ui.ui.compare_tab import config_from_form, progress_html, show_experiment

torch.set_num_threads(1)
FORM = dict(targets=["Effusion"], base=["none", "oversample"], synth=[], classifier="fridadar", width=0.25,
            init="scratch", weights="", splits=2, epochs=1, patience=1, batch=32, lr=1e-3, ratio=1.0, seed=0,
            controls=[], doses="")


def test_config_from_form():
    cfg = config_from_form(**{**FORM, "synth": ["gdgan-1"]})
    assert cfg.strategies == ["none", "oversample", "synthetic:gdgan-1"] and cfg.width == 0.25
    assert not cfg.equal_steps and not cfg.synthetic_negatives and cfg.doses == []
    cfg = config_from_form(**{**FORM, "synth": ["g"], "doses": "0.5, 2", "controls": [
        "classic on top of synthetic", "train on synthetic only (TSTR)", "synthetic negatives", "equal optimisation steps"]})
    assert cfg.strategies == ["none", "oversample", "synthetic:g", "classic+synthetic:g", "tstr:synthetic:g"]
    assert cfg.equal_steps and cfg.synthetic_negatives and cfg.doses == [0.5, 2.0]
    with pytest.raises(UserError, match="doses 'half'"):
        config_from_form(**{**FORM, "doses": "half"})
    with pytest.raises(UserError, match="target"):
        config_from_form(**{**FORM, "targets": []})
    with pytest.raises(UserError, match="weights file"):
        config_from_form(**{**FORM, "init": "imagenet"})
    assert config_from_form(**{**FORM, "init": "imagenet", "weights": "/w.pth"}).init == "imagenet:/w.pth"
    with pytest.raises(UserError, match="epochs is empty"):
        config_from_form(**{**FORM, "epochs": None})
    assert "No experiment running" in progress_html(None)



def test_gan_strategies_from_the_form(tmp_path):
    from medgan_ui.ui.compare_tab import strategy_choices
    from medgan_ui.workspace import Workspace

    cfg = config_from_form(**{**FORM, "synth": ["gan:dcgan@tiny:40", "gdgan-1", "synthetic:a+b"]})
    assert cfg.strategies == ["none", "oversample", "gan:dcgan@tiny:40", "synthetic:gdgan-1", "synthetic:a+b"]

    class Ctx:  # what strategy_choices reads of the app context
        workspace = Workspace(tmp_path / "ws")

        @staticmethod
        def list_runs():
            return [{"run_id": "dcgan-1", "status": "finished"}]

    choices = strategy_choices(Ctx())
    assert "gan:gdgan@fast-cpu" in choices and "gan:ddpm@fast-cpu" in choices and choices[-1] == "dcgan-1"


def test_experiment_job_through_the_app_api(tmp_path):
    gr = pytest.importorskip("gradio")
    client_mod = pytest.importorskip("gradio_client")
    from medgan_ui.ui.compare_tab import build_compare_tab
    from medgan_ui.ui.context import AppContext

    ctx = AppContext.create(tmp_path / "ws")
    ctx.set_dataset(demo_imageset(n=300, size=32, seed=3))
    with gr.Blocks() as demo:
        build_compare_tab(ctx)
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    try:
        client = client_mod.Client(demo.local_url, verbose=False)
        with pytest.raises(Exception, match="only|patients|not in dataset"):
            client.predict(*{**FORM, "targets": ["Hernia"]}.values(), api_name="/compare_start")
        msg = client.predict(*FORM.values(), api_name="/compare_start")
        assert "queued" in (msg if isinstance(msg, str) else msg[0])
        deadline = time.monotonic() + 300
        while ctx.jobs.active("experiment") and time.monotonic() < deadline:
            time.sleep(0.5)
        job = ctx.jobs.jobs()[0]
        assert job["status"] == "done", job
        table, roc, fig, conf, head = show_experiment(ctx, job["result"]["id"])
        assert list(table["strategy"]) == ["none", "oversample"] and table["p boot"].notna().tolist() == [False, True]
        assert {"AUC (pooled)", "fold mean", "fold SD", "Δ vs none", "p corr. t (Holm)", "sens@spec"} <= set(table)
        assert set(roc.columns) == {"strategy", "fpr", "tpr"} and len(roc) == 2 * 101
        assert fig is not None and conf is not None and "Effusion" in head
    finally:
        demo.close()
        ctx.jobs.shutdown()


def test_generator_metrics_tables(tmp_path):
    """A metrics result shown as the tab shows it: domain IS column, Welch-over-seeds table, what n is."""
    import json

    import numpy as np
    from _synthetic_sets import write_synthetic_set as _write_set

    from medgan_ui.evaluate.gan_metrics import evaluate_gan
    from medgan_ui.ui.compare_tab import show_metrics
    from medgan_ui.ui.context import AppContext

    ctx = AppContext.create(tmp_path / "ws")
    ds = demo_imageset(n=200, size=32, seed=3)
    ds.split = np.where(np.arange(len(ds)) < 150, 0, 2).astype(np.int8)
    _write_set(ctx.workspace, "a", ds, np.arange(40), noise=4.0)
    _write_set(ctx.workspace, "b", ds, np.arange(40), noise=40.0)
    out = evaluate_gan(ctx.workspace, ds, ["a", "b"], n=20, extractor_epochs=1)
    table, welch, notes = show_metrics(ctx, out["id"])
    assert list(table["model"])[2:] == ["a", "b"] and "domain IS" in table and "IS" not in table
    assert {"FID", "FID floor", "KID floor", "NN-SSIM to training", "IS chunk SD (sampling noise)"} <= set(table)
    assert set(table["n"]) == {out["results"]["n"]}
    assert list(welch["note"]) == ["one seed per model: no test"] and "Welch p (domain IS)" in welch
    assert f"n = {out['results']['n']} images" in notes and "held-out patients" in notes
    metrics = tmp_path / "ws" / "experiments" / out["id"] / "metrics.json"
    old = {k: v for k, v in json.loads(metrics.read_text()).items() if k != "real_sets"}
    metrics.write_text(json.dumps(old))
    with pytest.raises(UserError, match="older version"):
        show_metrics(ctx, out["id"])
    ctx.jobs.shutdown()
