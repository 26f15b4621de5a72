"""Study integrity against a real `launch.py --reader-only`: nobody answers as another reader, names
are capped, sign-in guessing backs off, exported CSVs cannot run formulas, a damaged database is
reported at start-up instead of being read as empty, and the files the app writes are owner-only."""
from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import _study_fixtures as fx
from medgan_ui.errors import UserError
from medgan_ui.study.integrity import DatabaseDamaged, check_database, wal_problem
from medgan_ui.study.schema import MAX_READER_NAME_CHARS
from medgan_ui.study.store import StudyStore
from medgan_ui.ui.study_admin import AdminHandlers
from medgan_ui.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
FORMULAS = ['=HYPERLINK("http://x","y")', "+1", "-1", "@SUM(A1)", "\tTAB", "\rCR"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    sid, code = fx.tiny_study(ws, 6, 6, name="integrity", seed=4)
    # an older workspace: created before the app restricted its files
    os.chmod(ws.root, 0o755)
    os.chmod(ws.studies_db, 0o644)
    upload_dir = tmp_path_factory.mktemp("gradio-tmp")
    proc, base = fx.start_server(ws.root, admin_password="adm-pw-9", env={"GRADIO_TEMP_DIR": str(upload_dir)})
    yield ws, base, sid, code, upload_dir
    fx.stop_server(proc)


def post_signin(base: str, body: dict) -> httpx.Response:
    """Sign in, waiting out a back-off that an earlier failed attempt imposed (429 + Retry-After)."""
    while True:
        r = httpx.post(base + "/study/api/signin", json=body, timeout=30)
        if r.status_code != 429:
            return r
        time.sleep(float(r.headers["Retry-After"]))


def rate(base: str, token: str, case: str, call: str = "real", comment: str = "") -> httpx.Response:
    return httpx.post(base + "/study/api/rate", headers={"Authorization": f"Bearer {token}"},
                      json={"case": case, "call": call, "score": 4, "finding": "Nodule", "comment": comment})


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medgan_ui.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)


def server_log(ws: Workspace) -> str:
    return "".join(p.read_text(errors="replace") for p in ws.root.glob("server-*.log"))


# ---- nobody answers as another reader ------------------------------------------------------------

def test_same_name_needs_the_reader_code(env):
    ws, base, sid, code, _ = env
    first = post_signin(base, {"name": "Dr Alice", "code": code})
    assert first.status_code == 200
    alice = first.json()
    secret = alice["reader_code"]
    assert secret and len(secret) == 14
    assert rate(base, alice["token"], alice["next"]["case"], "synthetic").status_code == 200

    for name in ("Dr Alice", "  dr   ALICE ", "DR ALICE"):  # spacing and case do not make another reader
        r = post_signin(base, {"name": name, "code": code})
        assert r.status_code == 401 and "already taken" in r.json()["error"], r.text
    r = post_signin(base, {"name": "dr alice", "code": code, "reader_code": "AAAA-BBBB-CCCC"})
    assert r.status_code == 401 and "wrong reader code" in r.json()["error"]
    r = post_signin(base, {"name": "Dr Bob", "code": secret})  # Alice's code under another name
    assert r.status_code == 401 and "another reader" in r.json()["error"]

    # the real Alice continues, with her code next to the study code or alone, on any device
    for body in ({"name": " dr alice", "code": code, "reader_code": secret.lower()}, {"name": "Dr Alice", "code": secret}):
        r = post_signin(base, body)
        assert r.status_code == 200, r.text
        again = r.json()
        assert again["reader"] == "Dr Alice" and again["reader_code"] is None  # a code is issued only once
        assert again["next"]["answered"] == 1 and again["next"]["case"] != alice["next"]["case"]
    rows = [(x["reader"], x["call"]) for x in StudyStore(ws.studies_db).ratings_rows(sid)]
    assert rows.count(("Dr Alice", "synthetic")) == 1 and len([r for r in rows if r[0] == "Dr Alice"]) == 1
    log = server_log(ws)
    assert "failed study sign-in from 127.0.0.1" in log
    assert "study sign-in refused from 127.0.0.1: wrong reader code for 'Dr Alice'" in log
    assert secret not in log and code not in log  # codes are never logged


