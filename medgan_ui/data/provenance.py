"""Which patients a generator trained on, and the one cross-validation fold it may have trained on.

A run (gan/runs.py) writes `trained_patients.json` with the dataset fingerprint, the fold spec (when
it trained on one fold's training patients) and the SHA-256 of every trained-on patient id. Hashes,
not ids: the record can travel with an exported synthetic set without naming patients, yet the
experiment can still count how many of a fold's validation/test patients the generator has seen.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError

RECORD_FILE = "trained_patients.json"


def patient_hashes(ids: Iterable[str]) -> list[str]:
    """Sorted, distinct SHA-256 hex digests of patient ids (unsalted, so two records can be compared)."""
    return sorted({hashlib.sha256(str(i).encode("utf-8")).hexdigest() for i in ids})


@dataclass(frozen=True)
class FoldSpec:
    """One fold of data/split.cv_folds: enough to rebuild it from the same data."""

    folds: int
    fold: int
    repeat: int = 0
    repeats: int = 1
    seed: int = 0
    val_fraction: float = 0.125
    targets: tuple[str, ...] = field(default_factory=tuple)  # the findings the folds are stratified on
    scheme: str = "cv_folds"

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FoldSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def describe(self) -> str:
        return (f"fold {self.fold + 1}/{self.folds}" + (f" of repeat {self.repeat + 1}/{self.repeats}"
                                                          if self.repeats > 1 else "")
                + f" (seed {self.seed}, stratified on {', '.join(self.targets) or 'nothing'})")


def fold_split(ds: ImageSet, spec: FoldSpec) -> np.ndarray:
    """The 0/1/2 (train/val/test) split per image of the fold, by the experiment's own split code."""
    from medgan_ui.data.split import cv_folds

    for t in spec.targets:
        if t not in ds.findings:
            raise UserError(f"fold target {t!r} is not a finding of dataset {ds.name!r}; it has {ds.findings}")
    if not 0 <= spec.fold < spec.folds or not 0 <= spec.repeat < spec.repeats:
        raise UserError(f"fold {spec.fold} of {spec.folds} / repeat {spec.repeat} of {spec.repeats} does not exist: "
                        f"folds count from 0 to folds - 1 (--fold 0 .. {spec.folds - 1})")
    folds, _ = cv_folds(ds, list(spec.targets), spec.folds, spec.repeats, spec.seed, spec.val_fraction)
    per_repeat = len(folds) // spec.repeats
    return folds[spec.repeat * per_repeat + min(spec.fold, per_repeat - 1)].split


def fold_dataset(ds: ImageSet, spec: FoldSpec) -> ImageSet:
    """ds with its stored split replaced by the fold's (same images, same fingerprint): a GAN given it
    trains on the fold's training patients only (gan/feed.training_part)."""
    return dataclasses.replace(ds, split=fold_split(ds, spec).astype(np.int8))


def trained_record(ds: ImageSet, train_rows: np.ndarray, fold: FoldSpec | None) -> dict[str, Any]:
    """What a run records about its training data (written as RECORD_FILE)."""
    hashes = patient_hashes(ds.patient_id[np.asarray(train_rows, dtype=int)])
    return {"dataset": ds.name, "dataset_fingerprint": ds.fingerprint,
            "fold": fold.to_dict() if fold is not None else None,
            "n_patients": len(hashes), "n_images": int(len(train_rows)), "patients_sha256": hashes}


def overlap(record: dict[str, Any], patient_ids: Iterable[str]) -> int:
    """How many of these patients the record's generator trained on."""
    seen = set(record.get("patients_sha256") or [])
    return sum(h in seen for h in patient_hashes(patient_ids))
