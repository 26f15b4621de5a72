"""The study administration panel's widgets and wiring (inside the Rate tab, at ?admin).

Every handler goes through study_admin.AdminHandlers, which checks the admin token first.
"""
from __future__ import annotations

import functools
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from medgan_ui.errors import UserError
from medgan_ui.security.paths import PathPolicy
from medgan_ui.security.throttle import client_key
from medgan_ui.study import analysis
from medgan_ui.study.store import StudyStore
from medgan_ui.ui.errors import scrub
from medgan_ui.ui.study_admin import DISABLED, AdminHandlers
from medgan_ui.workspace import Workspace

REFRESH_S = 5.0  # progress table refresh while an admin is signed in


def _progress_rows(progress: list[dict[str, Any]]) -> list[list[Any]]:
    return [[p["reader"], p["answered"], p["total"], p["personal_code"], p["last_answer"]] for p in progress]


def _sources(workspace: Workspace) -> list[str]:
    sets = [p.name for p in sorted(workspace.synthetic.iterdir()) if (p / "labels.csv").is_file()]
    runs = [p.name for p in workspace.list_runs()]
    return sets + runs


@dataclass
class CreateForm:
    name: gr.Textbox
    real: gr.Textbox
    part: gr.Dropdown
    synthetic: gr.Dropdown
    classes: gr.Textbox
    n_real: gr.Number
    n_syn: gr.Number
    repeats: gr.Number
    score: gr.Radio
    seed: gr.Number
    margin: gr.Number
    readers: gr.Number
    button: gr.Button

    @property
    def inputs(self) -> list[Any]:
        """The form in on_create's order (after the token)."""
        return [self.name, self.real, self.part, self.synthetic, self.classes, self.n_real, self.n_syn, self.repeats,
                self.score, self.seed, self.margin, self.readers]


@dataclass
class StudyPanel:
    """The signed-in admin's view: the study picker, its tables and the action buttons."""
    token: gr.State
    timer: gr.Timer
    column: gr.Column
    study: gr.Dropdown
    refresh: gr.Button
    studies_tbl: gr.Dataframe
    close_btn: gr.Button
    open_btn: gr.Button
    code_btn: gr.Button
    r_name: gr.Textbox
    reader_btn: gr.Button
    reset_btn: gr.Button
    action_msg: gr.Markdown
    progress_tbl: gr.Dataframe

    @property
    def outputs(self) -> list[Any]:
        """What every study action updates, in its handler's order."""
        return [self.study, self.studies_tbl, self.progress_tbl, self.action_msg]


@dataclass
class ResultsPanel:
    button: gr.Button
    conclusion: gr.Markdown
    table: gr.Dataframe
    roc: gr.Image
    forest: gr.Image
    figure: gr.Image
    csv_file: gr.File
    tt_json: gr.JSON

    @property
    def outputs(self) -> list[Any]:
        return [self.conclusion, self.table, self.roc, self.forest, self.figure, self.csv_file, self.tt_json]


def create_form(workspace: Workspace) -> CreateForm:
    with gr.Accordion("Create a study", open=False):
        with gr.Row():
            name = gr.Textbox(label="Name", value="Visual Turing test")
            real = gr.Textbox(label="Real images", value="demo", info="'demo', a dataset name or a folder")
            part = gr.Dropdown(["test", "val", "train", "all"], value="test", label="Part")
        syn = gr.Dropdown(_sources(workspace), multiselect=True, allow_custom_value=True,
                          label="Synthetic sets or runs", info="synthetic set folders (images + labels.csv) or run ids")
        with gr.Row():
            classes = gr.Textbox(label="Finding classes", placeholder="empty = all findings + No Finding")
            n_real = gr.Number(label="Real per class", value=10, precision=0)
            n_syn = gr.Number(label="Synthetic per class", value=10, precision=0)
            repeats = gr.Number(label="Repeated cases", value=0, precision=0)
            score = gr.Radio(["realism", "confidence"], value="realism", label="Score")
            seed = gr.Number(label="Seed", value=0, precision=0)
            margin = gr.Number(label="Equivalence margin (AUC)", value=0.1, minimum=0.01, maximum=0.49,
                               info="'indistinguishable' = reader-averaged AUC within 0.5 ± this")
            readers = gr.Number(label="Readers planned", value=5, precision=0, info="for the size advice")
        button = gr.Button("Create study", variant="primary")
    return CreateForm(name, real, part, syn, classes, n_real, n_syn, repeats, score, seed, margin, readers, button)


