"""The augmentation-comparison experiment: does synthetic augmentation help the rare-class classifier?

Disjoint patient-level K-fold cross-validation (data/split.py cv_folds), optionally repeated R times
with other seeds; a dataset with an official split keeps it and the repeats vary only the seeds. For
each fold (seed shared by every strategy, so all strategies see the same train/val/test patients and
the same classifier initialisation) and each strategy, train a classifier with early stopping on
validation, pick a threshold on validation (Youden) and score the test fold. Every input problem is
checked before the first epoch (`validate`). The statistics are in results.py / cv_stats.py.

Writes experiments/<id>/: config.json, manifest.json, predictions/repeat<r>-fold<f>-<strategy>.csv,
cells/repeat<r>-fold<f>-<strategy>.json (per-cell records: resume, scale-out, merge; cells.py),
fidelity/fidelity-repeat<r>-fold<f>-<source>.json (label fidelity per fold and synthetic source),
results.json, results.csv, results_subgroups.csv, roc.png, confusion.png.
Controls (composite classic+, tstr:, doses, equal steps, synthetic negatives) are in arms.py.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.split import KFOLD, OFFICIAL, Fold, cv_folds
from medgan_ui.errors import UserError
from medgan_ui.evaluate import arms as A
from medgan_ui.evaluate import cells as C
from medgan_ui.evaluate import strategies as S
from medgan_ui.evaluate.gan_folds import check_gan_strategy, generator_notes, prepare_generators
from medgan_ui.evaluate.cell import train_cell, write_predictions
from medgan_ui.evaluate import label_fidelity as F
from medgan_ui.evaluate.label_fidelity import SCORER, fidelity_for_fold, summarise_fidelity
from medgan_ui.evaluate.leakage import check_fold_sources
from medgan_ui.evaluate.classifiers import CLASSIFIERS, check_weights_file, parse_init
from medgan_ui.evaluate.results import summarise, write_results
from medgan_ui.gan.device import pick_device
from medgan_ui.workspace import Workspace, atomic_write_json, new_id, now_iso, write_manifest

Progress = Callable[[dict], None]
PARTS = ("train", "val", "test")


@dataclass
class ExperimentConfig:
    targets: list[str] = field(default_factory=lambda: ["Cardiomegaly"])
    strategies: list[str] = field(default_factory=lambda: ["none", "oversample"])
    # data: "demo" or a path, read with medgan_ui.data.load.load_dataset unless a dataset is passed in
    data: str = "demo"
    data_format: str | None = None
    data_options: dict[str, Any] = field(default_factory=dict)  # extra ReadOptions (csv, columns, fit, ...)
    image_size: int = 64
    classifier: str = "resnet18"
    width: float = 1.0  # channel multiplier; 1 = the published network
    init: str = "scratch"  # scratch | imagenet:PATH | segmentation
    freeze_encoder: bool = False  # segmentation init: train only the head on frozen U-Net features
    masks_dir: str | None = None  # segmentation init on data without built-in masks
    seg_epochs: int = 10
    folds: int = 5  # K of the patient-level K-fold cross-validation (ignored with an official split)
    repeats: int = 1  # R: the K folds again with other seeds
    val_fraction: float = 0.125  # of the training folds' patients, held out for early stopping
    specificity: float = 0.9  # sensitivity is also reported at this specificity
    splits: int | None = None  # deprecated: the old repeated-split count, now read as folds
    seed: int = 0
    epochs: int = 30
    patience: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    monitor: str = "auc"  # early stopping / model selection on validation AUC (or "loss")
    classic: str = "chest"  # classic augmentation preset: "chest" or "frid-adar" (rotations up to 180 deg)
    synthetic_mode: str = "ratio"  # "ratio": positives reach value x negatives; "count": reach value
    synthetic_value: float = 1.0
    synthetic_negatives: bool = False  # synthetic negatives of the same general-label cells, as many as positives
    doses: list[float] = field(default_factory=list)  # dose sweep: each synthetic-like arm at each multiple
    equal_steps: bool = False  # every arm gets none's optimiser-step budget (epochs x steps over real train)
    n_boot: int = 1000
    device: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self.alias_note = ""  # not a field: config.json keeps only the resolved folds
        if self.splits is not None:
            self.alias_note = (f"'splits' is deprecated: splits = {self.splits} was read as folds = {self.splits} "
                               "(patient-level K-fold cross-validation); use folds (--folds) and repeats (--repeats)")
            self.folds, self.splits = int(self.splits), None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        d = {k: v for k, v in d.items() if k != "fractions"}  # configs from before K-fold: no longer apply
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"unknown experiment setting(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class Plan:
    """What validate() resolved: the folds, the synthetic sources per strategy (one per fold), the masks."""

    folds: list[Fold]
    split_kind: str
    sources: dict[str, list[S.SyntheticSource]]
    masks: tuple[np.ndarray, torch.Tensor, list[str]] | None
    split_info: list[dict[str, Any]]
    notes: list[str]
    arms: list[str] = field(default_factory=list)  # the strategies after the dose sweep: the results' columns
    gans: dict[str, Any] = field(default_factory=dict)  # gan: source -> GanSpec (sources filled per fold)
    overlap: dict[str, list[int]] = field(default_factory=dict)  # synthetic-like source -> leaked patients per fold

    def label(self, j: int) -> str:
        return _fold_label(self.folds, j)


def _fold_label(folds: list[Fold], j: int) -> str:
    f = folds[j]
    n_f = 1 + max(x.fold for x in folds)
    n_r = 1 + max(x.repeat for x in folds)
    return (f"fold {f.fold + 1}/{n_f}" if n_f > 1 else "official split") + (
        f", repeat {f.repeat + 1}/{n_r}" if n_r > 1 else "")


def load_data(cfg: ExperimentConfig, ws: Workspace) -> ImageSet:
    from medgan_ui.data.load import load_dataset
    from medgan_ui.data.readers.base import ReadOptions

    try:
        opts = ReadOptions(**{"size": cfg.image_size, **cfg.data_options})
    except TypeError as exc:
        raise UserError(f"data_options: {exc}") from None
    return load_dataset(cfg.data, format=cfg.data_format, options=opts, workspace=ws)


def _positive_patients(ds: ImageSet, target: str, rows: np.ndarray | None = None) -> int:
    rows = np.arange(len(ds)) if rows is None else rows
    on = ds.detailed[torch.as_tensor(rows), ds.findings.index(target)].numpy().astype(bool)
    return int(len(np.unique(ds.patient_id[rows][on])))


def _check_top_up(cfg: ExperimentConfig, parsed: list[A.Arm], ds: ImageSet, folds: list[Fold]) -> None:
    """A synthetic top-up (not TSTR) that adds no image in any fold would report `none` under another name:
    e.g. a target that is already the majority class (PneumoniaMNIST's pneumonia) at ratio 1."""
    topped = [a.spec for a in parsed if a.source_kind in ("synthetic", "gan") and a.name != "tstr"]
    if not topped:
        return
    col = [ds.findings.index(t) for t in cfg.targets]
    y = ds.detailed[:, col].numpy().astype(bool)
    if any(sum(S.synthetic_needs(y[f.split == 0], cfg.synthetic_mode, cfg.synthetic_value)) for f in folds):
        return
    pos = [int(y[folds[0].split == 0][:, t].sum()) for t in range(len(col))]
    neg = int((folds[0].split == 0).sum()) - max(pos)
    goal = (f"synthetic ratio {cfg.synthetic_value:g} (positives up to {cfg.synthetic_value:g} x negatives)"
            if cfg.synthetic_mode == "ratio" else f"synthetic count {cfg.synthetic_value:g}")
    raise UserError(f"strategies {', '.join(topped)}: the {goal} adds no synthetic image in any fold: the training "
                    f"part already has {', '.join(f'{n} {t!r}' for n, t in zip(pos, cfg.targets))} positives beside "
                    f"about {neg} negatives. Raise the ratio or give a count (--synthetic-ratio / --synthetic-count), "
                    "or target the rarer finding")


def validate(cfg: ExperimentConfig, ws: Workspace, ds: ImageSet) -> Plan:
    """Every input problem -> UserError now, never a silent AUC of 0.5 or a crash half-way."""
    if not cfg.targets:
        raise UserError("choose at least one target finding")
    for t in cfg.targets:
        if t not in ds.findings:
            raise UserError(f"target finding {t!r} is not in dataset {ds.name!r}; it has {ds.findings}")
    if len(set(cfg.targets)) != len(cfg.targets):
        raise UserError(f"target findings repeat: {cfg.targets}")
    if not cfg.strategies:
        raise UserError("choose at least one strategy (none, classic, undersample, oversample, synthetic:<id>, "
                        "gan:MODEL)")
    arm_specs = A.expand_doses(cfg.strategies, [float(d) for d in cfg.doses or []])
    if len(set(arm_specs)) != len(arm_specs):
        raise UserError(f"strategies repeat: {cfg.strategies}")
    parsed = [A.parse_arm(s) for s in arm_specs]
    if cfg.classifier not in CLASSIFIERS:
        raise UserError(f"unknown classifier {cfg.classifier!r}; choose one of {list(CLASSIFIERS)}")
    kind, weights = parse_init(cfg.init)
    if kind == "imagenet":
        check_weights_file(weights or "")
    for name, lo in (("folds", 1), ("repeats", 1), ("epochs", 1), ("batch_size", 2), ("patience", 1), ("n_boot", 100)):
        if int(getattr(cfg, name)) < lo:
            raise UserError(f"{name} must be at least {lo}, got {getattr(cfg, name)}")
    if not 0 < cfg.specificity < 1:
        raise UserError(f"specificity must be between 0 and 1 (e.g. 0.9), got {cfg.specificity}")
    if cfg.synthetic_mode not in ("ratio", "count") or cfg.synthetic_value <= 0:
        raise UserError(f"synthetic top-up must be 'ratio' or 'count' with a positive value, got "
                        f"{cfg.synthetic_mode} {cfg.synthetic_value}")
    if cfg.classic not in ("chest", "frid-adar"):
        raise UserError(f"classic augmentation preset must be 'chest' or 'frid-adar', got {cfg.classic!r}")
    for t in cfg.targets:
        npos = _positive_patients(ds, t)
        if npos < 3:
            raise UserError(f"target {t!r} occurs in only {npos} patient(s) of dataset {ds.name!r}; train, "
                            "validation and test each need at least one positive patient")
    folds, split_kind = cv_folds(ds, cfg.targets, cfg.folds, cfg.repeats, cfg.seed, cfg.val_fraction)
    if split_kind.startswith(OFFICIAL) and cfg.folds != ExperimentConfig.folds:
        notes_pre = [f"dataset {ds.name!r} has an official split: it is kept, folds = {cfg.folds} does not apply"]
    else:
        notes_pre = []
    info = []
    for j, fold in enumerate(folds):
        row: dict[str, Any] = {"index": j, "repeat": fold.repeat, "fold": fold.fold}
        for p, part in enumerate(PARTS):
            rows = np.flatnonzero(fold.split == p)
            row[part] = {"images": int(len(rows)), "patients": int(len(np.unique(ds.patient_id[rows])))}
            for t in cfg.targets:
                pos = int(ds.detailed[torch.as_tensor(rows), ds.findings.index(t)].sum()) if len(rows) else 0
                row[part][t] = pos
                if pos == 0 or pos == len(rows):
                    what = "positive" if pos == 0 else "negative"
                    raise UserError(
                        f"fold {j} (repeat {fold.repeat}, fold {fold.fold}): the {part} part has no {what} image of "
                        f"{t!r} ({len(rows)} images); the dataset has {_positive_patients(ds, t)} patients with {t}. "
                        f"Use fewer folds (folds = {cfg.folds}) or a more common finding")
        info.append(row)
    _check_top_up(cfg, parsed, ds, folds)
    sources: dict[str, list[S.SyntheticSource]] = {}
    notes: list[str] = ([cfg.alias_note] if cfg.alias_note else []) + notes_pre
    if split_kind != KFOLD:
        notes.append(f"split: {split_kind}")
    J = len(folds)
    labels = [_fold_label(folds, j) for j in range(J)]
    gans, overlap = {}, {}
    for arm in parsed:
        if arm.source_kind == "gan":  # one generator per fold, trained before the fold's cells (evaluate/gan_folds.py)
            if arm.source not in gans:
                gans[arm.source] = check_gan_strategy(arm.source, ds, folds, labels, cfg.targets, cfg.device)
                overlap[arm.source] = [0] * J  # trained on the fold's training part by construction
                sources[arm.source] = [None] * J  # type: ignore[list-item]  # filled fold by fold
            continue
        if arm.source_kind != "synthetic":
            continue
        spec, ids = arm.source, arm.ids
        if len(ids) not in (1, J):
            raise UserError(f"strategy {arm.spec!r}: give one id, or one per fold ({J} = folds x repeats) joined by '+'")
        if spec not in sources:
            srcs = [S.open_source(ws, i, cfg.device) for i in ids]
            for src in srcs:
                S.check_source(src, ds, cfg.targets)
            sources[spec] = srcs * J if len(srcs) == 1 else srcs
            # refused unless no fold's val/test patient was in its generator's training data (evaluate/leakage.py)
            overlap[spec] = check_fold_sources(spec, sources[spec], ds, [f.split for f in folds], labels)
        for src in sources[spec]:
            A.check_source_for(arm, src, cfg.targets, cfg.synthetic_negatives)
    masks = None
    if kind == "segmentation":
        if cfg.masks_dir:
            from medgan_ui.evaluate.segmentation import load_mask_folder

            masks = load_mask_folder(ds, cfg.masks_dir)
        elif ds.masks is not None:
            masks = (np.arange(len(ds)), ds.masks, list(ds.mask_names))
        else:
            raise UserError(f"init 'segmentation' needs masks: dataset {ds.name!r} has none; give a mask folder "
                            "(PNG per image, named like the image file, one sub-folder per structure)")
    return Plan(folds, split_kind, sources, masks, info, notes, arm_specs, gans, overlap)


def run_experiment(cfg: ExperimentConfig | dict, workspace: Workspace | str | None = None,
                   on_progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                   *, dataset: ImageSet | None = None, exp_id: str | None = None,
                   cells: str | tuple[int, int] | None = None) -> dict[str, Any]:
    """Run the comparison (or this process's share of its cells, `cells` = 'i/N' or (i, N), 0-based; default:
    every cell); returns {"id", "dir", "status", "results"} (results as in results.json; None while other
    processes' cells are missing, status "partial"). Finished cells of experiment `exp_id` are reused."""
    cfg = ExperimentConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    emit = on_progress or (lambda e: None)
    stop = should_stop or (lambda: False)
    emit({"stage": "validate", "progress": 0.0, "message": "checking inputs"})
    share = cells if isinstance(cells, tuple) else C.parse_cells(cells)
    if share is not None and not exp_id:
        raise UserError(f"--cells {share[0]}/{share[1]}: the processes share one experiment folder; give them "
                        "the same fixed id (--id NAME)")
    if exp_id:
        C.experiment_dir(ws, exp_id)  # a plain name, checked before the data is read
    ds = dataset if dataset is not None else load_data(cfg, ws)
    plan = validate(cfg, ws, ds)
    exp_id = exp_id or new_id("exp")
    out = ws.experiment_dir(exp_id)
    C.check_config(out, asdict(cfg), exp_id)
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    started = now_iso()
    atomic_write_json(out / "config.json", asdict(cfg))
    device = pick_device(cfg.device)
    tidx = [ds.findings.index(t) for t in cfg.targets]
    labels = ds.detailed[:, tidx].numpy().astype(bool)
    records: list[dict[str, Any]] = []
    seg_cache: dict[int, tuple[dict, dict]] = {}  # fold -> segmentation-pretrained weights, shared by strategies
    specs = plan.arms
    todo = [c for c in range(len(plan.folds) * len(specs)) if C.mine(c, share)]
    status, done_here, reused = "done", 0, 0
    generators: dict[str, list[dict[str, Any]]] = {}
    for k, fold in enumerate(plan.folds):
        part = {p: np.flatnonzero(fold.split == i) for i, p in enumerate(PARTS)}
        where = plan.label(k)
        none_model = None
        mine_open = [s for j, s in enumerate(specs) if C.mine(k * len(specs) + j, share)
                     and C.missing(out, [C.cell_name(fold.repeat, fold.fold, s)])]
        fid_open = [s for s in F.owned_sources(plan, k, share)
                    if C.load_fidelity(out, C.fidelity_name(fold.repeat, fold.fold, s), ds.fingerprint) is None]
        need = {A.parse_arm(s).source for s in mine_open} | set(fid_open)
        # gan: sources: this fold's generators that this process needs, trained on the fold's training
        # patients (or reused / resumed; another process's finished run is reused the same way)
        if not prepare_generators(ws, ds, cfg, plan, k, where, stop, generators, lambda e, k=k: emit(
                {"fold": k, "epoch": 0, "progress": done_here / max(len(todo), 1), **e}), only=need):
            status = "stopped"
            break
        for j, spec in enumerate(specs):
            name = C.cell_name(fold.repeat, fold.fold, spec)
            rec = C.load_cell(out, name, ds.fingerprint)
            if rec is not None:
                reused += C.mine(k * len(specs) + j, share)
                records.append(rec)
                continue
            if not C.mine(k * len(specs) + j, share):
                continue
            if stop():
                status = "stopped"
                break
            base = {"fold": k, "strategy": spec}
            n_jobs, job = max(len(todo), 1), done_here
            emit({**base, "stage": "prepare", "epoch": 0, "progress": job / n_jobs,
                  "message": f"{where}, {spec}: building the training set"})
            rec = train_cell(cfg, plan, ds, labels, part, k, spec, device,
                             lambda e, job=job, base=base, where=where, n_jobs=n_jobs: emit(
                                 {**base, "stage": "train", "epoch": e["epoch"],
                                  "progress": (job + min(1.0, e["epoch"] / cfg.epochs)) / n_jobs,
                                  "message": f"{where}, {spec}: epoch {e['epoch']} val {cfg.monitor} "
                                             f"{e['val_score']:.3f}"}),
                             stop, seg_cache)
            model = rec.pop("model")
            if rec["stopped"]:  # a half-trained model must not enter the statistics
                status = "stopped"
                break
            none_model = model if spec == "none" else none_model
            src_key = A.parse_arm(spec).source
            if src_key in plan.overlap:
                rec["leakage_overlap"] = plan.overlap[src_key][k]
            rec.update(repeat=fold.repeat, fold_in_repeat=fold.fold, idx_test=part["test"],
                       n_fit=int(len(part["train"]) + len(part["val"])))
            write_predictions(out / "predictions" / f"{name}.csv", ds, cfg.targets, part, rec)
            C.save_cell(out, name, rec, ds.fingerprint)  # on disk at once: a crash or stop loses only this cell
            records.append(rec)
            done_here += 1
        if status == "stopped":
            break
        if fid_open and not stop():  # a stop here keeps the fold's cells; its fidelity is computed on resume
            emit({"fold": k, "stage": "fidelity", "epoch": 0, "progress": done_here / max(len(todo), 1),
                  "message": f"{where}: label fidelity of the synthetic strategies"})
            fid = fidelity_for_fold(cfg, plan, ds, part, k, fid_open, none_model, lambda: train_cell(
                cfg, plan, ds, labels, part, k, "none", device, lambda e: None, stop, seg_cache)["model"])
            for s in fid_open:
                C.save_fidelity(out, C.fidelity_name(fold.repeat, fold.fold, s),
                                {"source": s, "fold": k, "fidelity": fid[s], "scorer": fid[SCORER]}, ds.fingerprint)
        for s in plan.gans:  # the fold's generators are done: free them (the runs stay in the workspace)
            plan.sources[s][k] = None
    if reused:
        plan.notes.append(f"resumed: {reused} finished cell(s) reused from experiment folder {exp_id}")
    if share is not None:
        names = cell_names(plan)
        if status != "done" or C.missing(out, names):  # others still run theirs; the last one (or --merge) merges
            status = "partial" if status == "done" else status
            emit({"stage": "done", "progress": 1.0, "message": f"experiment {exp_id}: cells {share[0]}/{share[1]} {status}"})
            return {"id": exp_id, "dir": str(out), "status": status, "results": None}
        records = [C.load_cell(out, n, ds.fingerprint) for n in names]
    return finish(cfg, plan, ds, out, exp_id, records, status, started, emit, generators=generators)


def cell_names(plan: Plan) -> list[str]:
    """Every (fold, strategy) cell of the plan, in run order (cells.py numbers them so)."""
    return [C.cell_name(f.repeat, f.fold, s) for f in plan.folds for s in plan.arms]


def finish(cfg: ExperimentConfig, plan: Plan, ds: ImageSet, out: Path, exp_id: str, records: list[dict[str, Any]],
           status: str, started: str, emit: Progress, *,
           generators: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Statistics over the records, results files and manifest (also the merge's last step, merge.py)."""
    emit({"stage": "evaluate", "progress": 0.99, "message": "statistics and plots"})
    arms_cfg = dataclasses.replace(cfg, strategies=plan.arms)  # the columns: dose-swept labels
    results = summarise(arms_cfg, records, ds, plan.split_kind, plan.split_info, plan.notes, status)
    results["leakage"] = {s: {"overlap_per_fold": v, "overlap_total": int(sum(v))} for s, v in plan.overlap.items()}
    results["generators"] = generators or {}
    results["notes"] += generator_notes(generators or {})
    results["label_fidelity"] = summarise_fidelity(F.load_per_fold(plan, out, ds.fingerprint), cfg.targets,
                                                   len(plan.folds))
    write_results(out, results)
    write_manifest(out, kind="experiment", experiment=exp_id, config=asdict(cfg), seed=cfg.seed,
                   dataset=ds.name, dataset_fingerprint=ds.fingerprint, started=started, finished=now_iso(),
                   status=status, sources={s: [x.describe() for x in v if x is not None]
                                           for s, v in plan.sources.items()}, generators=generators)
    emit({"stage": "done", "progress": 1.0, "message": f"experiment {exp_id} {status}"})
    return {"id": exp_id, "dir": str(out), "status": status, "results": results}
