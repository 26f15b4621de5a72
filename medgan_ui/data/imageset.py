"""ImageSet: the one dataset object every layer consumes.

Images are a uint8 tensor [N, H, W] (grayscale). Labels come in two kinds:
  * general  - named categorical columns (sex in {F, M}, view in {AP, PA}, ...), stored as integer
               codes [N, G] with -1 for "unknown"; the category names live in `general_values`.
  * detailed - multi-hot findings [N, F] (uint8), names in `findings`; all zeros = no finding.
Plus patient ids, source paths, optional masks [N, K, H, W] and a stored split (0/1/2 = train/val/test).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from medgan_ui.workspace import atomic_write_bytes

SPLIT_NAMES = ("train", "val", "test")
CACHE_VERSION = 1


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 [N, H, W]
    general_names: list[str]  # e.g. ["sex", "view"]
    general_values: dict[str, list[str]]  # e.g. {"sex": ["F", "M"], "view": ["AP", "PA"]}
    general: torch.Tensor  # int64 [N, G] codes into general_values, -1 = unknown
    findings: list[str]  # e.g. ["Cardiomegaly", "Effusion", "Nodule"]
    detailed: torch.Tensor  # uint8 [N, F] multi-hot
    patient_id: np.ndarray  # str [N]
    source: list[str]  # path (or "<generator>:<index>") per image
    masks: torch.Tensor | None = None  # uint8 [N, K, H, W] (0/255) or None
    mask_names: list[str] = field(default_factory=list)
    split: np.ndarray | None = None  # int8 [N]: 0 train, 1 val, 2 test
    meta: dict[str, Any] = field(default_factory=dict)  # name, format, fingerprint, report, split info

    def __post_init__(self) -> None:
        n = int(self.images.shape[0])
        if self.images.dtype != torch.uint8 or self.images.ndim != 3:
            raise ValueError(f"images must be uint8 [N,H,W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.general.shape != (n, len(self.general_names)):
            raise ValueError(f"general codes must be [N={n}, G={len(self.general_names)}], got {tuple(self.general.shape)}")
        if self.detailed.shape != (n, len(self.findings)):
            raise ValueError(f"detailed must be [N={n}, F={len(self.findings)}], got {tuple(self.detailed.shape)}")
        if len(self.patient_id) != n or len(self.source) != n:
            raise ValueError("patient_id and source need one entry per image")
        self.patient_id = np.asarray(self.patient_id, dtype=str)
        self.general = self.general.to(torch.int64)
        self.detailed = self.detailed.to(torch.uint8)

    # ---- basic facts -------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "dataset"))

    @property
    def fingerprint(self) -> str | None:
        return self.meta.get("fingerprint")

    def n_patients(self) -> int:
        return int(len(np.unique(self.patient_id)))

    # ---- indexing ----------------------------------------------------------------------------
    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> "ImageSet":
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        idx_np = idx.numpy()
        return ImageSet(
            images=self.images[idx],
            general_names=list(self.general_names),
            general_values={k: list(v) for k, v in self.general_values.items()},
            general=self.general[idx],
            findings=list(self.findings),
            detailed=self.detailed[idx],
            patient_id=self.patient_id[idx_np],
            source=[self.source[i] for i in idx_np],
            masks=None if self.masks is None else self.masks[idx],
            mask_names=list(self.mask_names),
            split=None if self.split is None else self.split[idx_np],
            meta=dict(self.meta),
        )

    def split_indices(self, part: str) -> np.ndarray:
        if self.split is None:
            raise ValueError(f"dataset {self.name!r} has no split yet: call medgan_ui.data.split.assign_split first")
        return np.flatnonzero(self.split == SPLIT_NAMES.index(part))

    def part(self, part: str) -> "ImageSet":
        """The train, val or test part of the stored split."""
        return self.subset(self.split_indices(part))

    # ---- labels ------------------------------------------------------------------------------
    def general_label(self, i: int) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for g, name in enumerate(self.general_names):
            code = int(self.general[i, g])
            out[name] = self.general_values[name][code] if code >= 0 else None
        return out

    def finding_labels(self, i: int) -> list[str]:
        return [f for f, on in zip(self.findings, self.detailed[i].tolist()) if on]

    def general_code(self, name: str, value: str) -> int:
        """Code of a category, with a message listing what exists when it does not."""
        if name not in self.general_values:
            raise KeyError(f"general label {name!r} not in dataset; it has {self.general_names}")
        values = self.general_values[name]
        if value not in values:
            raise KeyError(f"value {value!r} not found for general label {name!r}; it has {values}")
        return values.index(value)

    def finding_index(self, finding: str) -> int:
        if finding not in self.findings:
            raise KeyError(f"finding {finding!r} not in dataset; it has {self.findings}")
        return self.findings.index(finding)

    def general_onehot(self) -> torch.Tensor:
        """float [N, sum(k)] one-hot per general column (unknown -> all zeros for that column)."""
        blocks = []
        for g, name in enumerate(self.general_names):
            k = len(self.general_values[name])
            codes = self.general[:, g]
            block = torch.zeros(len(self), k)
            known = codes >= 0
            block[known, codes[known]] = 1.0
            blocks.append(block)
        return torch.cat(blocks, dim=1) if blocks else torch.zeros(len(self), 0)

    # ---- counts ------------------------------------------------------------------------------
    def counts(self) -> dict[str, Any]:
        """Counts per general label, per finding and per general x finding cell."""
        det = self.detailed.numpy().astype(bool)
        no_finding = ~det.any(axis=1)
        out: dict[str, Any] = {
            "images": len(self),
            "patients": self.n_patients(),
            "general": {},
            "findings": {f: int(det[:, j].sum()) for j, f in enumerate(self.findings)},
            "no_finding": int(no_finding.sum()),
            "finding_patients": {
                f: int(len(np.unique(self.patient_id[det[:, j]]))) for j, f in enumerate(self.findings)
            },
            "cells": {},
        }
        for g, name in enumerate(self.general_names):
            codes = self.general[:, g].numpy()
            per_value = {v: int((codes == k).sum()) for k, v in enumerate(self.general_values[name])}
            if (codes < 0).any():
                per_value["unknown"] = int((codes < 0).sum())
            out["general"][name] = per_value
            cells: dict[str, dict[str, int]] = {}
            for k, v in enumerate(self.general_values[name]):
                rows = codes == k
                cells[v] = {f: int(det[rows, j].sum()) for j, f in enumerate(self.findings)}
                cells[v]["No Finding"] = int(no_finding[rows].sum())
            out["cells"][name] = cells
        if self.split is not None:
            out["split"] = {s: int((self.split == i).sum()) for i, s in enumerate(SPLIT_NAMES)}
        return out

    # ---- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Single-file .npz cache (atomic)."""
        arrays: dict[str, np.ndarray] = {
            "images": self.images.numpy(),
            "general": self.general.numpy(),
            "detailed": self.detailed.numpy(),
            "patient_id": self.patient_id.astype(str),
            "source": np.asarray(self.source, dtype=str),
        }
        if self.masks is not None:
            arrays["masks"] = self.masks.numpy()
        if self.split is not None:
            arrays["split"] = self.split.astype(np.int8)
        header = {
            "cache_version": CACHE_VERSION,
            "general_names": self.general_names,
            "general_values": self.general_values,
            "findings": self.findings,
            "mask_names": self.mask_names,
            "meta": self.meta,
        }
        arrays["header"] = np.frombuffer(json.dumps(header, default=str).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        # uncompressed: radiographs shrink only ~25% under zlib, and inflating them made a cache hit
        # on 5,856 MedMNIST images <10x faster than reading the source (issue 2 asks for >=10x)
        np.savez(buf, **arrays)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "ImageSet":
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["header"].tobytes().decode())
            if header.get("cache_version") != CACHE_VERSION:
                raise ValueError(f"{path}: cache version {header.get('cache_version')} is not {CACHE_VERSION}")
            return cls(
                images=torch.from_numpy(z["images"].copy()),
                general_names=header["general_names"],
                general_values=header["general_values"],
                general=torch.from_numpy(z["general"].copy()),
                findings=header["findings"],
                detailed=torch.from_numpy(z["detailed"].copy()),
                patient_id=z["patient_id"].copy(),
                source=z["source"].tolist(),
                masks=torch.from_numpy(z["masks"].copy()) if "masks" in z.files else None,
                mask_names=header.get("mask_names", []),
                split=z["split"].copy() if "split" in z.files else None,
                meta=header.get("meta", {}),
            )

    def __repr__(self) -> str:
        return (
            f"ImageSet({self.name!r}, n={len(self)}, size={self.size}, general={self.general_values}, "
            f"findings={self.findings}, patients={self.n_patients()})"
        )