def test_organiser_resets_a_lost_reader_code(env):
    ws, base, sid, code, _ = env
    carol = post_signin(base, {"name": "Carol", "code": code}).json()
    old = carol["reader_code"]
    out = cli("study", "reset-reader", sid, "carol", "--workspace", str(ws.root))
    assert out.returncode == 0, out.stderr
    new = out.stdout.split("new reader code for carol: ")[1].split()[0]
    assert new != old
    assert post_signin(base, {"name": "Carol", "code": old}).status_code == 401
    assert httpx.get(base + "/study/api/next", headers={"Authorization": f"Bearer {carol['token']}"}).status_code == 401
    assert post_signin(base, {"name": "Carol", "code": code, "reader_code": new}).status_code == 200
    # the same from the admin view's handler; an unknown reader is named as such
    adm = AdminHandlers(StudyStore(ws.studies_db), ws, "pw")
    tok = adm.login("pw")
    third = adm.reset_reader(tok, sid, "CAROL")
    assert post_signin(base, {"name": "Carol", "code": third}).status_code == 200
    with pytest.raises(UserError, match="no reader 'Nobody'.*Carol"):
        adm.reset_reader(tok, sid, "Nobody")
    with pytest.raises(UserError, match="admin sign-in"):
        adm.reset_reader(None, sid, "Carol")


def test_huge_reader_names_are_refused(env):
    ws, base, sid, code, _ = env
    n_before = len(StudyStore(ws.studies_db).progress(sid))
    for name in ("x" * 1_000_000, "y" * (MAX_READER_NAME_CHARS + 1)):
        r = post_signin(base, {"name": name, "code": code})
        assert r.status_code == 401
        assert f"limited to {MAX_READER_NAME_CHARS} characters" in r.json()["error"]
        assert len(r.text) < 1000  # the message does not echo the name back
    assert len(StudyStore(ws.studies_db).progress(sid)) == n_before
    assert post_signin(base, {"name": "z" * MAX_READER_NAME_CHARS, "code": code}).status_code == 200
    with pytest.raises(UserError, match="limited to"):
        StudyStore(ws.studies_db).add_reader(sid, "w" * 5000)
    r = post_signin(base, {"name": "Dr \u202eecilA", "code": code})  # a right-to-left override disguising a name
    assert r.status_code == 401 and "control characters" in r.json()["error"]


def test_failed_signins_back_off(env):
    ws, base, sid, code, _ = env
    post_signin(base, {"name": "Warm Up", "code": code})  # a success clears earlier failures of this client
    waits = []
    for _ in range(3):
        assert httpx.post(base + "/study/api/signin", json={"name": "Eve", "code": "AAAA-AAAA-AAAA"}).status_code == 401
        r = httpx.post(base + "/study/api/signin", json={"name": "Eve", "code": code})  # even a right code waits
        assert r.status_code == 429 and "too many failed study sign-in attempts" in r.json()["error"]
        waits.append(int(r.headers["Retry-After"]))
        time.sleep(waits[-1] + 0.1)
    assert waits == [1, 2, 4]
    # a wrong reader code counts the same way
    assert post_signin(base, {"name": "Dr Alice", "code": code, "reader_code": "ZZZZ-ZZZZ-ZZZZ"}).status_code == 401
    assert httpx.post(base + "/study/api/signin", json={"name": "x", "code": code}).status_code == 429
    assert "next attempt allowed in 8 s" in server_log(ws)


