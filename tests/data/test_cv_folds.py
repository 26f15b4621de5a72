"""Patient-level K-fold cross-validation folds, official splits kept, image-level splits named."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.inspect import format_report, inspect_report
from medgan_ui.data.split import (IMAGE_LEVEL, KFOLD, OFFICIAL, assign_split, cv_folds, min_positive_patients,
                                  patient_ids_known, split_kind, split_note)
from medgan_ui.errors import UserError


def toy(patients: int = 120, rare_patients: int = 11, seed: int = 0, **meta) -> ImageSet:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 6, patients)
    pid = np.repeat([f"p{i:03d}" for i in range(patients)], counts)
    n = len(pid)
    sick = np.isin(pid, [f"p{i:03d}" for i in rng.choice(patients, rare_patients, replace=False)])
    return ImageSet(images=torch.zeros(n, 8, 8, dtype=torch.uint8), general_names=[], general_values={},
                    general=torch.zeros(n, 0, dtype=torch.int64), findings=["Rare"],
                    detailed=torch.from_numpy(sick[:, None].astype(np.uint8)), patient_id=pid,
                    source=[f"i{i}.png" for i in range(n)], meta={"name": "toy", **meta})


def test_kfold_is_disjoint_patient_level_and_stratified():
    ds = toy()
    folds, kind = cv_folds(ds, "Rare", folds=5, repeats=2, seed=4)
    assert kind == KFOLD and len(folds) == 10
    assert [(f.repeat, f.fold) for f in folds[:6]] == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (1, 0)]
    sick = ds.detailed[:, 0].numpy().astype(bool)
    for r in range(2):
        mine = [f.split for f in folds if f.repeat == r]
        tests = np.stack([s == 2 for s in mine])
        assert (tests.sum(0) == 1).all()  # every image in exactly one test fold per repeat
        pos_per_fold = [len(np.unique(ds.patient_id[t & sick])) for t in tests]
        assert max(pos_per_fold) - min(pos_per_fold) <= 1 and min(pos_per_fold) >= 2  # 11 over 5 folds
        for s in mine:
            for a in range(3):
                for b in range(a + 1, 3):  # no patient in two parts
                    assert not set(ds.patient_id[s == a]) & set(ds.patient_id[s == b])
            assert len(np.unique(ds.patient_id[(s == 1) & sick])) >= 1  # validation sees positives
            assert 0.08 < (s == 1).mean() < 0.16  # validation ~12.5 % of the training folds
    assert not all((a.split == b.split).all() for a, b in zip(folds[:5], folds[5:]))  # repeats differ
    again, _ = cv_folds(ds.subset(np.arange(len(ds))), "Rare", folds=5, repeats=2, seed=4)
    assert all((a.split == b.split).all() for a, b in zip(folds, again))


def test_too_many_folds_refused_with_setting_and_fix():
    ds = toy(rare_patients=4)
    assert min_positive_patients(2) == 4 and min_positive_patients(5) == 5 and min_positive_patients(10) == 10
    with pytest.raises(UserError, match=r"folds = 5: .*4 patient\(s\) with 'Rare'.*at least 5.*--folds\) to 4 or fewer"):
        cv_folds(ds, "Rare", folds=5)
    with pytest.raises(UserError, match="folds must be at least 2"):
        cv_folds(ds, "Rare", folds=1)
    with pytest.raises(UserError, match="repeats must be at least 1"):
        cv_folds(ds, "Rare", folds=2, repeats=0)
    assert len(cv_folds(ds, "Rare", folds=4)[0]) == 4


def test_official_split_is_kept_and_repeats_vary_only_seeds():
    ds = toy(format="medmnist")
    ds = dataclasses.replace(ds, split=np.resize(np.array([0, 0, 0, 1, 2], np.int8), len(ds)))
    folds, kind = cv_folds(ds, "Rare", folds=5, repeats=3)
    assert kind == f"{OFFICIAL} ({IMAGE_LEVEL})" and len(folds) == 3
    assert all((f.split == ds.split).all() for f in folds)
    assert "Official split" in split_note(ds) and "no patient ids" in split_note(ds)
    # a split made by assign_split is ours, not official: the experiment cross-validates instead
    assert split_kind(assign_split(toy(), "Rare")) == KFOLD


def test_image_level_when_the_reader_had_no_patient_ids():
    assert not patient_ids_known(toy(format="csv", options={"patient_column": None}))
    assert patient_ids_known(toy(format="csv", options={"patient_column": "PID"}))
    assert not patient_ids_known(toy(format="folders"))
    assert patient_ids_known(toy(format="nih")) and patient_ids_known(toy())
    ds = assign_split(toy(format="folders"), "Rare")
    assert split_kind(ds) == IMAGE_LEVEL and cv_folds(ds, "Rare", folds=3)[1] == IMAGE_LEVEL
    assert split_note(ds).startswith("Image-level split: no patient ids")
    text = format_report(inspect_report(ds))
    assert "no patient ids: one id per image" in text and "Image-level split" in text
    assert "Patient-level split" in format_report(inspect_report(assign_split(toy(format="nih"), "Rare")))
