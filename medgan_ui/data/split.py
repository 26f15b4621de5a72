"""Patient-level, stratified, seeded train/val/test splits, and K-fold cross-validation folds.

A patient's follow-up images are nearly the same picture, so a patient in both train and test would
leak: every split here keeps each patient in one part. Splits are stratified on one finding (the
patients with at least one positive image form the positive stratum), so the rare finding reaches
every part, and fractions are met in images as closely as whole patients allow.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from medgan_ui.data.imageset import SPLIT_NAMES, ImageSet
from medgan_ui.errors import UserError

DEFAULT_FRACTIONS = (0.7, 0.1, 0.2)
MIN_POSITIVE_PATIENTS = 3  # "auto" only stratifies on a finding that can reach all three parts


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(not np.isfinite(f) or f < 0 for f in fr):
        raise UserError(f"split fractions must be three non-negative numbers (train, val, test), got {fractions!r}")
    if abs(sum(fr) - 1) > 1e-6:
        raise UserError(f"split fractions must add up to 1, got {fractions!r} (sum {sum(fr):.4g})")
    if fr[0] <= 0:
        raise UserError(f"the train fraction must be above 0, got {fractions!r}")
    return fr  # type: ignore[return-value]


def choose_stratify(ds: ImageSet, stratify: str | None = "auto") -> str | None:
    """The finding to stratify on: a named one, None, or "auto" = the rarest finding (by patients)
    with at least 3 positive patients, else None."""
    if stratify is None or stratify == "none":
        return None
    det = ds.detailed.numpy().astype(bool)
    if stratify == "auto":
        best: tuple[int, int, str] | None = None
        for j, f in enumerate(ds.findings):
            pats = len(np.unique(ds.patient_id[det[:, j]]))
            if pats >= MIN_POSITIVE_PATIENTS and (best is None or (pats, int(det[:, j].sum())) < best[:2]):
                best = (pats, int(det[:, j].sum()), f)
        return None if best is None else best[2]
    if stratify not in ds.findings:
        raise UserError(
            f"cannot stratify on {stratify!r}: dataset {ds.name!r} has findings {ds.findings}; "
            f"use one of them, 'auto' or 'none'"
        )
    return stratify


def _allocate(weights: np.ndarray, fractions: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Part (0/1/2) per patient: shuffle, then cut the running image count at the fractions.

    A patient goes to the part in which the middle of its images falls, so big patients do not all
    land in the last part. Every part with a fraction > 0 gets at least one patient when possible."""
    m = len(weights)
    order = rng.permutation(m)
    w = weights[order].astype(np.float64)
    mid = (np.cumsum(w) - w / 2) / max(w.sum(), 1e-12)
    bounds = np.cumsum(fractions)[:-1]
    part_sorted = np.searchsorted(bounds, mid, side="right")
    part = np.empty(m, np.int64)
    part[order] = part_sorted
    wanted = [k for k, f in enumerate(fractions) if f > 0]
    for k in wanted:  # give an empty part the random-first patient of the most crowded part
        if m >= len(wanted) and not (part == k).any():
            donor = max(wanted, key=lambda d: int((part == d).sum()))
            candidates = [i for i in order if part[i] == donor]
            part[candidates[0]] = k
    return part


def _split_once(ds: ImageSet, finding: str | None, fractions: Sequence[float], seed: int) -> np.ndarray:
    patients, inverse = np.unique(ds.patient_id, return_inverse=True)
    images_per_patient = np.bincount(inverse, minlength=len(patients))
    positive = np.zeros(len(patients), bool)
    if finding is not None:
        j = ds.finding_index(finding)
        positive[inverse[ds.detailed[:, j].numpy().astype(bool)]] = True
    rng = np.random.default_rng(seed)
    part = np.empty(len(patients), np.int64)
    for stratum in (positive, ~positive):  # positives first: their allocation must not depend on negatives
        idx = np.flatnonzero(stratum)
        if len(idx):
            part[idx] = _allocate(images_per_patient[idx], fractions, rng)
    return part[inverse].astype(np.int8)


def _check_possible(ds: ImageSet, finding: str | None, fractions: Sequence[float]) -> None:
    parts = sum(1 for f in fractions if f > 0)
    n_pat = ds.n_patients()
    if n_pat < parts:
        raise UserError(
            f"dataset {ds.name!r} has {n_pat} patient(s), too few for a patient-level split into {parts} parts; "
            f"add images from more patients or set the val/test fractions to 0"
        )
    if finding is None:
        return
    j = ds.finding_index(finding)
    pos = len(np.unique(ds.patient_id[ds.detailed[:, j].numpy().astype(bool)]))
    if pos < parts:
        raise UserError(
            f"only {pos} patient(s) in {ds.name!r} have {finding!r}; a split stratified on it needs at least "
            f"{parts} (one positive patient per part). Add more {finding} patients, stratify on another finding, "
            f"or split without stratification (stratify='none')"
        )