def test_gradio_sign_in_form_refuses_a_taken_name(env):
    ws, base, sid, code, _ = env
    post_signin(base, {"name": "Dr Form", "code": code})
    cfg = fx.gradio_config(base)
    msg = fx.gradio_call(base, fx.find_dependency(cfg, "Start reading"), ["dr form", code, None])
    assert "already taken" in str(msg) and "rate-reader" not in str(msg)


# ---- CSV exports --------------------------------------------------------------------------------

def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def assert_neutral(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (cell, row)


def test_ratings_export_neutralises_formulas(env, tmp_path):
    ws, base, sid, code, _ = env
    names = ['=HYPERLINK("http://x","y")', "@SUM(A1)", "+1 evil", "-1 evil"]
    for i, name in enumerate(names):  # two answers each: every formula lands in a comment
        r = post_signin(base, {"name": name, "code": code}).json()
        first = rate(base, r["token"], r["next"]["case"], comment=FORMULAS[i])
        assert first.status_code == 200
        assert rate(base, r["token"], first.json()["next"]["case"], comment=FORMULAS[(i + 4) % len(FORMULAS)]).status_code == 200
    out = tmp_path / "ratings.csv"
    res = cli("study", "export", sid, "--out", str(out), "--workspace", str(ws.root))
    assert res.returncode == 0, res.stderr
    rows = _cells(out.read_text())
    assert_neutral(rows)
    header = rows[0]
    by_reader = {r[header.index("reader")] for r in rows[1:]}
    assert {"'" + n for n in names} <= by_reader
    assert {len(r) for r in rows} == {len(header)}  # no comment split a row
    comments = {r[header.index("comment")] for r in rows[1:]}
    assert {"'" + f.replace("\r", "\n") for f in FORMULAS} <= comments  # a CR inside text is written as LF
    for r in rows[1:]:  # numbers stay numbers
        assert r[header.index("score")] == "4" and float(r[header.index("time")]) >= 0
    # the admin view's download is the same text
    adm = AdminHandlers(StudyStore(ws.studies_db), ws, "pw")
    assert_neutral(_cells(Path(adm.results(adm.login("pw"), sid)["csv"]).read_text()))


def test_experiment_csvs_neutralise_text_but_keep_numbers(tmp_path, monkeypatch):
    import types

    import numpy as np

    from medgan_ui.evaluate import cell, plots, results

    monkeypatch.setattr(plots, "save_roc", lambda *a, **k: None)
    monkeypatch.setattr(plots, "save_confusion", lambda *a, **k: None)
    entry = {"auc_pooled": 0.71, "auc_pooled_ci95": [-0.5, 0.9], "auc_fold_mean": 0.71, "auc_fold_sd": 0.05,
             "sens_at_spec": 0.5, "sensitivity_mean": 0.6, "specificity_mean": 0.7, "auc_per_fold": [0.7, 0.72]}
    res = {"config": {"strategies": ["none", "@SUM(A1)"], "targets": ['=HYPERLINK("http://x","y")']},
           "targets": {'=HYPERLINK("http://x","y")': {"none": entry, "@SUM(A1)": entry}}}
    results.write_results(tmp_path, res)
    rows = _cells((tmp_path / "results.csv").read_text())
    h = rows[0]
    assert_neutral([[c for j, c in enumerate(r) if h[j] != "ci95_lo"] for r in rows])
    assert rows[1][h.index("target")] == "'=HYPERLINK(\"http://x\",\"y\")" and rows[2][h.index("strategy")] == "'@SUM(A1)"
    assert rows[1][h.index("ci95_lo")] == "-0.5"  # a number, written as a number: not quoted

    ds = types.SimpleNamespace(patient_id=np.array(["=cmd|' /C calc'!A0", "p2"]), source=["@x", "-y"])
    rec = {"y_val": np.array([[1]]), "p_val": np.array([[0.25]]), "y_test": np.array([[0]]), "p_test": np.array([[1e-05]])}
    cell.write_predictions(tmp_path / "pred.csv", ds, ["-1"], {"val": np.array([0]), "test": np.array([1])}, rec)
    rows = _cells((tmp_path / "pred.csv").read_text())
    assert_neutral(rows)
    assert rows[1][2] == "'=cmd|' /C calc'!A0" and rows[2][3] == "'-y" and rows[2][-1] == "1e-05"


def test_synthetic_labels_csv_neutralises_and_reads_back(tmp_path):
    import dataclasses

    import torch

    from medgan_ui.data.phantom import demo_imageset
    from medgan_ui.evaluate.strategies import open_source
    from medgan_ui.gan.config import make_configs
    from medgan_ui.gan.generate import export_png, load_run
    from medgan_ui.gan.runs import Run

    torch.set_num_threads(1)
    ds = demo_imageset(n=32, size=16, seed=0)
    evil = {"sex": ['=HYPERLINK("http://x","y")', "-1"], "view": ["@SUM(A1)", "+1"]}
    ds = dataclasses.replace(ds, general_values={k: evil[k] for k in ds.general_names})
    tc, mc = make_configs("gdgan", "tiny", steps=2)
    ws = Workspace(tmp_path / "ws")
    created = Run.create(ws, ds, tc, mc)
    assert created.train(ds)["status"] == "finished"
    run = load_run(created.dir, device="cpu")
    folder = export_png(run, [({"sex": "-1", "view": "@SUM(A1)"}, [], 2), ({"sex": evil["sex"][0], "view": "+1"}, [], 2)],
                        ws.synthetic, seed=1)
    text = (folder / "labels.csv").read_text()
    rows = _cells(text)
    assert_neutral(rows)
    assert "'-1" in text and "'@SUM(A1)" in text and "'+1" in text and "'=HYPERLINK" in text
    # our own readers undo the quote: the labels come back as they were
    src = open_source(ws, folder.name)
    assert {(r["sex"], r["view"]) for r in src.rows} == {("-1", "@SUM(A1)"), (evil["sex"][0], "+1")}


# ---- a damaged database is reported, never read as empty ----------------------------------------

def _live_copy(ws: Workspace, dest: Path) -> Workspace:
    """The database and its write-ahead log as they lie on disk while the server runs (as a backup
    tool or a crash would leave them)."""
    new = Workspace(dest)
    shutil.copyfile(ws.studies_db, new.studies_db)
    wal = Path(str(ws.studies_db) + "-wal")
    assert wal.exists() and wal.stat().st_size > 32, "the running server keeps a write-ahead log"
    shutil.copyfile(wal, str(new.studies_db) + "-wal")
    return new


def _digest(ws: Workspace) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in ws.root.glob("studies.sqlite*")}


