"""Top up rare label cells: count a run's real training images per general-label combination x finding
and plan how many synthetic ones each cell needs to reach a target.

The plan is plain rows (dicts) so the UI can show and edit it as a table and the CLI can print it;
`cells_from_plan` turns (edited) rows into the `cells` that sampling.export_png / export_dicom take.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.gan.base import LabelSchema
from medgan_ui.workspace import Workspace

NO_FINDING = "No Finding"
FINDING, REAL, TO_GENERATE = "finding", "real images", "to generate"
Cells = list[tuple[dict[str, str], list[str], int]]


def plan_columns(schema: LabelSchema) -> list[str]:
    """Column order of a plan row: the general labels, then finding, real images, to generate."""
    return [*schema.general_names, FINDING, REAL, TO_GENERATE]


def run_training_images(workspace: Workspace, run_id: str, dataset: ImageSet | None = None) -> ImageSet:
    """The images run_id trained on: `dataset` when it is the run's (same fingerprint), else the run's
    recorded source loaded again (cached loads are instant). UserError when the data is gone."""
    from medgan_ui.gan.feed import training_part
    from medgan_ui.gan.runs import Run

    run = Run.open(workspace, run_id)
    data = run.dataset_or_reload(dataset, purpose="to count or compare with its real images")
    return training_part(run.training_data(data))  # a fold run trained on its fold's patients


def cell_plan(schema: LabelSchema, pool: ImageSet | None, target: int) -> list[dict[str, Any]]:
    """One row per general combination x finding (plus No Finding): the real training images in the
    cell (None when `pool` is None, i.e. the data is gone) and how many to generate so the cell
    reaches `target` (the rare cells get the most). An image with two findings counts in both cells;
    No Finding counts images with none."""
    if int(target) < 1:
        raise UserError(f"target images per cell must be at least 1 (got {target})")
    combos = list(itertools.product(*(schema.general_values[n] for n in schema.general_names))) or [()]
    det = general = None
    if pool is not None:
        det = pool.detailed.numpy().astype(bool)
        general = pool.general.numpy()
    rows = []
    for combo in combos:
        in_cell = None
        if pool is not None:
            mask = np.ones(len(pool), dtype=bool)
            for g, (name, value) in enumerate(zip(schema.general_names, combo)):
                mask &= general[:, g] == pool.general_values[name].index(value)
            in_cell = det[mask]
        for finding in [*schema.findings, NO_FINDING]:
            real = None
            if in_cell is not None:
                real = int((~in_cell.any(1)).sum()) if finding == NO_FINDING else \
                    int(in_cell[:, pool.findings.index(finding)].sum())
            rows.append({**dict(zip(schema.general_names, combo)), FINDING: finding, REAL: real,
                         TO_GENERATE: max(0, int(target) - (real or 0))})
    return rows


def cells_from_plan(rows: Iterable[Mapping[str, Any]], general_names: Sequence[str]) -> Cells:
    """(Edited) plan rows -> export cells [(general labels, findings, count)], leaving out 0-count rows."""
    cells: Cells = []
    for row in rows:
        try:
            n = int(float(row[TO_GENERATE]))
        except (TypeError, ValueError):
            raise UserError(f"'{TO_GENERATE}' must be a whole number, got {row[TO_GENERATE]!r} "
                            f"(row {row.get(FINDING)})") from None
        if n < 0:
            raise UserError(f"'{TO_GENERATE}' cannot be negative (row {row[FINDING]})")
        if n:
            finding = str(row[FINDING])
            cells.append(({g: str(row[g]) for g in general_names}, [] if finding == NO_FINDING else [finding], n))
    return cells
