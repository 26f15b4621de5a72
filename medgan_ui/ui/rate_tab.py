"""Rate tab: the blinded reading screen (and, at ?admin, the study administration panel).

Security model: Gradio exposes every handler as an endpoint, so nothing here trusts the client. The
reader's session token lives in gr.State (kept on the server per browser session) and every reader
handler re-checks it with the store; reader handlers only ever return the study name, progress and an
<img> URL made of an opaque case id and an image key — never truth, labels or other readers. Admin
handlers live in ui/study_admin.py and check an admin token on every call.

Window/level is done in the browser (CSS brightness/contrast on the <img>) so dragging a slider costs
no server round trip; keyboard shortcuts click the same widgets a mouse would.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from medgan_ui.errors import UserError
from medgan_ui.security.throttle import client_key
from medgan_ui.study.api import PREFIX, image_url, throttled_sign_in
from medgan_ui.study.store import MAX_READER_NAME_CHARS, NextCase, StudyStore, image_key_for, normalise_name
from medgan_ui.ui.errors import hide_folder
from medgan_ui.workspace import Workspace

SCORE_LABELS = {
    "realism": "How realistic? 1 = clearly synthetic … 5 = clearly real  (keys 1–5)",
    "confidence": "How confident are you in your call? 1 = guessing … 5 = certain  (keys 1–5)",
}
MAX_REMEMBERED_CODES = 20  # reader codes one browser keeps (a shared reading-room PC serves several readers)
FINDING_KEYS = "abcdefghijklmnopq"  # r and s are taken by real/synthetic, so findings stop before them

# Installed once per page by the image component: shortcut keys click the radio buttons and the submit
# button, so the keyboard path runs exactly the same handlers as the mouse path.
KEYS_JS = r"""
if (!window.__medganRateKeys) {
  window.__medganRateKeys = true;
  const pick = (id, value) => {
    const el = Array.from(document.querySelectorAll('#' + id + ' input[type=radio]')).find(i => i.value === value);
    if (el) { el.click(); return true; } return false;
  };
  document.addEventListener('keydown', (ev) => {
    const screen = document.getElementById('rate-reader');
    if (!screen || screen.offsetParent === null) return;  // only while the reading screen is shown
    const t = ev.target, tag = (t && t.tagName || '').toLowerCase();
    if (tag === 'textarea' || (tag === 'input' && !['radio', 'checkbox', 'range'].includes(t.type))) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const k = ev.key.toLowerCase();
    let done = false;
    if (k === 'r') done = pick('rate-call', 'real');
    else if (k === 's') done = pick('rate-call', 'synthetic');
    else if ('12345'.includes(k) && k.length === 1) done = pick('rate-score', k);
    else if (k === 'enter') { const b = document.querySelector('#rate-submit'); if (b) { b.click(); done = true; } }
    else if (k.length === 1 && 'abcdefghijklmnopq'.includes(k)) {
      const opts = Array.from(document.querySelectorAll('#rate-finding input[type=radio]'));
      const el = opts['abcdefghijklmnopq'.indexOf(k)];
      if (el) { el.click(); done = true; }
    }
    if (done) ev.preventDefault();
  });
}
"""

WL_JS = """(b, c) => { document.documentElement.style.setProperty('--rate-filter', `brightness(${b}%) contrast(${c}%)`); return []; }"""

CSS = """
#rate-reader .rate-img { width: min(100%, 72vh); aspect-ratio: 1 / 1; image-rendering: pixelated;
  image-rendering: crisp-edges; filter: var(--rate-filter, none); background: #000; display: block; margin: auto; }
