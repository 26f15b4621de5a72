"""Model families at tiny sizes: shapes, training moves weights without NaN, losses are 0-d tensors,
EMA, extra_state round trip, GDGAN stages, reuse-vs-reference equivalence, PGGAN schedule."""
from __future__ import annotations

import copy

import pytest
import torch

from _imagesets import make_imageset
from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.gan.base import Batch, LabelSchema
from medgan_ui.gan.config import make_configs
from medgan_ui.gan.feed import DeviceBatches
from medgan_ui.gan.registry import build_model

torch.set_num_threads(1)
S, B, N = 16, 8, 48
KINDS = ["gdgan", "acgan", "dcgan", "pggan"]


def small_set(n: int = N, size: int = S, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    det = (torch.rand(n, 3, generator=g) < 0.3).to(torch.uint8)
    det[0, 0] = 1  # every class has at least one image
    det[1] = 0
    return make_imageset(
        torch.randint(0, 256, (n, size, size), dtype=torch.uint8, generator=g),
        general_values={"sex": ["F", "M"], "view": ["AP", "PA"], "site": ["a", "b", "c"]},
        general=torch.stack([torch.randint(-1, 2, (n,), generator=g), torch.randint(0, 2, (n,), generator=g),
                             torch.randint(-1, 3, (n,), generator=g)], dim=1),
        findings=["Cardiomegaly", "Effusion", "Nodule"], detailed=det)


DS = small_set()
SCHEMA = LabelSchema.from_imageset(DS)


def batch(seed: int, m=None) -> Batch:
    """A random batch; with a model, the one its `next_batch` draws from a feed (DCGAN: per class)."""
    if m is not None:
        return m.next_batch(DeviceBatches(DS, B, torch.device("cpu"), seed))
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, N, (B,), generator=g)
    return Batch(DS.images[idx].unsqueeze(1).float() / 127.5 - 1.0, DS.general[idx], DS.detailed[idx].float())


def model(kind: str, **over):
    torch.manual_seed(0)
    tc, mc = make_configs(kind, "tiny", image_size=S, batch_size=B, **over)
    m = build_model(kind, mc, tc, SCHEMA, torch.device("cpu"))
    m.bind_data(DS)
    return m


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", KINDS)
def test_train_steps_move_weights_and_return_0d_losses(kind):
    m = model(kind, steps=6)
    trained = [n for n in m.nets if not n.endswith("_ema") and n not in ("g2", "d2")]
    before = {n: snapshot(m.nets[n]) for n in trained}
    for step in range(3):
        out = m.train_step(batch(step, m), step)
        m.update_ema(step)
        assert out and all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in out.values()), out
        assert all(torch.isfinite(v) for v in out.values()), out
        assert not any(v.requires_grad for v in out.values())
    for n in trained:
        assert not same(before[n], snapshot(m.nets[n])), f"{kind}: {n} did not change"
    # EMA copies differ from (lag behind) the live generators
    for g in m.generators:
        live, ema = dict(m.nets[g].named_parameters()), dict(m.nets[g + "_ema"].named_parameters())
        if g not in trained:
            continue
        assert any(not torch.equal(live[k], ema[k]) for k in live), f"{kind}: EMA of {g} equals live weights"


@pytest.mark.parametrize("kind", KINDS)
def test_generate_shapes_and_range(kind):
    m = model(kind)
    n = 5
    general = torch.tensor([[0, 1, 2], [1, 0, -1], [-1, -1, -1], [0, 0, 0], [1, 1, 1]])
    detailed = torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.float32)
    for ema in (True, False):
        out = m.generate(m.noise(n), general, detailed, ema=ema)
        x = out["images"]
        assert x.shape == (n, 1, S, S)
        assert x.min() >= -1.0 and x.max() <= 1.0 and torch.isfinite(x).all()
    if kind == "gdgan":
        assert out["stage1"].shape == (n, 1, S, S)


@pytest.mark.parametrize("kind", KINDS)
def test_extra_state_round_trip(kind):
    m = model(kind, augment="ada", steps=6)
    for step in range(4):
        m.train_step(batch(step, m), step)
    m.augment.p = torch.tensor(0.37)
    state = m.extra_state()
    fresh = model(kind, augment="ada", steps=6)
    fresh.load_extra_state(copy.deepcopy(state))
    assert fresh.extra_state().keys() == state.keys()
    assert float(fresh.augment.p) == pytest.approx(0.37)
    assert fresh.stage == m.stage
    # only plain types: checkpoints load with weights_only=True
    import io
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    torch.load(buf, weights_only=True)


