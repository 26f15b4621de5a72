"""One training engine for every model family (gdgan, acgan, dcgan, pggan).

The model owns its nets, optimisers, losses and schedule (base.GANModel); this file owns the rest:
device and precision, feeding batches from the on-device uint8 tensor, the sample grid, metrics,
full-state checkpoints, resume, cooperative stop, NaN detection, progress events and DDP.

Host syncs: losses stay 0-d device tensors and are summed on the device; they are copied to the
host once per `log_every` steps (one stacked transfer), which is also where non-finite values are
caught. Nothing else in the loop waits for the device.
"""
from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.gan import checkpoint as ckpt
from medgan_ui.gan.base import LabelSchema
from medgan_ui.gan.device import (autocast, average_gradients_before_step, broadcast_module, fork_rng,
                                  init_distributed, precision_name, uses_channels_last)
from medgan_ui.gan.feed import DeviceBatches
from medgan_ui.gan.grid import FixedGrid, default_cells, save_png
from medgan_ui.gan.runs import (append_metrics, config_dict, configs_from_dict, model_kind, read_status,
                                training_part, truncate_metrics, validate, write_status)
from medgan_ui.security.lock import run_lock
from medgan_ui.workspace import Workspace, atomic_write_json, new_id, now_iso, read_json, write_manifest

Progress = Callable[[dict], None]


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(dataset: ImageSet, train_cfg, model_cfg, run_dir: Path, *, resume: bool = False,
          on_progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
          progress_bar: bool = False, checkpoint: str | None = None) -> dict:
    """Train (or resume) the run in run_dir; returns {status, step, total, message, checkpoint}.

    Bad settings raise UserError before any compute. Divergence (NaN/inf) returns status "failed"
    and leaves the last good checkpoint as `latest`.
    """
    # one process trains a run at a time: a second resume is refused, naming the holder (issue 9)
    with run_lock(run_dir, enabled=is_main_process()):
        trainer = Trainer(dataset, train_cfg, model_cfg, Path(run_dir), resume=resume, checkpoint=checkpoint)
        return trainer.run(on_progress=on_progress, should_stop=should_stop, progress_bar=progress_bar)


