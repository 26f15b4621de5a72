"""Which real images the generator metrics use, so that every score is comparable.

Design (one n everywhere; it is reported with the results):
* Training patients T: the patients of the dataset's train part, the images every run trained on.
  A run's config.json records the fingerprint of its data, and the fingerprint covers the split, so a
  run recorded on other data (or another split) is refused: its held-out patients would be unknown.
* Reference R: n real images of held-out patients (val/test part, less any patient who also has a
  training image). Every model's FID/KID is measured against R, never against the images it trained on.
* Floor sample F: n real images of training patients, from a random group of training patients (the
  floor pool). floor = FID(R, F) is the score of an ideal generator that draws new images from the
  training distribution, at the same n as each model's FID(R, n synthetic images). FID is biased upward
  at small n and also carries patient-to-patient variation; both are in the floor at this n, so
  "FID - floor" is what a model adds. The same holds for KID.
* Extractor images X: the domain extractor trains on T less the floor pool, so it never saw R, F or a
  synthetic image: nothing it scores was in its training data. A saved extractor (domain:PATH) records
  its training patients; it is refused if they include a held-out patient, and they are left out of the
  floor pool. Inception weights (inception:PATH) never saw this data.
* n: the requested n, capped by the held-out images and the floor pool (which keeps at least half of
  the training images for a fresh extractor), rounded down to a multiple of the IS splits so every IS
  chunk, real or synthetic, holds n / splits images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.workspace import read_json


@dataclass
class RealSets:
    """Indices into the dataset for each role (see the module docstring)."""

    n: int
    requested_n: int
    train_index: np.ndarray  # every training-part image (memorisation is searched over these)
    reference_index: np.ndarray  # R: n held-out images
    floor_index: np.ndarray  # F: n training images, none seen by the extractor
    extractor_index: np.ndarray  # training images a fresh domain extractor may use (T less the floor pool)

    def images(self, ds: ImageSet, role: str) -> torch.Tensor:
        return ds.images[torch.from_numpy(getattr(self, f"{role}_index"))]

    def describe(self, ds: ImageSet) -> dict[str, Any]:
        def part(ix: np.ndarray, what: str) -> dict[str, Any]:
            return {"n_images": int(len(ix)), "n_patients": int(len(np.unique(ds.patient_id[ix]))), "what": what,
                    "index": ix.tolist()}

        return {"n": self.n, "n_requested": self.requested_n,
                "training_part": {k: v for k, v in part(self.train_index, "the images the runs trained on (train part "
                                                        "of the split)").items() if k != "index"},
                "reference": part(self.reference_index, "held-out patients (val/test part); every FID/KID is "
                                  "measured against these"),
                "floor_sample": part(self.floor_index, "training patients left out of the extractor's training; "
                                     "floor = FID(reference, floor sample)")}


def split_roles(ds: ImageSet) -> tuple[np.ndarray, np.ndarray]:
    """(training-part indices, held-out indices): held-out = val/test images of patients with no training image."""
    if ds.split is None:
        raise UserError(f"dataset {ds.name!r} has no train/val/test split, so no patient is held out of the runs' "
                        "training: load it through the Data tab or `--data` (which assigns a patient-level split)")
    train = ds.split_indices("train")
    seen = np.isin(ds.patient_id, ds.patient_id[train])
    held = np.flatnonzero((ds.split != 0) & ~seen)
    if len(held) == 0:
        raise UserError(f"dataset {ds.name!r} has no held-out patient (every val/test patient also has training "
                        "images); generator metrics need real images the runs did not train on")
    return train, held


def choose_real_sets(ds: ImageSet, n: int, seed: int, splits: int, exclude_patients: set[str] | None = None,
                     keep_for_extractor: bool = True) -> RealSets:
    """Reference, floor sample and extractor images as the module docstring says."""
    train, held = split_roles(ds)
    exclude = set(exclude_patients or ())
    if exclude & set(ds.patient_id[held].tolist()):
        raise UserError("the feature extractor was trained on held-out patients of this dataset, so it would score "
                        "images it has seen: use --extractor domain (trained here on training patients only)")
    rng = np.random.default_rng(seed)
    eligible = train[~np.isin(ds.patient_id[train], list(exclude))]
    cap = len(eligible) // 2 if keep_for_extractor else len(eligible)
    target = min(int(n), len(held), cap)
    pats = rng.permutation(np.unique(ds.patient_id[eligible]))
    counts = {p: c for p, c in zip(*np.unique(ds.patient_id[eligible], return_counts=True))}
    pool, total = [], 0
    for p in pats:  # whole patients, until the pool holds the n floor images
        if total >= target:
            break
        pool.append(p)
        total += counts[p]
    pool_index = eligible[np.isin(ds.patient_id[eligible], pool)]
    n_eff = min(target, len(pool_index)) // splits * splits
    if n_eff < splits:
        raise UserError(f"only {len(held)} held-out and {len(eligible)} usable training images: the metrics need at "
                        f"least {splits} of each (one per IS split); use a dataset with more patients")
    return RealSets(
        n=n_eff, requested_n=int(n), train_index=train,
        reference_index=np.sort(rng.choice(held, n_eff, replace=False)),
        floor_index=np.sort(rng.choice(pool_index, n_eff, replace=False)),
        extractor_index=train[~np.isin(ds.patient_id[train], pool)])


def check_extractor_unseen(trained_patients: set[str], ds: ImageSet, real: RealSets) -> None:
    """The extractor's training patients must not include a scored real image's patient."""
    scored = set(ds.patient_id[np.concatenate([real.reference_index, real.floor_index])].tolist())
    both = trained_patients & scored
    if both:
        raise UserError(f"the feature extractor was trained on {len(both)} patient(s) whose images it would score "
                        f"(e.g. {sorted(both)[:3]}); use --extractor domain")


def _run_dataset(ws: Any, run_id: str) -> dict[str, Any] | None:
    """What a run's config.json records about its data, or None when there is no such run."""
    try:
        path = ws.run_dir(run_id) / "config.json"
    except ValueError:  # not a plain id
        return None
    return (read_json(path).get("dataset") or {}) if path.is_file() else None


def check_trained_on(src: Any, ds: ImageSet, ws: Any) -> str | None:
    """Refuse a run that trained on other data (its held-out patients are unknown here); a note for a
    synthetic set whose run cannot be traced."""
    run_id = src.ident if src.kind == "run" else None
    if src.kind == "set":
        man = src.path / "manifest.json"
        run_id = read_json(man).get("run") if man.is_file() else None
    ref = _run_dataset(ws, str(run_id)) if run_id else None
    if ref is None:
        return (f"synthetic set {src.ident}: its run is unknown, so it is assumed to come from a model trained "
                "on this dataset's train part")
    fp, n_train, name = ref.get("fingerprint"), ref.get("n_train"), ref.get("name")
    what = f"run {run_id}" + (f" (source of synthetic set {src.ident})" if src.kind == "set" else "")
    if fp and ds.fingerprint and fp != ds.fingerprint:
        raise UserError(f"{what} trained on dataset {name!r} (fingerprint {fp}), not on the loaded {ds.name!r} "
                        f"({ds.fingerprint}); load the data it trained on (same split) so its held-out patients are known")
    if n_train is not None and ds.split is not None and int(n_train) != len(ds.split_indices("train")):
        raise UserError(f"{what} trained on {n_train} images but the loaded data's train part holds "
                        f"{len(ds.split_indices('train'))}: load it with the split the run used")
    return None
