"""Background job manager: training runs and experiments in threads, one device job at a time.

Why threads and not processes: a job shares the already-loaded ImageSet and the torch runtime with
the app, and stop is cooperative (the job polls `should_stop()` once per step), so nothing needs to
be killed. The queue is persisted in the workspace (jobs.json), so a browser reload only re-reads it,
and an app restart shows a job that was running when the process died as "interrupted" (resumable
from its last checkpoint). A training job's run keeps its state in runs/<id>/status.json, written
through the Run API (gan/runs.py) by the trainer and by this queue (queued, stopping, cancelled, and
failures before the trainer started); this module never keeps a second copy of it.

This module also owns how the UI submits work: start/resume/stop training (one training job at a
time), the augmentation experiment and the GAN metrics.

A job is `fn(on_progress, should_stop) -> dict`. `on_progress(event: dict)` merges the event into
the job's live progress (step, losses, img/s, ETA, sample path); the UI polls `get()` with a timer.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
import traceback
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from medgan_ui.errors import UserError
from medgan_ui.gan.runs import LIVE, Run
from medgan_ui.workspace import Workspace, atomic_write_json, new_id, now_iso, read_json

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict], None]
StopFn = Callable[[], bool]
JobFn = Callable[[ProgressFn, StopFn], dict]

ACTIVE = ("queued", "running", "stopping")
FINAL = ("done", "failed", "stopped", "interrupted", "cancelled")
PERSIST_EVERY_S = 2.0  # progress writes are throttled: a step can be a few ms
KEEP_JOBS = 200


@dataclass
class JobRecord:
    id: str
    kind: str  # "train", "experiment", ...
    name: str
    run_id: str | None = None
    status: str = "queued"  # queued | running | stopping | done | failed | stopped | interrupted | cancelled
    created: str = field(default_factory=now_iso)
    started: str | None = None
    ended: str | None = None
    error: str | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)


class JobManager:
    """FIFO queue + `max_running` worker threads; state mirrored to `<workspace>/jobs.json`."""

    def __init__(self, workspace: Workspace, max_running: int = 1) -> None:
        self.ws = workspace
        self.path = workspace.root / "jobs.json"
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._jobs: dict[str, JobRecord] = {}
        self._fns: dict[str, JobFn] = {}
        self._stop: dict[str, threading.Event] = {}
        self._queue: deque[str] = deque()
        self._last_persist = 0.0
        self._closing = False
        self._load()
        self._workers = [
            threading.Thread(target=self._work, name=f"medgan-job-worker-{i}", daemon=True) for i in range(max_running)
        ]
        for t in self._workers:
            t.start()

    # ---- public API --------------------------------------------------------------------------
    def submit(self, kind: str, name: str, fn: JobFn, *, run_id: str | None = None) -> str:
        """Queue `fn`; it starts when a worker is free. Returns the job id."""
        with self._lock:
            if self._closing:
                raise UserError("the app is shutting down; start the job again after restarting it")
            job = JobRecord(id=new_id(f"job-{kind}"), kind=kind, name=name, run_id=run_id)
            self._jobs[job.id] = job
            self._fns[job.id] = fn
            self._stop[job.id] = threading.Event()
            self._queue.append(job.id)
            self._persist(job, force=True)
            self._mark_run(job, "queued")
            self._wake.notify_all()
            return job.id

    def stop(self, job_id: str) -> str:
        """Ask a job to stop at its next step (a queued job is simply cancelled). Returns a message."""
        with self._lock:
            job = self._require(job_id)
            if job.status == "queued":
                self._queue.remove(job_id)
                self._finish(job, "cancelled")
                return f"{job.name}: cancelled before it started."
            if job.status in ("running", "stopping"):
                self._stop[job_id].set()
                job.status = "stopping"
                self._persist(job, force=True)
                self._mark_run(job, "stopping")
                return f"{job.name}: stopping after the current step (a checkpoint is written first)."
            return f"{job.name} is not running (status: {job.status})."

    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(asdict(self._require(job_id)))

    def jobs(self) -> list[dict[str, Any]]:
        """All known jobs, newest first."""
        with self._lock:
            return [copy.deepcopy(asdict(j)) for j in sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)]

    def active(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Queued, running or stopping jobs (optionally of one kind), in queue order: running first."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.status in ACTIVE and (kind is None or j.kind == kind)]
            jobs.sort(key=lambda j: (j.status == "queued", j.created))
            return [copy.deepcopy(asdict(j)) for j in jobs]

    def job_for_run(self, run_id: str) -> dict[str, Any] | None:
        """The newest job attached to a run (live or from a previous app start)."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.run_id == run_id]
            if not jobs:
                return None
            return copy.deepcopy(asdict(max(jobs, key=lambda j: j.created)))

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job has finished (tests, CLI). Returns its record."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._require(job_id).status in ACTIVE:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"job {job_id} still {self._jobs[job_id].status} after {timeout} s")
                self._wake.wait(timeout=left if left is not None else 1.0)
            return self.get(job_id)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Ask running jobs to stop, wait up to `timeout` s; they count as interrupted (resumable)."""
        with self._lock:
            self._closing = True
            for jid in list(self._queue):
                self._finish(self._jobs[jid], "interrupted", error="the app stopped before this job started")
            self._queue.clear()
            for jid, job in self._jobs.items():
                if job.status in ("running", "stopping"):
                    job.result["_shutdown"] = True
                    self._stop[jid].set()
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._workers:
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    # ---- worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                job = self._jobs[self._queue.popleft()]
                fn = self._fns.pop(job.id)
                stop = self._stop[job.id]
                job.status, job.started = "running", now_iso()
                self._persist(job, force=True)
                self._mark_run(job, "running")
            self._run(job, fn, stop)

    def _run(self, job: JobRecord, fn: JobFn, stop: threading.Event) -> None:
        def on_progress(event: dict) -> None:
            with self._lock:
                first = not job.progress
                job.progress.update(_jsonable(event))
                job.progress["updated"] = time.time()
                self._persist(job, force=first)  # the first event is written at once, later ones throttled

        try:
            result = fn(on_progress, stop.is_set) or {}
        except UserError as exc:
            self._end(job, "failed", error=str(exc))
        except Exception as exc:  # a job must never leave a dead thread and a stuck UI behind
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            self._write_log(job, traceback.format_exc())
            self._end(job, "failed", error=f"{type(exc).__name__}: {exc}")
        else:
            # the engine returns {"status": finished|stopped|failed, "message": ...} rather than raising
            shutdown = job.result.pop("_shutdown", False)
            said = str(result.get("status", ""))
            if shutdown:
                status = "interrupted"
            elif said in ("failed", "stopped", "interrupted"):
                status = said
            else:
                status = "stopped" if stop.is_set() or result.get("stopped") else "done"
            error = str(result.get("message") or "job failed") if status == "failed" else None
            self._end(job, status, result=result, error=error)

    def _end(self, job: JobRecord, status: str, *, error: str | None = None, result: dict | None = None) -> None:
        with self._lock:
            if result:
                job.result.update(_jsonable(result))
            self._finish(job, status, error=error)

    def _finish(self, job: JobRecord, status: str, *, error: str | None = None) -> None:
        job.status, job.ended = status, now_iso()
        job.error = error or job.error
        self._stop.pop(job.id, None)
        self._persist(job, force=True)
        self._end_run(job)
        self._wake.notify_all()

    def _write_log(self, job: JobRecord, text: str) -> None:
        folder = self.ws.run_dir(job.run_id) if job.run_id else self.ws.root / "logs"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / "job-error.log", "a", encoding="utf-8") as fh:
                fh.write(f"--- {now_iso()} job {job.id}\n{text}\n")
        except OSError:
            pass

    # ---- persistence -------------------------------------------------------------------------
    def _persist(self, job: JobRecord, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_persist < PERSIST_EVERY_S:
            return
        self._last_persist = now
        records = sorted(self._jobs.values(), key=lambda j: j.created)[-KEEP_JOBS:]
        try:
            atomic_write_json(self.path, {"jobs": [_public(j) for j in records]})
        except OSError as exc:  # a full disk must not kill the job itself
            log.warning("could not persist job state: %s", exc)

    # ---- the run's own state (runs/<id>/status.json, through the Run API) ---------------------
    def _run_of(self, job: JobRecord) -> Run | None:
        return Run(self.ws.run_dir(job.run_id), self.ws) if job.run_id else None

    def _mark_run(self, job: JobRecord, state: str, message: str = "") -> None:
        run = self._run_of(job)
        if run is None:
            return
        try:
            run.set_status(state, message=message, job_id=job.id)
        except OSError as exc:
            log.warning("could not write the state of run %s: %s", job.run_id, exc)

    def _end_run(self, job: JobRecord) -> None:
        """A job ended: unless the trainer already wrote the run's final state, write it from the job's."""
        run = self._run_of(job)
        if run is None or run.raw_status().get("status") not in LIVE:
            return
        before = run.raw_status().get("before")
        if job.started is None and before and before not in ("created", *LIVE):
            state = before  # a queued resume that never started: the run is what it was
        else:
            state = {"done": "finished"}.get(job.status, job.status)
        self._mark_run(job, state, job.error or "")

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            data = read_json(self.path)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return
        changed = []
        for raw in data.get("jobs", []):
            known = {k: raw[k] for k in JobRecord.__dataclass_fields__ if k in raw}
            job = JobRecord(**known)
            if job.status in ACTIVE:  # the process died while it ran: resumable, not lost
                job.status, job.ended = "interrupted", job.ended or now_iso()
                job.error = job.error or "the app stopped while this job was running; resume it from its last checkpoint"
                changed.append(job)
            self._jobs[job.id] = job
        for job in changed:
            self._persist(job, force=True)
            self._end_run(job)

    def _require(self, job_id: str) -> JobRecord:
        if job_id not in self._jobs:
            raise UserError(f"no job {job_id!r}; known jobs are listed in {self.path}")
        return self._jobs[job_id]


def _public(job: JobRecord) -> dict[str, Any]:
    d = asdict(job)
    d["result"] = {k: v for k, v in d["result"].items() if not k.startswith("_")}
    return _jsonable(d)


def _jsonable(obj: Any) -> Any:
    """Progress events may carry tensors or paths; keep only what JSON can hold."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


