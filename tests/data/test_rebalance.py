"""Under/over-sampling as the GDGAN reference defines them; Frid-Adar classic augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medgan_ui.data.rebalance import (
    CHEST,
    FRID_ADAR,
    ClassicAugment,
    apply_params,
    augment,
    class_counts,
    classic_params,
    expand_classic,
    oversample_indices,
    undersample_indices,
)
from medgan_ui.errors import UserError

torch.set_num_threads(1)


def labels(single_label: bool = False) -> np.ndarray:
    """600 images: 3 findings at 5 %, 12 %, 25 %; multi-label unless single_label."""
    rng = np.random.default_rng(0)
    n = 600
    if single_label:
        cls = rng.choice(4, n, p=[0.05, 0.12, 0.25, 0.58])
        y = np.zeros((n, 3), np.uint8)
        y[cls < 3, cls[cls < 3]] = 1
        return y
    return (rng.random((n, 3)) < [0.05, 0.12, 0.25]).astype(np.uint8)


def test_class_counts_match_reference_definition():
    y = labels()
    counts = class_counts(y)
    assert list(counts[:3]) == list(y.sum(0))
    assert counts[3] == int((y.sum(1) == 0).sum())
    assert list(class_counts(y, classes=[2])) == [int(y[:, 2].sum()), int((y[:, 2] == 0).sum())]


def test_undersample_draws_min_count_per_class_without_replacement():
    y = labels()
    counts = class_counts(y)
    m = int(counts.min())
    idx = undersample_indices(y, seed=1)
    assert len(idx) == 4 * m
    for k in range(3):  # block k holds m distinct images with finding k
        block = idx[k * m : (k + 1) * m]
        assert len(np.unique(block)) == m and y[block, k].all()
    nofind = idx[3 * m :]
    assert len(np.unique(nofind)) == m and (y[nofind].sum(1) == 0).all()
    assert np.array_equal(idx, undersample_indices(y, seed=1))
    assert not np.array_equal(idx, undersample_indices(y, seed=2))


def test_oversample_tops_every_class_up_to_the_max():
    y = labels(single_label=True)
    counts = class_counts(y)
    idx = oversample_indices(torch.from_numpy(y), seed=0)
    assert len(idx) == len(y) + int((counts.max() - counts).sum())
    assert np.array_equal(idx[: len(y)], np.arange(len(y)))  # every original image kept once
    after = class_counts(y[idx])
    assert (after == counts.max()).all()  # single-label: exactly balanced
    # multi-label: each finding gets exactly (max - count) extra draws, all with that finding
    ym = labels()
    cm = class_counts(ym)
    idx = oversample_indices(ym, seed=0)
    extra = idx[len(ym) :]
    sizes = cm.max() - cm[:3]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    for k in range(3):
        assert ym[extra[starts[k] : starts[k + 1]], k].all()
    assert len(extra) == sizes.sum()
    assert (class_counts(ym[idx])[:3] >= cm.max()).all()


def test_sampling_errors_name_the_class():
    y = labels()
    y[:, 1] = 0
    with pytest.raises(UserError, match="'Effusion' has no images"):
        undersample_indices(y, names=["Cardiomegaly", "Effusion", "Nodule"])
    with pytest.raises(UserError, match="'Effusion' has no images"):
        oversample_indices(y, names=["Cardiomegaly", "Effusion", "Nodule"])
    with pytest.raises(UserError):
        undersample_indices(y, classes=[5])


def asymmetric(b: int = 4, size: int = 16) -> torch.Tensor:
    x = torch.zeros(b, 1, size, size)
    x[:, :, 2:5, 1:4] = 1.0  # a block near the top-left corner
    x[:, :, 10, 12] = 0.5
    return x


def test_flips_actually_flip():
    x = asymmetric()
    b = x.shape[0]
    zero, one = torch.zeros(b), torch.ones(b)
    p = {"angle": zero, "fx": -one, "fy": one, "tx": zero, "ty": zero, "s": one}
    torch.testing.assert_close(apply_params(x, p), torch.flip(x, dims=[3]), atol=1e-5, rtol=0)
    p = {**p, "fx": one, "fy": -one}
    torch.testing.assert_close(apply_params(x, p), torch.flip(x, dims=[2]), atol=1e-5, rtol=0)
    # a quarter turn moves the top-left block to another corner, keeping its mass
    q = {**p, "fy": one, "angle": torch.full((b,), torch.pi / 2)}
    out = apply_params(x, q)
    turned = [torch.allclose(out, torch.rot90(x, k=k, dims=[2, 3]), atol=1e-4) for k in (1, -1)]
    assert any(turned) and not torch.allclose(out, x, atol=1e-4)


def test_shift_and_scale_move_content():
    x = asymmetric(1, 32)
    one, zero = torch.ones(1), torch.zeros(1)
    # shift by 4 pixels to the right: input x = output x + t, t = -4 px -> content moves right
    p = {"angle": zero, "fx": one, "fy": one, "tx": torch.tensor([-8 / 32]), "ty": zero, "s": one}
    out = apply_params(x, p, padding="zeros")
    torch.testing.assert_close(out[..., 4:], x[..., :-4], atol=1e-5, rtol=0)
    # zoom in around the middle: a central block grows
    c = torch.zeros(1, 1, 32, 32)
    c[..., 14:18, 14:18] = 1.0
    big = apply_params(c, {**p, "tx": zero, "s": torch.tensor([1.5])}, padding="zeros")
    assert (big > 0.5).sum() > (c > 0.5).sum() + 10


def test_augment_keeps_shape_dtype_range_and_is_seeded():
    x = torch.rand(32, 1, 24, 24) * 2 - 1
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3))
    c = augment(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= x.min() and a.max() <= x.max()
    assert torch.equal(a, b) and not torch.equal(a, c)
    pa = classic_params(1000, torch.Generator().manual_seed(7))
    pb = classic_params(1000, torch.Generator().manual_seed(7))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    # the paper's proportions of extra ops: none 1 : flip 3 : translate 7 : scale 5
    share = torch.bincount(pa["op"], minlength=4).float() / 1000
    torch.testing.assert_close(share, torch.tensor([1, 3, 7, 5]) / 16, atol=0.05, rtol=0)
    deg = torch.rad2deg(pa["angle"])
    assert deg.min() >= 0 and deg.max() <= 180 and deg.max() > 150
    assert (pa["s"][pa["op"] == 3] >= 0.8).all() and (pa["s"][pa["op"] != 3] == 1).all()
    assert (pa["tx"][pa["op"] != 2] == 0).all() and pa["tx"].abs().max() <= 2 * 4 / 64 + 1e-6


def test_chest_preset_never_flips_upside_down():
    p = classic_params(500, torch.Generator().manual_seed(0), CHEST)
    assert (p["fy"] == 1).all() and (p["fx"] == -1).any()
    assert torch.rad2deg(p["angle"]).abs().max() <= 10


def test_expand_classic_counts_sources_and_reproducibility():
    x = torch.rand(10, 1, 16, 16)
    out, src = expand_classic(x, 25, torch.Generator().manual_seed(0))
    out2, src2 = expand_classic(x, 25, torch.Generator().manual_seed(0))
    assert out.shape == (25, 1, 16, 16) and out.dtype == x.dtype
    assert torch.equal(out, out2) and torch.equal(src, src2)
    assert torch.bincount(src, minlength=10).min() >= 2 and torch.bincount(src, minlength=10).max() <= 3
    empty, none = expand_classic(x, 0, torch.Generator().manual_seed(0))
    assert empty.shape == (0, 1, 16, 16) and len(none) == 0
    with pytest.raises(UserError):
        expand_classic(x[:0], 5, torch.Generator())


def test_bad_config_and_input():
    with pytest.raises(UserError):
        ClassicAugment(padding="wrap")
    with pytest.raises(ValueError):
        augment(torch.zeros(2, 16, 16, dtype=torch.uint8), torch.Generator(), FRID_ADAR)
