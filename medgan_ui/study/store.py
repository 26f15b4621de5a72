"""SQLite store for reader studies: studies, blinded cases, readers, sessions and ratings.

Reliability rules this file enforces:
  * WAL journal + synchronous=FULL: a committed rating survives kill -9 (and power loss).
  * One connection per thread (threading.local) and one in-process write lock, so the web server's
    thread pool never trips over SQLite's own busy handling; busy_timeout covers other processes
    (the CLI reading while the server writes).
  * UNIQUE(reader_id, case_id) + UPSERT: answering a case twice updates the answer, never duplicates.
  * `rate` commits before it returns, so the next case is only ever shown after the answer is durable.
Security rules: readers are identified only by a random session token (stored hashed); everything a
reader can ask for is checked against that token's study; truth/labels leave this file only through
the admin functions (`ratings_rows`, `cases`), never through reader functions.
"""
from __future__ import annotations

import json
import logging
import random
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from contextlib import contextmanager

from medgan_ui.errors import UserError
from medgan_ui.study import integrity
from medgan_ui.study.schema import (CALLS, MAX_READER_NAME_CHARS, SCHEMA, SCORE_KINDS, CredentialError,  # noqa: F401
                                    check_reader_code, code_hash, hash_secret, image_key_for, new_code,
                                    normalise_code, normalise_name, reader_name)

log = logging.getLogger("medgan_ui.study")
from medgan_ui.workspace import new_id, now_iso


@dataclass
class CaseInput:
    """One image to show, before it gets its opaque id. repeat_of = index of an earlier CaseInput."""

    truth: str
    source: str
    labels: dict[str, Any]
    png: bytes
    repeat_of: int | None = None


@dataclass
class Session:
    token: str  # proves who the reader is on every call
    image_key: str  # only allows fetching this study's images (goes into <img> URLs, never the token)
    reader_id: int
    reader_name: str
    study_id: str
    reader_code: str | None = None  # issued at a reader's first sign-in (shown once): needed to sign in again


@dataclass
class ReaderView:
    """What a reader may know about their study: never truth, labels or other readers."""

    reader_id: int
    reader_name: str
    study_id: str
    study_name: str
    status: str
    findings: list[str]
    score_kind: str
    ask_finding: bool
    order: list[str] = field(repr=False, default_factory=list)


@dataclass
class NextCase:
    case_id: str | None  # None when every case is answered
    position: int  # 1-based index of this case in the reader's order
    answered: int
    total: int


