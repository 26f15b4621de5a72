"""What every tab shares: the workspace, the job manager, the dataset now loaded, the device.

One AppContext per app process. The loaded dataset is app-wide (not per browser tab) because a
training job outlives the browser session that started it; a lock keeps the swap atomic.
"""
from __future__ import annotations

import threading
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.gan.device import describe_device
from medgan_ui.gan.runs import list_runs
from medgan_ui.jobs import JobManager
from medgan_ui.security import limits
from medgan_ui.security.paths import PathPolicy
from medgan_ui.workspace import Workspace, read_json


@dataclass
class AppContext:
    workspace: Workspace
    jobs: JobManager
    admin_password: str | None = None
    paths: PathPolicy = field(default_factory=PathPolicy)  # which server paths web users may name
    device: str = field(default_factory=describe_device)
    _dataset: ImageSet | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _loading: threading.Event | None = field(default=None, repr=False)  # set when a background load ends
    load_error: str | None = None

    @classmethod
    def create(cls, workspace: Workspace | str | None = None, admin_password: str | None = None, *,
               host: str = "127.0.0.1", data_roots: list[str] | tuple[str, ...] = ()) -> "AppContext":
        """`host` and `data_roots` (--data-root) decide which server paths the web UI may read."""
        ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        policy = PathPolicy.for_server(host, data_roots, [ws.datasets, ws.synthetic, ws.uploads])
        limits.apply_pil_limit()
        return cls(workspace=ws, jobs=JobManager(ws), admin_password=admin_password, paths=policy)

    def clean_uploads(self) -> list[str]:
        """At start-up: drop unpacked uploads unused for a while, except the data of existing runs."""
        keep = []
        for run in self.workspace.list_runs():
            try:
                keep.append((read_json(run / "config.json").get("dataset") or {}).get("source_root") or "")
            except (OSError, ValueError, AttributeError):
                continue
        uploads = self.workspace.uploads
        return limits.clean_old_uploads(uploads, keep=[k for k in keep if k and k.startswith(str(uploads))])

    # ---- the dataset the Data tab loaded -----------------------------------------------------
    @property
    def dataset(self) -> ImageSet | None:
        with self._lock:
            return self._dataset

    def set_dataset(self, ds: ImageSet) -> None:
        with self._lock:
            self._dataset = ds

    def load_in_background(self, load: Callable[[], ImageSet], start: bool = True) -> threading.Thread:
        """Load a dataset without holding up the page (first start generates the demo: a minute on a CPU).

        With start=False the app already counts as loading (pages wait for it) but the caller starts
        the thread, e.g. once the server is up, so the load does not compete with start-up for the CPU."""
        done = threading.Event()
        self._loading = done

        def work() -> None:
            try:
                self.set_dataset(load())
            except Exception as exc:  # shown in the Data tab; the app stays usable with another source
                self.load_error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, UserError) else str(exc)
            finally:
                done.set()

        t = threading.Thread(target=work, name="medgan-dataset-load", daemon=True)
        if start:
            t.start()
        return t

    def wait_for_dataset(self, timeout: float | None = None) -> ImageSet | None:
        """The loaded dataset, after waiting for a background load still under way."""
        if self._loading is not None:
            self._loading.wait(timeout)
        return self.dataset

    @property
    def loading(self) -> bool:
        return self._loading is not None and not self._loading.is_set()

    def require_dataset(self) -> ImageSet:
        ds = self.dataset
        if ds is None and self.loading:
            raise UserError("the built-in demo dataset is still being prepared (the first start generates it); "
                            "try again in a moment")
        if ds is None:
            raise UserError("no dataset is loaded: open the Data tab, choose a source and press 'Load dataset'")
        return ds

    # ---- runs --------------------------------------------------------------------------------
    def run_dir(self, run_id: str | None) -> Path:
        """Folder of an existing run, or a UserError that says what to pick."""
        if not run_id:
            raise UserError("no run chosen: pick a run from the list (train one in the Train tab first)")
        try:
            folder = self.workspace.run_dir(str(run_id))
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if not (folder / "config.json").is_file():
            raise UserError(f"run {run_id!r} does not exist in {self.workspace.runs}; pick one from the list")
        return folder

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run in the workspace, newest first, in the row format of gan.runs.list_runs."""
        return list_runs(self.workspace)
