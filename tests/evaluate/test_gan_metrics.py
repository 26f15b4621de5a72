"""Generator metrics: IS known answers, FID of a set with itself, extractor names, Inception file, sets end to end."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.errors import UserError
from medgan_ui.evaluate import gan_metrics as G
from medgan_ui.evaluate.extractors import DomainExtractor, InceptionExtractor, get_extractor
from medgan_ui.evaluate.gan_metric_table import metric_rows
from medgan_ui.workspace import Workspace

from _synthetic_sets import write_synthetic_set as _write_set

torch.set_num_threads(1)


def test_is_uniform_is_one_and_one_hot_is_number_of_classes():
    assert G.inception_score(np.full((100, 7), 1 / 7))["mean"] == pytest.approx(1.0)
    onehot = np.eye(5)[np.arange(100) % 5]  # every chunk of 10 holds each class twice
    res = G.inception_score(onehot, splits=10)
    assert res["mean"] == pytest.approx(5.0) and res["sd"] == pytest.approx(0.0, abs=1e-9)
    assert len(res["splits"]) == 10
    odd = G.inception_score(np.eye(5)[np.arange(107) % 5], splits=10)  # the 7 left over are dropped
    assert odd["chunk_size"] == 10 and odd["mean"] == pytest.approx(5.0)
    with pytest.raises(UserError):
        G.inception_score(np.eye(3), splits=10)


def test_ms_ssim_settings_fit_small_images():
    s64 = G.ms_ssim_settings(64)
    assert not s64["standard"] and s64["scales"] < 5 and sum(s64["betas"]) == pytest.approx(1.0)
    assert G.ms_ssim_settings(256)["standard"]
    imgs = (torch.rand(4, 64, 64) * 255).to(torch.uint8)
    same = G.ms_ssim_diversity(imgs[:1].repeat(5, 1, 1), n_pairs=10)
    assert same["mean"] == pytest.approx(1.0, abs=1e-4)
    assert G.ms_ssim_diversity(imgs, n_pairs=10)["mean"] < 0.5


def test_memorisation_finds_copied_training_images():
    train = (torch.rand(30, 32, 32) * 255).to(torch.uint8)
    fake = torch.cat([train[[3, 17]], (torch.rand(2, 32, 32) * 255).to(torch.uint8)])
    m = G.memorisation(fake, train)
    assert m["per_image"][0] == pytest.approx(1.0, abs=1e-4) and m["nearest_train_index"][:2] == [3, 17]
    assert m["per_image"][2] < 0.5 and m["frac_above_0.9"] == 0.5


@pytest.fixture(scope="module")
def small():
    ds = demo_imageset(n=240, size=32, seed=1)
    ds.split = np.where(np.arange(len(ds)) < 180, 0, 2).astype(np.int8)
    return ds


def test_fid_of_a_set_with_itself_is_zero_and_extractor_named(small, tmp_path):
    ext = get_extractor("domain", small, epochs=1)
    assert ext.name.startswith("domain-resnet18") and small.fingerprint in ext.name
    imgs = small.images[:120]
    assert abs(G.fid(ext, imgs, imgs)) < 1e-2
    noise = (torch.rand(120, 32, 32) * 255).to(torch.uint8)
    # feature scale depends on the extractor, so compare with the real-vs-real distance
    assert G.fid(ext, imgs, noise) > 3 * G.fid(ext, small.images[:60], small.images[60:120])
    path = ext.save(tmp_path / "extractor.pt")
    again = DomainExtractor.load(path)
    x = imgs[:4].unsqueeze(1)
    torch.testing.assert_close(again(x), ext(x))
    with pytest.raises(UserError, match="nope.pt"):
        get_extractor(f"domain:{tmp_path / 'nope.pt'}", small)


def test_inception_weights_file_written_here_loads(tmp_path):
    from torchvision.models import inception_v3

    path = tmp_path / "inception.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    ext = InceptionExtractor(path)
    x = (torch.rand(2, 1, 32, 32) * 255).to(torch.uint8)
    assert ext(x).shape == (2, 2048) and ext.name == "inception-v3:inception.pth"
    assert ext.probs(x).sum(dim=1).numpy() == pytest.approx([1.0, 1.0], abs=1e-5)
    with pytest.raises(UserError, match="missing.pth"):
        InceptionExtractor(tmp_path / "missing.pth")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a torchvision inception_v3"):
        InceptionExtractor(tmp_path / "other.pth")


def test_evaluate_gan_end_to_end_with_sets(small, tmp_path):
    ws = Workspace(tmp_path / "ws")
    train_idx = np.arange(180)
    _write_set(ws, "close", small, train_idx, noise=4.0)
    _write_set(ws, "noisy", small, train_idx, noise=60.0)
    _write_set(ws, "big", small, train_idx[:20], noise=0.0, size=48)
    with pytest.raises(UserError, match="48x48"):
        G.evaluate_gan(ws, small, ["big"], n=20)
    with pytest.raises(UserError, match="neither a run"):
        G.evaluate_gan(ws, small, ["nothing-here"], n=20)
    out = G.evaluate_gan(ws, small, ["close", "noisy"], n=60, seed=0, extractor_epochs=2)
    r = out["results"]
    assert (tmp_path / "ws" / "experiments" / out["id"] / "metrics.json").is_file()
    assert (tmp_path / "ws" / "experiments" / out["id"] / "extractor.pt").is_file()
    for m in ("close", "noisy"):
        assert r["models"][m]["extractor"] == r["extractor"] and r["models"][m]["fid_floor"] == r["real"]["fid_floor"]
        assert len(r["models"][m]["domain_is"]["splits"]) == 10 and r["models"][m]["n"] == r["n"]
    # copies of training images sit closer to the training set than held-out real images do; noise does not
    close, noisy = r["models"]["close"]["memorisation"]["mean"], r["models"]["noisy"]["memorisation"]["mean"]
    assert close > r["real"]["memorisation"]["mean"] > noisy
    assert r["models"]["close"]["memorisation"]["frac_above_heldout_p95"] > 0.5
    assert r["real"]["memorisation"]["frac_above_heldout_p95"] <= 0.1
    # sets whose run is unknown: each its own model, one seed each, so no test; and a note says so
    assert r["welch_seeds"]["close vs noisy"]["note"] == "one seed per model: no test"
    assert any("synthetic set close" in note for note in r["notes"])
    rows = metric_rows(r)
    assert [row["model"] for row in rows] == ["real, held-out patients (reference)", "real, training patients (floor)",
                                              "close", "noisy"]


def test_nearest_real_finds_an_exact_copy_first():
    from medgan_ui.evaluate.gan_metrics import nearest_real

    g = torch.Generator().manual_seed(0)
    train = (torch.rand(40, 16, 16, generator=g) * 255).to(torch.uint8)
    hits = nearest_real(train[5].numpy(), train, k=3)
    assert hits[0][0] == 5 and hits[0][1] == pytest.approx(0.0) and hits[0][2] == pytest.approx(1.0, abs=1e-4)
    assert len(hits) == 3 and hits[1][1] > 0 and hits[1][2] < 0.9
    with pytest.raises(ValueError, match="px"):
        nearest_real(np.zeros((32, 32), np.uint8), train)