# ---- training jobs ---------------------------------------------------------------------------
def require_no_training(manager: JobManager, doing: str = "starting another") -> None:
    """One training job at a time: the device is shared, and a second run would halve both."""
    busy = manager.active("train")
    if busy:
        raise UserError(f"training run {busy[0]['run_id']} is already {busy[0]['status']}: stop it first "
                        f"(or wait for it to finish) before {doing}")


def start_training(manager: JobManager, ws: Workspace, dataset: Any, train_cfg: Any, model_cfg: Any) -> tuple[str, str]:
    """Validate, create runs/<id>/ and queue its training. Returns (run_id, job_id).

    Bad settings raise UserError here, before a folder or a job exists (no half-started job).
    """
    require_no_training(manager)
    run = Run.create(ws, dataset, train_cfg, model_cfg)

    def fn(on_progress: ProgressFn, should_stop: StopFn) -> dict:
        return run.train(dataset, on_progress=on_progress, should_stop=should_stop)

    return run.id, manager.submit("train", f"{train_cfg.model} run {run.id}", fn, run_id=run.id)


def resume_training(manager: JobManager, ws: Workspace, run_id: str, dataset: Any = None,
                    steps: int | None = None) -> str:
    """Queue the continuation of a stopped/interrupted run from its latest checkpoint. Returns the job id.

    `dataset` is used when it is the run's data (same fingerprint); otherwise the run's data is
    loaded again from the source recorded in config.json (a cache hit after the first load).
    """
    require_no_training(manager, "resuming another")
    run = Run.open(ws, run_id)
    st = run.status()
    if st["status"] in LIVE:
        raise UserError(f"run {run_id} is already {st['status']}; nothing to resume")
    run.checkpoint()  # no checkpoint yet -> a clear message now, not a failed job
    total = int(run.config().get("train", {}).get("steps", 0))
    if steps is not None and steps <= total:
        steps = None
    if st["step"] >= total and steps is None:
        raise UserError(f"run {run_id} already reached all {total} steps; set Steps above {total} to train it longer")
    want = run.config().get("dataset", {}).get("fingerprint")
    data = dataset if dataset is not None and want and getattr(dataset, "fingerprint", None) == want else None

    def fn(on_progress: ProgressFn, should_stop: StopFn) -> dict:
        return run.resume(dataset=data, steps=steps, on_progress=on_progress, should_stop=should_stop)

    return manager.submit("train", f"resume {run_id}", fn, run_id=run_id)


