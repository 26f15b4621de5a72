"""One writer per workspace and per run: exclusive lock files that name their holder.

Two studio servers on one workspace each resumed the same run, so metrics.jsonl got interleaved steps
and checkpoints overwrote each other. A lock file holds {pid, host, started, command} of its holder.
Where fcntl exists the kernel's flock is the lock, so a process killed with -9 releases it at once;
elsewhere the file's existence is the lock, and one left by a dead process on this host is stale.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from medgan_ui.errors import UserError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

RUN_LOCK = ".medgan-run.lock"
WORKSPACE_LOCKS = {"studio": ".medgan-studio.lock", "reader": ".medgan-reader.lock"}


class LockHeld(UserError):
    """Another live process holds the lock; `holder` is what it wrote (pid, host, started, command)."""

    def __init__(self, message: str, holder: dict[str, Any]) -> None:
        super().__init__(message)
        self.holder = holder


def describe(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "another process (its pid is not recorded yet)"
    return (f"pid {holder['pid']} on host {holder.get('host', '?')}, since {holder.get('started', '?')}"
            + (f" ({holder['command']})" if holder.get("command") else ""))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv[:3])[:200]}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


class FileLock:
    """An exclusive, non-blocking lock on `path`; raises LockHeld naming the holder."""

    def __init__(self, path: Path, what: str, advice: str = "stop that process first") -> None:
        self.path, self.what, self.advice = Path(path), what, advice
        self._fd: int | None = None

    def acquire(self) -> "FileLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                self._refuse(_read(self.path))
        else:
            fd = self._create_exclusive()
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(_me()).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def _create_exclusive(self) -> int:
        for _ in range(2):
            try:
                return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                stale = holder.get("host") == socket.gethostname() and holder.get("pid") and not _pid_alive(int(holder["pid"]))
                if not stale:
                    self._refuse(holder)
                self.path.unlink(missing_ok=True)  # left by a crashed process on this host
        self._refuse(_read(self.path))
        raise AssertionError("unreachable")

    def _refuse(self, holder: dict[str, Any]) -> None:
        raise LockHeld(f"{self.what} is in use by {describe(holder)}; {self.advice} (lock file: {self.path})",
                       holder)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if fcntl is not None:
                os.ftruncate(fd, 0)  # holder info cleared while still held, then unlocked
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        if fcntl is None:
            self.path.unlink(missing_ok=True)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FileLock":
        return self.acquire() if not self.held else self

    def __exit__(self, *exc: object) -> None:
        self.release()


def workspace_lock(root: str | os.PathLike, role: str = "studio") -> FileLock:
    """Take the workspace's lock for a studio (trains) or a reader-only server; held until release().

    The two roles have separate locks: a reading session may run beside the studio on one workspace
    (the study database takes concurrent writers), but not two studios, nor two reading servers."""
    return FileLock(Path(root) / WORKSPACE_LOCKS[role], f"workspace {root} ({role} server)",
                    "stop that server first, or start this one with another --workspace").acquire()


@contextmanager
def run_lock(run_dir: str | os.PathLike, enabled: bool = True) -> Iterator[None]:
    """Held while a run trains or resumes, so a run is never trained by two processes at once.

    enabled=False for the non-main ranks of a distributed run (rank 0 holds it for all)."""
    if not enabled:
        yield
        return
    run_dir = Path(run_dir)
    lock = FileLock(run_dir / RUN_LOCK, f"run {run_dir.name}",
                    "a run trains in one process at a time: wait for that training to end or stop it, then resume")
    lock.acquire()
    try:
        yield
    finally:
        lock.release()