#rate-reader .rate-progress { font-size: 1.25rem; font-weight: 600; }
"""


@dataclass
class ReaderScreen:
    """What one reader handler gives back: all of it is safe to show to that reader."""

    header: str
    image_html: str
    done: bool
    findings: list[str]
    score_label: str
    ask_finding: bool
    case_id: str | None = None  # kept in server-side State only; the page sees it just inside the image URL
    reader_code: str | None = None  # issued at this reader's first sign-in: shown once, kept in the browser


class ReaderHandlers:
    """The reader side, free of Gradio so tests can call it exactly as the UI does."""

    def __init__(self, store: StudyStore, prefix: str = PREFIX) -> None:
        self.store, self.prefix = store, prefix

    def sign_in(self, name: str, code: str, reader_code: str | None = None, client: str = "unknown") -> tuple[str, ReaderScreen]:
        sess = throttled_sign_in(self.store, client, name, code, reader_code)
        scr = self.screen(sess.token)
        scr.reader_code = sess.reader_code
        return sess.token, scr

    def screen(self, token: str) -> ReaderScreen:
        rv = self.store.reader(token)
        nxt = self.store.next_case(token)
        return self._render(rv.study_name, rv.reader_name, rv.findings, rv.score_kind, rv.ask_finding, nxt, token)

    def submit(self, token: str, case_id: str | None, call: str | None, score: Any, finding: str | None,
               comment: str | None) -> ReaderScreen:
        rv = self.store.reader(token)  # checks the token before anything else
        if not case_id:
            raise UserError("no case on screen: sign in again")
        if not call:
            raise UserError("answer Real (R) or Synthetic (S) first")
        if score in (None, ""):
            raise UserError("choose a score from 1 to 5 first")
        nxt = self.store.rate(token, case_id, call, score, finding or None, comment or "")
        return self._render(rv.study_name, rv.reader_name, rv.findings, rv.score_kind, rv.ask_finding, nxt, token)

    def _render(self, study: str, reader: str, findings: list[str], score_kind: str, ask_finding: bool,
                nxt: NextCase, token: str) -> ReaderScreen:
        if nxt.case_id is None:
            header = (f"### {html.escape(study)}\nThank you, {html.escape(reader)}: all {nxt.total} cases are answered. "
                      "You can close this page.")
            return ReaderScreen(header, "", True, findings, SCORE_LABELS[score_kind], ask_finding)
        header = (f"**{html.escape(study)}** · reader: {html.escape(reader)} · "
                  f"<span class='rate-progress'>{nxt.position} / {nxt.total}</span>")
        url = image_url(nxt.case_id, image_key_for(token), self.prefix)
        img = f"<img class='rate-img' src='{html.escape(url)}' alt='case {nxt.position}' draggable='false'>"
        return ReaderScreen(header, img, False, findings, SCORE_LABELS[score_kind], ask_finding, nxt.case_id)


@dataclass
class SignInPanel:
    column: gr.Column
    name: gr.Textbox
    code: gr.Textbox
    codes: gr.BrowserState  # reader codes this browser was given, by name
    start: gr.Button
    msg: gr.Markdown


@dataclass
class ReadingPanel:
    column: gr.Column
    code_notice: gr.Markdown
    header: gr.Markdown
    image: gr.HTML
    bright: gr.Slider
    contrast: gr.Slider
    reset: gr.Button
    call: gr.Radio
    score: gr.Radio
    finding: gr.Radio
    comment: gr.Textbox
    submit: gr.Button
    msg: gr.Markdown


@dataclass
class ReaderState:
    """Server-side per browser session: the reader's token and the case on screen, plus the end screen."""
    token: gr.State
    case_id: gr.State
    done_col: gr.Column
    done_md: gr.Markdown


def signin_panel(store: StudyStore) -> SignInPanel:
    with gr.Column(visible=True) as col:
        gr.Markdown("### Visual Turing test\nSign in with your name and the access code you were given. "
                    "At your first sign-in you get a personal reader code: this browser remembers it, and on "
                    "another device you continue by entering your name and that reader code as the access code.")
        name = gr.Textbox(label="Your name", max_length=MAX_READER_NAME_CHARS)
        code = gr.Textbox(label="Access code (or your reader code)", placeholder="XXXX-XXXX-XXXX", max_length=40)
        # encrypted with a key kept in the study database
        codes = gr.BrowserState({}, storage_key="medgan-reader-codes", secret=store.browser_key())
        start = gr.Button("Start reading", variant="primary")
        msg = gr.Markdown()
    return SignInPanel(col, name, code, codes, start, msg)


def reading_panel() -> ReadingPanel:
    """The case image with window/level sliders beside the answer form."""
    with gr.Column(visible=False, elem_id="rate-reader") as col:
        code_notice = gr.Markdown(elem_id="rate-reader-code")
        header = gr.Markdown()
        with gr.Row():
            with gr.Column(scale=3):
                image = gr.HTML(padding=False)
                with gr.Row():
                    bright = gr.Slider(20, 300, value=100, step=5, label="Brightness (level) %", elem_id="rate-brightness")
                    contrast = gr.Slider(20, 400, value=100, step=5, label="Contrast (window) %", elem_id="rate-contrast")
                    reset = gr.Button("Reset", size="sm")
            with gr.Column(scale=2):
                call = gr.Radio([("Real  (R)", "real"), ("Synthetic  (S)", "synthetic")], label="Real or synthetic?",
                                elem_id="rate-call")
                score = gr.Radio(["1", "2", "3", "4", "5"], label=SCORE_LABELS["realism"], elem_id="rate-score")
                finding = gr.Radio([], label="Finding you see", elem_id="rate-finding")
                comment = gr.Textbox(label="Comment (optional)", lines=2, max_length=2000)
                submit = gr.Button("Save and next  (Enter)", variant="primary", elem_id="rate-submit")
                msg = gr.Markdown()
    return ReadingPanel(col, code_notice, header, image, bright, contrast, reset, call, score, finding, comment,
                        submit, msg)


def screen_values(tok: str, scr: ReaderScreen) -> tuple:
    """A reader screen in reader_outputs() order."""
    choices = [(f"{FINDING_KEYS[i]} · {f}" if i < len(FINDING_KEYS) else f, f) for i, f in enumerate(scr.findings)]
    return (tok, scr.case_id, gr.update(visible=False), gr.update(visible=not scr.done), gr.update(visible=scr.done),
            scr.header, scr.image_html, scr.header,
            gr.update(value=None), gr.update(value=None, label=scr.score_label),
            gr.update(choices=choices, value=None, visible=scr.ask_finding), gr.update(value=""), "", "")