def split_summary(ds: ImageSet, split: np.ndarray, finding: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {}, "patients": {}, "positives": {}, "positive_patients": {}}
    pos = ds.detailed[:, ds.finding_index(finding)].numpy().astype(bool) if finding else None
    for k, name in enumerate(SPLIT_NAMES):
        rows = split == k
        out["sizes"][name] = int(rows.sum())
        out["patients"][name] = int(len(np.unique(ds.patient_id[rows])))
        if pos is not None:
            out["positives"][name] = int((rows & pos).sum())
            out["positive_patients"][name] = int(len(np.unique(ds.patient_id[rows & pos])))
    return out


def assign_split(
    ds: ImageSet,
    stratify: str | None = "auto",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> ImageSet:
    """A copy of `ds` (tensors shared) with ds.split (int8: 0 train, 1 val, 2 test) and ds.meta["split"].

    Same data, stratify, fractions and seed give the same split, whatever the order of the images."""
    fr = check_fractions(fractions)
    finding = choose_stratify(ds, stratify)
    _check_possible(ds, finding, fr)
    split = _split_once(ds, finding, fr, seed)
    meta = dict(ds.meta)
    meta["split"] = {"seed": int(seed), "fractions": list(fr), "stratify": finding, **split_summary(ds, split, finding)}
    return dataclasses.replace(ds, split=split, meta=meta)


def k_splits(
    ds: ImageSet,
    k: int,
    stratify: str | None = "auto",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> list[np.ndarray]:
    """K repeated patient-level splits (seeds seed, seed+1, ...), for repeated-split experiments.

    Split i equals assign_split(ds, stratify, fractions, seed + i).split."""
    if int(k) < 1:
        raise UserError(f"number of splits must be at least 1, got {k!r}")
    fr = check_fractions(fractions)
    finding = choose_stratify(ds, stratify)
    _check_possible(ds, finding, fr)
    return [_split_once(ds, finding, fr, seed + i) for i in range(int(k))]


# ---- cross-validation folds for the augmentation experiment --------------------------------------
KFOLD, OFFICIAL, IMAGE_LEVEL = "patient-level K-fold", "official split", "image-level split: no patient ids"
DEFAULT_VAL_FRACTION = 0.125  # of the training folds' patients: 5 folds -> 70 / 10 / 20 % as the single split


@dataclasses.dataclass(frozen=True)
class Fold:
    """One train/val/test assignment of the experiment: repeat r, fold f; split holds 0/1/2 per image."""

    repeat: int
    fold: int
    split: np.ndarray


def patient_ids_known(ds: ImageSet) -> bool:
    """False where the reader had no patient ids and gave every image its own id (MedMNIST, class
    folders, a CSV without a patient column); a split of such data is image-level only."""
    flag = ds.meta.get("patient_ids")
    if flag is not None:  # a reader that knows says so
        return bool(flag)
    fmt = ds.meta.get("format")
    if fmt in ("medmnist", "folders"):
        return False
    if fmt == "csv":
        return bool((ds.meta.get("options") or {}).get("patient_column"))
    return True  # NIH (Patient ID), DICOM (PatientID), the phantom, sets built in code


def has_official_split(ds: ImageSet) -> bool:
    """True when the reader kept the source's own split (MedMNIST, train/val/test folders);
    assign_split records its seed in meta["split"], an official split has no such record."""
    return ds.split is not None and not isinstance(ds.meta.get("split"), dict)


def split_kind(ds: ImageSet) -> str:
    """How an experiment on ds splits, in the words shown everywhere (Data tab, inspect, results)."""
    if has_official_split(ds):
        return OFFICIAL if patient_ids_known(ds) else f"{OFFICIAL} ({IMAGE_LEVEL})"
    return KFOLD if patient_ids_known(ds) else IMAGE_LEVEL


def split_note(ds: ImageSet) -> str:
    """One sentence on the dataset's stored split, for the Data tab and `medgan data inspect`."""
    no_ids = "no patient ids, so images of one patient may sit in two parts"
    if has_official_split(ds):
        return "Official split of the source, kept." + ("" if patient_ids_known(ds) else f" Image-level: {no_ids}.")
    if patient_ids_known(ds):
        return "Patient-level split: no patient appears in two parts."
    return f"Image-level split: {no_ids}."


def min_positive_patients(k: int) -> int:
    """Fewest positive patients for K folds: one in every test fold, and after the largest test fold
    (ceil(n / K) of them) two left in the training folds, one for validation and one for training."""
    n = max(int(k), 2)
    while n - -(-n // int(k)) < 2:
        n += 1
    return n


def _carve_val(trval: np.ndarray, code: np.ndarray, positive: np.ndarray, fraction: float,
               rng: np.random.Generator) -> np.ndarray:
    """Validation patients drawn from the training folds' patients: `fraction` of each stratum (code),
    then, for each finding validation would miss, one more of its patients, as long as training keeps
    one; early stopping on validation AUC needs positives of every target."""
    val = np.zeros(len(code), bool)
    for c in np.unique(code[trval]):
        idx = trval[code[trval] == c]
        n_val = min(len(idx) - 1, int(round(fraction * len(idx))))
        val[rng.permutation(idx)[:max(n_val, 0)]] = True
    for j in range(positive.shape[1]):
        if not (val & positive[:, j]).any():
            cand = rng.permutation(trval[positive[trval, j]])
            if len(cand) >= 2:
                val[cand[0]] = True
    return np.flatnonzero(val)


def cv_folds(ds: ImageSet, findings: str | Sequence[str] | None, folds: int = 5, repeats: int = 1, seed: int = 0,
             val_fraction: float = DEFAULT_VAL_FRACTION) -> tuple[list[Fold], str]:
    """Disjoint patient-level K-fold cross-validation, stratified by patient on `findings` (a patient
    is positive for a finding when any of its images is; several findings stratify on their
    combination), repeated `repeats` times with seeds seed, seed+1, ...; validation is carved from
    the training folds by patient. Returns the folds and the split kind (see split_kind).

    A dataset with an official split keeps it: one "fold" per repeat, all with the same test set
    (the repeats then vary only the training seeds). Bad settings fail here, before any training."""
    import warnings

    from sklearn.model_selection import StratifiedKFold

    kind = split_kind(ds)
    if int(repeats) < 1:
        raise UserError(f"repeats must be at least 1, got {repeats!r}")
    if has_official_split(ds):
        return [Fold(r, 0, ds.split.astype(np.int8)) for r in range(int(repeats))], kind
    k = int(folds)
    if k < 2:
        raise UserError(f"folds must be at least 2 for cross-validation, got {folds!r}")
    if not 0 < val_fraction < 1:
        raise UserError(f"the validation fraction must be between 0 and 1, got {val_fraction!r}")
    names = [findings] if isinstance(findings, str) else list(findings or [])
    patients, inverse = np.unique(ds.patient_id, return_inverse=True)
    positive = np.zeros((len(patients), len(names)), bool)
    for j, f in enumerate(names):
        positive[inverse[ds.detailed[:, ds.finding_index(f)].numpy().astype(bool)], j] = True
    unit = "image(s)" if kind == IMAGE_LEVEL else "patient(s)"
    need = min_positive_patients(k)
    checks = [(f"with {f!r}", int(positive[:, j].sum()), f) for j, f in enumerate(names)]
    checks.append(("without any of " + (", ".join(map(repr, names)) or "the findings"),
                   int((~positive.any(1)).sum()), None))
    for label, n_have, finding in checks:
        if n_have < need:
            fit = [j for j in range(2, k) if min_positive_patients(j) <= n_have]
            fix = f"set folds (--folds) to {max(fit)} or fewer" if fit else "add data"
            raise UserError(
                f"folds = {k}: dataset {ds.name!r} has {n_have} {unit} {label}, and {k}-fold cross-validation needs "
                f"at least {need} (one in every test fold, two left for training and validation); {fix}"
                + (f", or add more {finding} patients" if fit and finding else ""))
    code = (positive * (1 << np.arange(len(names)))).sum(1)  # the combination of findings per patient
    out = []
    for r in range(int(repeats)):
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed + r)
        rng = np.random.default_rng([seed, r])
        with warnings.catch_warnings():  # rare combinations below K patients: checked per finding above
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            pairs = list(skf.split(np.zeros(len(patients)), code))
        for f, (trval, test) in enumerate(pairs):
            part = np.zeros(len(patients), np.int8)
            part[test] = 2
            part[_carve_val(trval, code, positive, val_fraction, rng)] = 1
            out.append(Fold(r, f, part[inverse]))
    return out, kind