class StudyStore:
    _locks: dict[str, threading.Lock] = {}
    _locks_guard = threading.Lock()

    def __init__(self, path: str | Path) -> None:
        self.path = str(Path(path))
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with StudyStore._locks_guard:
            self._write_lock = StudyStore._locks.setdefault(self.path, threading.Lock())
        # before SQLite touches the files (it would silently drop a damaged log); raises DatabaseDamaged
        self.integrity = integrity.check_once(Path(self.path))
        self._local = threading.local()
        conn = self._conn()
        with self._write_lock:
            conn.executescript(SCHEMA)
        integrity.make_private(Path(self.path))

    # ---- connections ---------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self, checkpoint: bool = True) -> Iterator[sqlite3.Connection]:
        """One writer at a time in this process; BEGIN IMMEDIATE takes the file lock up front.

        checkpoint: copy the log into the main file after the commit (PASSIVE: never waits for readers),
        so a later damaged -wal cannot take committed answers with it (measured: +~10 ms per rating);
        skipped for the served-at bookkeeping of next_case, which is not an answer.
        """
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            if checkpoint:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- studies (admin) -----------------------------------------------------------------------
    def create_study(self, name: str, settings: dict[str, Any], cases: list[CaseInput]) -> tuple[str, str]:
        """Insert a study and all its cases in one transaction; returns (study id, access code)."""
        name = normalise_name(name)
        if not name:
            raise UserError("study name is empty: give the study a name, e.g. 'Cardiomegaly Turing test'")
        if not cases:
            raise UserError("a study needs at least one case")
        if settings.get("score_kind", "realism") not in SCORE_KINDS:
            raise UserError(f"score must be one of {SCORE_KINDS}, got {settings.get('score_kind')!r}")
        study_id, code = new_id("study"), new_code()
        ids = [secrets.token_urlsafe(12) for _ in cases]
        # insert in a shuffled order so nothing about row order mirrors how cases were built
        order = list(range(len(cases)))
        random.SystemRandom().shuffle(order)
        order.sort(key=lambda i: cases[i].repeat_of is not None)  # originals before their repeats (FK)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO studies(id, name, code_hash, settings, status, created) VALUES (?,?,?,?, 'open', ?)",
                (study_id, name, hash_secret(code), json.dumps(settings, sort_keys=True), now_iso()),
            )
            for i in order:
                c = cases[i]
                if c.truth not in CALLS:
                    raise UserError(f"case truth must be 'real' or 'synthetic', got {c.truth!r}")
                rep = ids[c.repeat_of] if c.repeat_of is not None else None
                conn.execute(
                    "INSERT INTO cases(id, study_id, truth, source, labels, png, repeat_of) VALUES (?,?,?,?,?,?,?)",
                    (ids[i], study_id, c.truth, c.source, json.dumps(c.labels, sort_keys=True), c.png, rep),
                )
        return study_id, code

    def list_studies(self) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT s.id, s.name, s.status, s.created, s.settings,"
            " (SELECT COUNT(*) FROM cases c WHERE c.study_id = s.id) AS n_cases,"
            " (SELECT COUNT(*) FROM readers r WHERE r.study_id = s.id) AS n_readers"
            " FROM studies s ORDER BY s.created, s.id"
        ).fetchall()
        return [{**dict(r), "settings": json.loads(r["settings"])} for r in rows]

    def study(self, study_id: str) -> dict[str, Any]:
        row = self._conn().execute("SELECT id, name, status, created, settings FROM studies WHERE id=?", (study_id,)).fetchone()
        if row is None:
            known = [s["id"] for s in self.list_studies()]
            raise UserError(f"study {study_id!r} not found; studies in this workspace: {known or 'none'}")
        return {**dict(row), "settings": json.loads(row["settings"])}

    def set_status(self, study_id: str, status: str) -> None:
        if status not in ("open", "closed"):
            raise UserError(f"status must be 'open' or 'closed', got {status!r}")
        self.study(study_id)
        with self._write() as conn:
            conn.execute("UPDATE studies SET status=? WHERE id=?", (status, study_id))

    def reset_access_code(self, study_id: str) -> str:
        """A new study access code (codes are stored hashed, so a lost one can only be replaced)."""
        self.study(study_id)
        code = new_code()
        with self._write() as conn:
            conn.execute("UPDATE studies SET code_hash=? WHERE id=?", (hash_secret(code), study_id))
        return code

    def add_reader(self, study_id: str, name: str) -> str:
        """Issue a personal reader code (only this code can then sign in under that name)."""
        self.study(study_id)
        name = reader_name(name)
        code = new_code()
        with self._write() as conn:
            row = conn.execute("SELECT id FROM readers WHERE study_id=? AND name_key=?", (study_id, name.lower())).fetchone()
            if row is None:
                self._insert_reader(conn, study_id, name, hash_secret(code))
            else:
                conn.execute("UPDATE readers SET code_hash=? WHERE id=?", (hash_secret(code), row["id"]))
        return code

    def _insert_reader(self, conn: sqlite3.Connection, study_id: str, name: str, code_hash: str | None) -> int:
        settings = json.loads(conn.execute("SELECT settings FROM studies WHERE id=?", (study_id,)).fetchone()["settings"])
        case_ids = [r["id"] for r in conn.execute("SELECT id, repeat_of FROM cases WHERE study_id=? ORDER BY id", (study_id,))]
        repeats = {r["id"]: r["repeat_of"] for r in conn.execute(
            "SELECT id, repeat_of FROM cases WHERE study_id=? AND repeat_of IS NOT NULL", (study_id,))}
        n_before = conn.execute("SELECT COUNT(*) FROM readers WHERE study_id=?", (study_id,)).fetchone()[0]
        # each reader gets their own order, seeded from the study seed and the reader's enrolment number
        rng = random.Random(f"{settings.get('seed', 0)}:{study_id}:{n_before}")
        order = _spread_repeats(case_ids, repeats, rng)
        cur = conn.execute(
            "INSERT INTO readers(study_id, name, name_key, code_hash, order_json, created) VALUES (?,?,?,?,?,?)",
            (study_id, name, name.lower(), code_hash, json.dumps(order), now_iso()),
        )
        return int(cur.lastrowid)

    def reset_reader(self, study_id: str, name: str) -> str:
        """A new reader code for an existing reader who lost theirs; their open sessions end."""
        self.study(study_id)
        key = normalise_name(name).lower()
        code = new_code()
        with self._write() as conn:
            row = conn.execute("SELECT id, name FROM readers WHERE study_id=? AND name_key=?", (study_id, key)).fetchone()
            if row is None:
                known = [r[0] for r in conn.execute("SELECT name FROM readers WHERE study_id=? ORDER BY id", (study_id,))]
                raise UserError(f"no reader {name!r} in study {study_id}; its readers: {known or 'none yet'}")
            conn.execute("UPDATE readers SET code_hash=? WHERE id=?", (hash_secret(code), row["id"]))
            conn.execute("DELETE FROM sessions WHERE reader_id=?", (row["id"],))
        log.warning("reader code of %r in study %s was reset by the organiser; their sessions were ended", row["name"], study_id)
        return code

    def browser_key(self) -> str:
        """A random key kept in the database, for encrypting what the reading page keeps in the browser."""
        with self._write() as conn:
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('browser_key', ?)", (secrets.token_urlsafe(32),))
            return str(conn.execute("SELECT value FROM meta WHERE key='browser_key'").fetchone()[0])

    # ---- readers -------------------------------------------------------------------------------
    def sign_in(self, name: str, code: str, reader_code: str | None = None) -> Session:
        """Start a session: name + the study's access code at a reader's first sign-in (a reader code is
        issued and returned in Session.reader_code); afterwards name + that reader code, either alone or
        next to the study code. So nobody who only knows the study code can answer as another reader.
        """
        name, code_h = reader_name(name), code_hash(code)
        with self._write() as conn:
            reader = conn.execute(
                "SELECT r.id, r.name, r.study_id, s.status FROM readers r JOIN studies s ON s.id = r.study_id WHERE r.code_hash=?",
                (code_h,),
            ).fetchone()
            issued = None
            if reader is not None:
                if reader["name"].lower() != name.lower():
                    raise CredentialError("this code belongs to another reader: check your name and code")
            else:
                study = conn.execute("SELECT id, status FROM studies WHERE code_hash=?", (code_h,)).fetchone()
                if study is None:
                    raise CredentialError("unknown access code: check the code you were given")
                reader = conn.execute(
                    "SELECT r.id, r.name, r.study_id, r.code_hash, s.status FROM readers r JOIN studies s ON s.id = r.study_id"
                    " WHERE r.study_id=? AND r.name_key=?", (study["id"], name.lower())).fetchone()
                if reader is not None:
                    check_reader_code(reader["name"], reader["code_hash"], reader_code)
                else:
                    if study["status"] != "open":
                        raise UserError("this study is closed")
                    issued = new_code()
                    rid = self._insert_reader(conn, study["id"], name, hash_secret(issued))
                    reader = {"id": rid, "name": name, "study_id": study["id"], "status": study["status"]}
            if reader["status"] != "open":
                raise UserError("this study is closed")
            token, now = secrets.token_urlsafe(32), now_iso()
            image_key = image_key_for(token)
            conn.execute(
                "INSERT INTO sessions(token_hash, image_key_hash, reader_id, created, last_seen) VALUES (?,?,?,?,?)",
                (hash_secret(token), hash_secret(image_key), reader["id"], now, now),
            )
        return Session(token, image_key, int(reader["id"]), reader["name"], reader["study_id"], issued)

    def reader(self, token: str) -> ReaderView:
        """The reader behind a session token, or UserError. Every reader call starts here."""
        if not token or not isinstance(token, str):
            raise UserError("not signed in: sign in with your name and access code")
        row = self._conn().execute(
            "SELECT r.id, r.name, r.study_id, r.order_json, s.name AS study_name, s.status, s.settings"
            " FROM sessions x JOIN readers r ON r.id = x.reader_id JOIN studies s ON s.id = r.study_id"
            " WHERE x.token_hash=?", (hash_secret(token),)).fetchone()
        if row is None:
            raise UserError("session not found or expired: sign in again with your name and access code")
        settings = json.loads(row["settings"])
        return ReaderView(int(row["id"]), row["name"], row["study_id"], row["study_name"], row["status"],
                          list(settings.get("findings", [])), settings.get("score_kind", "realism"),
                          bool(settings.get("ask_finding", True)), json.loads(row["order_json"]))

    def next_case(self, token: str) -> NextCase:
        rv = self.reader(token)
        done = {r[0] for r in self._conn().execute("SELECT case_id FROM ratings WHERE reader_id=?", (rv.reader_id,))}
        for pos, cid in enumerate(rv.order, start=1):
            if cid not in done:
                with self._write(checkpoint=False) as conn:  # remember what was shown, to time the answer server-side
                    conn.execute("UPDATE sessions SET current_case=?, served_at=?, last_seen=? WHERE token_hash=?",
                                 (cid, time.time(), now_iso(), hash_secret(token)))
                return NextCase(cid, pos, len(done), len(rv.order))
        return NextCase(None, len(rv.order), len(done), len(rv.order))

    def rate(self, token: str, case_id: str, call: str, score: int, finding: str | None = None,
             comment: str = "", ms: int | None = None) -> NextCase:
        """Store (or update) one answer, committed before this returns; then the reader's next case."""
        rv = self.reader(token)
        if rv.status != "open":
            raise UserError("this study is closed: answers can no longer be changed")
        if case_id not in set(rv.order):
            raise UserError("unknown case for this study")
        call = str(call or "").strip().lower()
        if call not in CALLS:
            raise UserError("answer 'real' or 'synthetic' for this image")
        try:
            score = int(score)
        except (TypeError, ValueError):
            raise UserError("choose a score from 1 to 5") from None
        if not 1 <= score <= 5:
            raise UserError("choose a score from 1 to 5")
        finding = str(finding).strip() if finding else None
        if finding is not None and finding not in rv.findings:
            raise UserError(f"finding must be one of {rv.findings}")
        if finding is None and rv.ask_finding and rv.findings:
            raise UserError("choose the finding you see")
        comment = str(comment or "")[:2000]
        now = now_iso()
        with self._write() as conn:
            sess = conn.execute("SELECT current_case, served_at FROM sessions WHERE token_hash=?", (hash_secret(token),)).fetchone()
            if ms is None and sess is not None and sess["current_case"] == case_id and sess["served_at"]:
                ms = int(round((time.time() - float(sess["served_at"])) * 1000))
            ms = None if ms is None else max(0, min(int(ms), 24 * 3600 * 1000))
            conn.execute(
                "INSERT INTO ratings(reader_id, case_id, call, score, finding, comment, ms, created, updated)"
                " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(reader_id, case_id) DO UPDATE SET"
                " call=excluded.call, score=excluded.score, finding=excluded.finding, comment=excluded.comment,"
                " ms=COALESCE(excluded.ms, ratings.ms), updated=excluded.updated",
                (rv.reader_id, case_id, call, score, finding, comment, ms, now, now),
            )
        return self.next_case(token)

    def image(self, image_key: str, case_id: str) -> bytes:
        """PNG bytes of a case, only for a live session of the case's own study."""
        if not image_key or not case_id:
            raise UserError("not found")
        row = self._conn().execute(
            "SELECT c.png FROM sessions x JOIN readers r ON r.id = x.reader_id JOIN cases c ON c.study_id = r.study_id"
            " WHERE x.image_key_hash=? AND c.id=?", (hash_secret(image_key), case_id)).fetchone()
        if row is None:
            raise UserError("not found")  # same answer for a bad key and a case of another study
        return bytes(row["png"])

    # ---- admin views (these return truth; never call them from a reader handler) -----------------
    def progress(self, study_id: str) -> list[dict[str, Any]]:
        self.study(study_id)
        rows = self._conn().execute(
            "SELECT r.id, r.name, r.order_json, r.code_hash IS NOT NULL AS personal_code,"
            " (SELECT COUNT(*) FROM ratings g WHERE g.reader_id = r.id) AS answered,"
            " (SELECT MAX(g.updated) FROM ratings g WHERE g.reader_id = r.id) AS last_answer"
            " FROM readers r WHERE r.study_id=? ORDER BY r.id", (study_id,)).fetchall()
        return [{"reader": r["name"], "answered": r["answered"], "total": len(json.loads(r["order_json"])),
                 "personal_code": bool(r["personal_code"]), "last_answer": r["last_answer"]} for r in rows]

    def cases(self, study_id: str) -> list[dict[str, Any]]:
        self.study(study_id)
        rows = self._conn().execute(
            "SELECT id, truth, source, labels, repeat_of, length(png) AS png_bytes FROM cases WHERE study_id=? ORDER BY id",
            (study_id,)).fetchall()
        return [{**dict(r), "labels": json.loads(r["labels"])} for r in rows]

    def case_png(self, study_id: str, case_id: str) -> bytes:
        row = self._conn().execute("SELECT png FROM cases WHERE study_id=? AND id=?", (study_id, case_id)).fetchone()
        if row is None:
            raise UserError(f"case {case_id!r} not in study {study_id!r}")
        return bytes(row["png"])

    def ratings_rows(self, study_id: str) -> list[dict[str, Any]]:
        """Every rating joined with its case's truth: the input of analysis and CSV export."""
        self.study(study_id)
        rows = self._conn().execute(
            "SELECT r.name AS reader, g.case_id, c.truth, c.source, c.labels, c.repeat_of, g.call, g.score,"
            " g.finding, g.comment, g.ms, g.created, g.updated"
            " FROM ratings g JOIN readers r ON r.id = g.reader_id JOIN cases c ON c.id = g.case_id"
            " WHERE r.study_id=? ORDER BY r.id, g.id", (study_id,)).fetchall()
        return [{**dict(r), "labels": json.loads(r["labels"])} for r in rows]

    def count_ratings(self, study_id: str) -> tuple[int, int]:
        """(rows, distinct (reader, case) pairs): equal unless something duplicated."""
        row = self._conn().execute(
            "SELECT COUNT(*), COUNT(DISTINCT g.reader_id || ':' || g.case_id) FROM ratings g JOIN readers r ON r.id = g.reader_id"
            " WHERE r.study_id=?", (study_id,)).fetchone()
        return int(row[0]), int(row[1])


def _spread_repeats(case_ids: list[str], repeats: dict[str, str], rng: random.Random) -> list[str]:
    """Shuffle; then make sure no repeated case sits right next to its original (it would be obvious)."""
    order = list(case_ids)
    for _ in range(200):
        rng.shuffle(order)
        pos = {c: i for i, c in enumerate(order)}
        if all(abs(pos[r] - pos[o]) > 1 for r, o in repeats.items()) or len(order) < 4:
            break
    return order
