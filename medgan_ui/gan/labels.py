"""Label vectors the nets are conditioned on.

General labels (named categorical columns, codes with -1 = unknown) become one bit per binary column
(the second category = 1, like the GDGAN reference's M->0 / F->1, PA->0 / AP->1) and a one-hot block
for columns with more than two values. Unknown is all zeros, and a mask marks those entries so the
auxiliary classifier losses skip labels nobody knows. Detailed labels are already multi-hot.
"""
from __future__ import annotations

import torch

from medgan_ui.gan.base import LabelSchema


class GeneralEncoder:
    """codes [B, G] (long, -1 unknown) -> (vector [B, D], known-mask [B, D]) on one device."""

    def __init__(self, schema: LabelSchema, device: torch.device) -> None:
        self.widths: list[int] = []
        tables, masks = [], []
        for name in schema.general_names:
            n = len(schema.general_values[name])
            w = 1 if n <= 2 else n
            # row 0 = unknown (code -1), row k+1 = category k
            table = torch.zeros(n + 1, w)
            if w == 1:
                if n == 2:
                    table[2, 0] = 1.0
            else:
                table[1:] = torch.eye(n)
            mask = torch.ones(n + 1, w)
            mask[0] = 0.0
            tables.append(table.to(device))
            masks.append(mask.to(device))
            self.widths.append(w)
        self.tables, self.masks = tables, masks
        self.dim = sum(self.widths)

    def __call__(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.tables:
            z = codes.new_zeros((codes.shape[0], 0), dtype=torch.float32)
            return z, z
        idx = codes.long() + 1
        vec = torch.cat([t[idx[:, g]] for g, t in enumerate(self.tables)], dim=1)
        mask = torch.cat([m[idx[:, g]] for g, m in enumerate(self.masks)], dim=1)
        return vec, mask


def cyclic_codes(schema: LabelSchema, n: int, device: torch.device) -> torch.Tensor:
    """The reference's `generate_class_vec` for general codes: each column's categories in turn, then
    the unknown/first pattern, cycling over the batch (the stage-2 y1 of the official code)."""
    g = len(schema.general_names)
    # a binary column's bit 0 is its first category; a one-hot column's zero vector is "unknown"
    base = [0 if len(schema.general_values[name]) <= 2 else -1 for name in schema.general_names]
    patterns = [base]
    for col, name in enumerate(schema.general_names):
        values = schema.general_values[name]
        for code in range(1 if len(values) <= 2 else 0, len(values)):
            row = list(base)
            row[col] = code
            patterns.append(row)
    # reference order: one-hot rows first, then the all-zero row
    patterns = patterns[1:] + patterns[:1]
    rows = [patterns[i % len(patterns)] for i in range(n)]
    return torch.tensor(rows, dtype=torch.long, device=device).reshape(n, g)


def condition_vector(genc: GeneralEncoder | None, general: torch.Tensor, detailed: torch.Tensor,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The one-net conditioning of ACGAN and PGGAN: multi-hot findings, then (with an encoder) the
    encoded general labels; returns (vector, known-mask), the mask None without an encoder (all known)."""
    y = detailed.to(device).float()
    if genc is None:
        return y, None
    g, m = genc(general.to(device))
    return torch.cat([y, g], dim=1), torch.cat([torch.ones_like(y), m], dim=1)
