"""`medgan train / sample / runs` end to end on the demo phantom (tiny preset), and their bad-input messages."""
from __future__ import annotations

import json

import pydicom
import pytest
import torch

from medgan_ui.cli import main
from medgan_ui.workspace import read_json

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cli") / "ws")


def _train(ws, *extra):
    return main(["train", "--model", "gdgan", "--data", "demo", "--preset", "tiny", "--no-progress",
                 "--workspace", ws, *extra])


def test_train_sample_runs(ws, capsys, tmp_path):
    assert _train(ws, "--steps", "4", "--seed", "5", "--set", "log_every=2") == 0
    out = capsys.readouterr().out
    assert "finished: finished 4 steps" in out
    assert main(["runs", "--json", "--workspace", ws]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 1 and rows[0]["status"] == "finished" and rows[0]["step"] == 4 and rows[0]["model"] == "gdgan"
    run_id = rows[0]["run_id"]
    config = read_json(f"{ws}/runs/{run_id}/config.json")
    assert config["train"]["seed"] == 5 and config["train"]["log_every"] == 2 and config["dataset"]["name"] == "demo"

    assert main(["runs", "--workspace", ws]) == 0
    assert run_id in capsys.readouterr().out

    out_dir = tmp_path / "synth"
    assert main(["sample", run_id, "--n", "3", "--general", "sex=M,view=PA", "--findings", "Cardiomegaly",
                 "--seed", "2", "--out", str(out_dir), "--workspace", ws]) == 0
    folder = out_dir / capsys.readouterr().out.strip().split("/")[-1]
    assert sorted(p.name for p in folder.iterdir()) == ["00000.png", "00001.png", "00002.png", "labels.csv",
                                                        "manifest.json"]
    assert "M,PA,Cardiomegaly" in (folder / "labels.csv").read_text()
    assert main(["sample", run_id, "--n", "1", "--dicom", "--checkpoint", "step_000003", "--workspace", ws]) == 0
    dcm_folder = capsys.readouterr().out.strip()
    ds = pydicom.dcmread(next(iter(sorted(__import__("pathlib").Path(dcm_folder).glob("*.dcm")))))
    assert "SYNTHETIC" in ds.ImageComments and read_json(f"{dcm_folder}/manifest.json")["checkpoint"] == "step_000003.pt"

    # resume with a higher step budget continues the same run
    assert main(["train", "--resume", run_id, "--steps", "6", "--no-progress", "--workspace", ws]) == 0
    assert "finished 6 steps" in capsys.readouterr().out
    steps = [json.loads(x)["step"] for x in open(f"{ws}/runs/{run_id}/metrics.jsonl")]
    assert steps == [2, 3, 4, 6]  # log_every 2 plus the checkpoint/grid boundaries of the tiny preset


def test_epochs_become_steps(ws, capsys):
    # the demo's train split has 1400 images: batch 700 -> 2 steps per epoch
    assert _train(ws, "--epochs", "2", "--batch-size", "700") == 0
    capsys.readouterr()
    main(["runs", "--json", "--workspace", ws])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(r["total"] == 4 and r["step"] == 4 for r in rows)


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "5000"], "batch size 5000 does not fit"),
    (["--steps", "0"], "steps must be at least 1"),
    (["--set", "nonsense=1"], "unknown setting"),
    (["--set", "lr_g"], "expected KEY=VALUE"),
    (["--image-size", "30"], "image_size"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"], "device"),
])
def test_train_bad_input(ws, capsys, args, message):
    assert _train(ws, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_other_bad_input(ws, capsys):
    assert main(["train", "--resume", "gdgan-missing", "--workspace", ws]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["train", "--data", "demo", "--workspace", ws]) == 2
    assert "needs --model and --data" in capsys.readouterr().err
    assert main(["sample", "gdgan-missing", "--workspace", ws]) == 2
    assert "not found" in capsys.readouterr().err
    main(["runs", "--json", "--workspace", ws])
    run_id = json.loads(capsys.readouterr().out.splitlines()[0])["run_id"]
    assert main(["sample", run_id, "--general", "sex", "--workspace", ws]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["sample", run_id, "--findings", "Pneumonia", "--workspace", ws]) == 2
    assert "Pneumonia" in capsys.readouterr().err