def reader_outputs(si: SignInPanel, rd: ReadingPanel, st: ReaderState) -> list[Any]:
    return [st.token, st.case_id, si.column, rd.column, st.done_col, rd.header, rd.image, st.done_md, rd.call,
            rd.score, rd.finding, rd.comment, rd.msg, si.msg]


def remember_code(known: dict, key: str, reader_code: str) -> dict:
    """This browser's reader codes with the new one last, the oldest dropped past MAX_REMEMBERED_CODES."""
    known.pop(key, None)
    known[key] = reader_code
    return dict(list(known.items())[-MAX_REMEMBERED_CODES:])


def wire_signin(reader: ReaderHandlers, si: SignInPanel, rd: ReadingPanel, st: ReaderState) -> None:
    outputs = reader_outputs(si, rd, st)

    def on_signin(n: str, c: str, known: dict | None, request: gr.Request) -> tuple:
        known = dict(known or {}) if isinstance(known, dict) else {}
        key = normalise_name(n).lower()
        try:
            tok, scr = reader.sign_in(n, c, known.get(key), client_key(request))
        except UserError as exc:
            return (gr.update(),) * (len(outputs) - 1) + (f"**{html.escape(str(exc))}**", gr.update(), gr.update())
        notice = ""
        if scr.reader_code:
            known = remember_code(known, key, scr.reader_code)
            notice = (f"**Your personal reader code: `{scr.reader_code}`** — write it down. This browser remembers it; "
                      "on another device, sign in with your name and this code as the access code. "
                      "Nobody can answer under your name without it.")
        return screen_values(tok, scr) + (notice, known)

    si.start.click(on_signin, [si.name, si.code, si.codes], outputs + [rd.code_notice, si.codes], api_visibility="private")
    si.code.submit(on_signin, [si.name, si.code, si.codes], outputs + [rd.code_notice, si.codes], api_visibility="private")


def wire_reading(reader: ReaderHandlers, si: SignInPanel, rd: ReadingPanel, st: ReaderState) -> None:
    outputs = reader_outputs(si, rd, st)

    def on_submit(tok: str | None, case: str | None, cl: str | None, sc: str | None, fi: str | None, co: str | None) -> tuple:
        try:
            scr = reader.submit(tok or "", case, cl, sc, fi, co)
        except UserError as exc:
            keep = (gr.update(),) * (len(outputs) - 2)
            return keep + (f"**{html.escape(str(exc))}**", gr.update())
        return screen_values(tok or "", scr)

    rd.submit.click(on_submit, [st.token, st.case_id, rd.call, rd.score, rd.finding, rd.comment], outputs,
                    api_visibility="private")
    # window/level in the browser: no server round trip while dragging
    rd.bright.input(None, [rd.bright, rd.contrast], None, js=WL_JS)
    rd.contrast.input(None, [rd.bright, rd.contrast], None, js=WL_JS)
    rd.reset.click(lambda: (100, 100), None, [rd.bright, rd.contrast], js="() => { document.documentElement.style"
                   ".setProperty('--rate-filter', 'none'); return [100, 100]; }", api_visibility="private")


def wire_admin_view(signin_col: gr.Column, admin_col: gr.Column) -> None:
    """`?admin` in the address shows the admin panel instead of the sign-in."""
    def on_load(request: gr.Request) -> tuple:
        is_admin = request is not None and "admin" in request.query_params
        return gr.update(visible=not is_admin), gr.update(visible=is_admin)

    root = gr.context.Context.root_block
    if root is not None:
        root.load(on_load, None, [signin_col, admin_col], api_visibility="private")


def build_rate_tab(workspace: Workspace, admin_password: str | None, paths: Any = None) -> None:
    """The Rate tab's content; call inside `with gr.Tab("Rate"):` of the app's Blocks.

    Readers open the app's URL; organisers open it with `?admin` to get the admin panel instead.
    The app must also call `mount_study_routes(fastapi_app, workspace)` so case images are served.
    `paths`: the server's PathPolicy for folders the admin types (security.paths).
    """
    from medgan_ui.ui import study_admin_panel

    hide_folder(workspace.root, "workspace")  # messages of the admin panel (the reader-only server has no app.py)
    store = StudyStore(workspace.studies_db)
    # relative image URLs: they still resolve when a reverse proxy serves the app under a path prefix
    reader = ReaderHandlers(store, prefix=PREFIX.lstrip("/"))
    gr.HTML(f"<style>{CSS}</style>", js_on_load=KEYS_JS, padding=False)
    token, case_id = gr.State(None), gr.State(None)
    si = signin_panel(store)
    rd = reading_panel()
    with gr.Column(visible=False) as done_col:
        done_md = gr.Markdown()
    with gr.Column(visible=False) as admin_col:
        study_admin_panel.build_admin_panel(store, workspace, admin_password, paths)
    st = ReaderState(token, case_id, done_col, done_md)
    wire_signin(reader, si, rd, st)
    wire_reading(reader, si, rd, st)
    wire_admin_view(si.column, admin_col)
