"""One training engine for every model family (gdgan, acgan, dcgan, pggan).

The model owns its nets, optimisers, losses and schedule (base.ModelFamily); this file owns the rest:
device and precision, feeding batches from the on-device uint8 tensor, the sample grid, metrics,
full-state checkpoints, resume, cooperative stop, NaN detection, progress events and DDP.
Run folders (create, open, status, list, resume) are gan/runs.py's; the Trainer writes its state
through that module.

Host syncs: losses stay 0-d device tensors and are summed on the device; they are copied to the
host once per `log_every` steps (one stacked transfer), which is also where non-finite values are
caught. Nothing else in the loop waits for the device.
"""
from __future__ import annotations

import dataclasses
import math
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
from medgan_ui.gan import registry
from medgan_ui.gan.feed import DeviceBatches, training_part
from medgan_ui.gan.grid import FixedGrid, default_cells, save_png
from medgan_ui.gan.registry import config_dict, model_kind, validate_run
from medgan_ui.gan.runs import Run
from medgan_ui.workspace import now_iso

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
    with Run(run_dir).lock():
        trainer = Trainer(dataset, train_cfg, model_cfg, Path(run_dir), resume=resume, checkpoint=checkpoint)
        return trainer.run(on_progress=on_progress, should_stop=should_stop, progress_bar=progress_bar)


class Trainer:
    def __init__(self, dataset: ImageSet, train_cfg, model_cfg, run_dir: Path, *, resume: bool = False,
                 checkpoint: str | None = None) -> None:
        self.train_cfg, self.model_cfg, self.run_dir = train_cfg, model_cfg, run_dir
        self.run_files = Run(run_dir)
        validate_run(dataset, train_cfg, model_cfg)
        state = None
        if resume:  # read the checkpoint first: a missing/corrupt one must fail before any compute
            state = ckpt.load(self.run_files.checkpoint(checkpoint))
        self.dist, self.device = init_distributed(train_cfg.device)
        self.amp = bool(train_cfg.amp)
        self.precision = precision_name(self.device, self.amp)  # logged, so a run says what it ran in
        self.schema = LabelSchema.from_imageset(dataset)
        train_ds = training_part(dataset)
        self.total = int(train_cfg.steps)
        seed = int(train_cfg.seed)
        seed_everything(seed)
        self.model = registry.build_model(model_kind(train_cfg, model_cfg), model_cfg, train_cfg, self.schema, self.device)
        channels_last = uses_channels_last(self.device) and bool(train_cfg.channels_last)
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
        # with the feed's device copy of the images: a model needs no second one
        self.model.bind_data(dataclasses.replace(train_ds, images=self.feed.images))
        rows = len(default_cells(self.schema, findings=self.model.generated_findings()))
        self.grid = FixedGrid(self.model, self.schema, self.device, seed,
                              cols=max(2, int(train_cfg.n_sample_grid) // rows))
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
        self.last_checkpoint = self.run_files.checkpoint(ckpt.checkpoint_name(self.step))
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
        self.last_checkpoint = ckpt.save(self.run_files.checkpoint_dir, self.step, state,
                                         keep=int(self.train_cfg.keep_checkpoints))
        return self.last_checkpoint

    def _write_grid(self) -> Path | None:
        if not self.dist.is_main:
            return None
        with fork_rng(self.device):
            img = self.grid.image(self.model)
        latest = self.run_files.latest_sample
        path = save_png(img, latest.with_name(f"step_{self.step:06d}.png"))
        save_png(img, latest)
        return path

    # ---- loop ------------------------------------------------------------------------------------
    def run(self, on_progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
            progress_bar: bool = False) -> dict:
        cfg, main = self.train_cfg, self.dist.is_main
        log_every, sample_every, ckpt_every = int(cfg.log_every), int(cfg.sample_every), int(cfg.checkpoint_every)
        emit = on_progress if (on_progress and main) else (lambda e: None)
        if main:
            self.run_files.truncate_metrics(self.step)
            self.run_files.set_status("running", step=self.step, total=self.total)
        bar = None
        if progress_bar and main:
            from tqdm import tqdm

            bar = tqdm(total=self.total, initial=self.step, unit="step", dynamic_ncols=True)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        window_start, window_steps = time.perf_counter(), 0
        status, message, grid_path = "running", "", None
        try:
            while self.step < self.total:
                step = self.step + 1
                batch = self.model.next_batch(self.feed)
                with autocast(self.device, self.amp):
                    losses = self.model.train_step(batch, self.step)  # models get the 0-based index
                self.model.update_ema(self.step)
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
                line = {"step": step, "stage": _plain_stage(self.model.stage),
                        "losses": means, "img_per_s": imgs / dt if dt > 0 else None,
                        "step_time_s": dt / window_steps, "elapsed_s": round(self.elapsed, 3), "time": now_iso(),
                        "device": self.device.type, "precision": self.precision}
                sums, counts, window_start, window_steps = {}, {}, now, 0
                if main:  # before the checkpoint: a kill between the two must not leave a checkpoint without its line
                    self.run_files.append_metrics(line)
                grid_path = self._write_grid() if (step % sample_every == 0 or step == self.total or stop) else None
                saved = self._save_checkpoint() if (step % ckpt_every == 0 or step == self.total or stop) else None
                window_start = time.perf_counter()  # grid/checkpoint time is not training throughput
                eta = (self.total - step) * line["step_time_s"]
                emit({"step": step, "total": self.total, "losses": means, "img_per_s": line["img_per_s"],
                      "eta_s": eta, "sample_grid": str(grid_path) if grid_path else None,
                      "checkpoint": str(saved) if saved else None, "status": "running", "message": ""})
                if bar is not None:
                    bar.update(step - bar.n)
                    shown = [k for k in ("loss_d", "loss_g", "gp") if k in means] or list(means)[:3]
                    bar.set_postfix({k: f"{means[k]:.3g}" for k in shown} | {"img/s": f"{line['img_per_s']:.0f}"})
                if main and saved:
                    self.run_files.set_status("running", step=step, total=self.total, checkpoint=saved.name)
                if stop:
                    status, message = "stopped", f"stopped at step {step}; resume with `medgan train --resume {self.run_dir.name}`"
                    break
            else:
                status, message = "finished", f"finished {self.total} steps"
        except BaseException as exc:  # record why the run ended, then let the caller see the error
            if main:
                ended = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                self.run_files.set_status(ended, step=self.step, total=self.total, message=f"{type(exc).__name__}: {exc}",
                                          checkpoint=self.last_checkpoint.name if self.last_checkpoint else None)
            raise
        finally:
            if bar is not None:
                bar.close()
        last = self.last_checkpoint.name if self.last_checkpoint else None
        if main:
            self.run_files.set_status(status, step=self.step, total=self.total, message=message, checkpoint=last)
        summary = {"status": status, "step": self.step, "total": self.total, "message": message,
                   "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
                   "run_dir": str(self.run_dir)}
        emit({"step": self.step, "total": self.total, "losses": {}, "img_per_s": None, "eta_s": 0.0,
              "sample_grid": str(self.run_files.latest_sample) if grid_path else None,
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
