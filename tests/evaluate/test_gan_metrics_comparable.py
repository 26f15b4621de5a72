"""Generator metrics made comparable: held-out reference, floor at the same n, an extractor that never
saw a scored image, 'domain IS', equal IS chunks, Welch over training seeds, memorisation baseline."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats as st

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.errors import UserError
from medgan_ui.evaluate import gan_metrics as G
from medgan_ui.evaluate.extractors import DomainExtractor
from medgan_ui.evaluate.gan_metric_table import metric_rows, summary_lines, welch_rows
from medgan_ui.evaluate.reference import choose_real_sets
from medgan_ui.evaluate.seed_groups import ONE_SEED
from medgan_ui.gan.config import make_configs
from medgan_ui.gan.runs import Run
from medgan_ui.workspace import Workspace

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def small():
    ds = demo_imageset(n=240, size=32, seed=1)
    ds.split = np.where(np.arange(len(ds)) < 180, 0, 2).astype(np.int8)  # a patient may straddle index 180
    return ds


def _patients(ds, ix) -> set[str]:
    return set(ds.patient_id[np.asarray(ix, int)].tolist())


def test_reference_floor_and_extractor_images_are_disjoint(small):
    real = choose_real_sets(small, 1000, seed=3, splits=10)
    train_pats = _patients(small, small.split_indices("train"))
    assert not _patients(small, real.reference_index) & train_pats  # held-out patients only
    assert _patients(small, real.floor_index) <= train_pats
    assert not _patients(small, real.extractor_index) & (_patients(small, real.reference_index)
                                                          | _patients(small, real.floor_index))
    assert len(real.reference_index) == len(real.floor_index) == real.n and real.n % 10 == 0 and real.n < 1000
    assert len(real.extractor_index) >= len(small.split_indices("train")) // 2
    unsplit = demo_imageset(n=60, size=32, seed=1)
    with pytest.raises(UserError, match="no train/val/test split"):
        choose_real_sets(unsplit, 20, seed=0, splits=10)
    with pytest.raises(UserError, match="held-out patients"):
        choose_real_sets(small, 20, seed=0, splits=10, exclude_patients={str(small.patient_id[-1])})


@pytest.fixture(scope="module")
def runs(small, tmp_path_factory):
    """Two models (EMA decays) x two training seeds each, 2 tiny steps: metrics need a checkpoint only."""
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    ids = {}
    for decay in (0.999, 0.9):
        for seed in (0, 1):
            tc, mc = make_configs("gdgan", "tiny", image_size=32, steps=2, checkpoint_every=2, sample_every=100,
                                  log_every=1, seed=seed, ema_decay=decay, batch_size=8)
            run = Run.create(ws, small, tc, mc)
            run.train(small)
            ids[(decay, seed)] = run.id
    return ws, ids


def test_evaluate_runs_comparable_with_seed_welch(small, runs):
    ws, ids = runs
    order = [ids[(0.999, 0)], ids[(0.999, 1)], ids[(0.9, 0)], ids[(0.9, 1)]]
    out = G.evaluate_gan(ws, small, order, n=55, seed=0, extractor_epochs=1)
    r = out["results"]
    n = r["n"]
    assert n == 50 and r["n_requested"] == 55  # rounded down to 10 equal IS chunks
    # the reference is held out of the runs' training patients and of the extractor's training images
    ref_ix = r["real_sets"]["reference"]["index"]
    floor_ix = r["real_sets"]["floor_sample"]["index"]
    assert not _patients(small, ref_ix) & _patients(small, small.split_indices("train"))
    ext = DomainExtractor.load(f"{out['dir']}/extractor.pt")
    trained = set(ext.trained_on["patients"])
    assert trained and not trained & (_patients(small, ref_ix) | _patients(small, floor_ix))
    assert r["extractor_trained_on"]["n_patients"] == len(trained)
    # equal n: reference, floor sample, every model; equal IS chunks
    assert len(ref_ix) == len(floor_ix) == n
    assert r["is_name"] == "domain IS" and r["is_key"] == "domain_is"
    for m in order:
        res = r["models"][m]
        assert res["n"] == n and "is" not in res and res["fid_floor"] == r["real"]["fid_floor"]
        assert res["domain_is"]["chunk_size"] == r["real"]["domain_is"]["chunk_size"] == n // 10
        assert len(res["memorisation"]["per_image"]) == n
    assert len(r["real"]["memorisation"]["per_image"]) == n  # the held-out baseline at the same n
    # runs that differ only by seed form one model; Welch over the per-run FID / domain IS equals scipy
    groups = r["seed_groups"]
    assert [g["members"] for g in groups] == [order[:2], order[2:]] and groups[0]["seeds"] == [0, 1]
    w = r["welch_seeds"][f"{groups[0]['name']} vs {groups[1]['name']}"]
    for metric, field in (("fid", lambda x: x["fid"]), ("domain_is", lambda x: x["domain_is"]["mean"])):
        ref = st.ttest_ind([field(r["models"][m]) for m in order[:2]], [field(r["models"][m]) for m in order[2:]],
                           equal_var=False)
        assert w[metric]["p"] == pytest.approx(ref.pvalue, nan_ok=True)
    rows = metric_rows(r)
    assert rows[0]["model"].startswith("real, held-out") and rows[0]["NN-SSIM to training"] is not None
    assert rows[1]["FID floor"] == pytest.approx(r["real"]["fid_floor"], abs=1e-3)
    assert all("domain IS" in row and "IS" not in row and row["n"] == n for row in rows)
    wr = welch_rows(r)
    assert len(wr) == 1 and wr[0]["seeds"] == "2 vs 2" and "Welch p (domain IS)" in wr[0]
    assert any(f"n = {n}" in line for line in summary_lines(r))
    # the saved extractor reused: its training patients are left out of the floor pool, so it scores none of them
    again = G.evaluate_gan(ws, small, [order[0]], extractor=f"domain:{out['dir']}/extractor.pt", n=20)["results"]
    assert again["extractor"] == r["extractor"] and again["n"] == 20
    assert not trained & (_patients(small, again["real_sets"]["floor_sample"]["index"])
                          | _patients(small, again["real_sets"]["reference"]["index"]))
    # one seed per model: no test
    single = G.evaluate_gan(ws, small, [order[0], order[2]], n=20, seed=0, extractor_epochs=1)["results"]
    (only,) = single["welch_seeds"].values()
    assert only["note"] == ONE_SEED and "fid" not in only


def test_run_trained_on_other_data_is_refused(small, runs):
    ws, ids = runs
    other = demo_imageset(n=240, size=32, seed=2)
    other.split = small.split.copy()
    with pytest.raises(UserError, match="fingerprint"):
        G.evaluate_gan(ws, other, [ids[(0.999, 0)]], n=20)
    from _synthetic_sets import write_synthetic_set

    write_synthetic_set(ws, "from-run", small, np.arange(30), noise=4.0)  # exported from a run: traced to it
    man = ws.synthetic_dir("from-run") / "manifest.json"
    man.write_text(json.dumps({**json.loads(man.read_text()), "run": ids[(0.999, 0)]}))
    with pytest.raises(UserError, match="source of synthetic set from-run"):
        G.evaluate_gan(ws, other, ["from-run"], n=20)


def test_saved_extractor_without_training_record_is_refused(small, tmp_path):
    ext = DomainExtractor(["No Finding", "Effusion"], 32)
    path = ext.save(tmp_path / "old.pt")
    ws = Workspace(tmp_path / "ws")
    from _synthetic_sets import write_synthetic_set as _write_set

    _write_set(ws, "s", small, np.arange(30), noise=4.0)
    with pytest.raises(UserError, match="does not record"):
        G.evaluate_gan(ws, small, ["s"], extractor=f"domain:{path}", n=20)


def test_welch_needs_two_seeds_on_each_side():
    from medgan_ui.evaluate.seed_groups import welch_over_seeds

    groups = [{"name": "a1+a2+a3", "members": ["a1", "a2", "a3"]}, {"name": "b1", "members": ["b1"]},
              {"name": "c1+c2", "members": ["c1", "c2"]}]
    fid = {"a1": 10.0, "a2": 12.0, "a3": 11.0, "b1": 30.0, "c1": 20.0, "c2": 23.0}
    w = welch_over_seeds(groups, {k: {"fid": v} for k, v in fid.items()})
    assert "fid" not in w["a1+a2+a3 vs b1"] and "2+ seeds" in w["a1+a2+a3 vs b1"]["note"]
    ref = st.ttest_ind([10.0, 12.0, 11.0], [20.0, 23.0], equal_var=False)
    assert w["a1+a2+a3 vs c1+c2"]["fid"]["p"] == pytest.approx(ref.pvalue) and w["a1+a2+a3 vs c1+c2"]["seeds"] == [3, 2]