def test_healthy_database_reports_counts(env, tmp_path):
    ws, base, sid, code, _ = env
    assert "integrity ok, 1 studies, 0 readers, 0 ratings" in server_log(ws)  # the start-up line
    copy = _live_copy(ws, tmp_path / "copy")
    store = StudyStore(ws.studies_db)
    n_readers, n_ratings = len(store.progress(sid)), len(store.ratings_rows(sid))
    out = cli("study", "status", "--workspace", str(copy.root))
    assert out.returncode == 0, out.stderr
    assert f"integrity ok, 1 studies, {n_readers} readers, {n_ratings} ratings" in out.stdout
    assert sid in out.stdout


def test_damaged_wal_is_reported_loudly_and_left_untouched(env, tmp_path):
    ws, base, sid, code, _ = env
    r = post_signin(base, {"name": "Dr Wal", "code": code}).json()
    assert rate(base, r["token"], r["next"]["case"]).status_code == 200
    copy = _live_copy(ws, tmp_path / "damaged")
    wal = Path(str(copy.studies_db) + "-wal")
    data = bytearray(wal.read_bytes())
    data[32 + 24 + 100: 32 + 24 + 140] = os.urandom(40)  # inside the first frame's page
    wal.write_bytes(bytes(data))
    assert "checksum" in (wal_problem(wal) or "")
    before = _digest(copy)

    out = cli("study", "status", "--workspace", str(copy.root))
    assert out.returncode == 2 and "is damaged" in out.stderr and "studies.sqlite-wal" in out.stderr
    assert "restore" in out.stderr and "no studies yet" not in out.stdout

    with pytest.raises(RuntimeError, match="is damaged"):  # the reading server refuses to start, saying why
        fx.start_server(copy.root)
    with pytest.raises(RuntimeError, match="is damaged"):  # and so does the full studio
        fx.start_server(copy.root, reader_only=False)
    assert "ERROR medgan_ui.study" in "".join(p.read_text() for p in copy.root.glob("server-*.log"))
    assert _digest(copy) == before  # nothing was read into SQLite or changed: ready for a restore


