"""Patient-level stratified splits: no leakage, fractions, positives everywhere, reproducible."""
from __future__ import annotations

import numpy as np
import pytest

from _imagesets import make_imageset
from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.split import assign_split, choose_stratify, k_splits
from medgan_ui.errors import UserError


def make_set(patients: int = 300, seed: int = 0, rare_patients: int = 12) -> ImageSet:
    """Patients with 1-6 images each; 'Rare' in `rare_patients` patients, 'Common' in a third."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 7, patients)
    pid = np.repeat([f"p{i}" for i in range(patients)], counts)
    n = len(pid)
    rare = np.isin(pid, [f"p{i}" for i in rng.choice(patients, rare_patients, replace=False)])
    common = rng.random(n) < 0.33
    return make_imageset(n=n, size=8, general_values={"sex": ["F", "M"]}, general=rng.integers(0, 2, (n, 1)),
                         findings=["Common", "Rare"], detailed=np.stack([common, rare], 1), patient_id=pid,
                         meta={"name": "toy"})


def parts_of_patients(ds: ImageSet) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for p, s in zip(ds.patient_id, ds.split):
        out.setdefault(p, set()).add(int(s))
    return out


def test_no_patient_in_two_parts_and_fractions_close():
    ds = assign_split(make_set(), seed=3)
    assert ds.split.dtype == np.int8 and set(np.unique(ds.split)) == {0, 1, 2}
    assert all(len(parts) == 1 for parts in parts_of_patients(ds).values())
    frac = np.bincount(ds.split, minlength=3) / len(ds)
    np.testing.assert_allclose(frac, [0.7, 0.1, 0.2], atol=0.04)
    info = ds.meta["split"]
    assert info["stratify"] == "Rare" and info["seed"] == 3 and info["fractions"] == [0.7, 0.1, 0.2]
    assert sum(info["sizes"].values()) == len(ds)
    assert sum(info["patients"].values()) == ds.n_patients()


def test_auto_stratifies_on_rarest_finding_with_positives_in_every_part():
    base = make_set(rare_patients=4)
    for seed in range(20):
        ds = assign_split(base, seed=seed)
        rare = ds.detailed[:, 1].numpy().astype(bool)
        for k in range(3):
            assert rare[ds.split == k].any(), (seed, k)
        assert ds.meta["split"]["positive_patients"]["val"] >= 1


def test_stratified_positive_share_is_balanced():
    ds = assign_split(make_set(patients=600, rare_patients=40), stratify="Rare", seed=1)
    pp = ds.meta["split"]["positive_patients"]
    assert sum(pp.values()) == 40
    assert 24 <= pp["train"] <= 32 and 2 <= pp["val"] <= 7 and 5 <= pp["test"] <= 11


def test_reproducible_and_seed_dependent_and_order_independent():
    base = make_set()
    a, b = assign_split(base, seed=7), assign_split(base, seed=7)
    assert np.array_equal(a.split, b.split)
    assert not np.array_equal(a.split, assign_split(base, seed=8).split)
    perm = np.random.default_rng(0).permutation(len(base))
    shuffled = assign_split(base.subset(perm), seed=7)
    assert np.array_equal(shuffled.split, a.split[perm])
    # the source set is not modified
    assert base.split is None and "split" not in base.meta


def test_k_splits_match_assign_split_and_differ():
    base = make_set()
    splits = k_splits(base, 3, stratify="Rare", seed=10)
    assert len(splits) == 3
    assert np.array_equal(splits[1], assign_split(base, stratify="Rare", seed=11).split)
    assert not np.array_equal(splits[0], splits[1])
    for s in splits:
        pid_parts = {}
        for p, k in zip(base.patient_id, s):
            pid_parts.setdefault(p, set()).add(int(k))
        assert all(len(v) == 1 for v in pid_parts.values())


def test_choose_stratify():
    base = make_set(rare_patients=2)  # too few for 'auto' -> Common
    assert choose_stratify(base, "auto") == "Common"
    assert choose_stratify(base, None) is None and choose_stratify(base, "none") is None
    with pytest.raises(UserError, match="has findings"):
        choose_stratify(base, "Hernia")


def test_too_few_positive_patients_is_a_clear_error():
    base = make_set(rare_patients=2)
    with pytest.raises(UserError, match=r"only 2 patient\(s\).*'Rare'.*stratify='none'"):
        assign_split(base, stratify="Rare")
    # without val, two positive patients are enough
    ds = assign_split(base, stratify="Rare", fractions=(0.8, 0.0, 0.2))
    assert (ds.split != 1).all()
    assert ds.meta["split"]["positive_patients"]["train"] >= 1 and ds.meta["split"]["positive_patients"]["test"] >= 1


def test_bad_fractions_and_tiny_sets():
    base = make_set()
    for bad in [(0.5, 0.5), (0.7, 0.2, 0.2), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)]:
        with pytest.raises(UserError, match="fractions|train fraction"):
            assign_split(base, fractions=bad)
    tiny = make_set(patients=2, rare_patients=0)
    with pytest.raises(UserError, match="2 patient"):
        assign_split(tiny, stratify=None)
    with pytest.raises(UserError, match="at least 1"):
        k_splits(base, 0)


def test_split_is_saved_with_the_set(tmp_path):
    ds = assign_split(make_set(), seed=2)
    back = ImageSet.load(ds.save(tmp_path / "cache.npz"))
    assert np.array_equal(back.split, ds.split) and back.meta["split"] == ds.meta["split"]
    assert len(back.part("test")) == ds.meta["split"]["sizes"]["test"]


def test_phantom_split():
    from medgan_ui.data.phantom import demo_imageset

    ds = assign_split(demo_imageset(400, 32, seed=0))
    assert ds.meta["split"]["stratify"] == "Cardiomegaly"
    assert all(v >= 1 for v in ds.meta["split"]["positive_patients"].values())
