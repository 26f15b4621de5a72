"""Configs, presets and validation; label encoding; DiffAugment/ADA."""
from __future__ import annotations

import json

import pytest
import torch

from medgan_ui.errors import UserError
from medgan_ui.gan.diffaugment import Augmenter, diff_augment
from medgan_ui.gan.base import LabelSchema
from medgan_ui.gan.config import PRESETS, TrainConfig, config_from_dict, config_to_dict, make_configs
from medgan_ui.gan.models.gdgan import GDGANConfig
from medgan_ui.gan.registry import kinds
from medgan_ui.gan.labels import GeneralEncoder, cyclic_codes

torch.set_num_threads(1)


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("kind", kinds())
def test_every_preset_builds_and_round_trips(kind, preset):
    train, model = make_configs(kind, preset)
    assert train.model == kind and train.preset == preset
    for cfg in (train, model):
        d = json.loads(json.dumps(config_to_dict(cfg)))
        assert config_from_dict(d) == cfg
        assert config_from_dict(d, type(cfg)) == cfg


def test_paper_preset_is_the_official_gdgan_setting():
    train, m = make_configs("gdgan", "paper")
    assert (train.image_size, train.batch_size, train.seed) == (64, 32, 7412)
    assert (m.nz, m.z_dist, m.lr_g, m.lr_d, m.betas, m.n_critic, m.gp_lambda) == (128, "uniform", 2e-4, 2e-4, (0.5, 0.999), 1, 10.0)
    weights = [m.g1_aux, m.d1_aux_fake, m.d1_aux_real, m.g2_aux, m.g2_general, m.g2_mse, m.d2_aux_fake, m.d2_aux_real,
               m.d2_general]
    assert weights == [1.0] * 9 and m.mse_loss and not m.critic_sigmoid
    dc_train, dc = make_configs("dcgan", "paper")
    assert dc_train.batch_size == 64 and dc.lr_g == 2e-4 and dc.betas == (0.5, 0.999) and dc.init_std == 0.02
    assert make_configs("acgan", "paper")[1].lr_g == 1e-4
    pg = make_configs("pggan", "paper")[1]
    assert (pg.lr_g, pg.betas, pg.drift, pg.gp_lambda) == (1e-3, (0.0, 0.99), 0.001, 10.0)


def test_overrides_are_coerced_from_strings():
    train, m = make_configs("gdgan", "tiny", steps="40", critic_sigmoid="true", betas="0,0.9", ema_decay="0.5")
    assert train.steps == 40 and m.critic_sigmoid is True and m.betas == (0.0, 0.9) and train.ema_decay == 0.5
    _, dc = make_configs("dcgan", "tiny", classes="Cardiomegaly, Effusion")
    assert dc.classes == ["Cardiomegaly", "Effusion"]


@pytest.mark.parametrize("kind, over, words", [
    ("gdgan", {"image_size": 30}, "divisible by 4"),
    ("dcgan", {"image_size": 48}, "16, 32, 64 or 128"),
    ("pggan", {"image_size": 256}, "16, 32, 64 or 128"),
    ("acgan", {"steps": 0}, "steps must be at least 1"),
    ("gdgan", {"steps": -3}, "steps must be at least 1"),
    ("gdgan", {"batch_size": 1}, "batch_size"),
    ("gdgan", {"device": "tpu"}, "device"),
    ("gdgan", {"augment": "mixup"}, "augment"),
    ("gdgan", {"stage1_fraction": 1.0}, "stage1_fraction"),
    ("gdgan", {"lr_g": 0}, "learning rates"),
    ("gdgan", {"betas": (0.5, 1.5)}, "betas"),
    ("gdgan", {"steps": "many"}, "'steps'"),
    ("pggan", {"steps": 4}, "growth phases"),
])
def test_impossible_settings_raise_user_error(kind, over, words):
    with pytest.raises(UserError, match=words):
        make_configs(kind, "tiny", **over)


def test_unknown_names_list_what_exists():
    with pytest.raises(UserError, match="gdgan"):
        make_configs("stylegan", "paper")
    with pytest.raises(UserError, match="fast-cpu"):
        make_configs("gdgan", "huge")
    with pytest.raises(UserError, match="critic_sigmoid") as exc:
        make_configs("gdgan", "paper", critic_sigmod=True)
    assert "critic_sigmod" in str(exc.value)
    with pytest.raises(UserError, match="unknown field"):
        config_from_dict({**config_to_dict(TrainConfig()), "warp": 9})
    assert config_from_dict({"config_type": "GDGANConfig", "nz": 7}).nz == 7  # missing fields -> defaults
    assert isinstance(config_from_dict({"nz": 7}, GDGANConfig), GDGANConfig)


def test_general_encoder_bits_one_hot_and_unknown():
    schema = LabelSchema(["sex", "view", "site"], {"sex": ["F", "M"], "view": ["AP", "PA"], "site": ["a", "b", "c"]},
                         ["X"], 16)
    enc = GeneralEncoder(schema, torch.device("cpu"))
    assert enc.dim == 1 + 1 + 3
    vec, mask = enc(torch.tensor([[0, 1, 2], [1, -1, -1]]))
    assert vec.tolist() == [[0, 1, 0, 0, 1], [1, 0, 0, 0, 0]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    cyc = cyclic_codes(schema, 7, torch.device("cpu"))
    assert cyc.tolist()[:3] == [[1, 0, -1], [0, 1, -1], [0, 0, 0]] and cyc.shape == (7, 3)


def test_diff_augment_differentiable_and_identity_at_p0():
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    assert torch.equal(diff_augment(x, torch.tensor(0.0)), x)
    y = diff_augment(x * 2 - 1, torch.tensor(1.0))
    assert y.shape == x.shape and not torch.equal(y, x * 2 - 1)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_ada_probability_follows_overfitting_signal():
    aug = Augmenter("ada", 0.6, torch.device("cpu"))
    for _ in range(40):  # D sure every real is real: p must rise
        aug.observe(torch.ones(64) * 5)
    p_up = float(aug.p)
    assert p_up > 0
    for _ in range(40):  # D unsure: p must fall back
        aug.observe(torch.randn(64) - 3)
    assert float(aug.p) < p_up
    state = aug.state_dict()
    other = Augmenter("ada", 0.6, torch.device("cpu"))
    other.load_state_dict(state)
    assert float(other.p) == float(aug.p)
    assert float(Augmenter("diffaug", 0.6, torch.device("cpu")).p) == 1.0
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(Augmenter("none", 0.6, torch.device("cpu"))(x), x)
