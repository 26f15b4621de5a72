"""The Run API: everything about a training run's folder and state, in one place.

runs/<run-id>/ config.json    train + model config, label schema, dataset name/fingerprint/source
               manifest.json  versions, seed, times (workspace.write_manifest)
               status.json    THE run state: created / queued / running / stopping / finished / stopped /
                              failed / interrupted / cancelled, step, total, message, checkpoint, job id,
                              and the pid + host of the process that wrote it
               metrics.jsonl  one line per log window; on resume, lines after the checkpoint's step are
                              dropped so step counts stay consistent
               trained_patients.json  the dataset fingerprint, the CV fold (if any) and the SHA-256 of
                              every trained-on patient id (data/provenance.py: the leakage guard)
               checkpoints/   full training state (gan/checkpoint.py); samples/ the sample grids

`Run.create` validates and makes the folder, `Run.open` finds an existing one, `Run.status()` is the
one reconciliation of the state (a live state written by a process that is gone reads
"interrupted"), `list_runs` gives the one row format the CLI and the UI show, `Run.resume` continues
training (after `Run.claim`, the single place that decides whether this process may train it now).
The trainer (gan/engine.py) and the job queue (jobs.py) both write state through this module.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.provenance import RECORD_FILE, FoldSpec, fold_dataset, patient_hashes, trained_record
from medgan_ui.errors import UserError
from medgan_ui.gan import checkpoint as ckpt
from medgan_ui.gan.base import LabelSchema
from medgan_ui.gan.feed import training_part
from medgan_ui.gan.registry import config_dict, configs_from_dict, model_kind, validate_run
from medgan_ui.workspace import Workspace, atomic_write_json, atomic_write_text, new_id, now_iso, read_json, write_manifest

LIVE = ("queued", "running", "stopping")  # states that only hold while the writing process lives
_status_lock = threading.Lock()  # the trainer thread and the job queue write status.json in one process


def is_main_process() -> bool:
    """False on DDP ranks > 0: only rank 0 writes run files."""
    return int(os.environ.get("RANK", "0")) == 0


def pid_alive(status: dict[str, Any]) -> bool:
    """Whether the process that wrote `status` still runs (only checkable on the same host)."""
    if status.get("host") != socket.gethostname() or not status.get("pid"):
        return False
    try:
        os.kill(int(status["pid"]), 0)
    except OSError:
        return False
    return True


def dataset_ref(ds: ImageSet) -> dict[str, Any]:
    """What config.json records about the data: enough to reload it for resume and to check it is the same."""
    simple = {k: v for k, v in ds.meta.items() if isinstance(v, (str, int, float, bool)) or v is None}
    simple.pop("loaded_from_cache", None)
    return {**simple, "options": ds.meta.get("options"), "split_params": ds.meta.get("split_params"),
            "name": ds.name, "fingerprint": ds.fingerprint, "size": ds.size, "n_images": len(ds),
            "n_train": len(training_part(ds))}


class Run:
    """One runs/<id>/ folder. Cheap to make: nothing is read until asked."""

    def __init__(self, folder: Path, workspace: Workspace | None = None) -> None:
        self.dir = Path(folder)
        self.id = self.dir.name
        self._workspace = workspace

    @property
    def workspace(self) -> Workspace:
        """The workspace holding runs/<id>/ (made on first use: only reloading the data needs it)."""
        if self._workspace is None:
            self._workspace = Workspace(self.dir.parent.parent)
        return self._workspace

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r})"

    # ---- create / open -------------------------------------------------------------------------
    @classmethod
    def create(cls, workspace: Workspace, dataset: ImageSet, train_cfg: Any, model_cfg: Any,
               fold: FoldSpec | None = None) -> "Run":
        """Validate, then make runs/<id>/ with config.json + manifest.json + status "created".

        With `fold` the run trains on that cross-validation fold's training patients only (the
        dataset's split is replaced by the fold's); either way the trained-on patients are recorded
        (data/provenance.py) so an experiment can refuse a generator that has seen its test patients."""
        if fold is not None:
            dataset = fold_dataset(dataset, fold)
        validate_run(dataset, train_cfg, model_cfg)
        kind = model_kind(train_cfg, model_cfg)
        run = cls(workspace.run_dir(new_id(kind)), workspace)
        run.dir.mkdir(parents=True)
        ref = {**dataset_ref(dataset), **({"fold": fold.to_dict()} if fold is not None else {})}
        config = {**config_dict(train_cfg, model_cfg, LabelSchema.from_imageset(dataset)), "dataset": ref}
        atomic_write_json(run.dir / "config.json", config)
        rows = np.flatnonzero(dataset.split == 0) if dataset.split is not None else np.arange(len(dataset))
        atomic_write_json(run.dir / RECORD_FILE, trained_record(dataset, rows, fold))
        write_manifest(run.dir, kind="training-run", run=run.id, model=kind, seed=int(train_cfg.seed),
                       dataset_fingerprint=dataset.fingerprint, dataset=dataset.name, config=config, created=now_iso())
        run.set_status("created", step=0, total=int(train_cfg.steps))
        return run

    @classmethod
    def open(cls, workspace: Workspace, run_id: str) -> "Run":
        """An existing run, or a UserError that says how to find one."""
        try:
            folder = workspace.run_dir(str(run_id))
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if not (folder / "config.json").is_file():
            raise UserError(f"run {run_id!r} not found in {workspace.runs}; list runs with `medgan runs`")
        return cls(folder, workspace)

    # ---- config --------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return read_json(self.dir / "config.json")

    def fold(self) -> FoldSpec | None:
        """The cross-validation fold whose training patients this run trains on (None: the stored split)."""
        spec = self.config().get("dataset", {}).get("fold")
        return FoldSpec.from_dict(spec) if spec else None

    def trained_on(self) -> dict[str, Any] | None:
        """The trained-on patients record (data/provenance.py), None for a run made before it existed."""
        try:
            return read_json(self.dir / RECORD_FILE)
        except (OSError, ValueError):
            return None

    def training_data(self, dataset: ImageSet) -> ImageSet:
        """dataset as this run trains on it: its fold's split applied, checked against the record."""
        fold = self.fold()
        if fold is None:
            return dataset
        out = fold_dataset(dataset, fold)
        record = self.trained_on() or {}
        want = record.get("patients_sha256")
        if want is not None and patient_hashes(out.patient_id[out.split == 0]) != want:
            raise UserError(f"run {self.id}: {fold.describe()} of dataset {dataset.name!r} no longer gives the "
                            f"patients it trained on ({self.dir / RECORD_FILE}); train a new run on this fold")
        return out

    def configs(self) -> tuple[Any, Any]:
        """(TrainConfig, model config) as stored in config.json."""
        return configs_from_dict(self.config())

    # ---- status --------------------------------------------------------------------------------
    def raw_status(self) -> dict[str, Any]:
        try:
            return read_json(self.dir / "status.json")
        except (OSError, ValueError):
            return {}

    def set_status(self, status: str, *, step: int | None = None, total: int | None = None, message: str = "",
                   checkpoint: str | None = None, job_id: str | None = None) -> None:
        """Write status.json; step/total/checkpoint/job id not given are kept from the previous state."""
        with _status_lock:
            old = self.raw_status()
            if status == "running" and old.get("status") == "stopping" and pid_alive(old):
                status = "stopping"  # a stop was asked for; the trainer's checkpoint write must not undo it
            new = {"status": status, "step": int(old.get("step", 0) if step is None else step),
                   "total": int(old.get("total", 0) if total is None else total), "message": message,
                   "checkpoint": checkpoint or old.get("checkpoint"), "job_id": job_id or old.get("job_id"),
                   "before": old.get("status") if status == "queued" else old.get("before"),
                   "pid": os.getpid(), "host": socket.gethostname(),
                   "started": old.get("started") if old.get("status") in ("running", "stopping") else now_iso(),
                   "updated": now_iso()}
            atomic_write_json(self.dir / "status.json", new)

    def status(self) -> dict[str, Any]:
        """{status, step, total, message, checkpoint, job_id, updated}: the one reconciled view.

        A live state (queued/running/stopping) whose writer process is gone reads "interrupted"
        (kill -9, crash, app restart); the step is the last one logged to metrics.jsonl when that is
        further than the last status write (status.json is written at checkpoints)."""
        st = self.raw_status()
        state = st.get("status") or "not started"
        if state in LIVE and not pid_alive(st):
            state = "interrupted"
        step = int(st.get("step", 0) or 0)
        last = self.last_metrics()
        if last and state in (*LIVE, "interrupted", "not started"):
            step = max(step, int(last.get("step", 0) or 0))
        total = int(st.get("total", 0) or 0)
        if not total:
            try:
                total = int(self.config().get("train", {}).get("steps", 0) or 0)
            except (OSError, ValueError):
                total = 0
        return {"status": state, "step": step, "total": total, "message": st.get("message") or "",
                "checkpoint": st.get("checkpoint"), "job_id": st.get("job_id"), "updated": st.get("updated"),
                "before": st.get("before")}

    def claim(self) -> None:
        """The one place that decides whether this process may train the run now (resume, restart).

        Refuses while another live process trains it by its status; the lock file (`lock`), held for
        the whole training, closes the race between two processes that claim at the same moment."""
        st = self.raw_status()
        if st.get("status") in LIVE and pid_alive(st) and int(st.get("pid", 0)) != os.getpid():
            raise UserError(f"run {self.id} is {st['status']} in another process (pid {st['pid']} on {st['host']}); "
                            f"stop it there first")

    def lock(self):
        """Context manager held while this process trains the run (rank 0 holds it for a DDP job)."""
        from medgan_ui.security.lock import run_lock

        return run_lock(self.dir, enabled=is_main_process())

    # ---- metrics -------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    def metrics(self) -> list[dict[str, Any]]:
        """Every complete line of metrics.jsonl."""
        return read_jsonl(self.metrics_path)

    def last_metrics(self, tail_bytes: int = 8192) -> dict[str, Any] | None:
        """Last complete line of metrics.jsonl (possibly growing), reading only its tail."""
        try:
            with open(self.metrics_path, "rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                fh.seek(max(0, size - tail_bytes))
                lines = fh.read().splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            try:
                return json.loads(line)
            except ValueError:  # a line being written right now, or a cut first line
                continue
        return None

    def append_metrics(self, line: dict[str, Any]) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
            fh.flush()

    def truncate_metrics(self, step: int) -> None:
        """Keep lines up to `step` (the checkpoint resumed from); a torn last line from a kill is dropped too."""
        if not self.metrics_path.exists():
            return
        kept = []
        for raw in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(raw)["step"] <= step:
                    kept.append(raw)
            except (ValueError, KeyError, TypeError):
                continue
        atomic_write_text(self.metrics_path, "".join(k + "\n" for k in kept))

    # ---- checkpoints and samples ----------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"

    def checkpoints(self) -> list[Path]:
        return ckpt.list_checkpoints(self.checkpoint_dir)

    def checkpoint(self, name: str | None = None) -> Path:
        """The named checkpoint, or the latest; UserError when there is none."""
        return ckpt.resolve(self.checkpoint_dir, name)

    @property
    def latest_sample(self) -> Path:
        return self.dir / "samples" / "latest.png"

    # ---- data ----------------------------------------------------------------------------------
    def load_dataset(self, purpose: str = "to resume it") -> ImageSet:
        """Load the run's data again from the source in config.json (cached loads are instant);
        `purpose` ends the message when the data cannot be had."""
        from medgan_ui.data.load import load_dataset
        from medgan_ui.data.readers.base import ReadOptions

        ref = self.config().get("dataset", {})
        config_path = self.dir / "config.json"
        source = ref.get("source_root")
        if not source:
            raise UserError(f"run {self.id} does not record where its training data came from "
                            f"({config_path} has no dataset.source_root), so it cannot be loaded {purpose}")
        opts = dict(ref.get("options") or {"size": int(ref["size"])})
        if opts.get("window") is not None:
            opts["window"] = tuple(opts["window"])
        split = ref.get("split_params") or {}
        kwargs = {"stratify": split["stratify"], "split_seed": split["seed"], "fractions": split["fractions"]} if split else {}
        if source != "demo" and not Path(source).exists():
            raise UserError(f"run {self.id}'s training data {source} is not there any more; put it back at that "
                            f"path (recorded in {config_path}) {purpose}")
        return load_dataset(source, format=None if source == "demo" else ref.get("format"),
                            options=ReadOptions(**opts), workspace=self.workspace, **kwargs)

    def dataset_or_reload(self, dataset: ImageSet | None, purpose: str = "to resume it") -> ImageSet:
        """`dataset` when it is this run's data (same fingerprint), else the recorded source loaded again."""
        want = self.config().get("dataset", {}).get("fingerprint")
        if dataset is not None and want and dataset.fingerprint == want:
            return dataset
        return self.load_dataset(purpose)

    # ---- training ------------------------------------------------------------------------------
    def train(self, dataset: ImageSet, *, on_progress: Callable[[dict], None] | None = None,
              should_stop: Callable[[], bool] | None = None, progress_bar: bool = False) -> dict:
        """Train a created run from step 0 with its stored configs."""
        from medgan_ui.gan.engine import train

        train_cfg, model_cfg = self.configs()
        return train(self.training_data(dataset), train_cfg, model_cfg, self.dir, on_progress=on_progress,
                     should_stop=should_stop, progress_bar=progress_bar)

    def resume(self, *, dataset: ImageSet | None = None, steps: int | None = None, checkpoint: str | None = None,
               device: str | None = None, on_progress: Callable[[dict], None] | None = None,
               should_stop: Callable[[], bool] | None = None, progress_bar: bool = False) -> dict:
        """Continue from the latest (or named) checkpoint; `steps` raises the total, `device` moves it."""
        from medgan_ui.gan.engine import train

        if is_main_process():
            self.claim()
        config = self.config()
        train_cfg, model_cfg = configs_from_dict(config)
        ckpt.load(self.checkpoint(checkpoint))  # a bad checkpoint fails before data loads
        changes = {k: v for k, v in (("steps", steps), ("device", device)) if v is not None}
        if changes:
            train_cfg = dataclasses.replace(train_cfg, **changes)
            config["train"] = config_dict(train_cfg, model_cfg, LabelSchema(**config["schema"]))["train"]
            if is_main_process():
                atomic_write_json(self.dir / "config.json", config)
        if dataset is None:
            dataset = self.load_dataset()
        want = config.get("dataset", {}).get("fingerprint")
        if want and dataset.fingerprint and want != dataset.fingerprint:
            raise UserError(f"the data given has fingerprint {dataset.fingerprint}, but run {self.id} trained on "
                            f"{want} ({config['dataset'].get('name')}); resume with the same data")
        return train(self.training_data(dataset), train_cfg, model_cfg, self.dir, resume=True, on_progress=on_progress,
                     should_stop=should_stop, progress_bar=progress_bar, checkpoint=checkpoint)

    # ---- listing -------------------------------------------------------------------------------
    def row(self) -> dict[str, Any] | None:
        """The one row format of `list_runs` (None for a folder without a readable config.json)."""
        try:
            config = self.config()
        except (OSError, ValueError):
            return None
        st = self.status()
        return {"run_id": self.id, "model": config.get("kind"), "preset": config.get("train", {}).get("preset"),
                "status": st["status"], "step": st["step"], "total": st["total"],
                "dataset": config.get("dataset", {}).get("name"), "checkpoint": st["checkpoint"],
                "updated": st["updated"], "message": st["message"], "job_id": st["job_id"]}


def list_runs(workspace: Workspace) -> list[dict[str, Any]]:
    """One row per run folder, newest first: run_id, model, preset, status, step, total, dataset,
    checkpoint, updated, message, job_id. Reads small files only (the CLI and the UI both show these)."""
    rows = [Run(folder, workspace).row() for folder in reversed(workspace.list_runs())]
    return [r for r in rows if r is not None]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file that parses (a torn last line from a kill is skipped)."""
    if not path.exists():
        return []
    out = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out
