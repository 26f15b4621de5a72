"""`medgan evaluate --merge ID`: the per-cell records of an experiment run in shares (`--cells i/N`,
cells.py) merged into its results, as one process would have written them. No training."""
from __future__ import annotations

from typing import Any

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.evaluate import cells as C
from medgan_ui.evaluate import experiment as E
from medgan_ui.workspace import Workspace, now_iso, read_json


def merge_experiment(workspace: Workspace | str | None, exp_id: str, *, dataset: ImageSet | None = None,
                     on_progress: E.Progress | None = None) -> dict[str, Any]:
    """Merge the per-cell records of experiment `exp_id` (written by `--cells` processes) into its results."""
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    out = C.experiment_dir(ws, exp_id)
    if not (out / "config.json").is_file():
        raise UserError(f"--merge {exp_id}: no experiment of that id in {ws.experiments} (no config.json)")
    cfg = E.ExperimentConfig.from_dict(read_json(out / "config.json"))
    ds = dataset if dataset is not None else E.load_data(cfg, ws)
    plan = E.validate(cfg, ws, ds)
    names = E.cell_names(plan)
    lacking = C.missing(out, names)
    if lacking:
        shown = ", ".join(lacking[:12]) + (f" and {len(lacking) - 12} more" if len(lacking) > 12 else "")
        raise UserError(f"--merge {exp_id}: {len(lacking)} of {len(names)} cell(s) not finished: {shown}; run the "
                        f"missing share(s) again with --id {exp_id} --cells i/N (finished cells are reused)")
    records = [C.load_cell(out, n, ds.fingerprint) for n in names]
    return E.finish(cfg, plan, ds, out, exp_id, records, "done", now_iso(), on_progress or (lambda e: None))
