"""Issue 9 attacks against a real `launch.py` on 127.0.0.1: each must fail with a clear message.

One full studio with a login (from a file), an admin password (from an environment variable), a
listed extra origin, a small body cap and a small login back-off base so the back-off tests are fast.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import _study_fixtures as fx
from medgan_ui.errors import UserError
from medgan_ui.security import credentials
from medgan_ui.security.http import check_exposure, is_loopback, normalise_origin, same_origin

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD, ADMIN = "ann", "reading-room-7", "admin-pw-42"
PORTAL = "https://portal.example.org"
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sec")
    auth = tmp / "auth.txt"
    auth.write_text(f"# reading room\n{USER}:{PASSWORD}\n")
    auth.chmod(0o600)
    admin = tmp / "admin.txt"
    admin.write_text(ADMIN + "\n")
    admin.chmod(0o600)
    ws = tmp / "ws"
    ws.mkdir()  # the server's log goes into it
    proc, base = fx.start_server(
        ws, reader_only=False, wait_for="/gradio_api/app_id",
        extra_args=["--auth-file", str(auth), "--allowed-origin", PORTAL, "--max-request-mb", "0.05"],
        env={"MEDGAN_ADMIN_PASSWORD_FILE": str(admin), "MEDGAN_LOGIN_BACKOFF_S": "0.2"})
    yield ws, base, proc
    fx.stop_server(proc)


def login(base: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(base + "/login", data={"username": USER, "password": password}, timeout=30)


def session(base: str) -> httpx.Client:
    r = login(base)
    assert r.status_code == 200, r.text
    c = httpx.Client(base_url=base, timeout=60)
    for k, v in r.cookies.items():
        c.cookies.set(k, v)
    return c


def server_log(ws: Path, base: str) -> str:
    return (ws / f"server-{base.rsplit(':', 1)[1]}.log").read_text(errors="replace")


# ---- CORS / Origin -----------------------------------------------------------------------------------
def test_foreign_origin_with_cookie_is_refused_and_never_echoed(studio):
    ws, base, _ = studio
    with session(base) as c:
        assert c.get("/config").status_code == 200  # the logged-in session itself works
        for method, path in [("GET", "/config"), ("GET", "/gradio_api/info"), ("POST", "/gradio_api/queue/join"),
                             ("GET", "/study/api/next")]:
            r = c.request(method, path, headers={"Host": "studio.hospital.example", "Origin": EVIL}, json={})
            assert r.status_code == 403, (path, r.status_code)
            assert "access-control-allow-origin" not in r.headers
            assert "cross-origin request refused" in r.json()["error"] and "--allowed-origin" in r.json()["error"]
        pre = c.options("/gradio_api/queue/join", headers={"Host": "studio.hospital.example", "Origin": EVIL,
                                                           "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
        # Origin "null" (sandboxed frames, file:// pages) is foreign too
        assert c.get("/config", headers={"Origin": "null"}).status_code == 403
    assert "refused cross-origin" in server_log(ws, base)


def test_same_origin_and_listed_origin_pass(studio):
    _, base, _ = studio
    with session(base) as c:
        own = c.get("/config", headers={"Origin": base})
        assert own.status_code == 200 and "access-control-allow-origin" not in own.headers
        listed = c.get("/config", headers={"Origin": PORTAL})
        assert listed.status_code == 200
        assert listed.headers["access-control-allow-origin"] == PORTAL
        assert listed.headers["access-control-allow-credentials"] == "true"
        pre = c.options("/gradio_api/queue/join", headers={"Origin": PORTAL, "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == PORTAL


def test_login_cookie_is_samesite_lax_and_headers_are_set(studio):
    _, base, _ = studio
    r = login(base)
    cookies = r.headers.get_list("set-cookie")
    assert cookies and all("samesite=lax" in c.lower() and "samesite=none" not in c.lower() for c in cookies)
    for path in ("/", "/study/img/nothing"):
        h = httpx.get(base + path, cookies=r.cookies, timeout=30).headers
        assert h["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'self'" in h["content-security-policy"]


# ---- what anonymous users get ---------------------------------------------------------------------
def test_schema_docs_and_study_routes_need_the_login(studio):
    _, base, _ = studio
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert httpx.get(base + path).status_code == 404
    for path in ("/gradio_api/info", "/gradio_api/openapi.json", "/config"):
        assert httpx.get(base + path).status_code == 401, path
    anon = httpx.get(base + "/study/api/next")
    assert anon.status_code == 401 and "log in" in anon.json()["error"]
    assert httpx.post(base + "/study/api/signin", json={"name": "x", "code": "y"}).status_code == 401
    assert httpx.get(base + "/study/img/abc?k=def").status_code == 401
    with session(base) as c:
        assert c.get("/gradio_api/info").status_code == 200
        assert c.get("/openapi.json").status_code == 404  # never needed, never served
        # past the login, the study API answers for itself (its own token check)
        r = c.get("/study/api/next")
        assert r.status_code == 401 and "POST /study/api/signin" in r.text


# ---- body cap ------------------------------------------------------------------------------------------
def test_request_body_cap(studio):
    _, base, _ = studio
    with session(base) as c:
        big = json.dumps({"name": "x" * 80_000, "code": "y"})
        r = c.post("/study/api/signin", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "--max-request-mb" in r.json()["error"]

        def chunks():  # no Content-Length: the cap must count the bytes as they arrive
            for _ in range(20):
                yield b"x" * 8192

        r = c.post("/study/api/signin", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "request body too large" in r.json()["error"]
        assert c.post("/study/api/signin", json={"name": "x", "code": "y"}).status_code == 401  # small: normal path


# ---- guessing ----------------------------------------------------------------------------------------
WAIT = re.compile(r"(?:in|again in) ([0-9.]+) s")


def test_gradio_login_guessing_backs_off(studio):
    ws, base, _ = studio
    waits = []
    for _ in range(5):
        assert login(base, "guess").status_code == 400
        blocked = login(base, PASSWORD)  # even the right password is refused inside the window
        assert blocked.status_code == 429, blocked.text
        assert "too many failed Gradio login attempts" in blocked.json()["error"]
        assert int(blocked.headers["retry-after"]) >= 1
        waits.append(float(WAIT.search(blocked.json()["error"]).group(1)))
        time.sleep(waits[-1] + 0.05)
    assert all(b > a for a, b in zip(waits, waits[1:])), waits  # each failure doubles the wait
    assert waits[-1] > 6 * waits[0]
    assert login(base).status_code == 200  # after the window, the right password works and resets
    assert login(base, "guess").status_code == 400 and login(base).status_code == 429
    assert "failed Gradio login from 127.0.0.1" in server_log(ws, base)
    time.sleep(0.3)


def test_fifty_wrong_admin_passwords_are_mostly_refused_unchecked(studio):
    ws, base, _ = studio
    with session(base) as c:
        cfg = c.get("/config").json()
    sign_in = fx.find_dependency(cfg, "Sign in")
    cookies = dict(login(base).cookies)
    checked, refused, waits = 0, 0, []
    t0 = time.perf_counter()
    for _ in range(50):
        out = json.dumps(fx.gradio_call(base, sign_in, ["not-the-password"], cookies=cookies))
        if "wrong admin password" in out:
            checked += 1
            waits.append(float(WAIT.search(out).group(1)))
        else:
            assert "too many failed admin sign-in attempts" in out, out
            refused += 1
    elapsed = time.perf_counter() - t0
    # 50 tries in `elapsed` s: only those after a window ended reached the password check
    assert refused >= 35 and checked <= 15, (checked, refused, elapsed)
    assert all(b > a for a, b in zip(waits, waits[1:])), waits
    assert "failed admin sign-in from 127.0.0.1" in server_log(ws, base)


def test_admin_back_off_refuses_even_the_right_password_inside_the_window(tmp_path, monkeypatch):
    from medgan_ui.study.store import StudyStore
    from medgan_ui.ui.study_admin import AdminHandlers
    from medgan_ui.workspace import Workspace

    monkeypatch.setenv("MEDGAN_LOGIN_BACKOFF_S", "0.5")
    ws = Workspace(tmp_path / "ws")
    adm = AdminHandlers(StudyStore(ws.studies_db), ws, "pw")
    with pytest.raises(UserError, match="wrong admin password; the next attempt from this address is possible in 0.5 s"):
        adm.login("guess", client="10.1.2.3")
    with pytest.raises(UserError, match="too many failed admin sign-in attempts"):
        adm.login("pw", client="10.1.2.3")
    assert adm.login("pw", client="10.9.9.9")  # another address is not held up
    time.sleep(0.55)
    assert adm.login("pw", client="10.1.2.3")


# ---- where passwords come from, where the server listens ------------------------------------------------
def test_passwords_from_files_and_env_and_argv_warning(tmp_path):
    f = tmp_path / "auth"
    f.write_text("a:1\n\n# c\nb:2:3\n")
    f.chmod(0o644)
    creds = credentials.resolve([], str(f), None, None, env={"MEDGAN_AUTH": "c:4", "MEDGAN_ADMIN_PASSWORD": "e"})
    assert creds.auth == [("a", "1"), ("b", "2:3"), ("c", "4")] and creds.admin_password == "e"
    assert any("chmod 600" in w for w in creds.warnings)  # readable by others
    argv = credentials.resolve(["x:y"], None, "pw", None, env={})
    assert len(argv.warnings) == 2 and all("command line" in w for w in argv.warnings)
    with pytest.raises(UserError, match="USER:PASSWORD"):
        credentials.resolve([], str(tmp_path / "auth"), None, None, env={"MEDGAN_AUTH": "nocolon"})
    with pytest.raises(UserError, match="cannot read"):
        credentials.resolve([], str(tmp_path / "missing"), None, None, env={})


def test_network_host_without_login_is_refused_unless_acknowledged(tmp_path):
    r = subprocess.run([sys.executable, "launch.py", "--workspace", str(tmp_path / "ws"), "--host", "0.0.0.0",
                        "--no-demo", "--admin-password", "pw"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "--host 0.0.0.0" in r.stderr and "--auth-file" in r.stderr and "--i-know" in r.stderr
    assert "puts a password on the command line" in r.stderr  # the argv warning comes first
    assert not (tmp_path / "ws").exists()  # refused before anything was created
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.5"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "", "192.168.1.4", "studio.example"):
        assert not is_loopback(host)
    check_exposure("0.0.0.0", False, True, False)  # a login is enough
    check_exposure("0.0.0.0", False, False, True)  # or the acknowledgement (prints a warning)
    with pytest.raises(UserError, match="--share"):
        check_exposure("127.0.0.1", True, False, False)


def test_origin_helpers():
    assert normalise_origin("HTTPS://Portal.Example.org:443/") == "https://portal.example.org"
    assert normalise_origin("http://h:8080") == "http://h:8080" and normalise_origin("null") is None
    assert same_origin("http://127.0.0.1:7860", "127.0.0.1:7860")
    assert same_origin("https://studio.example", "studio.example")  # TLS proxy in front
    assert not same_origin("https://evil.example", "studio.example")
    assert not same_origin("http://127.0.0.1:7861", "127.0.0.1:7860")
    assert not same_origin("null", "127.0.0.1:7860")