@pytest.mark.parametrize("damage", ["header", "cut", "garbage"])
def test_wal_damage_kinds(env, tmp_path, damage):
    ws = env[0]
    copy = _live_copy(ws, tmp_path / damage)
    wal = Path(str(copy.studies_db) + "-wal")
    data = wal.read_bytes()
    data = {"header": os.urandom(32) + data[32:], "cut": data[:-100], "garbage": os.urandom(5000)}[damage]
    wal.write_bytes(data)
    with pytest.raises(DatabaseDamaged, match="studies.sqlite-wal"):
        check_database(copy.studies_db, retries=0)
    with pytest.raises(DatabaseDamaged):
        StudyStore(copy.studies_db)
    assert wal.read_bytes() == data


def test_damaged_main_file_is_reported(env, tmp_path):
    ws = env[0]
    bad = tmp_path / "bad" / "studies.sqlite"
    bad.parent.mkdir()
    data = bytearray(ws.studies_db.read_bytes())
    data[4096 * 2: 4096 * 3] = os.urandom(4096)  # one b-tree page of the main file
    bad.write_bytes(bytes(data))
    with pytest.raises(DatabaseDamaged, match="is damaged"):
        check_database(bad, retries=0)


def test_ratings_reach_the_main_file_at_once(env, tmp_path):
    """Checkpointed after every write: the main file alone (no -wal) holds every committed answer."""
    ws, base, sid, code, _ = env
    r = post_signin(base, {"name": "Dr Checkpoint", "code": code}).json()
    assert rate(base, r["token"], r["next"]["case"]).status_code == 200
    alone = tmp_path / "alone.sqlite"
    shutil.copyfile(ws.studies_db, alone)
    got = StudyStore(alone).ratings_rows(sid)
    assert [x["reader"] for x in got].count("Dr Checkpoint") == 1


# ---- owner-only files ---------------------------------------------------------------------------

def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_files_the_app_writes_are_private(env):
    ws, base, sid, code, upload_dir = env
    post_signin(base, {"name": "Dr Files", "code": code})
    assert _mode(ws.root) == 0o700  # tightened at start (it was 0o755)
    for p in ws.root.glob("studies.sqlite*"):
        assert _mode(p) & 0o077 == 0, (p, oct(_mode(p)))
    r = httpx.post(base + "/gradio_api/upload", files={"files": ("scan.png", b"\x89PNG fake", "image/png")})
    assert r.status_code == 200, r.text
    uploaded = Path(r.json()[0])
    assert uploaded.is_relative_to(upload_dir) and _mode(uploaded) & 0o077 == 0
    assert _mode(uploaded.parent) & 0o077 == 0


def test_new_workspace_is_private(tmp_path):
    out = cli("study", "status", "--workspace", str(tmp_path / "fresh"))
    assert out.returncode == 0, out.stderr
    assert _mode(tmp_path / "fresh") == 0o700 and _mode(tmp_path / "fresh" / "runs") == 0o700
    assert _mode(tmp_path / "fresh" / "studies.sqlite") == 0o600
