"""The gan:MODEL strategy: one generator per fold trained on that fold's training patients, as ordinary
runs, reused by a re-run and resumed after a stop; label fidelity; bad input refused before compute."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.data.provenance import RECORD_FILE, FoldSpec, fold_split, patient_hashes
from medgan_ui.errors import UserError
from medgan_ui.evaluate.experiment import ExperimentConfig, run_experiment
from medgan_ui.data.split import Fold
from medgan_ui.evaluate.gan_folds import check_gan_strategy, parse_gan
from medgan_ui.evaluate.label_fidelity import fold_fidelity
from medgan_ui.evaluate.strategies import SyntheticSource, open_source, synthetic_for_picks
from medgan_ui.gan.runs import Run, list_runs
from medgan_ui.workspace import Workspace, read_json

torch.set_num_threads(1)
GAN = "gan:dcgan@tiny:4"


@pytest.fixture(scope="module")
def ds():
    return demo_imageset(n=240, size=32, seed=3)


def _cfg(**kw) -> ExperimentConfig:
    base = dict(targets=["Effusion"], strategies=["none", GAN], classifier="fridadar", width=0.25, image_size=32,
                folds=2, epochs=1, patience=1, batch_size=32, n_boot=100, seed=0)
    return ExperimentConfig(**{**base, **kw})


def test_gan_strategy_trains_one_run_per_fold_and_a_rerun_reuses_them(ds, tmp_path):
    ws = Workspace(tmp_path / "ws")
    events = []
    out = run_experiment(_cfg(), ws, on_progress=events.append, dataset=ds)
    assert out["status"] == "done"
    runs = list_runs(ws)
    assert len(runs) == 2 and {r["status"] for r in runs} == {"finished"} and {r["model"] for r in runs} == {"dcgan"}
    res = json.loads((ws.experiment_dir(out["id"]) / "results.json").read_text())
    gens = res["generators"][GAN]
    assert [g["action"] for g in gens] == ["trained", "trained"] and {g["run"] for g in gens} == {r["run_id"] for r in runs}
    for k, g in enumerate(gens):  # each run trained on its fold's training patients only
        rec = read_json(ws.run_dir(g["run"]) / RECORD_FILE)
        split = fold_split(ds, FoldSpec.from_dict(rec["fold"]))
        assert rec["fold"]["fold"] == k and rec["patients_sha256"] == patient_hashes(ds.patient_id[split == 0])
    assert res["leakage"][GAN]["overlap_per_fold"] == [0, 0]
    fid = res["label_fidelity"]["Effusion"][GAN]
    assert len(fid["per_fold"]) == 2 and all(0.0 <= v <= 1.0 for v in fid["per_fold"]) and 0 <= fid["mean"] <= 1
    # beside it, the scoring classifier (the fold's `none` model) on the fold's real test images
    none_auc = [p["auc"] for p in res["targets"]["Effusion"]["none"]["per_fold"]]
    assert fid["scorer_real_auc_per_fold"] == pytest.approx(none_auc, abs=1e-4)
    syn = [t for t in res["training"] if t["strategy"] == GAN]
    assert len(syn) == 2 and all(t["n_train_synthetic"] > 0 for t in syn)
    gan_events = [e for e in events if e.get("stage") == "gan"]
    assert {e["fold"] for e in gan_events} == {0, 1} and all(e["strategy"] == GAN for e in gan_events)
    assert any(e.get("step") == 4 and e.get("total") == 4 and "GAN 4/4" in e["message"] for e in gan_events)

    again = run_experiment(_cfg(), ws, dataset=ds)
    assert len(list_runs(ws)) == 2  # no new runs
    assert [g["action"] for g in again["results"]["generators"][GAN]] == ["reused", "reused"]
    assert any(n.startswith(f"{GAN}: generators per fold ") and "(reused)" in n for n in again["results"]["notes"])
    # another step count is another generator
    other = run_experiment(_cfg(strategies=["oversample", "gan:dcgan@tiny:3"]), ws, dataset=ds)
    assert len(list_runs(ws)) == 4 and other["status"] == "done"
    # without `none` the fidelity classifier is trained for the purpose
    assert all(0 <= v <= 1 for v in other["results"]["label_fidelity"]["Effusion"]["gan:dcgan@tiny:3"]["per_fold"])


def test_stopped_during_gan_training_resumes_on_rerun(ds, tmp_path):
    ws = Workspace(tmp_path / "ws")
    seen = {"gan": 0}

    def progress(e):
        if e.get("stage") == "gan" and e.get("step", 0) >= 3:
            seen["gan"] += 1

    out = run_experiment(_cfg(strategies=["none", "gan:dcgan@tiny:6"]), ws, on_progress=progress, dataset=ds,
                         should_stop=lambda: seen["gan"] > 0)
    assert out["status"] == "stopped"
    (row,) = list_runs(ws)
    assert row["status"] == "stopped" and 3 <= row["step"] < 6 and Run.open(ws, row["run_id"]).checkpoints()
    done = run_experiment(_cfg(strategies=["none", "gan:dcgan@tiny:6"]), ws, dataset=ds)
    gens = done["results"]["generators"]["gan:dcgan@tiny:6"]
    assert done["status"] == "done" and gens[0] == {**gens[0], "run": row["run_id"], "action": "resumed"}
    assert gens[1]["action"] == "trained" and len(list_runs(ws)) == 2
    assert Run.open(ws, row["run_id"]).status()["step"] == 6


def test_bad_gan_strategies_are_refused_before_compute(ds, tmp_path):
    ws = Workspace(tmp_path / "ws")
    for spec, message in (("gan:stylegan", "unknown model 'stylegan'"), ("gan:dcgan@huge", "unknown preset 'huge'"),
                          ("gan:dcgan@tiny:0", "steps must be at least 1"), ("gan:dcgan@tiny:ten", "not a whole number"),
                          ("gan:", "unknown strategy")):
        with pytest.raises(UserError, match=message):
            run_experiment(_cfg(strategies=["none", spec]), ws, dataset=ds)
    assert not any(ws.experiments.iterdir()) and not any(ws.runs.iterdir())
    assert parse_gan("gan:gdgan") == parse_gan("gan:gdgan@fast-cpu")
    # a fold whose training part has no positive image: its generator could not learn the finding
    pos = ds.detailed[:, ds.findings.index("Effusion")].numpy().astype(bool)
    split = np.where(pos, 2, 0).astype(np.int8)
    with pytest.raises(UserError, match="fold 1/2's training part has no image with 'Effusion'"):
        check_gan_strategy(GAN, ds, [Fold(0, 0, split), Fold(0, 1, split)], ["fold 1/2", "fold 2/2"], ["Effusion"], None)
    assert not any(ws.runs.iterdir())


def test_fidelity_auc_pairs_requested_and_not_requested_images(ds):
    """A set whose 'with the finding' images are bright and 'without' dark, scored by brightness: AUC 1;
    swapped: 0. The generated negatives come from the same general-label cells."""
    import tempfile
    from pathlib import Path

    from PIL import Image

    class Brightness(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return (x.mean(dim=(1, 2, 3)) - 0.5).unsqueeze(1) * 50

    def make_set(folder: Path, bright_positive: bool) -> SyntheticSource:
        rows = []
        for i, (label, level) in enumerate([("Effusion", 220 if bright_positive else 20)] * 6
                                           + [("No Finding", 20 if bright_positive else 220)] * 6):
            name = f"{i:03d}.png"
            Image.fromarray(np.full((32, 32), level, np.uint8)).save(folder / name)
            rows.append({"file": name, "sex": "", "view": "", "Finding Labels": label})
        return SyntheticSource("s", "set", folder, 32, [], {}, list(ds.findings), rows=rows)

    train = ds.subset(np.arange(120))
    with tempfile.TemporaryDirectory() as tmp:
        for bright, want in ((True, 1.0), (False, 0.0)):
            folder = Path(tmp) / str(bright)
            folder.mkdir()
            got = fold_fidelity(Brightness(), make_set(folder, bright), train, ["Effusion"], seed=0, n=8)
            assert got == {"Effusion": want}


def test_shares_train_only_the_generators_their_cells_need_and_keep_fidelity(ds, tmp_path):
    """--cells with a gan: strategy: share 0 owns only `none` cells and trains no generator; share 1 trains
    the fold generators and writes each fold's label fidelity; the merge equals one process."""
    single = run_experiment(_cfg(), Workspace(tmp_path / "one"), dataset=ds)["results"]
    ws = Workspace(tmp_path / "ws")
    first = run_experiment(_cfg(), ws, dataset=ds, exp_id="arr", cells="0/2")
    assert first["status"] == "partial" and list_runs(ws) == []  # cells 0 and 2: fold 0 and 1's `none`
    last = run_experiment(_cfg(), ws, dataset=ds, exp_id="arr", cells="1/2")
    assert last["status"] == "done" and len(list_runs(ws)) == 2
    fid_dir = ws.experiment_dir("arr") / "fidelity"
    assert sorted(p.stem for p in fid_dir.iterdir()) == [f"fidelity-repeat0-fold{f}-gan_dcgan_tiny_4" for f in (0, 1)]
    got, want = last["results"]["label_fidelity"]["Effusion"][GAN], single["label_fidelity"]["Effusion"][GAN]
    assert got["per_fold"] == pytest.approx(want["per_fold"], abs=1e-6)
    assert got["scorer_real_auc_per_fold"] == pytest.approx(want["scorer_real_auc_per_fold"], abs=1e-6)
    # a rerun reads fidelity from disk: nothing trained, the same block
    again = run_experiment(_cfg(), ws, dataset=ds, exp_id="arr")
    assert again["results"]["label_fidelity"] == last["results"]["label_fidelity"]
    assert again["results"]["generators"] == {} and len(list_runs(ws)) == 2


