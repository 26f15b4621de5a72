"""The diffusion families beyond the family contract (tests/gan/test_family_contract.py runs that):
bad settings fail with a message before any compute, the per-call sampling settings change the
output (and only through the model), gd-ddpm returns stage pairs, and the conditioning input keeps
"dropped" apart from "no finding"."""
from __future__ import annotations

import re

import pytest
import torch

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.errors import UserError
from medgan_ui.gan.base import LabelSchema
from medgan_ui.gan.config import make_configs
from medgan_ui.gan.grid import encode_labels
from medgan_ui.gan.registry import build_model


@pytest.fixture(scope="module")
def schema() -> LabelSchema:
    return LabelSchema.from_imageset(demo_imageset(n=16, size=16, seed=0))


def _model(kind: str, schema: LabelSchema, steps: int = 3, **over):
    torch.manual_seed(0)
    tc, mc = make_configs(kind, "tiny", device="cpu", **over)
    model = build_model(kind, mc, tc, schema, torch.device("cpu"))
    ds = demo_imageset(n=16, size=16, seed=0)
    from medgan_ui.gan.base import Batch

    for step in range(steps):  # a few steps so the EMA net is not the random init only
        batch = Batch(ds.images[:8].float().div(127.5).sub(1).unsqueeze(1), ds.general[:8], ds.detailed[:8].float())
        model.train_step(batch, step)
        model.update_ema(step)
    return model


