"""The leakage guard: a synthetic source may only top up a fold whose validation and test patients
its generator never saw.

A run records its trained-on patients (data/provenance.py, runs/<id>/trained_patients.json); an
exported set carries its run's record in manifest.json ("trained_on"). `check_fold_sources` refuses,
before any training, a source without that record, one trained on other data (fingerprint), and one
that trained on any of the fold's validation or test patients; it returns the measured overlap per
fold (0 for every accepted fold), which results.json reports.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.provenance import RECORD_FILE, overlap
from medgan_ui.errors import UserError
from medgan_ui.evaluate.strategies import SyntheticSource
from medgan_ui.workspace import read_json

FIX = ("use a gan:MODEL strategy (e.g. gan:gdgan), which trains one generator per fold on that fold's training "
       "patients, or train one run per fold with `medgan train --fold K --folds N` and give them as "
       "synthetic:ID0+ID1+...")


def source_record(src: SyntheticSource) -> dict[str, Any] | None:
    """The trained-on patients record of a run or of the run an exported set came from; None if absent."""
    path = src.path / RECORD_FILE if src.kind == "run" else src.path / "manifest.json"
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    record = data if src.kind == "run" else data.get("trained_on")
    if not isinstance(record, dict) or not isinstance(record.get("patients_sha256"), list):
        return None
    return record


def _name(src: SyntheticSource) -> str:
    return f"{'run' if src.kind == 'run' else 'synthetic set'} {src.ident!r}"


def check_fold_sources(spec: str, sources: list[SyntheticSource], ds: ImageSet, splits: list[np.ndarray],
                       labels: list[str]) -> list[int]:
    """Overlap (patients) of each fold's source with that fold's val + test parts; UserError unless all 0.

    `splits[k]` is fold k's 0/1/2 split per image of ds, `labels[k]` its name (e.g. "fold 2/5")."""
    out = []
    for src, split, where in zip(sources, splits, labels):
        record = source_record(src)
        if record is None:
            raise UserError(f"strategy {spec!r}: {_name(src)} does not record which patients it was trained on "
                            f"(no {RECORD_FILE}; made before the leakage guard, or exported without its run's "
                            f"record), so it may have seen {where}'s test patients. Refused: {FIX}")
        fp = record.get("dataset_fingerprint")
        if fp != ds.fingerprint:
            raise UserError(f"strategy {spec!r}: {_name(src)} was trained on other data (dataset "
                            f"{record.get('dataset')!r}, fingerprint {fp}) than this experiment's {ds.name!r} "
                            f"(fingerprint {ds.fingerprint}); its patients cannot be checked against the folds. "
                            f"Refused: {FIX}")
        held_out = ds.patient_id[split != 0]
        n = overlap(record, np.unique(held_out))
        if n:
            n_held = len(np.unique(held_out))
            raise UserError(f"strategy {spec!r}: {_name(src)} was trained on {n} of the {n_held} validation/test "
                            f"patients of {where}: its synthetic images would leak those patients into training "
                            f"and flatter the strategy. Refused: {FIX}")
        out.append(n)
    return out