def stop_training(manager: JobManager, run_id: str | None = None) -> str:
    """Stop the training job of `run_id` (else the running one). Returns a message."""
    active = manager.active("train")
    if not active:
        raise UserError("no training is running, so there is nothing to stop")
    job = next((j for j in active if j["run_id"] == run_id), active[0])
    return manager.stop(job["id"])


# ---- evaluation jobs -------------------------------------------------------------------------
def start_experiment(manager: JobManager, ws: Workspace, dataset: Any, cfg: Any) -> str:
    """Validate the augmentation-comparison experiment now (bad input is shown at once, not as a
    failed job later), then queue it. Returns the job id."""
    from medgan_ui.evaluate.experiment import run_experiment, validate

    validate(cfg, ws, dataset)

    def fn(on_progress: ProgressFn, should_stop: StopFn) -> dict:
        out = run_experiment(cfg, ws, on_progress, should_stop, dataset=dataset)
        return {"id": out["id"], "dir": out["dir"], "status": out["status"]}

    return manager.submit("experiment", f"compare {'+'.join(cfg.targets)}", fn)


def start_gan_metrics(manager: JobManager, ws: Workspace, dataset: Any, sources: list[str], *,
                      extractor: str = "domain", n: int = 500) -> str:
    """Queue the generator metrics (FID/KID against held-out real images, IS, memorisation) for runs or
    synthetic sets. Returns the job id."""
    from medgan_ui.evaluate.gan_metrics import evaluate_gan

    if not sources:
        raise UserError("choose at least one run or synthetic set")
    if n is None or int(n) < 10:
        raise UserError(f"images per model must be at least 10: IS uses 10 splits (got {n})")

    def fn(on_progress: ProgressFn, should_stop: StopFn) -> dict:
        out = evaluate_gan(ws, dataset, list(sources), extractor=(extractor or "domain").strip(), n=int(n),
                           on_progress=on_progress, should_stop=should_stop)
        return {"id": out["id"], "dir": out["dir"]}

    return manager.submit("metrics", f"metrics {'+'.join(sources)}", fn)
