"""Top-up plan: real counts per general x finding cell, rows -> export cells, the run's training images."""
from __future__ import annotations

import pytest
import torch

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.errors import UserError
from medgan_ui.gan.base import LabelSchema
from medgan_ui.gan.topup import (NO_FINDING, cell_plan, cells_from_plan, plan_columns, run_training_images)
from medgan_ui.gan.feed import training_part
from medgan_ui.workspace import Workspace, atomic_write_json

torch.set_num_threads(1)


def _count(ds, general: dict[str, str], finding: str) -> int:
    """Real images of one cell, counted image by image (independent of the plan's vectorised count)."""
    n = 0
    for i in range(len(ds)):
        if ds.general_label(i) != general:
            continue
        found = ds.finding_labels(i)
        n += (not found) if finding == NO_FINDING else (finding in found)
    return n


def test_plan_counts_match_an_independent_count():
    ds = demo_imageset(n=120, size=16, seed=1)
    schema = LabelSchema.from_imageset(ds)
    target = 12
    rows = cell_plan(schema, ds, target)
    n_combos = 1
    for name in schema.general_names:
        n_combos *= len(schema.general_values[name])
    assert len(rows) == n_combos * (len(schema.findings) + 1)
    assert all(list(r) == plan_columns(schema) for r in rows)
    assert {r["finding"] for r in rows} == {*schema.findings, NO_FINDING}
    for r in rows:
        real = _count(ds, {g: r[g] for g in schema.general_names}, r["finding"])
        assert r["real images"] == real
        assert r["to generate"] == max(0, target - real)
    # every image is in exactly one general combination, and No Finding rows count the unlabelled ones
    no_finding = sum(r["real images"] for r in rows if r["finding"] == NO_FINDING)
    assert no_finding == int((ds.detailed.sum(1) == 0).sum())
    assert sum(r["real images"] for r in rows if r["finding"] != NO_FINDING) == int(ds.detailed.sum())
    assert any(r["to generate"] == 0 for r in rows) and any(r["to generate"] > 0 for r in rows)


def test_plan_without_data_generates_the_full_target():
    schema = LabelSchema(["sex"], {"sex": ["F", "M"]}, ["A"], 16)
    rows = cell_plan(schema, None, 5)
    assert rows == [{"sex": s, "finding": f, "real images": None, "to generate": 5}
                    for s in ("F", "M") for f in ("A", NO_FINDING)]
    assert cell_plan(LabelSchema([], {}, ["A"], 16), None, 2) == [
        {"finding": "A", "real images": None, "to generate": 2},
        {"finding": NO_FINDING, "real images": None, "to generate": 2}]
    with pytest.raises(UserError, match="at least 1"):
        cell_plan(schema, None, 0)


def test_cells_from_edited_rows():
    schema = LabelSchema(["sex"], {"sex": ["F", "M"]}, ["A"], 16)
    rows = cell_plan(schema, None, 3)
    rows[0]["to generate"] = "4"  # an edited table cell comes back as text
    rows[1]["to generate"] = 0.0
    assert cells_from_plan(rows, ["sex"]) == [({"sex": "F"}, ["A"], 4), ({"sex": "M"}, ["A"], 3),
                                              ({"sex": "M"}, [], 3)]
    for bad, message in (("many", "whole number, got 'many'"), (None, "whole number"), (-2, "cannot be negative")):
        rows[2]["to generate"] = bad
        with pytest.raises(UserError, match=message):
            cells_from_plan(rows, ["sex"])


def test_run_training_images_reloads_or_says_the_data_is_gone(tmp_path):
    ws = Workspace(tmp_path / "ws")
    folder = ws.runs / "gdgan-x"
    folder.mkdir(parents=True)
    with pytest.raises(UserError, match="not found"):
        run_training_images(ws, "gdgan-nope")
    gone = tmp_path / "gone"
    atomic_write_json(folder / "config.json", {"kind": "gdgan", "dataset": {"source_root": str(gone), "size": 16}})
    with pytest.raises(UserError, match=f"{gone}.*not there any more"):
        run_training_images(ws, "gdgan-x")
    atomic_write_json(folder / "config.json", {"kind": "gdgan", "dataset": {"size": 16}})
    with pytest.raises(UserError, match="does not record where"):
        run_training_images(ws, "gdgan-x")
    # the given dataset is used as is when its fingerprint is the run's (no reload, though the source is gone)
    ds = demo_imageset(n=40, size=16, seed=0)
    ds.meta["fingerprint"] = "abc123"
    atomic_write_json(folder / "config.json", {"kind": "gdgan", "dataset": {"source_root": str(gone), "size": 16,
                                                                            "fingerprint": "abc123"}})
    pool = run_training_images(ws, "gdgan-x", ds)
    assert torch.equal(pool.images, training_part(ds).images)
