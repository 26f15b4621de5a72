"""Start-up check of the study database: a damaged file is reported, never silently read as empty.

SQLite reads a write-ahead log (`studies.sqlite-wal`) only up to its first frame with a bad checksum
and ignores a log whose header is bad, without any error: a damaged -wal would silently drop every
rating not yet copied into the main file. So before SQLite opens the file we walk the log ourselves
(the WAL format: https://www.sqlite.org/fileformat.html#the_write_ahead_log) and refuse to open a
database whose log is damaged; then `PRAGMA quick_check` checks the main file. On damage nothing is
opened for writing, so the files stay exactly as they were for a restore or a forensic copy.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import struct
import threading
import time
from pathlib import Path

from medgan_ui.errors import UserError

log = logging.getLogger("medgan_ui.study")

WAL_MAGIC = (0x377F0682, 0x377F0683)  # checksums little- / big-endian
WAL_HEADER = 32
FRAME_HEADER = 24


class DatabaseDamaged(UserError):
    """The study database (or its write-ahead log) is damaged; the files were left untouched."""


def _checksum(data: bytes, big_endian: bool, s0: int = 0, s1: int = 0) -> tuple[int, int]:
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def wal_problem(wal: Path) -> str | None:
    """Why the write-ahead log at `wal` is damaged, or None when it is absent, empty or sound.

    Sound means: a valid header, then frames whose salts and running checksums are right, then
    possibly stale frames of an earlier log generation (different salts). Damage is a bad header, a
    frame of the current generation with a wrong checksum, a current frame after a broken one, or a
    cut-off frame.
    """
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return None
    if not data:
        return None
    if len(data) < WAL_HEADER:
        return f"the log is {len(data)} bytes, shorter than its 32-byte header"
    magic, version, page_size, _seq, salt1, salt2, c0, c1 = struct.unpack(">8I", data[:WAL_HEADER])
    if magic not in WAL_MAGIC or version != 3007000 or page_size < 512 or page_size & (page_size - 1):
        return "the log's header is not a SQLite write-ahead-log header"
    big = magic == WAL_MAGIC[1]
    s = _checksum(data[:24], big)
    if s != (c0, c1):
        return "the log's header checksum is wrong"
    frame = FRAME_HEADER + page_size
    n_frames, rest = divmod(len(data) - WAL_HEADER, frame)
    if rest:
        return f"the log ends in a cut-off frame ({rest} stray bytes)"
    broken = None
    for i in range(n_frames):
        off = WAL_HEADER + i * frame
        fh = data[off:off + FRAME_HEADER]
        fsalt = struct.unpack(">2I", fh[8:16])
        if fsalt != (salt1, salt2):
            if broken is None:
                broken = -1  # stale frames of an earlier generation: the valid log ended here
            continue
        if broken is not None:
            where = "a damaged frame" if broken >= 0 else "frames of another generation"
            return f"frame {i + 1} of {n_frames} belongs to the current log but follows {where}"
        s = _checksum(fh[:8], big, *s)
        s = _checksum(data[off + FRAME_HEADER:off + frame], big, *s)
        if s != struct.unpack(">2I", fh[16:24]):
            return f"frame {i + 1} of {n_frames} has a wrong checksum"
    return None


_checked: dict[str, dict[str, int]] = {}  # path -> counts found at this process's first open
_checked_guard = threading.Lock()


def check_once(path: Path) -> dict[str, int]:
    """`check_database` the first time this process opens `path` (logging the counts); then those counts."""
    with _checked_guard:
        if str(path) not in _checked:
            counts = check_database(path)
            log.info(report_line(path, counts))
            _checked[str(path)] = counts
        return _checked[str(path)]


def check_database(path: Path, retries: int = 3) -> dict[str, int]:
    """Check the write-ahead log and the main file; returns counts of studies, readers and ratings.

    Raises DatabaseDamaged naming the file and what to do. A log being written by another process can
    look torn for a moment, so a problem is only reported if it is still there after short waits.
    """
    wal = Path(str(path) + "-wal")
    problem = wal_problem(wal)
    for _ in range(retries):
        if problem is None:
            break
        time.sleep(0.2)
        problem = wal_problem(wal)
    if problem:
        raise _report(DatabaseDamaged(_damaged(path, wal, problem)))
    if not path.exists() or path.stat().st_size == 0:
        return {"studies": 0, "readers": 0, "ratings": 0}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
        try:
            rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] if t in tables else 0
                      for t in ("studies", "readers", "ratings")} if rows == ["ok"] else {}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise _report(DatabaseDamaged(_damaged(path, None, f"SQLite cannot read it: {exc}"))) from None
    if rows != ["ok"]:
        raise _report(DatabaseDamaged(_damaged(path, None, "PRAGMA quick_check found: " + "; ".join(rows[:5]))))
    return counts


def _report(exc: DatabaseDamaged) -> DatabaseDamaged:
    if log.hasHandlers():  # the server's log gets it with a time stamp; a bare CLI shows only the caller's message
        log.error("%s", exc)
    return exc


def _damaged(path: Path, wal: Path | None, problem: str) -> str:
    which = wal or path
    return (f"the study database {path} is damaged: {which.name}: {problem}. Nothing was read or changed; "
            f"the files are left exactly as they are. Stop the app, restore {path.name} (and {path.name}-wal, "
            f"if the backup has one) from a backup, then start again. To start with no studies instead, "
            f"move {path.name}, {path.name}-wal and {path.name}-shm to another folder (keep them: the answers "
            f"in them may still be recoverable).")


def report_line(path: Path, counts: dict[str, int]) -> str:
    return (f"study database {path}: integrity ok, {counts['studies']} studies, {counts['readers']} readers, "
            f"{counts['ratings']} ratings")


def make_private(path: Path) -> None:
    """Owner-only access to the database and its side files (they hold every answer and the truth)."""
    for p in (path, Path(str(path) + "-wal"), Path(str(path) + "-shm")):
        try:
            if p.exists() and p.stat().st_mode & 0o077:
                os.chmod(p, 0o600)
        except OSError:  # not our file (a shared read-only copy): leave it, reading still works
            pass
