"""Plain HTTP routes for readers: sign in, next case, rate, and case images by opaque id.

Mounted on the app's FastAPI instance (before Gradio is mounted at "/"), so image URLs never expose
a file path and a script or a reader's browser can use the same small JSON API:

    POST /study/api/signin  {"name", "code", "reader_code"?}         -> token, image_key, reader_code, study, next
    GET  /study/api/next    Authorization: Bearer <token>             -> next
    POST /study/api/rate    Authorization: Bearer <token>, {"case", "call", "score", "finding", "comment"}
                                                                      -> saved (after COMMIT), next
    GET  /study/img/<case>?k=<image_key>                              -> image/png

`next` is {"case", "position", "answered", "total", "image_url"}; nothing here ever carries truth,
labels, other readers or admin data. Every failure of a code, token or key answers the same way, so
the API cannot be used to probe which studies or cases exist.

A reader's first sign-in (name + study code) issues a personal reader code, returned once as
`reader_code`; signing in again under that name needs it (as `code`, or as `reader_code` next to the
study code). Failed sign-ins (wrong study code or reader code) are logged and back off per client
address (security.throttle): 429 with Retry-After while a client must wait.
"""
from __future__ import annotations

import logging
from typing import Any

from medgan_ui.errors import UserError
from medgan_ui.security.throttle import Throttle
from medgan_ui.study.store import CredentialError, NextCase, Session, StudyStore, image_key_for
from medgan_ui.workspace import Workspace

PREFIX = "/study"
log = logging.getLogger("medgan_ui.study")
# one per process, shared by the JSON route and the Gradio sign-in form (same guesses, same budget)
SIGNIN_THROTTLE = Throttle("study sign-in")


def throttled_sign_in(store: StudyStore, client: str, name: str, code: str, reader_code: str | None = None) -> Session:
    """store.sign_in behind the per-client back-off; raises SignInThrottled while the client must wait."""
    refusal = SIGNIN_THROTTLE.refusal(client)
    if refusal:
        raise SignInThrottled(refusal, SIGNIN_THROTTLE.retry_after(client))
    try:
        sess = store.sign_in(name, code, reader_code)
    except CredentialError as exc:
        log.warning("study sign-in refused from %s: %s", client, exc)  # names the reader, never a code
        SIGNIN_THROTTLE.failure(client)  # logs the client address and the wait now imposed
        raise
    SIGNIN_THROTTLE.success(client)
    return sess


class SignInThrottled(UserError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def image_url(case_id: str, image_key: str, prefix: str = PREFIX) -> str:
    return f"{prefix}/img/{case_id}?k={image_key}"


def next_payload(nxt: NextCase, image_key: str, prefix: str = PREFIX) -> dict[str, Any]:
    return {"case": nxt.case_id, "position": nxt.position, "answered": nxt.answered, "total": nxt.total,
            "done": nxt.case_id is None,
            "image_url": image_url(nxt.case_id, image_key, prefix) if nxt.case_id else None}


def signin_payload(store: StudyStore, sess: Session, prefix: str = PREFIX) -> dict[str, Any]:
    rv = store.reader(sess.token)
    return {"token": sess.token, "image_key": sess.image_key, "reader": rv.reader_name, "reader_code": sess.reader_code,
            "study": {"name": rv.study_name, "findings": rv.findings, "score_kind": rv.score_kind,
                      "ask_finding": rv.ask_finding},
            "next": next_payload(store.next_case(sess.token), sess.image_key, prefix)}


def private_paths(workspace: Workspace) -> list[str]:
    """Files Gradio must never serve: the study database holds every case's truth and every answer.

    Apps that pass the workspace in `allowed_paths` (to show sample images) must block these.
    """
    db = str(workspace.studies_db)
    return [db, db + "-wal", db + "-shm", db + "-journal"]


def protect_study_files(blocks: Any, workspace: Workspace) -> None:
    """Add the study database to a Gradio app's blocked_paths (checked on every file request)."""
    blocked = list(getattr(blocks, "blocked_paths", None) or [])
    blocks.blocked_paths = blocked + [p for p in private_paths(workspace) if p not in blocked]


def mount_study_routes(app: Any, workspace: Workspace, prefix: str = PREFIX) -> StudyStore:
    """Add the reader API and image route to a FastAPI app.

    Either on a plain FastAPI app before `gr.mount_gradio_app(app, blocks, path="/",
    blocked_paths=private_paths(ws))`, or on the App that `blocks.launch()` returns; in the second
    case the study database is also added to the running app's blocked paths.
    """
    if hasattr(app, "get_blocks"):
        protect_study_files(app.get_blocks(), workspace)
    from fastapi import Header, HTTPException, Query, Request
    from fastapi.responses import JSONResponse, Response

    from medgan_ui.security.throttle import client_key

    store = StudyStore(workspace.studies_db)  # logs the start-up check; DatabaseDamaged stops the server starting

    def bearer(authorization: str | None) -> str:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise HTTPException(401, "sign in first: POST /study/api/signin")
        return authorization.split(" ", 1)[1].strip()

    def fail(exc: UserError, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=status)

    # plain `def` handlers: FastAPI runs them in its thread pool, each thread with its own connection
    def signin(body: dict[str, Any], request: Request) -> Any:
        try:
            sess = throttled_sign_in(store, client_key(request), str(body.get("name", "")), str(body.get("code", "")),
                                     str(body.get("reader_code") or "") or None)
        except SignInThrottled as exc:
            return JSONResponse({"error": str(exc)}, status_code=429,
                                headers={"Retry-After": str(max(1, round(exc.retry_after)))})
        except UserError as exc:
            return fail(exc, 401)
        return signin_payload(store, sess, prefix)

    # real classes, not the strings `from __future__ import annotations` leaves (Request is imported locally)
    signin.__annotations__.update(body=dict[str, Any], request=Request)
    app.post(f"{prefix}/api/signin")(signin)

    @app.get(f"{prefix}/api/next")
    def next_case(authorization: str | None = Header(default=None)) -> Any:
        token = bearer(authorization)
        try:
            nxt = store.next_case(token)
        except UserError as exc:
            return fail(exc, 401)
        return next_payload(nxt, image_key_for(token), prefix)

    @app.post(f"{prefix}/api/rate")
    def rate(body: dict[str, Any], authorization: str | None = Header(default=None)) -> Any:
        token = bearer(authorization)
        try:
            store.reader(token)
        except UserError as exc:
            return fail(exc, 401)
        try:
            nxt = store.rate(token, str(body.get("case", "")), str(body.get("call", "")), body.get("score"),
                             body.get("finding"), str(body.get("comment") or ""))
        except UserError as exc:
            return fail(exc, 400)
        return {"saved": body.get("case"), "next": next_payload(nxt, image_key_for(token), prefix)}

    @app.get(prefix + "/img/{case_id}")
    def image(case_id: str, k: str = Query(default="")) -> Any:
        try:
            png = store.image(k, case_id)
        except UserError:
            raise HTTPException(404, "not found") from None
        # identical headers for every case: no name, no date, no validator that could differ by source
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"})

    return store