def study_panel(store: StudyStore, workspace: Workspace) -> tuple[StudyPanel, CreateForm]:
    """Hidden until the admin signs in."""
    from medgan_ui.study import integrity

    with gr.Column(visible=False) as col:
        # the database's file name only: its full path would show web users the server's folders
        gr.Markdown("Database check at start-up: "
                    + html.escape(integrity.report_line(Path(Path(store.path).name), store.integrity)))
        with gr.Row():
            study = gr.Dropdown([], label="Study", scale=4)
            refresh = gr.Button("Refresh", scale=1)
        studies_tbl = gr.Dataframe(headers=["id", "name", "status", "cases", "readers", "created"], interactive=False)
        form = create_form(workspace)
        with gr.Row():
            close_btn = gr.Button("Close study")
            open_btn = gr.Button("Reopen study")
            code_btn = gr.Button("New access code")
            r_name = gr.Textbox(label="Reader name", scale=2)
            reader_btn = gr.Button("Issue reader code")
            reset_btn = gr.Button("Reset reader code")
        action_msg = gr.Markdown()
        progress_tbl = gr.Dataframe(headers=["reader", "answered", "total", "personal code", "last answer"], interactive=False)
    panel = StudyPanel(gr.State(None), gr.Timer(REFRESH_S, active=False), col, study, refresh, studies_tbl, close_btn,
                       open_btn, code_btn, r_name, reader_btn, reset_btn, action_msg, progress_tbl)
    return panel, form


def results_panel() -> ResultsPanel:
    """Inside the study panel's column (call within it)."""
    button = gr.Button("Show results")
    conclusion = gr.Markdown(elem_id="study-conclusion")
    table = gr.Dataframe(headers=analysis.SUMMARY_HEADERS, interactive=False)
    with gr.Row():
        roc = gr.Image(label="ROC per reader and reader-averaged", type="filepath", interactive=False, elem_id="study-roc")
        forest = gr.Image(label="Per-reader AUC (forest plot)", type="filepath", interactive=False, elem_id="study-forest")
    with gr.Row():
        figure = gr.Image(label="Summary", type="filepath", interactive=False)
        with gr.Column():
            csv_file = gr.File(label="All ratings (CSV, MRMC long format: reader, treatment, case, truth, rating, time)")
            tt_json = gr.JSON(label="turing_test block (for a model card)")
    return ResultsPanel(button, conclusion, table, roc, forest, figure, csv_file, tt_json)


def studies_view(admin: AdminHandlers, tok: str | None, selected: str | None = None) -> tuple:
    """(study dropdown update, studies table), keeping the selection when it still exists."""
    rows = admin.studies(tok)
    table = [[s["id"], s["name"], s["status"], s["n_cases"], s["n_readers"], s["created"]] for s in rows]
    ids = [s["id"] for s in rows]
    sel = selected if selected in ids else (ids[-1] if ids else None)
    return gr.update(choices=[(f"{s['name']} ({s['id']})", s["id"]) for s in rows], value=sel), table


def guarded(fn: Callable[..., tuple], n_outputs: int) -> Callable[..., tuple]:
    """Every UserError (bad token included) becomes the last output's message, never a traceback."""
    @functools.wraps(fn)  # Gradio reads fn's signature (on_create asks for the request)
    def run(*a: Any) -> tuple:
        try:
            return fn(*a)
        except UserError as exc:
            return (gr.update(),) * (n_outputs - 1) + (f"**{html.escape(scrub(str(exc)))}**",)
    return run


def wire_login(admin: AdminHandlers, sp: StudyPanel, pw: gr.Textbox, login_btn: gr.Button, login_row: gr.Row,
               login_msg: gr.Markdown) -> None:
    def on_login(password: str, request: gr.Request) -> tuple:
        try:
            tok = admin.login(password, client_key(request))
        except UserError as exc:
            return None, gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), f"**{html.escape(str(exc))}**", gr.update()
        dd, table = studies_view(admin, tok)
        sel = dd.get("value")
        prog = _progress_rows(admin.progress(tok, sel)) if sel else []
        return tok, gr.update(visible=False), gr.update(visible=True), dd, table, prog, "", gr.Timer(active=True)

    login_outs = [sp.token, login_row, sp.column, sp.study, sp.studies_tbl, sp.progress_tbl, login_msg, sp.timer]
    login_btn.click(on_login, [pw], login_outs, api_visibility="private")
    pw.submit(on_login, [pw], login_outs, api_visibility="private")

    def on_tick(tok: str | None, sel: str | None) -> Any:
        # live progress while the admin watches; a stale or missing token just stops updating
        try:
            return _progress_rows(admin.progress(tok, sel)) if sel else gr.update()
        except UserError:
            return gr.update()

    sp.timer.tick(on_tick, [sp.token, sp.study], [sp.progress_tbl], api_visibility="private", show_progress="hidden")


