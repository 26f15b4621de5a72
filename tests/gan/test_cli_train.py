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


def _first_run(ws, capsys) -> str:
    main(["runs", "--json", "--workspace", ws])
    lines = capsys.readouterr().out.splitlines()
    if not lines:  # run alone (-k): train one first
        assert _train(ws, "--steps", "3") == 0
        capsys.readouterr()
        return _first_run(ws, capsys)
    return json.loads(lines[0])["run_id"]


def test_sample_top_up_fills_every_cell(ws, capsys, tmp_path):
    import csv
    from collections import Counter
    from pathlib import Path

    from medgan_ui.data.load import load_dataset
    from medgan_ui.data.readers.base import ReadOptions
    from medgan_ui.gan.feed import training_part

    run_id = _first_run(ws, capsys)
    target = 11  # the demo's rarest cells (e.g. M, AP, Cardiomegaly) have fewer: a few images to generate
    assert main(["sample", run_id, "--top-up", str(target), "--seed", "1", "--out", str(tmp_path / "synth"),
                 "--workspace", ws]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["sex", "view", "finding", "real", "images", "to", "generate"]
    end = next(i for i, line in enumerate(lines) if line.startswith("16 cells,"))
    plan = {}
    for line in lines[1:end]:
        parts = line.split()
        plan[(parts[0], parts[1], " ".join(parts[2:-2]))] = (int(parts[-2]), int(parts[-1]))
    assert len(plan) == 2 * 2 * 4

    # real counts, image by image from the run's data loaded independently
    pool = training_part(load_dataset("demo", options=ReadOptions(size=16), workspace=None))
    real = Counter()
    for i in range(len(pool)):
        g = pool.general_label(i)
        for finding in pool.finding_labels(i) or ["No Finding"]:
            real[(g["sex"], g["view"], finding)] += 1
    assert {k: v[0] for k, v in plan.items()} == {k: real[k] for k in plan}
    assert all(gen == max(0, target - r) for r, gen in plan.values())

    folder = tmp_path / "synth" / lines[-1].split("/")[-1]
    assert lines[-2].startswith(f"wrote {sum(g for _, g in plan.values())} synthetic images")
    made = Counter((r["sex"], r["view"], r["Finding Labels"]) for r in csv.DictReader(open(folder / "labels.csv")))
    assert made == Counter({k: gen for k, (_, gen) in plan.items() if gen})
    assert len(list(folder.glob("*.png"))) == sum(made.values()) > 0
    assert all(real[k] + made[k] >= target for k in plan)

    assert main(["sample", run_id, "--top-up", "3", "--dicom", "--workspace", ws]) == 0
    dcm = Path(capsys.readouterr().out.splitlines()[-1])
    assert len(list(dcm.glob("*.dcm"))) == sum(max(0, 3 - r) for r in real.values()) > 0


def test_sample_top_up_bad_input(ws, capsys, tmp_path):
    import shutil
    from pathlib import Path

    run_id = _first_run(ws, capsys)
    for extra in (["--n", "4"], ["--general", "sex=F"], ["--findings", "Nodule"]):
        assert main(["sample", run_id, "--top-up", "5", *extra, "--workspace", ws]) == 2
        err = capsys.readouterr().err
        assert "--top-up plans the labels and counts itself; drop " + extra[0] in err and "Traceback" not in err
    assert main(["sample", run_id, "--top-up", "0", "--workspace", ws]) == 2
    assert "at least 1" in capsys.readouterr().err
    # a run whose data has gone: the message says which data and what to do
    copy = f"{run_id}-moved"
    shutil.copytree(f"{ws}/runs/{run_id}", f"{ws}/runs/{copy}")
    config = read_json(f"{ws}/runs/{copy}/config.json")
    config["dataset"].update(source_root=str(tmp_path / "gone"), fingerprint="0" * 16)
    (Path(ws) / "runs" / copy / "config.json").write_text(json.dumps(config))
    assert main(["sample", copy, "--top-up", "5", "--workspace", ws]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'gone'} is not there any more" in err and "put it back" in err and "--n" in err
    shutil.rmtree(f"{ws}/runs/{copy}")
