"""The leakage guard: runs record their trained-on patients; a synthetic source that saw a fold's
validation/test patients (or has no record, or other data) is refused; per-fold runs trained with
`medgan train --fold` are accepted with overlap 0 recorded in results.json and results.csv."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from medgan_ui.cli import main
from medgan_ui.data.load import load_dataset
from medgan_ui.data.provenance import RECORD_FILE, FoldSpec, fold_split, patient_hashes
from medgan_ui.data.readers.base import ReadOptions
from medgan_ui.errors import UserError
from medgan_ui.evaluate.experiment import ExperimentConfig, run_experiment, validate
from medgan_ui.workspace import Workspace, read_json

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The demo data at 32 px (as `medgan train --preset tiny --image-size 32` loads it) and three runs: fold 0, fold 1
    (2-fold CV on Effusion) and one on the stored split (which holds most of each fold's test patients)."""
    root = str(tmp_path_factory.mktemp("leak") / "ws")
    ws = Workspace(root)
    base = ["train", "--model", "dcgan", "--data", "demo", "--preset", "tiny", "--image-size", "32", "--steps", "3",
            "--no-progress", "--workspace", root]
    for k in (0, 1):
        assert main([*base, "--fold", str(k), "--folds", "2", "--target", "Effusion"]) == 0
    fold_runs = [p.name for p in ws.list_runs()]
    assert main(base) == 0
    whole = next(p.name for p in ws.list_runs() if p.name not in fold_runs)
    ds = load_dataset("demo", options=ReadOptions(size=32), workspace=ws)
    return ws, ds, fold_runs, whole


def _cfg(**kw) -> ExperimentConfig:
    base = dict(targets=["Effusion"], strategies=["none"], classifier="fridadar", width=0.25, image_size=32,
                folds=2, epochs=1, patience=1, batch_size=64, n_boot=100, seed=0)
    return ExperimentConfig(**{**base, **kw})


def _order(ws, ds, fold_runs):
    """The fold runs in fold order (their records say which fold)."""
    by_fold = {read_json(ws.run_dir(r) / RECORD_FILE)["fold"]["fold"]: r for r in fold_runs}
    return [by_fold[0], by_fold[1]]


def test_runs_record_their_patients_and_fold(setup):
    ws, ds, fold_runs, whole = setup
    for k, run_id in enumerate(_order(ws, ds, fold_runs)):
        rec = read_json(ws.run_dir(run_id) / RECORD_FILE)
        spec = FoldSpec.from_dict(rec["fold"])
        assert (spec.folds, spec.fold, spec.targets) == (2, k, ("Effusion",))
        split = fold_split(ds, spec)
        assert rec["patients_sha256"] == patient_hashes(ds.patient_id[split == 0])
        assert rec["dataset_fingerprint"] == ds.fingerprint and rec["n_images"] == int((split == 0).sum())
        assert read_json(ws.run_dir(run_id) / "config.json")["dataset"]["fold"]["fold"] == k
    rec = read_json(ws.run_dir(whole) / RECORD_FILE)
    assert rec["fold"] is None and rec["patients_sha256"] == patient_hashes(ds.patient_id[ds.split == 0])


def test_run_trained_on_held_out_patients_is_refused(setup):
    ws, ds, fold_runs, whole = setup
    with pytest.raises(UserError) as err:
        validate(_cfg(strategies=["none", f"synthetic:{whole}"]), ws, ds)
    msg = str(err.value)
    held_out = np.unique(ds.patient_id[fold_split(ds, FoldSpec(2, 0, targets=("Effusion",))) != 0])
    trained = set(patient_hashes(ds.patient_id[ds.split == 0]))
    n = sum(h in trained for h in patient_hashes(held_out))
    assert n > 0 and f"{whole!r} was trained on {n} of the {len(held_out)} validation/test patients of fold 1/2" in msg
    assert "gan:MODEL" in msg and "medgan train --fold" in msg
    # the fold runs in the wrong order: each saw the other fold's test patients
    a, b = _order(ws, ds, fold_runs)
    with pytest.raises(UserError, match=f"run {b!r} was trained on"):
        validate(_cfg(strategies=["none", f"synthetic:{b}+{a}"]), ws, ds)


def test_per_fold_runs_are_accepted_with_zero_overlap(setup, capsys):
    ws, ds, fold_runs, _ = setup
    ids = "+".join(_order(ws, ds, fold_runs))
    spec = f"synthetic:{ids}"
    out = run_experiment(_cfg(strategies=["none", spec]), ws, dataset=ds)
    res = json.loads((ws.experiment_dir(out["id"]) / "results.json").read_text())
    assert res["status"] == "done" and res["leakage"][spec] == {"overlap_per_fold": [0, 0], "overlap_total": 0}
    with open(ws.experiment_dir(out["id"]) / "results.csv", newline="") as fh:
        rows = {r["strategy"]: r for r in csv.DictReader(fh)}
    assert rows[spec]["leakage_overlap"] == "0" and rows["none"]["leakage_overlap"] == ""
    fid = res["label_fidelity"]["Effusion"][spec]
    assert len(fid["per_fold"]) == 2 and all(0.0 <= v <= 1.0 for v in fid["per_fold"])
    assert 0.0 <= float(rows[spec]["label_fidelity_auc"]) <= 1.0


def test_exported_sets_carry_the_record(setup, capsys):
    ws, ds, fold_runs, whole = setup
    first, second = _order(ws, ds, fold_runs)
    assert main(["sample", first, "--n", "4", "--findings", "Effusion", "--workspace", str(ws.root)]) == 0
    folder = capsys.readouterr().out.strip().splitlines()[-1]
    man = read_json(f"{folder}/manifest.json")
    assert man["trained_on"] == read_json(ws.run_dir(first) / RECORD_FILE)
    set_id = folder.rstrip("/").split("/")[-1]
    cfg = _cfg(strategies=["none", f"synthetic:{set_id}+{second}"])
    validate(cfg, ws, ds)  # the set stands for fold 0's run: accepted
    # the same set without its record: refused, named
    del man["trained_on"]
    (ws.synthetic_dir(set_id) / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(UserError, match=f"synthetic set {set_id!r} does not record which patients"):
        validate(cfg, ws, ds)
    # a record from other data: refused
    man["trained_on"] = {**read_json(ws.run_dir(first) / RECORD_FILE), "dataset_fingerprint": "other"}
    (ws.synthetic_dir(set_id) / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(UserError, match="trained on other data"):
        validate(cfg, ws, ds)


def test_cli_fold_options_bad_input(setup, capsys):
    ws = str(setup[0].root)
    base = ["train", "--model", "dcgan", "--data", "demo", "--preset", "tiny", "--workspace", ws]
    for extra, message in ((["--fold", "0", "--target", "Effusion"], "--fold needs --folds"),
                           (["--fold", "0", "--folds", "2"], "--fold needs --target"),
                           (["--folds", "2"], "only apply with --fold"),
                           (["--fold", "2", "--folds", "2", "--target", "Effusion"], "does not exist"),
                           (["--fold", "0", "--folds", "2", "--target", "Hernia"], "not a finding")):
        capsys.readouterr()
        assert main([*base, *extra]) == 2
        assert message in capsys.readouterr().err, extra