def _inputs(model, schema, findings=(), n=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = model.noise(n, generator=gen)
    g, d = encode_labels(schema, {"sex": "F", "view": "PA"}, list(findings), n, torch.device("cpu"), gen)
    return z, g, d


@pytest.mark.parametrize("over, words", [
    ({"guidance_scale": -0.5}, "guidance scale must be 0 or more"),
    ({"sample_steps": 0}, "sampling steps must be between 1 and"),
    ({"sample_steps": 51}, "training schedule's 50"),  # tiny trains on 50 timesteps
    ({"image_size": 17}, "image_size 17 does not fit this UNet"),  # tiny halves once
    ({"image_size": 32, "channel_mult": "1,2,2,2,2,2"}, "multiple of 32"),
    ({"norm_groups": 3}, "norm_groups 3 must divide"),
    ({"attn_levels": "5"}, "attn_levels '5'"),
    ({"sampler": "euler"}, "sampler 'euler' is unknown"),
    ({"p_uncond": 1.0}, "p_uncond must be in [0, 1)"),
])
def test_bad_settings_are_refused_with_the_field_named(over, words):
    with pytest.raises(UserError, match=re.escape(words)):
        make_configs("ddpm", "tiny", **over)


@pytest.mark.parametrize("strength", [0.0, -0.1, 1.5])
def test_gd_ddpm_strength_outside_0_1_is_refused(strength, schema):
    with pytest.raises(UserError, match=r"strength must be in \(0, 1\]"):
        make_configs("gd-ddpm", "tiny", strength=strength)
    model = _model("gd-ddpm", schema, steps=0)
    z, g, d = _inputs(model, schema)
    with pytest.raises(UserError, match="strength must be in"):
        model.generate(z, g, d, strength=strength)
    with pytest.raises(UserError, match="sampling steps must be between 1 and"):
        model.generate(z, g, d, steps=1000)
    with pytest.raises(UserError, match="guidance scale must be 0 or more"):
        model.generate(z, g, d, guidance=-1)


def test_guidance_steps_and_labels_change_the_output_and_z_fixes_it(schema):
    model = _model("ddpm", schema)
    z, g, d = _inputs(model, schema)
    base = model.generate(z, g, d)["images"]
    assert base.shape == (4, 1, 16, 16) and base.min() >= -1 and base.max() <= 1
    assert torch.equal(base, model.generate(z, g, d)["images"])  # same z, same images
    assert not torch.equal(base, model.generate(z, g, d, guidance=4.0)["images"])
    assert not torch.equal(base, model.generate(z, g, d, steps=2)["images"])
    _, _, d_card = _inputs(model, schema, ["Cardiomegaly"])
    assert not torch.equal(base, model.generate(z, g, d_card)["images"])
    # guidance 0 is the unconditional prediction: the labels no longer matter
    assert torch.equal(model.generate(z, g, d, guidance=0.0)["images"], model.generate(z, g, d_card, guidance=0.0)["images"])


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver"])
def test_gd_ddpm_returns_stage_pairs_and_strength_moves_only_stage_2(schema, sampler):
    model = _model("gd-ddpm", schema, sampler=sampler)
    z, g, d = _inputs(model, schema, ["Cardiomegaly"])
    assert z.shape == (4, 2, 16, 16)  # initial noise and stage-2 re-noising noise
    out = model.generate(z, g, d)
    assert set(out) == {"images", "stage1"} and out["images"].shape == out["stage1"].shape == (4, 1, 16, 16)
    weak = model.generate(z, g, d, strength=0.25)
    assert torch.equal(weak["stage1"], out["stage1"])
    assert not torch.equal(weak["images"], out["images"])
    # stage 1 ignores the findings (conditioned on the general labels only)
    _, _, d_none = _inputs(model, schema)
    assert torch.equal(model.generate(z, g, d_none)["stage1"], out["stage1"])
    # a weak re-noising keeps stage 2 closer to stage 1 than a strong one
    near = (weak["images"] - weak["stage1"]).abs().mean()
    far = (model.generate(z, g, d, strength=1.0)["images"] - out["stage1"]).abs().mean()
    assert near < far


def test_condition_marks_dropped_labels_apart_from_absent_ones(schema):
    model = _model("ddpm", schema, steps=0)
    g = torch.tensor([[0, 1], [-1, 0]])
    d = torch.tensor([[1.0, 0, 0], [0, 0, 0]])
    no, yes = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    y = model.condition(g, d, no, no)
    assert y.tolist() == [[1, 0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0, 0]]
    dropped = model.condition(g, d, yes, yes)
    assert dropped.tolist() == [[0] * 7 + [1, 1]] * 2
    findings_only_dropped = model.condition(g, d, no, yes)
    assert findings_only_dropped[0].tolist() == [1, 0, 0, 1, 0, 0, 0, 0, 1]


def test_gd_ddpm_needs_general_labels_and_findings():
    bare = LabelSchema([], {}, ["Cardiomegaly"], 16)
    tc, mc = make_configs("gd-ddpm", "tiny", device="cpu")
    with pytest.raises(UserError, match="needs at least one general label"):
        build_model("gd-ddpm", mc, tc, bare, torch.device("cpu"))
    tc, mc = make_configs("ddpm", "tiny", device="cpu")
    build_model("ddpm", mc, tc, bare, torch.device("cpu"))  # ddpm can


def test_gd_ddpm_trains_under_torchrun_two_cpu_processes(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    from _paths import ROOT
    from medgan_ui.gan import checkpoint as ck

    ws = tmp_path / "ws"
    run = [shutil.which("torchrun")] if shutil.which("torchrun") else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*run, "--standalone", "--nproc_per_node", "2", "-m", "medgan_ui.cli", "train", "--model", "gd-ddpm",
           "--data", "demo", "--preset", "tiny", "--steps", "4", "--device", "cpu", "--no-progress",
           "--workspace", str(ws)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    (run_dir,) = list((ws / "runs").iterdir())
    state = ck.load(ck.resolve(run_dir / "checkpoints"))
    assert state["step"] == 4 and len(state["rng"]) == 2  # both ranks' RNG streams, for an exact resume
    assert (run_dir / "samples" / "latest.png").is_file()


def test_cli_samples_gd_ddpm_with_per_call_settings_and_refuses_bad_ones(tmp_path, capsys):
    from medgan_ui.cli import main
    from medgan_ui.workspace import read_json

    ws = str(tmp_path / "ws")
    assert main(["train", "--model", "gd-ddpm", "--data", "demo", "--preset", "tiny", "--steps", "3", "--no-progress",
                 "--workspace", ws]) == 0
    main(["runs", "--json", "--workspace", ws])
    import json

    run_id = json.loads(capsys.readouterr().out.splitlines()[-1])["run_id"]
    out = tmp_path / "sets"
    for bad, words in (("strength=1.5", "strength must be in (0, 1]"), ("steps=0", "sampling steps must be"),
                       ("guidance=-1", "guidance scale must be 0 or more"), ("eta=1", "no sampling setting(s) ['eta']"),
                       ("strength=much", "expected a number")):
        assert main(["sample", run_id, "--n", "2", "--sampling", bad, "--out", str(out), "--workspace", ws]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err
    assert not out.exists()  # refused before any set folder was made
    assert main(["sample", run_id, "--n", "2", "--sampling", "strength=0.5,steps=3", "--out", str(out),
                 "--workspace", ws]) == 0
    folder = out / capsys.readouterr().out.strip().split("/")[-1]
    assert read_json(folder / "manifest.json")["sampling"] == {"strength": 0.5, "steps": 3}
    assert len(list(folder.glob("*.png"))) == 2