def wire_studies(admin: AdminHandlers, sp: StudyPanel, form: CreateForm) -> None:
    """Refresh, pick and create studies."""
    def on_refresh(tok: str | None, sel: str | None) -> tuple:
        dd, table = studies_view(admin, tok, sel)
        prog = _progress_rows(admin.progress(tok, sel)) if sel in [s["id"] for s in admin.studies(tok)] else []
        return dd, table, prog, ""

    def on_create(tok, name, real, part, syn, classes, nreal, nsyn, rep, score, seed, margin, readers,
                  request: gr.Request) -> tuple:
        cls = [c.strip() for c in (classes or "").split(",") if c.strip()] or None
        res = admin.create(tok, admin.paths.for_request(request), name=name, real=real or "demo",
                           part=None if part == "all" else part, synthetic=list(syn or []),
                           classes=cls, real_per_class=int(nreal or 0), synthetic_per_class=int(nsyn or 0),
                           repeats=int(rep or 0), score_kind=score, seed=int(seed or 0),
                           equivalence_margin=float(margin if margin is not None else 0.1), planned_readers=int(readers or 5))
        dd, table = studies_view(admin, tok, res["study_id"])
        text = (f"Created **{html.escape(res['study_id'])}** with {res['n_cases']} cases. Access code for readers: "
                f"`{res['access_code']}` (shown once; use *New access code* to replace it).\n\n"
                f"**Size:** {html.escape(res['size_advice'])}"
                + "".join(f"\n\n**Warning:** {html.escape(scrub(w))}" for w in res["warnings"]))
        return dd, table, [], text

    outs = sp.outputs
    sp.refresh.click(guarded(on_refresh, len(outs)), [sp.token, sp.study], outs, api_visibility="private")
    sp.study.change(guarded(on_refresh, len(outs)), [sp.token, sp.study], outs, api_visibility="private")
    form.button.click(guarded(on_create, len(outs)), [sp.token] + form.inputs, outs, api_visibility="private")


def wire_codes(admin: AdminHandlers, sp: StudyPanel) -> None:
    """Close / reopen a study, a new access code, reader codes."""
    def on_status(status: str):
        def run(tok, sel) -> tuple:
            admin.set_status(tok, sel, status)
            dd, table = studies_view(admin, tok, sel)
            return dd, table, gr.update(), f"Study {html.escape(sel)} is now {status}."
        return run

    def on_code(tok, sel) -> tuple:
        code = admin.new_access_code(tok, sel)
        return gr.update(), gr.update(), gr.update(), f"New access code for {html.escape(sel)}: `{code}` (the old one no longer works)."

    def on_reader(tok, sel, rname) -> tuple:
        code = admin.add_reader(tok, sel, rname)
        prog = _progress_rows(admin.progress(tok, sel))
        return gr.update(), gr.update(), prog, f"Reader code for {html.escape(rname)}: `{code}` (only this code signs in under that name)."

    def on_reset(tok, sel, rname) -> tuple:
        code = admin.reset_reader(tok, sel, rname)
        return (gr.update(), gr.update(), gr.update(),
                f"New reader code for {html.escape(rname)}: `{code}` (the old code and their open sessions no longer work).")

    outs, n = sp.outputs, len(sp.outputs)
    sp.close_btn.click(guarded(on_status("closed"), n), [sp.token, sp.study], outs, api_visibility="private")
    sp.open_btn.click(guarded(on_status("open"), n), [sp.token, sp.study], outs, api_visibility="private")
    sp.code_btn.click(guarded(on_code, n), [sp.token, sp.study], outs, api_visibility="private")
    sp.reader_btn.click(guarded(on_reader, n), [sp.token, sp.study, sp.r_name], outs, api_visibility="private")
    sp.reset_btn.click(guarded(on_reset, n), [sp.token, sp.study, sp.r_name], outs, api_visibility="private")


def wire_results(admin: AdminHandlers, sp: StudyPanel, rp: ResultsPanel) -> None:
    def on_results(tok, sel) -> tuple:
        try:
            res = admin.results(tok, sel)
        except UserError as exc:
            return (gr.update(),) * 7 + (f"**{html.escape(scrub(str(exc)))}**",)
        return (res["conclusion"], analysis.summary_table(res["result"]), res["roc"], res["forest"], res["figure"], res["csv"],
                res["turing_test"], "")

    rp.button.click(on_results, [sp.token, sp.study], rp.outputs + [sp.action_msg], api_visibility="private")


def build_admin_panel(store: StudyStore, workspace: Workspace, admin_password: str | None,
                      paths: PathPolicy | None = None) -> AdminHandlers:
    admin = AdminHandlers(store, workspace, admin_password, paths)
    gr.Markdown("## Study administration")
    if not admin_password:
        gr.Markdown(DISABLED)
        return admin
    with gr.Row() as login_row:
        pw = gr.Textbox(label="Admin password", type="password", scale=3)
        login_btn = gr.Button("Sign in", variant="primary", scale=1)
    login_msg = gr.Markdown()
    sp, form = study_panel(store, workspace)
    with sp.column:
        rp = results_panel()
    wire_login(admin, sp, pw, login_btn, login_row, login_msg)
    wire_studies(admin, sp, form)
    wire_codes(admin, sp)
    wire_results(admin, sp, rp)
    return admin