def test_gdgan_stage_two_freezes_g1_d1():
    m = model("gdgan", steps=6)  # stage 1 = steps 0..2, stage 2 = 3..5
    assert m.stage1_steps == 3
    for step in range(3):
        m.train_step(batch(step), step)
        m.update_ema(step)
    assert m.stage == 1
    frozen = {n: snapshot(m.nets[n]) for n in ("g1", "d1", "g1_ema")}
    g2 = snapshot(m.nets["g2"])
    for step in range(3, 6):
        out = m.train_step(batch(step), step)
        m.update_ema(step)
        assert {"mse", "g_general", "d2_general"} <= set(out)
    assert m.stage == 2
    assert not m.nets["d1"].training and not m.nets["g1"].training
    for n, snap in frozen.items():
        assert same(snap, snapshot(m.nets[n])), f"{n} changed in stage 2"
    assert not same(g2, snapshot(m.nets["g2"]))
    assert m.optimizers["g1"].state and all(not p.requires_grad for p in m.nets["g1"].parameters())


def test_gdgan_critic_sigmoid_bounds_output():
    x = torch.randn(6, 1, S, S) * 3
    for flag in (False, True):
        m = model("gdgan", critic_sigmoid=flag)
        d, c = m.nets["d1"](x)
        assert d.shape == (6,) and c.shape == (6, m.genc.dim)
        inside = bool(((d > 0) & (d < 1)).all())
        assert inside == flag or not flag
    m = model("gdgan", critic_sigmoid=False)
    with torch.no_grad():
        m.nets["d1"].critic.bias.fill_(5.0)
    assert (m.nets["d1"](x)[0] > 1).all()  # an unbounded critic can leave (0, 1)


def test_reuse_fakes_matches_reference_step():
    """Same seed: both ways see the same z, the same G weights and the same RNG draws, so the losses
    and updated weights agree; only G's BN running stats differ (the reference runs G twice)."""
    results = []
    for ref in (False, True):
        m = model("gdgan", steps=6, critic_batch="separate")
        torch.manual_seed(123)
        step = m.reference_step if ref else m.train_step
        out = step(batch(0), 0)
        results.append((out, {n: dict(m.nets[n].named_parameters()) for n in ("g1", "d1")}))
    (a, wa), (b, wb) = results
    for k in ("loss_d", "loss_g", "gp", "d_aux", "g_aux"):
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), (k, a[k], b[k])
    for n in wa:
        for k in wa[n]:
            assert torch.allclose(wa[n][k], wb[n][k], rtol=1e-4, atol=1e-6), (n, k)


def test_gdgan_joint_critic_batch_differs_from_separate():
    losses = []
    for mode in ("joint", "separate"):
        m = model("gdgan", steps=6, critic_batch=mode)
        torch.manual_seed(5)
        out = m.train_step(batch(0), 0)
        losses.append(out["d_real"] - out["d_fake"])  # the Wasserstein estimate
    assert not torch.allclose(losses[0], losses[1])


def test_gdgan_n_critic_updates_g_every_nth_step():
    m = model("gdgan", n_critic=2, steps=8)

    def params() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in m.nets["g1"].named_parameters()}

    g1 = params()
    out = m.train_step(batch(0), 0)
    assert "loss_g" not in out and same(g1, params())
    out = m.train_step(batch(1), 1)
    assert "loss_g" in out and not same(g1, params())


def test_pggan_growth_schedule():
    m = model("pggan", steps=50)  # 4 -> 8 -> 16: 5 phases of 10 steps
    assert m.n_phases == 5 and m.phase_len == 10
    assert m.schedule(0) == (0, 1.0)
    assert m.schedule(15) == (1, 0.5)
    assert m.schedule(25) == (1, 1.0)
    assert m.schedule(35) == (2, 0.5)
    assert m.schedule(49) == (2, 1.0)
    m.train_step(batch(0), 15)
    assert m.stage == 8 and m.alpha == 0.5
    out = m.generate(m.noise(3), DS.general[:3], DS.detailed[:3].float())
    assert out["images"].shape == (3, 1, S, S)
    state = m.extra_state()
    fresh = model("pggan", steps=50)
    fresh.load_extra_state(state)
    assert (fresh.level, fresh.alpha, fresh.stage) == (1, 0.5, 8)


