"""Scale-out and resume (cells.py): shares of the fold x strategy cells run apart and merged give the
one-process results; finished cells are reused; mismatched settings, bad shares and missing cells refused."""
from __future__ import annotations

import json

import pytest
import torch

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.errors import UserError
from medgan_ui.evaluate import cells as C
from medgan_ui.evaluate import experiment as E
from medgan_ui.evaluate.experiment import ExperimentConfig, run_experiment
from medgan_ui.evaluate.merge import merge_experiment
from medgan_ui.workspace import Workspace

torch.set_num_threads(1)
ARMS = ["none", "oversample", "undersample"]


@pytest.fixture(scope="module")
def ds():
    return demo_imageset(n=240, size=32, seed=3)


@pytest.fixture(scope="module")
def single(ds, tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("one"))
    return run_experiment(_cfg(), ws, dataset=ds)


def _cfg(**kw) -> ExperimentConfig:
    base = dict(targets=["Effusion"], strategies=ARMS, classifier="fridadar", width=0.25,
                folds=2, epochs=1, patience=1, batch_size=32, n_boot=100, seed=0)
    return ExperimentConfig(**{**base, **kw})


def _aucs(res):
    return {s: (e["auc_per_fold"], e["auc_pooled"], e["auc_pooled_ci95"]) for s, e in res["targets"]["Effusion"].items()}


def test_two_shares_and_merge_equal_one_process(ds, single, tmp_path):
    ws = Workspace(tmp_path / "ws")
    a = run_experiment(_cfg(), ws, dataset=ds, exp_id="shared", cells="0/2")
    assert a["status"] == "partial" and a["results"] is None
    cell_dir = ws.experiment_dir("shared") / "cells"
    assert sorted(p.stem for p in cell_dir.iterdir()) == sorted(  # cells 0, 2, 4 of 6 (round robin)
        ["repeat0-fold0-none", "repeat0-fold0-undersample", "repeat0-fold1-oversample"])
    with pytest.raises(UserError, match=r"3 of 6 cell\(s\) not finished: repeat0-fold0-oversample, "
                                        r"repeat0-fold1-none, repeat0-fold1-undersample"):
        merge_experiment(ws, "shared", dataset=ds)
    b = run_experiment(_cfg(), ws, dataset=ds, exp_id="shared", cells=(1, 2))
    assert b["status"] == "done"  # the last share merges
    assert _aucs(b["results"]) == _aucs(single["results"])
    m = merge_experiment(ws, "shared", dataset=ds)
    assert _aucs(m["results"]) == _aucs(single["results"])
    assert json.loads((ws.experiment_dir("shared") / "results.json").read_text())["status"] == "done"


def test_torchrun_env_gives_the_share(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert C.parse_cells(C.share_from_env()) == (2, 4)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert C.share_from_env() is None and C.parse_cells(None) is None and C.parse_cells("1/3") == (1, 3)


def test_resume_reuses_finished_cells(ds, single, tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    calls = {"n": 0}

    def stop_after_two() -> bool:  # a user pressing Stop once two cells are on disk
        return len(list((ws.experiment_dir("resumable") / "cells").glob("*.json"))) >= 2

    real_one = E.train_cell

    def counting(*a, **k):
        calls["n"] += 1
        return real_one(*a, **k)

    monkeypatch.setattr(E, "train_cell", counting)
    first = run_experiment(_cfg(), ws, dataset=ds, exp_id="resumable", should_stop=stop_after_two)
    assert first["status"] == "stopped" and calls["n"] == 2
    calls["n"] = 0
    again = run_experiment(_cfg(), ws, dataset=ds, exp_id="resumable")
    assert again["status"] == "done" and calls["n"] == 4  # only the 4 unfinished cells trained
    assert any("resumed: 2 finished cell(s)" in n for n in again["results"]["notes"])
    assert _aucs(again["results"]) == _aucs(single["results"])
    calls["n"] = 0  # statistics-only settings may change: every cell is reused, the results recomputed
    more = run_experiment(_cfg(n_boot=200), ws, dataset=ds, exp_id="resumable")
    assert calls["n"] == 0 and more["results"]["config"]["n_boot"] == 200
    assert _aucs(more["results"])["none"][0] == _aucs(single["results"])["none"][0]
    with pytest.raises(UserError, match=r"already exists with other settings \(epochs: 1 there, 2 now\)"):
        run_experiment(_cfg(epochs=2), ws, dataset=ds, exp_id="resumable")


@pytest.mark.parametrize("cells, exp_id, message", [
    ("3/2", "x", r"--cells 3/2: process index 3 must be below the process count 2"),
    ("1of2", "x", r"--cells '1of2': write i/N"),
    ("0/0", "x", r"process count must be at least 1"),
    ("0/2", None, r"give them the same fixed id \(--id NAME\)"),
    ("0/2", "../x", r"experiment id '../x': invalid id"),
])
def test_bad_shares_refused_before_compute(ds, tmp_path, cells, exp_id, message):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(UserError, match=message):
        run_experiment(_cfg(), ws, dataset=ds, exp_id=exp_id, cells=cells)
    assert not any(ws.experiments.iterdir())
    with pytest.raises(UserError, match="no experiment of that id"):
        merge_experiment(ws, "ghost", dataset=ds)


def test_cli_shares_in_two_processes_then_merge(tmp_path, capsys):
    """Two OS processes (as a Slurm array would start them) share one experiment; --merge gives the
    results of a one-process run on the same data."""
    import argparse
    import os
    import subprocess
    import sys

    from medgan_ui.cli import evaluate as cli
    from medgan_ui.data.phantom import write_demo_folders

    write_demo_folders(tmp_path / "demo", n=240, seed=3, size=32)
    ws = tmp_path / "ws"
    common = ["--data", str(tmp_path / "demo" / "nih"), "--image-size", "32", "--workspace", str(ws),
              "--target", "Effusion", "--strategies", "none,oversample", "--classifier", "fridadar",
              "--width", "0.25", "--folds", "2", "--epochs", "1", "--n-boot", "100", "--batch-size", "32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "medgan_ui.cli", "evaluate", *common, "--id", "arr",
                               "--cells", f"{i}/2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "--merge", "arr", "--workspace", str(ws), "--json"])
    assert args.func(args) == 0
    merged = json.loads(capsys.readouterr().out)
    args = parser.parse_args(["evaluate", *common, "--id", "one", "--json"])
    assert args.func(args) == 0
    one = json.loads(capsys.readouterr().out)
    assert _aucs(merged) == _aucs(one) and merged["complete_folds"] == [0, 1]
