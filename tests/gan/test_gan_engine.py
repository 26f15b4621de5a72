"""The one training engine: run folder contents, progress events, stop, NaN stop, bad input."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from medgan_ui.errors import UserError
from medgan_ui.gan import checkpoint as ck
from medgan_ui.gan import device as device_mod
from medgan_ui.gan import engine
from medgan_ui.gan.config import make_configs
from medgan_ui.gan.device import amp_dtype, autocast, cpu_has_native_bf16, pick_device, precision_name
from medgan_ui.gan.feed import DeviceBatches
from medgan_ui.gan.grid import default_cells
from medgan_ui.gan.base import LabelSchema
from medgan_ui.gan.registry import validate_run as validate
from medgan_ui.gan.runs import Run, list_runs, read_jsonl
from medgan_ui.workspace import Workspace, read_json

torch.set_num_threads(1)


def _run(tmp_path, ds, kind="gdgan", **over):
    tc, mc = make_configs(kind, "tiny", **over)
    ws = Workspace(tmp_path / "ws")
    run_id = Run.create(ws, ds, tc, mc).id
    return ws, run_id, tc, mc


def test_train_writes_metrics_grids_checkpoints_and_events(tmp_path, demo16):
    ws, run_id, tc, mc = _run(tmp_path, demo16, steps=6, log_every=2, sample_every=3, checkpoint_every=3)
    run_dir = ws.run_dir(run_id)
    events = []
    summary = engine.train(demo16, tc, mc, run_dir, on_progress=events.append)
    assert summary["status"] == "finished" and summary["step"] == 6
    assert summary["checkpoint"].endswith("step_000006.pt")
    lines = read_jsonl(run_dir / "metrics.jsonl")
    assert [ln["step"] for ln in lines] == [2, 3, 4, 6]
    for ln in lines:
        assert {"step", "stage", "losses", "img_per_s", "step_time_s", "time", "elapsed_s"} <= set(ln)
        assert "gp" in ln["losses"] and all(isinstance(v, float) for v in ln["losses"].values())
        assert ln["img_per_s"] > 0
        assert ln["device"] == "cpu" and ln["precision"] == precision_name(torch.device("cpu"))
    assert {ln["stage"] for ln in lines} == {1, 2}  # GDGAN's two stages share the step budget
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["latest.png", "step_000003.png", "step_000006.png"]
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000006.pt"
    state = ck.load(run_dir / "checkpoints" / "step_000006.pt")
    assert {"g1", "g1_ema", "d1", "g2", "g2_ema", "d2"} <= set(state["nets"])
    assert set(state["optimizers"]) == {"g1", "d1", "g2", "d2"}
    assert {"torch", "numpy", "python"} <= set(state["rng"][0]) and state["feed"][0]["pos"] > 0
    assert state["config"]["train"]["steps"] == 6 and "augment" in state["extra"]
    assert events[-1]["status"] == "finished" and events[-1]["step"] == 6
    running = [e for e in events if e["status"] == "running"]
    assert {"step", "total", "losses", "img_per_s", "eta_s", "sample_grid", "checkpoint", "message"} <= set(running[0])
    assert any(e["sample_grid"] for e in running) and any(e["checkpoint"] for e in running)
    config = read_json(run_dir / "config.json")
    assert config["kind"] == "gdgan" and config["schema"]["findings"] == demo16.findings
    assert config["dataset"]["name"] == "demo" and config["train"]["preset"] == "tiny"
    assert read_json(run_dir / "manifest.json")["run"] == run_id
    assert list_runs(ws)[0]["status"] == "finished"


def test_cooperative_stop_writes_checkpoint(tmp_path, demo16):
    ws, run_id, tc, mc = _run(tmp_path, demo16, steps=50, log_every=10, checkpoint_every=100, sample_every=100)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 4

    summary = engine.train(demo16, tc, mc, ws.run_dir(run_id), should_stop=stop)
    assert summary["status"] == "stopped" and summary["step"] == 4
    assert summary["checkpoint"].endswith("step_000004.pt")
    assert "--resume" in summary["message"]
    assert Run(ws.run_dir(run_id)).status()["status"] == "stopped"


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, demo16, monkeypatch):
    from medgan_ui.gan import registry

    real_build = registry.build_model

    def poisoned(*a, **k):
        model = real_build(*a, **k)
        step_fn = model.train_step

        def train_step(batch, step):
            out = step_fn(batch, step)
            if step >= 6:  # from the 7th step the weights and losses go bad
                with torch.no_grad():
                    next(model.nets["d1"].parameters()).fill_(float("nan"))
                out["loss_d"] = out["loss_d"] * float("nan")
            return out

        model.train_step = train_step
        return model

    monkeypatch.setattr(registry, "build_model", poisoned)
    ws, run_id, tc, mc = _run(tmp_path, demo16, steps=40, log_every=4, checkpoint_every=4, sample_every=100)
    run_dir = ws.run_dir(run_id)
    summary = engine.train(demo16, tc, mc, run_dir)
    assert summary["status"] == "failed" and summary["step"] == 8
    assert "not finite" in summary["message"] and "step_000004.pt" in summary["message"]
    assert [p.name for p in ck.list_checkpoints(run_dir / "checkpoints")] == ["step_000004.pt"]
    assert ck.resolve(run_dir / "checkpoints").name == "step_000004.pt"
    state = ck.load(run_dir / "checkpoints" / "step_000004.pt")
    assert all(torch.isfinite(t).all() for net in state["nets"].values() for t in net.values() if t.is_floating_point())
    assert Run(run_dir).status()["status"] == "failed"
    assert [ln["step"] for ln in read_jsonl(run_dir / "metrics.jsonl")] == [4]


def test_bad_input_is_refused_before_compute(tmp_path, demo16):
    tc, mc = make_configs("gdgan", "tiny")
    with pytest.raises(UserError, match="batch size 500"):
        validate(demo16, dataclasses.replace(tc, batch_size=500), mc)
    with pytest.raises(UserError, match="steps must be at least 1"):
        validate(demo16, dataclasses.replace(tc, steps=0), mc)
    with pytest.raises(UserError, match="--image-size 32"):
        validate(demo16, dataclasses.replace(tc, image_size=32), mc)
    dtc, dmc = make_configs("dcgan", "tiny", classes="Pneumonia")
    with pytest.raises(UserError, match="'Pneumonia' not in the dataset"):
        validate(demo16, dtc, dmc)
    no_nodule = demo16.subset([i for i in range(len(demo16)) if not demo16.detailed[i, 2]])
    dtc, dmc = make_configs("dcgan", "tiny", classes="Nodule")
    with pytest.raises(UserError, match="no images of Nodule"):
        validate(no_nodule, dtc, dmc)
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(UserError, match="not found"):
        Run.open(ws, "gdgan-nope").resume()
    run_id = Run.create(ws, demo16, tc, mc).id
    with pytest.raises(UserError, match="no checkpoint"):
        Run.open(ws, run_id).resume(dataset=demo16)
    bad = ws.run_dir(run_id) / "checkpoints" / "step_000003.pt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="step_000003.pt cannot be read"):
        Run.open(ws, run_id).resume(dataset=demo16)
    with pytest.raises(UserError, match="step_000009 does not exist|step_000009.pt does not exist"):
        Run.open(ws, run_id).resume(dataset=demo16, checkpoint="step_000009")


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            pick_device("cuda")
    with pytest.raises(UserError, match="unknown device"):
        pick_device("tpu")


def test_mixed_precision_only_where_native(monkeypatch):
    """bf16 autocast on GPUs and CPUs with native bf16 (Ampere+; AVX512-BF16/AMX); fp32 elsewhere or when off."""
    cpu = torch.device("cpu")
    assert amp_dtype(cpu, enabled=False) is None and precision_name(cpu, False) == "fp32"
    assert amp_dtype(torch.device("mps")) is None
    monkeypatch.setattr(device_mod, "cuda_has_native_bf16", lambda: True)
    assert amp_dtype(torch.device("cuda")) is torch.bfloat16
    monkeypatch.setattr(device_mod, "cuda_has_native_bf16", lambda: False)  # e.g. a V100
    assert amp_dtype(torch.device("cuda")) is None
    monkeypatch.undo()
    native = cpu_has_native_bf16()
    assert amp_dtype(cpu) is (torch.bfloat16 if native else None)
    lin = torch.nn.Linear(8, 4)
    with autocast(cpu):
        out = lin(torch.randn(2, 8))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)


def test_device_batches_are_seeded_and_resumable(demo16):
    a = DeviceBatches(demo16, 8, torch.device("cpu"), seed=3)
    first = a.next()
    assert first.images.shape == (8, 1, 16, 16) and first.images.dtype == torch.float32
    assert -1.0 <= float(first.images.min()) and float(first.images.max()) <= 1.0
    assert first.general.dtype == torch.long and first.detailed.shape == (8, 3)
    state = a.state_dict()
    nxt = [a.next().images for _ in range(8)]  # crosses an epoch boundary (48 // 8 = 6 per epoch)
    b = DeviceBatches(demo16, 8, torch.device("cpu"), seed=99)
    b.load_state_dict(state)
    assert all(torch.equal(x, b.next().images) for x in nxt)
    c = DeviceBatches(demo16, 8, torch.device("cpu"), seed=3)
    assert torch.equal(c.next().images, first.images)


def test_grid_cells_cover_label_combinations(demo16):
    cells = default_cells(LabelSchema.from_imageset(demo16))
    assert len(cells) == 16  # 2 sex x 2 view x (none + 3 findings)
    assert ({"sex": "F", "view": "AP"}, []) in cells and ({"sex": "M", "view": "PA"}, ["Nodule"]) in cells