def test_dcgan_per_class_routing_and_empty_classes():
    m = model("dcgan")
    assert m.classes == ["Cardiomegaly", "Effusion", "Nodule", "No Finding"]
    idx = m.class_index(torch.tensor([[0, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1]], dtype=torch.float32))
    assert idx.tolist() == [3, 1, 0, 2]
    empty = small_set()
    empty.detailed[:, 2] = 0
    torch.manual_seed(0)
    tc, mc = make_configs("dcgan", "tiny", image_size=S, classes="Cardiomegaly,Nodule")
    m = build_model("dcgan", mc, tc, SCHEMA, torch.device("cpu"))
    with pytest.raises(UserError, match="Nodule"):
        m.bind_data(empty)
    tc, mc = make_configs("dcgan", "tiny", image_size=S)
    m = build_model("dcgan", mc, tc, SCHEMA, torch.device("cpu"))
    m.bind_data(empty)  # default classes: an empty one is skipped, not fatal
    assert m.untrained_classes == ["Nodule"]
    assert m.images_per_step(8) == 3 * 8  # img/s counts every trained class's batch
    m.train_step(batch(0, m), 0)
    tc, mc = make_configs("dcgan", "tiny", image_size=S, classes=["Pneumonia"])
    with pytest.raises(UserError, match="Pneumonia"):
        build_model("dcgan", mc, tc, SCHEMA, torch.device("cpu"))


def test_acgan_general_conditioning_flag():
    plain, both = model("acgan"), model("acgan", use_general=True)
    assert plain.n_cond == 3 and both.n_cond == 3 + 1 + 1 + 3
    assert both.train_step(batch(0), 0)["d_aux"].ndim == 0


@pytest.mark.parametrize("kind", KINDS)
def test_channels_last_and_bf16_autocast(kind):
    """What the engine does on a GPU (channels_last nets and batches, bf16 autocast), run on the CPU."""
    m = model(kind, steps=6)
    for net in m.nets.values():
        net.to(memory_format=torch.channels_last)
    b = batch(0, m)
    b.images = b.images.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.train_step(b, 4 if kind == "gdgan" else 0)  # GDGAN: a stage-2 step (G1 -> G2 path)
    m.update_ema(0)
    assert all(torch.isfinite(v) for v in out.values()), out
    x = m.generate(m.noise(3), DS.general[:3], DS.detailed[:3].float())["images"]
    assert x.shape == (3, 1, S, S) and torch.isfinite(x).all()


def test_pggan_fixed_phase_length():
    m = model("pggan", steps=100, phase_steps=4)
    assert m.schedule(3) == (0, 1.0) and m.schedule(6) == (1, 0.5) and m.schedule(99) == (2, 1.0)


@pytest.mark.parametrize("kind", ["dcgan", "pggan", "gdgan"])
def test_resume_from_saved_state_matches_straight_run(kind):
    """2 steps + (nets, optimisers, extra_state, RNG) round trip + 2 steps == 4 steps straight; covers
    DCGAN's own per-class draws, PGGAN's schedule and ADA's strength."""
    def run(m, steps):
        for s in steps:
            m.train_step(batch(s, m), s)
            m.update_ema(s)

    straight = model(kind, steps=6, augment="ada")
    torch.manual_seed(99)
    run(straight, range(4))
    first = model(kind, steps=6, augment="ada")
    torch.manual_seed(99)
    run(first, range(2))
    saved = copy.deepcopy({"nets": {k: v.state_dict() for k, v in first.nets.items()},
                           "opt": {k: v.state_dict() for k, v in first.optimizers.items()},
                           "extra": first.extra_state(), "rng": torch.get_rng_state()})
    resumed = model(kind, steps=6, augment="ada")
    for k, v in resumed.nets.items():
        v.load_state_dict(saved["nets"][k])
    for k, v in resumed.optimizers.items():
        v.load_state_dict(saved["opt"][k])
    resumed.load_extra_state(saved["extra"])
    torch.set_rng_state(saved["rng"])
    run(resumed, range(2, 4))
    for name in straight.nets:
        a, b = snapshot(straight.nets[name]), snapshot(resumed.nets[name])
        for k in a:
            assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), (kind, name, k)