def concat(sets: Sequence[ImageSet]) -> ImageSet:
    """Join sets with the same label schema (e.g. real + synthetic)."""
    first = sets[0]
    for s in sets[1:]:
        if s.general_names != first.general_names or s.findings != first.findings or s.size != first.size:
            raise ValueError("cannot concatenate image sets with different label schemas or image sizes")
        if s.general_values != first.general_values:
            raise ValueError("cannot concatenate image sets whose general label categories differ")
    has_masks = all(s.masks is not None for s in sets)
    has_split = all(s.split is not None for s in sets)
    return ImageSet(
        images=torch.cat([s.images for s in sets]),
        general_names=list(first.general_names),
        general_values={k: list(v) for k, v in first.general_values.items()},
        general=torch.cat([s.general for s in sets]),
        findings=list(first.findings),
        detailed=torch.cat([s.detailed for s in sets]),
        patient_id=np.concatenate([s.patient_id for s in sets]),
        source=[p for s in sets for p in s.source],
        masks=torch.cat([s.masks for s in sets]) if has_masks else None,  # type: ignore[misc]
        mask_names=list(first.mask_names) if has_masks else [],
        split=np.concatenate([s.split for s in sets]) if has_split else None,  # type: ignore[misc]
        meta=dict(first.meta),
    )
