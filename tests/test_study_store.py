"""SQLite study store: durability settings, no duplicate ratings, resume, codes, validation."""
from __future__ import annotations

import io
import sqlite3
import threading

import pytest
from PIL import Image

from medgan_ui.errors import UserError
from medgan_ui.study.store import CaseInput, StudyStore


def _png(v: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8, 8), v).save(buf, format="PNG")
    return buf.getvalue()


def _study(store: StudyStore, n: int = 10, repeats: int = 0, name: str = "s") -> tuple[str, str]:
    cases = [CaseInput("real" if i % 2 else "synthetic", f"src{i}", {"findings": []}, _png(i)) for i in range(n)]
    cases += [CaseInput(cases[i].truth, cases[i].source, {"findings": []}, cases[i].png, repeat_of=i) for i in range(repeats)]
    return store.create_study(name, {"findings": ["Nodule", "No Finding"], "score_kind": "realism", "seed": 1}, cases)


def test_pragmas_wal_foreign_keys(tmp_path):
    store = StudyStore(tmp_path / "s.sqlite")
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    with pytest.raises(sqlite3.IntegrityError):  # a rating must point at a real reader and case
        with store._write() as c:
            c.execute("INSERT INTO ratings(reader_id, case_id, call, score, created, updated) VALUES (999, 'x', 'real', 3, 't', 't')")


def test_answering_twice_updates_never_duplicates(tmp_path):
    store = StudyStore(tmp_path / "s.sqlite")
    sid, code = _study(store)
    tok = store.sign_in("Ann", code).token
    case = store.next_case(tok).case_id
    store.rate(tok, case, "real", 2, "Nodule", "first")
    store.rate(tok, case, "synthetic", 5, "No Finding", "changed my mind")
    rows = store.ratings_rows(sid)
    assert len(rows) == 1 and store.count_ratings(sid) == (1, 1)
    assert (rows[0]["call"], rows[0]["score"], rows[0]["finding"], rows[0]["comment"]) == ("synthetic", 5, "No Finding", "changed my mind")


def test_rating_is_committed_before_the_next_case_is_returned(tmp_path):
    path = tmp_path / "s.sqlite"
    store = StudyStore(path)
    sid, code = _study(store)
    tok = store.sign_in("Ann", code).token
    case = store.next_case(tok).case_id
    nxt = store.rate(tok, case, "real", 3, "Nodule")
    other = sqlite3.connect(path)  # a different connection sees it: the transaction is committed
    assert other.execute("SELECT COUNT(*) FROM ratings WHERE case_id=?", (case,)).fetchone()[0] == 1
    assert nxt.case_id != case and nxt.answered == 1 and nxt.position == 2


def test_resume_at_next_unanswered_in_own_order(tmp_path):
    store = StudyStore(tmp_path / "s.sqlite")
    sid, code = _study(store, n=12)
    first = store.sign_in("Ann", code)
    tok = first.token
    seen = []
    for _ in range(5):
        c = store.next_case(tok).case_id
        seen.append(c)
        store.rate(tok, c, "real", 3, "Nodule")
    store2 = StudyStore(tmp_path / "s.sqlite")  # as after a restart
    # same reader: names compare case- and space-insensitively, and continuing needs the reader code
    tok2 = store2.sign_in("  ann ", code, first.reader_code).token
    nxt = store2.next_case(tok2)
    assert nxt.answered == 5 and nxt.position == 6 and nxt.case_id not in seen
    assert store2.reader(tok2).order[:5] == seen
    other = store2.sign_in("Bob", code).token
    assert store2.reader(other).order != seen + store2.reader(tok2).order[5:]  # own seeded order per reader
    assert sorted(store2.reader(other).order) == sorted(store2.reader(tok2).order)


def test_codes_and_closed_studies(tmp_path):
    store = StudyStore(tmp_path / "s.sqlite")
    sid, code = _study(store)
    with pytest.raises(UserError, match="unknown access code"):
        store.sign_in("Ann", "AAAA-BBBB-CCCC")
    with pytest.raises(UserError, match="name"):
        store.sign_in("   ", code)
    personal = store.add_reader(sid, "Dr Personal")
    assert store.sign_in("dr personal", personal).reader_name == "Dr Personal"
    with pytest.raises(UserError, match="already taken"):
        store.sign_in("Dr Personal", code)  # the study code cannot take over a reader with a personal code
    with pytest.raises(UserError, match="another reader"):
        store.sign_in("Someone Else", personal)
    ann = store.sign_in("Ann", code.lower().replace("-", " "))  # codes forgive case and separators
    tok = ann.token
    case = store.next_case(tok).case_id
    new = store.reset_access_code(sid)
    with pytest.raises(UserError):
        store.sign_in("Ann", code)
    assert store.sign_in("Ann", new, ann.reader_code).reader_name == "Ann"
    store.set_status(sid, "closed")
    with pytest.raises(UserError, match="closed"):
        store.rate(tok, case, "real", 3, "Nodule")
    with pytest.raises(UserError, match="closed"):
        store.sign_in("Newcomer", new)
    assert store.count_ratings(sid) == (0, 0)


@pytest.mark.parametrize("bad", [dict(call="maybe"), dict(score=0), dict(score=6), dict(score="x"),
                                 dict(finding="Pneumonia"), dict(finding=None), dict(case="nope")])
def test_bad_answers_are_refused_and_nothing_stored(tmp_path, bad):
    store = StudyStore(tmp_path / "s.sqlite")
    sid, code = _study(store)
    tok = store.sign_in("Ann", code).token
    args = dict(case=store.next_case(tok).case_id, call="real", score=3, finding="Nodule")
    args.update(bad)
    with pytest.raises(UserError):
        store.rate(tok, args["case"], args["call"], args["score"], args["finding"])
    assert store.count_ratings(sid) == (0, 0)
    with pytest.raises(UserError, match="sign in"):
        store.next_case("forged-token")


def test_repeats_are_not_shown_back_to_back(tmp_path):
    store = StudyStore(tmp_path / "s.sqlite")
    sid, code = _study(store, n=20, repeats=5)
    cases = {c["id"]: c for c in store.cases(sid)}
    assert sum(c["repeat_of"] is not None for c in cases.values()) == 5
    for name in ("A", "B", "C"):
        order = store.reader(store.sign_in(name, code).token).order
        pos = {c: i for i, c in enumerate(order)}
        for c in cases.values():
            if c["repeat_of"]:
                assert abs(pos[c["id"]] - pos[c["repeat_of"]]) > 1
                assert store.case_png(sid, c["id"]) == store.case_png(sid, c["repeat_of"])


def test_threads_share_the_store_without_losing_ratings(tmp_path):
    store = StudyStore(tmp_path / "s.sqlite")
    sid, code = _study(store, n=15)
    errors = []

    def reader(i: int) -> None:
        try:
            tok = store.sign_in(f"reader {i}", code).token
            while (c := store.next_case(tok).case_id) is not None:
                store.rate(tok, c, "synthetic", 1 + i % 5, "Nodule")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert store.count_ratings(sid) == (8 * 15, 8 * 15)
