"""The `gan:MODEL[@PRESET][:STEPS]` strategy: one generator per fold, trained on that fold's training
patients only, as ordinary runs in the workspace (browsable in the app, resumable).

`check_gan_strategy` validates before any compute (model, preset, steps, the fold's training data);
`prepare_fold_generator` runs before a fold's classifier cells: it reuses a finished run with the same
key (model, train/model settings, dataset fingerprint, fold spec), resumes an interrupted one, or
creates and trains a new one, reporting GAN steps through the experiment's progress callback. The
run's images then top up the fold exactly as a `synthetic:` run does (strategies.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.provenance import FoldSpec
from medgan_ui.data.split import Fold
from medgan_ui.errors import UserError
from medgan_ui.evaluate import strategies as S
from medgan_ui.gan.runs import Run
from medgan_ui.workspace import Workspace

DEFAULT_PRESET = "fast-cpu"
_IGNORED = {"device"}  # a run moved to another device is still the same generator
WAIT_S = 2.0  # poll interval while another process trains the generator this one needs


@dataclass(frozen=True)
class GanSpec:
    model: str
    preset: str
    steps: int | None  # None: the preset's


def parse_gan(spec: str) -> GanSpec:
    """'gan:gdgan@tiny:40' -> GanSpec('gdgan', 'tiny', 40); UserError for an unknown model/preset or bad steps."""
    from medgan_ui.gan.config import PRESETS
    from medgan_ui.gan.registry import kinds

    body = spec.strip()[len("gan:"):]
    head, _, steps_text = body.partition(":")
    model, _, preset = head.partition("@")
    model, preset = model.strip(), preset.strip() or DEFAULT_PRESET
    if model not in kinds():
        raise UserError(f"strategy {spec!r}: unknown model {model!r}; choose one of {kinds()} (e.g. gan:gdgan@fast-cpu)")
    if preset not in PRESETS:
        raise UserError(f"strategy {spec!r}: unknown preset {preset!r}; choose one of {list(PRESETS)}")
    steps = None
    if steps_text.strip():
        try:
            steps = int(steps_text)
        except ValueError:
            raise UserError(f"strategy {spec!r}: steps {steps_text!r} is not a whole number (e.g. gan:gdgan@tiny:40)") from None
        if steps < 1:
            raise UserError(f"strategy {spec!r}: steps must be at least 1, got {steps}")
    return GanSpec(model, preset, steps)


def fold_spec(fold: Fold, targets: list[str], folds: int, repeats: int, seed: int, val_fraction: float) -> FoldSpec:
    """The FoldSpec that rebuilds this experiment fold (data/provenance.fold_split uses the same cv_folds)."""
    return FoldSpec(folds=int(folds), fold=int(fold.fold), repeat=int(fold.repeat), repeats=int(repeats),
                    seed=int(seed), val_fraction=float(val_fraction), targets=tuple(targets))


def gan_configs(g: GanSpec, ds: ImageSet, device: str | None, targets: list[str]) -> tuple[Any, Any]:
    """Validated (TrainConfig, model config) for the dataset's image size and the experiment's targets."""
    from medgan_ui.gan.config import make_configs
    from medgan_ui.gan.registry import family

    over: dict[str, Any] = {"image_size": ds.size, "device": device or "auto",
                            **family(g.model).experiment_settings(list(targets))}
    if g.steps is not None:
        over["steps"] = g.steps
    return make_configs(g.model, g.preset, **over)


def check_gan_strategy(spec: str, ds: ImageSet, folds: list[Fold], labels: list[str], targets: list[str],
                       device: str | None) -> GanSpec:
    """Every problem of a gan: strategy -> UserError before the first epoch."""
    from medgan_ui.gan.registry import validate_run

    g = parse_gan(spec)
    train_cfg, model_cfg = gan_configs(g, ds, device, targets)
    for fold, where in zip(folds, labels):
        fds = dataclasses.replace(ds, split=fold.split.astype(np.int8))
        rows = np.flatnonzero(fold.split == 0)
        for t in targets:
            if not ds.detailed[rows, ds.findings.index(t)].any():
                raise UserError(f"strategy {spec!r}: {where}'s training part has no image with {t!r}, so its "
                                f"generator cannot learn it; use fewer folds or a more common finding")
        try:
            validate_run(fds, train_cfg, model_cfg)
        except UserError as exc:
            raise UserError(f"strategy {spec!r}, {where}: {exc}") from None
    return g


def run_key(config: dict[str, Any]) -> str:
    """What makes two runs the same generator for an experiment: family, settings, data, fold."""
    data = config.get("dataset", {})
    train = {k: v for k, v in config.get("train", {}).items() if k not in _IGNORED}
    return json.dumps({"kind": config.get("kind"), "train": train, "model": config.get("model"),
                       "fingerprint": data.get("fingerprint"), "fold": data.get("fold")}, sort_keys=True)


def find_run(ws: Workspace, key: str) -> Run | None:
    """The best existing run with this key: a finished one first, else the furthest trained."""
    best, best_rank = None, None
    for folder in ws.list_runs():
        run = Run(folder, ws)
        try:
            if run_key(run.config()) != key:
                continue
        except (OSError, ValueError):
            continue
        st = run.status()
        if st["status"] == "failed":
            continue  # diverged: train a fresh one rather than top up from a broken generator
        rank = (st["status"] == "finished", st["step"])
        if best_rank is None or rank > best_rank:
            best, best_rank = run, rank
    return best


def prepare_fold_generator(ws: Workspace, ds: ImageSet, spec: str, g: GanSpec, fold: FoldSpec, where: str,
                           device: str | None, emit: Callable[[dict], None],
                           should_stop: Callable[[], bool]) -> tuple[S.SyntheticSource | None, dict[str, Any]]:
    """(source of the fold's trained generator, info) or (None, info) when stopped mid-training.

    info: run id, "reused" / "resumed" / "trained", seconds."""
    from medgan_ui.gan.base import LabelSchema
    from medgan_ui.gan.registry import config_dict
    from medgan_ui.security.lock import FileLock, LockHeld

    t0 = time.perf_counter()
    train_cfg, model_cfg = gan_configs(g, ds, device, list(fold.targets))
    want = {**config_dict(train_cfg, model_cfg, LabelSchema.from_imageset(ds)),
            "dataset": {"fingerprint": ds.fingerprint, "fold": fold.to_dict()}}
    key = run_key(json.loads(json.dumps(want)))  # JSON round trip: tuples read back as lists
    # one process makes each generator; another (a --cells share) waits for it and then reuses it
    lock = FileLock(ws.root / ".locks" / f"generator-{hashlib.sha256(key.encode()).hexdigest()[:20]}.lock",
                    f"the {where} generator of {spec}")
    waiting = False
    while True:
        try:
            lock.acquire()
            break
        except LockHeld as exc:
            if should_stop():
                return None, {"run": None, "action": "stopped", "seconds": round(time.perf_counter() - t0, 2)}
            if not waiting:
                emit({"stage": "gan", "strategy": spec, "message": f"{where}, {spec}: waiting: {exc}"})
                waiting = True
            time.sleep(WAIT_S)
    try:
        return _find_or_train(ws, ds, spec, key, train_cfg, model_cfg, fold, where, device, emit, should_stop, t0)
    finally:
        lock.release()


def _find_or_train(ws: Workspace, ds: ImageSet, spec: str, key: str, train_cfg: Any, model_cfg: Any, fold: FoldSpec,
                   where: str, device: str | None, emit: Callable[[dict], None], should_stop: Callable[[], bool],
                   t0: float) -> tuple[S.SyntheticSource | None, dict[str, Any]]:
    run = find_run(ws, key)

    def on_progress(e: dict) -> None:
        step, total = int(e.get("step", 0)), int(e.get("total", 0) or 1)
        eta = e.get("eta_s")
        emit({"stage": "gan", "strategy": spec, "step": step, "total": total, "eta_s": eta,
              "message": f"{where}, {spec}: GAN {step}/{total} steps"
                         + (f", about {eta:.0f} s left" if isinstance(eta, (int, float)) else "")})

    if run is not None and run.status()["status"] == "finished":
        action = "reused"
    else:
        if run is None:
            run, action = Run.create(ws, ds, train_cfg, model_cfg, fold=fold), "trained"
            emit({"stage": "gan", "strategy": spec, "step": 0, "total": int(train_cfg.steps),
                  "message": f"{where}, {spec}: training generator {run.id} on the fold's training patients"})
            summary = run.train(ds, on_progress=on_progress, should_stop=should_stop)
        elif run.checkpoints():
            action = "resumed"
            emit({"stage": "gan", "strategy": spec, "step": run.status()["step"], "total": int(train_cfg.steps),
                  "message": f"{where}, {spec}: resuming generator {run.id}"})
            summary = run.resume(dataset=ds, device=device, on_progress=on_progress, should_stop=should_stop)
        else:  # made but killed before its first checkpoint: train it from step 0
            action = "trained"
            summary = run.train(ds, on_progress=on_progress, should_stop=should_stop)
        if summary["status"] == "stopped":
            return None, {"run": run.id, "action": "stopped", "seconds": round(time.perf_counter() - t0, 2)}
        if summary["status"] != "finished":
            raise UserError(f"strategy {spec!r}, {where}: generator run {run.id} ended {summary['status']}: "
                            f"{summary.get('message', '')}; look at it in the Train tab or `medgan runs`")
    src = S.open_source(ws, run.id, device)
    return src, {"run": run.id, "action": action, "seconds": round(time.perf_counter() - t0, 2)}


def prepare_generators(ws: Workspace, ds: ImageSet, cfg: Any, plan: Any, k: int, where: str,
                       should_stop: Callable[[], bool], generators: dict[str, list[dict[str, Any]]],
                       emit: Callable[[dict], None], only: set[str] | None = None) -> bool:
    """Before fold k's cells: each gan: strategy's generator for the fold (those in `only`, when given: the
    ones this process's cells need) into plan.sources[spec][k]; what was done goes to generators[spec].
    False when stopped (the run keeps its checkpoint)."""
    fold = plan.folds[k]
    for spec, g in plan.gans.items():
        if only is not None and spec not in only:
            continue
        if should_stop():
            return False
        fs = fold_spec(fold, cfg.targets, cfg.folds, cfg.repeats, cfg.seed, cfg.val_fraction)
        src, info = prepare_fold_generator(ws, ds, spec, g, fs, where, cfg.device,
                                           lambda e, spec=spec: emit({**e, "strategy": spec}), should_stop)
        generators.setdefault(spec, []).append({"fold": k, "repeat": fold.repeat, "fold_in_repeat": fold.fold, **info})
        if src is None:
            return False
        plan.sources[spec][k] = src
    return True


def gan_strategy_choices() -> list[str]:
    """gan:MODEL@PRESET for every family at the default preset (the Compare tab's suggestions)."""
    from medgan_ui.gan.registry import kinds

    return [f"gan:{k}@{DEFAULT_PRESET}" for k in kinds()]


def generator_notes(generators: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One line per gan: strategy naming its per-fold runs (open them in the Train tab or `medgan runs`)."""
    return [f"{spec}: generators per fold " + ", ".join(f"{g['run']} ({g['action']})" for g in gens)
            for spec, gens in generators.items()]