class Trainer:
    def __init__(self, dataset: ImageSet, train_cfg, model_cfg, run_dir: Path, *, resume: bool = False,
                 checkpoint: str | None = None) -> None:
        from medgan_ui.gan.registry import build_model

        self.train_cfg, self.model_cfg, self.run_dir = train_cfg, model_cfg, run_dir
        validate(dataset, train_cfg, model_cfg)
        state = None
        if resume:  # read the checkpoint first: a missing/corrupt one must fail before any compute
            state = ckpt.load(ckpt.resolve(run_dir / "checkpoints", checkpoint))
        self.dist, self.device = init_distributed(train_cfg.device)
        self.amp = bool(getattr(train_cfg, "amp", True))
        self.precision = precision_name(self.device, self.amp)  # logged, so a run says what it ran in
        self.schema = LabelSchema.from_imageset(dataset)
        train_ds = training_part(dataset)
        self.total = int(train_cfg.steps)
        seed = int(train_cfg.seed)
        seed_everything(seed)
        self.model = build_model(model_kind(train_cfg, model_cfg), model_cfg, train_cfg, self.schema, self.device)
        channels_last = uses_channels_last(self.device) and bool(getattr(train_cfg, "channels_last", True))
        if channels_last:
            for net in self.model.nets.values():
                net.to(memory_format=torch.channels_last)
        if self.dist.enabled:
            for net in self.model.nets.values():
                broadcast_module(net)
            for opt in self.model.optimizers.values():
                average_gradients_before_step(opt, self.dist.world)
            seed_everything(seed + 1000 * self.dist.rank)  # same weights, different noise per rank
        self.feed = DeviceBatches(train_ds, int(train_cfg.batch_size), self.device, seed + 7919 * self.dist.rank,
                                  channels_last=channels_last)
        if hasattr(self.model, "bind_data"):  # with the feed's device copy of the images: a model needs no second one
            self.model.bind_data(dataclasses.replace(train_ds, images=self.feed.images))
        rows = len(default_cells(self.schema))
        self.grid = FixedGrid(self.model, self.schema, self.device, seed,
                              cols=max(2, int(getattr(train_cfg, "n_sample_grid", 64)) // rows))
        self.step, self.elapsed = 0, 0.0
        self.last_checkpoint: Path | None = None
        if state is not None:
            self._restore(state)

    # ---- state -----------------------------------------------------------------------------------
    def _restore(self, state: dict[str, Any]) -> None:
        missing = set(self.model.nets) - set(state["nets"])
        if missing:
            raise UserError(f"checkpoint lacks nets {sorted(missing)}: it was written by a different model/config")
        for name, net in self.model.nets.items():
            net.load_state_dict(state["nets"][name])
        for name, opt in self.model.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.model.load_extra_state(state.get("extra", {}))
        self.feed.load_state_dict(state["feed"][self.dist.rank] if self.dist.rank < len(state["feed"]) else state["feed"][0])
        ckpt.set_rng_state(state["rng"][min(self.dist.rank, len(state["rng"]) - 1)], self.device)
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed_s", 0.0))
        self.last_checkpoint = ckpt.resolve(self.run_dir / "checkpoints", ckpt.checkpoint_name(self.step))
        if self.step >= self.total:
            raise UserError(f"run already reached step {self.step} of {self.total}; raise the step count to train further")

    def _gather(self, obj: Any) -> list[Any]:
        if not self.dist.enabled:
            return [obj]
        out: list[Any] = [None] * self.dist.world
        dist.all_gather_object(out, obj)
        return out

    def _save_checkpoint(self) -> Path | None:
        """All ranks take part (RNG/feed states are gathered); rank 0 writes. Never writes NaN weights."""
        flags = [torch.isfinite(p).all() for net in self.model.nets.values() for p in net.parameters()]
        finite = bool(torch.stack(flags).all()) if flags else True
        feeds, rngs = self._gather(self.feed.state_dict()), self._gather(ckpt.rng_state(self.device))
        if not finite or not self.dist.is_main:
            return None
        state = {
            "nets": {k: v.state_dict() for k, v in self.model.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.model.optimizers.items()},
            "extra": self.model.extra_state(),
            "rng": rngs, "feed": feeds, "elapsed_s": self.elapsed,
            "config": config_dict(self.train_cfg, self.model_cfg, self.schema),
        }
        keep = int(getattr(self.train_cfg, "keep_checkpoints", 3))
        self.last_checkpoint = ckpt.save(self.run_dir / "checkpoints", self.step, state, keep=keep)
        return self.last_checkpoint

    def _write_grid(self) -> Path | None:
        if not self.dist.is_main:
            return None
        with fork_rng(self.device):
            img = self.grid.image(self.model)
        path = save_png(img, self.run_dir / "samples" / f"step_{self.step:06d}.png")
        save_png(img, self.run_dir / "samples" / "latest.png")
        return path

    # ---- loop ------------------------------------------------------------------------------------
    def run(self, on_progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
            progress_bar: bool = False) -> dict:
        cfg, main = self.train_cfg, self.dist.is_main
        log_every = max(1, int(getattr(cfg, "log_every", 50)))
        sample_every = max(1, int(getattr(cfg, "sample_every", 500)))
        ckpt_every = max(1, int(getattr(cfg, "checkpoint_every", 1000)))
        emit = on_progress if (on_progress and main) else (lambda e: None)
        if main:
            truncate_metrics(self.run_dir / "metrics.jsonl", self.step)
            write_status(self.run_dir, "running", self.step, self.total)
        bar = None
        if progress_bar and main:
            from tqdm import tqdm

            bar = tqdm(total=self.total, initial=self.step, unit="step", dynamic_ncols=True)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        window_start, window_steps = time.perf_counter(), 0
        update_ema = getattr(self.model, "update_ema", None)
        status, message, grid_path = "running", "", None
        try:
            while self.step < self.total:
                step = self.step + 1
                batch = self.feed.next()
                with autocast(self.device, self.amp):
                    losses = self.model.train_step(batch, self.step)  # models get the 0-based index
                if update_ema is not None:
                    update_ema(self.step)
                for k, v in losses.items():
                    v = v.detach().float()
                    sums[k] = sums[k] + v if k in sums else v
                    counts[k] = counts.get(k, 0) + 1
                self.step, window_steps = step, window_steps + 1
                boundary = (step % log_every == 0 or step % ckpt_every == 0 or step % sample_every == 0
                            or step == self.total)
                # under DDP every rank must reach the same collective: poll stop only at boundaries
                stop = should_stop is not None and (boundary or not self.dist.enabled) and bool(should_stop())
                if not (boundary or stop):
                    continue
                means, stop = self._reduce(sums, counts, stop)  # the one host sync of a log window
                now = time.perf_counter()
                dt = now - window_start
                self.elapsed += dt
                bad = [k for k, v in means.items() if not math.isfinite(v)]
                if bad:
                    last = self.last_checkpoint.name if self.last_checkpoint else "none yet"
                    status = "failed"
                    message = (f"training diverged at step {step}: loss {', '.join(bad)} is not finite "
                               f"(last good checkpoint: {last}); resume from it with a lower learning rate")
                    break
                imgs = window_steps * self.model.images_per_step(self.feed.batch_size) * self.dist.world
                line = {"step": step, "stage": _plain_stage(getattr(self.model, "stage", None)),
                        "losses": means, "img_per_s": imgs / dt if dt > 0 else None,
                        "step_time_s": dt / window_steps, "elapsed_s": round(self.elapsed, 3), "time": now_iso(),
                        "device": self.device.type, "precision": self.precision}
                sums, counts, window_start, window_steps = {}, {}, now, 0
                grid_path = self._write_grid() if (step % sample_every == 0 or step == self.total or stop) else None
                saved = self._save_checkpoint() if (step % ckpt_every == 0 or step == self.total or stop) else None
                window_start = time.perf_counter()  # grid/checkpoint time is not training throughput
                if main:
                    append_metrics(self.run_dir / "metrics.jsonl", line)
                eta = (self.total - step) * line["step_time_s"]
                emit({"step": step, "total": self.total, "losses": means, "img_per_s": line["img_per_s"],
                      "eta_s": eta, "sample_grid": str(grid_path) if grid_path else None,
                      "checkpoint": str(saved) if saved else None, "status": "running", "message": ""})
                if bar is not None:
                    bar.update(step - bar.n)
                    shown = [k for k in ("loss_d", "loss_g", "gp") if k in means] or list(means)[:3]
                    bar.set_postfix({k: f"{means[k]:.3g}" for k in shown} | {"img/s": f"{line['img_per_s']:.0f}"})
                if main and saved:
                    write_status(self.run_dir, "running", step, self.total, checkpoint=saved.name)
                if stop:
                    status, message = "stopped", f"stopped at step {step}; resume with `medgan train --resume {self.run_dir.name}`"
                    break
            else:
                status, message = "finished", f"finished {self.total} steps"
        except BaseException as exc:  # record why the run ended, then let the caller see the error
            if main:
                ended = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                write_status(self.run_dir, ended, self.step, self.total, message=f"{type(exc).__name__}: {exc}",
                             checkpoint=self.last_checkpoint.name if self.last_checkpoint else None)
            raise
        finally:
            if bar is not None:
                bar.close()
        last = self.last_checkpoint.name if self.last_checkpoint else None
        if main:
            write_status(self.run_dir, status, self.step, self.total, message=message, checkpoint=last)
        summary = {"status": status, "step": self.step, "total": self.total, "message": message,
                   "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
                   "run_dir": str(self.run_dir)}
        emit({"step": self.step, "total": self.total, "losses": {}, "img_per_s": None, "eta_s": 0.0,
              "sample_grid": str(self.run_dir / "samples" / "latest.png") if grid_path else None,
              "checkpoint": summary["checkpoint"], "status": status, "message": message})
        return summary

    def _reduce(self, sums: dict[str, torch.Tensor], counts: dict[str, int], stop: bool) -> tuple[dict[str, float], bool]:
        """Window means (averaged over ranks under DDP) and an agreed stop flag, in one transfer."""
        keys = sorted(sums)
        vec = torch.stack([sums[k] / counts[k] for k in keys] + [torch.tensor(float(stop), device=self.device)]) \
            if keys else torch.tensor([float(stop)], device=self.device)
        if self.dist.enabled:
            flag = vec[-1:].clone()
            dist.all_reduce(vec)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            vec = torch.cat([vec[:-1] / self.dist.world, flag])
        host = vec.cpu().tolist()
        return dict(zip(keys, host[:-1])), bool(host[-1])


def _plain_stage(stage: Any) -> Any:
    return stage if stage is None or isinstance(stage, (int, float, str)) else str(stage)


def pid_alive(status: dict[str, Any]) -> bool:
    if status.get("host") != socket.gethostname() or not status.get("pid"):
        return False
    try:
        os.kill(int(status["pid"]), 0)
    except OSError:
        return False
    return True


def run_status(run_dir: Path) -> dict[str, Any]:
    """status.json, with 'running' turned into 'interrupted' when its process is gone (kill -9, crash)."""
    status = read_status(run_dir)
    if status.get("status") == "running" and not pid_alive(status):
        status["status"] = "interrupted"
    return status


# ---- run folders -------------------------------------------------------------------------------------
def dataset_ref(ds: ImageSet) -> dict[str, Any]:
    """What config.json records about the data: enough to reload it for resume and to check it is the same."""
    simple = {k: v for k, v in ds.meta.items() if isinstance(v, (str, int, float, bool)) or v is None}
    simple.pop("loaded_from_cache", None)
    return {**simple, "options": ds.meta.get("options"), "split_params": ds.meta.get("split_params"),
            "name": ds.name, "fingerprint": ds.fingerprint, "size": ds.size, "n_images": len(ds),
            "n_train": len(training_part(ds))}


def create_run(workspace: Workspace, dataset: ImageSet, train_cfg, model_cfg) -> str:
    """Validate, then make runs/<id>/ with config.json + manifest.json; returns the run id."""
    validate(dataset, train_cfg, model_cfg)
    kind = model_kind(train_cfg, model_cfg)
    run_id = new_id(kind)
    run_dir = workspace.run_dir(run_id)
    run_dir.mkdir(parents=True)
    config = {**config_dict(train_cfg, model_cfg, LabelSchema.from_imageset(dataset)), "dataset": dataset_ref(dataset)}
    atomic_write_json(run_dir / "config.json", config)
    write_manifest(run_dir, kind="training-run", run=run_id, model=kind, seed=int(train_cfg.seed),
                   dataset_fingerprint=dataset.fingerprint, dataset=dataset.name, config=config, created=now_iso())
    write_status(run_dir, "created", 0, int(train_cfg.steps))
    return run_id


def reload_dataset(workspace: Workspace, run_id: str, ref: dict[str, Any], purpose: str = "to resume it") -> ImageSet:
    """Load run_id's data again from the source recorded in config.json (cached loads are instant);
    `purpose` ends the message when the data cannot be had."""
    from medgan_ui.data.load import load_dataset
    from medgan_ui.data.readers.base import ReadOptions

    config_path = workspace.run_dir(run_id) / "config.json"
    source = ref.get("source_root")
    if not source:
        raise UserError(f"run {run_id} does not record where its training data came from "
                        f"({config_path} has no dataset.source_root), so it cannot be loaded {purpose}")
    opts = dict(ref.get("options") or {"size": int(ref["size"])})
    if opts.get("window") is not None:
        opts["window"] = tuple(opts["window"])
    split = ref.get("split_params") or {}
    kwargs = {"stratify": split["stratify"], "split_seed": split["seed"], "fractions": split["fractions"]} if split else {}
    if source != "demo" and not Path(source).exists():
        raise UserError(f"run {run_id}'s training data {source} is not there any more; put it back at that "
                        f"path (recorded in {config_path}) {purpose}")
    return load_dataset(source, format=None if source == "demo" else ref.get("format"), options=ReadOptions(**opts),
                        workspace=workspace, **kwargs)


def resume_run(workspace: Workspace, run_id: str, *, dataset: ImageSet | None = None, steps: int | None = None,
               checkpoint: str | None = None, device: str | None = None, on_progress: Progress | None = None,
               should_stop: Callable[[], bool] | None = None, progress_bar: bool = False) -> dict:
    """Continue runs/<run_id> from its latest (or named) checkpoint; `steps` raises the total."""
    run_dir = workspace.run_dir(run_id)
    if not (run_dir / "config.json").is_file():
        raise UserError(f"run {run_id!r} not found in {workspace.runs}; list runs with `medgan runs`")
    config = read_json(run_dir / "config.json")
    train_cfg, model_cfg = configs_from_dict(config)
    ckpt.load(ckpt.resolve(run_dir / "checkpoints", checkpoint))  # a bad checkpoint fails before data loads
    changes = {k: v for k, v in (("steps", steps), ("device", device)) if v is not None}
    if changes:
        train_cfg = dataclasses.replace(train_cfg, **changes)
        config["train"] = config_dict(train_cfg, model_cfg, LabelSchema(**config["schema"]))["train"]
        if is_main_process():
            atomic_write_json(run_dir / "config.json", config)
    if dataset is None:
        dataset = reload_dataset(workspace, run_id, config.get("dataset", {}))
    want = config.get("dataset", {}).get("fingerprint")
    if want and dataset.fingerprint and want != dataset.fingerprint:
        raise UserError(f"the data given has fingerprint {dataset.fingerprint}, but run {run_id} trained on "
                        f"{want} ({config['dataset'].get('name')}); resume with the same data")
    return train(dataset, train_cfg, model_cfg, run_dir, resume=True, on_progress=on_progress,
                 should_stop=should_stop, progress_bar=progress_bar, checkpoint=checkpoint)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def list_runs(workspace: Workspace) -> list[dict[str, Any]]:
    """One row per run folder: id, model, status (running/finished/stopped/failed/interrupted), step."""
    rows = []
    for run_dir in workspace.list_runs():
        try:
            config = read_json(run_dir / "config.json")
        except (OSError, ValueError):
            continue
        st = run_status(run_dir)
        rows.append({"run_id": run_dir.name, "model": config.get("kind"),
                     "preset": config.get("train", {}).get("preset"), "status": st.get("status", "unknown"),
                     "step": st.get("step", 0), "total": st.get("total", config.get("train", {}).get("steps")),
                     "dataset": config.get("dataset", {}).get("name"), "checkpoint": st.get("checkpoint"),
                     "updated": st.get("updated"), "message": st.get("message", "")})
    return rows