def test_dcgan_strategy_trains_only_the_target_generators(ds, tmp_path):
    """Per-class DCGAN inside the experiment: one generator per target plus "no finding" (not one per
    finding of the dataset); negatives whose images carry other findings come from "no finding"."""
    ws = Workspace(tmp_path / "ws")
    out = run_experiment(_cfg(strategies=["none", GAN], synthetic_negatives=True), ws, dataset=ds)
    assert out["status"] == "done" and len(ds.findings) > 1
    for row in list_runs(ws):
        cfg = read_json(ws.run_dir(row["run_id"]) / "config.json")
        assert cfg["model"]["classes"] == ["Effusion"]
    syn = [t for t in out["results"]["training"] if t["strategy"] == GAN]
    assert all(t["n_synthetic_negative"] == t["n_train_synthetic"] // 2 > 0 for t in syn)
    src = open_source(ws, list_runs(ws)[0]["run_id"])
    assert src.findings == ["Effusion"]
    train = ds.subset(np.arange(len(ds)))
    other = [i for i in range(len(ds)) if train.finding_labels(i) and "Effusion" not in train.finding_labels(i)]
    x, y, _ = synthetic_for_picks(src, train, np.array(other[:3]), ["Effusion"], seed=0)
    assert x.shape[0] == 3 and not y.any()  # other findings only: drawn from the no-finding generator


def test_two_shares_needing_one_generator_make_it_once(ds, tmp_path):
    """Shares whose cells need the same fold generator (gan:X in one, classic+gan:X in the other): one
    trains it, the other waits on its lock and reuses it, so each fold has one run."""
    import threading

    ws = Workspace(tmp_path / "ws")
    spec = "gan:dcgan@tiny:30"
    cfg = _cfg(strategies=["none", spec, f"classic+{spec}"])
    out, events = {}, []

    def share(i: int) -> None:
        out[i] = run_experiment(cfg, ws, dataset=ds, exp_id="pair", cells=f"{i}/2", on_progress=events.append)

    threads = [threading.Thread(target=share, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert "done" in {o["status"] for o in out.values()} <= {"done", "partial"}  # the last to finish merges
    runs = list_runs(ws)
    assert len(runs) == 2 and {r["status"] for r in runs} == {"finished"}
    assert sorted(read_json(ws.run_dir(r["run_id"]) / RECORD_FILE)["fold"]["fold"] for r in runs) == [0, 1]
