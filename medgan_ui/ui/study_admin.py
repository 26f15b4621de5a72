"""Study administration panel (inside the Rate tab, at ?admin): create/close studies, reader codes,
progress, results. Every handler checks the admin token server-side first: the panel being hidden
is not the protection, since Gradio exposes each handler as an endpoint.
"""
from __future__ import annotations

import functools
import hmac
import html
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr

from medgan_ui.errors import UserError
from medgan_ui.security.paths import PathPolicy, is_plain_name
from medgan_ui.security.throttle import client_key, format_wait, login_throttle
from medgan_ui.study import analysis
from medgan_ui.study.store import StudyStore
from medgan_ui.workspace import Workspace

DISABLED = ("The study administration view is disabled because no admin password is set. Start the app with "
            "`python launch.py --admin-password YOUR-PASSWORD` or set the environment variable "
            "`MEDGAN_ADMIN_PASSWORD`, then open this page with `?admin` at the end of the address.")
TOKEN_HOURS = 12
REFRESH_S = 5.0  # progress table refresh while an admin is signed in


def _progress_rows(progress: list[dict[str, Any]]) -> list[list[Any]]:
    return [[p["reader"], p["answered"], p["total"], p["personal_code"], p["last_answer"]] for p in progress]


class AdminHandlers:
    """The admin side, free of Gradio so tests can call it exactly as the UI does."""

    def __init__(self, store: StudyStore, workspace: Workspace, password: str | None,
                 paths: PathPolicy | None = None) -> None:
        self.store, self.workspace, self._password = store, workspace, password
        # folders typed into 'Real images' / 'Synthetic sets' go through the server's allow-list
        self.paths = paths or PathPolicy.for_server("127.0.0.1", (), [workspace.datasets, workspace.synthetic])
        self._tokens: dict[str, float] = {}
        self.throttle = login_throttle("admin sign-in")

    def login(self, password: str, client: str | None = None) -> str:
        """`client` (the remote address) is given by the web handler: failures from it back off
        exponentially; in-process callers (scripts, tests) pass none."""
        if not self._password:
            raise UserError(DISABLED)
        refusal = self.throttle.refusal(client) if client else None
        if refusal:
            raise UserError(refusal)
        time.sleep(0.2)  # blunt guessing spread over many addresses
        if not hmac.compare_digest(str(password or "").encode(), self._password.encode()):
            if client:
                wait = self.throttle.failure(client)  # logs the address
                raise UserError(f"wrong admin password; the next attempt from this address is possible in {format_wait(wait)} s")
            raise UserError("wrong admin password")
        if client:
            self.throttle.success(client)
        tok = secrets.token_urlsafe(32)
        self._tokens[tok] = time.time() + TOKEN_HOURS * 3600
        return tok

    def check(self, token: str | None) -> None:
        if not self._password:
            raise UserError(DISABLED)
        if not token or self._tokens.get(token, 0) < time.time():
            raise UserError("admin sign-in required")

    def studies(self, token: str | None) -> list[dict[str, Any]]:
        self.check(token)
        return self.store.list_studies()

    def create(self, token: str | None, paths: PathPolicy | None = None, **cfg: Any) -> dict[str, Any]:
        """`paths`: the allow-list for this request (PathPolicy.for_request); the server's by default."""
        self.check(token)
        from medgan_ui.study.design import StudyConfig, create_study

        info = create_study(self.workspace, StudyConfig(**self._checked_sources(cfg, paths or self.paths)))
        return {"study_id": info.study_id, "access_code": info.access_code, "n_cases": info.n_cases, "counts": info.counts,
                "warnings": info.warnings, "size_advice": info.size_advice.get("text", "")}

    def _checked_sources(self, cfg: dict[str, Any], paths: PathPolicy) -> dict[str, Any]:
        """Workspace names stay names (a synthetic set id becomes its folder); anything else is a server
        path and must pass the allow-list."""
        ws, out = self.workspace, dict(cfg)
        real = str(out.get("real") or "demo").strip()
        if real != "demo" and not (is_plain_name(real) and (ws.datasets / real / "cache.npz").is_file()):
            out["real"] = str(paths.resolve_existing(real, "real images"))
        syn = []
        for src in out.get("synthetic") or []:
            src = str(src).strip()
            if is_plain_name(src) and (ws.runs / src).is_dir():
                syn.append(src)
            elif is_plain_name(src) and (ws.synthetic / src).is_dir():
                syn.append(str(ws.synthetic / src))
            else:
                syn.append(str(paths.resolve_existing(src, "synthetic set")))
        out["synthetic"] = syn
        return out

    def set_status(self, token: str | None, study_id: str, status: str) -> None:
        self.check(token)
        self.store.set_status(study_id, status)

    def new_access_code(self, token: str | None, study_id: str) -> str:
        self.check(token)
        return self.store.reset_access_code(study_id)

    def add_reader(self, token: str | None, study_id: str, name: str) -> str:
        self.check(token)
        return self.store.add_reader(study_id, name)

    def reset_reader(self, token: str | None, study_id: str, name: str) -> str:
        self.check(token)
        return self.store.reset_reader(study_id, name)

    def progress(self, token: str | None, study_id: str) -> list[dict[str, Any]]:
        self.check(token)
        return self.store.progress(study_id)

    def results(self, token: str | None, study_id: str) -> dict[str, Any]:
        """Analysis, turing_test block, and a folder with the MRMC ratings CSV and the figures."""
        from medgan_ui.study import figures

        self.check(token)
        rows = self.store.ratings_rows(study_id)
        res = analysis.analyze(self.store, study_id)
        kind = self.store.study(study_id)["settings"].get("score_kind", "realism")
        out = Path(tempfile.mkdtemp(prefix="medgan-study-"))
        (out / "ratings.csv").write_text(analysis.ratings_csv(rows, kind), encoding="utf-8")
        analysis.summary_figure(res, rows, out / "summary.png")
        figures.save_png(figures.roc_figure(res), out / "roc.png")
        figures.save_png(figures.forest_figure(res), out / "forest.png")
        return {"result": res, "turing_test": analysis.turing_test_block(res), "csv": str(out / "ratings.csv"),
                "figure": str(out / "summary.png"), "roc": str(out / "roc.png"), "forest": str(out / "forest.png"),
                "conclusion": conclusion_markdown(res)}


def conclusion_markdown(res: dict[str, Any]) -> str:
    """The plain conclusion first, then generators and findings, escaped (names come from users)."""
    t = res["turing"]
    parts = [f"### Conclusion\n{html.escape(t['conclusion'])}"]
    if t.get("generators"):
        parts.append(f"**Generators.** {html.escape(t['generators']['conclusion'])}")
    ba = t.get("balanced_accuracy") or {}
    if ba.get("balanced_accuracy") is not None:
        parts.append(f"Balanced accuracy {ba['balanced_accuracy']:.3f} (permutation p = {ba['p_perm']:.4f}).")
    recs = [html.escape(r["text"]) for r in res["findings"]["recognition"].values() if r.get("text")]
    if recs:
        parts.append("**Findings.** " + " ".join(recs))
    parts.append(f"<small>Rating scale: {html.escape(t['rating_scale'])}. Equivalence margin ±{t['margin']:g} AUC, "
                 "fixed when the study was created.</small>")
    return "\n\n".join(parts)


def _sources(workspace: Workspace) -> list[str]:
    sets = [p.name for p in sorted(workspace.synthetic.iterdir()) if (p / "labels.csv").is_file()]
    runs = [p.name for p in workspace.list_runs()]
    return sets + runs


def build_admin_panel(store: StudyStore, workspace: Workspace, admin_password: str | None,
                      paths: PathPolicy | None = None) -> AdminHandlers:
    admin = AdminHandlers(store, workspace, admin_password, paths)
    gr.Markdown("## Study administration")
    if not admin_password:
        gr.Markdown(DISABLED)
        return admin
    token = gr.State(None)
    timer = gr.Timer(REFRESH_S, active=False)
    with gr.Row() as login_row:
        pw = gr.Textbox(label="Admin password", type="password", scale=3)
        login_btn = gr.Button("Sign in", variant="primary", scale=1)
    login_msg = gr.Markdown()
    with gr.Column(visible=False) as panel:
        from medgan_ui.study import integrity

        gr.Markdown("Database check at start-up: " + html.escape(integrity.report_line(Path(store.path), store.integrity)))
        with gr.Row():
            study = gr.Dropdown([], label="Study", scale=4)
            refresh = gr.Button("Refresh", scale=1)
        studies_tbl = gr.Dataframe(headers=["id", "name", "status", "cases", "readers", "created"], interactive=False)
        with gr.Accordion("Create a study", open=False):
            with gr.Row():
                c_name = gr.Textbox(label="Name", value="Visual Turing test")
                c_real = gr.Textbox(label="Real images", value="demo", info="'demo', a dataset name or a folder")
                c_part = gr.Dropdown(["test", "val", "train", "all"], value="test", label="Part")
            c_syn = gr.Dropdown(_sources(workspace), multiselect=True, allow_custom_value=True,
                                label="Synthetic sets or runs", info="synthetic set folders (images + labels.csv) or run ids")
            with gr.Row():
                c_classes = gr.Textbox(label="Finding classes", placeholder="empty = all findings + No Finding")
                c_nreal = gr.Number(label="Real per class", value=10, precision=0)
                c_nsyn = gr.Number(label="Synthetic per class", value=10, precision=0)
                c_rep = gr.Number(label="Repeated cases", value=0, precision=0)
                c_score = gr.Radio(["realism", "confidence"], value="realism", label="Score")
                c_seed = gr.Number(label="Seed", value=0, precision=0)
                c_margin = gr.Number(label="Equivalence margin (AUC)", value=0.1, minimum=0.01, maximum=0.49,
                                     info="'indistinguishable' = reader-averaged AUC within 0.5 ± this")
                c_readers = gr.Number(label="Readers planned", value=5, precision=0, info="for the size advice")
            create_btn = gr.Button("Create study", variant="primary")
        with gr.Row():
            close_btn = gr.Button("Close study")
            open_btn = gr.Button("Reopen study")
            code_btn = gr.Button("New access code")
            r_name = gr.Textbox(label="Reader name", scale=2)
            reader_btn = gr.Button("Issue reader code")
            reset_btn = gr.Button("Reset reader code")
        action_msg = gr.Markdown()
        progress_tbl = gr.Dataframe(headers=["reader", "answered", "total", "personal code", "last answer"], interactive=False)
        results_btn = gr.Button("Show results")
        conclusion = gr.Markdown(elem_id="study-conclusion")
        results_tbl = gr.Dataframe(headers=analysis.SUMMARY_HEADERS, interactive=False)
        with gr.Row():
            roc_img = gr.Image(label="ROC per reader and reader-averaged", type="filepath", interactive=False, elem_id="study-roc")
            forest_img = gr.Image(label="Per-reader AUC (forest plot)", type="filepath", interactive=False, elem_id="study-forest")
        with gr.Row():
            figure = gr.Image(label="Summary", type="filepath", interactive=False)
            with gr.Column():
                csv_file = gr.File(label="All ratings (CSV, MRMC long format: reader, treatment, case, truth, rating, time)")
                tt_json = gr.JSON(label="turing_test block (for a model card)")

    def studies_view(tok: str | None, selected: str | None = None) -> tuple:
        rows = admin.studies(tok)
        table = [[s["id"], s["name"], s["status"], s["n_cases"], s["n_readers"], s["created"]] for s in rows]
        ids = [s["id"] for s in rows]
        sel = selected if selected in ids else (ids[-1] if ids else None)
        return gr.update(choices=[(f"{s['name']} ({s['id']})", s["id"]) for s in rows], value=sel), table

    def guarded(fn):  # every UserError (bad token included) becomes a message, never a traceback
        @functools.wraps(fn)  # Gradio reads fn's signature (on_create asks for the request)
        def run(*a: Any) -> Any:
            try:
                return fn(*a)
            except UserError as exc:
                return _msg_only(str(exc))
        return run

    outs = [study, studies_tbl, progress_tbl, action_msg]

    def _msg_only(text: str) -> tuple:
        return (gr.update(),) * (len(outs) - 1) + (f"**{html.escape(text)}**",)

    def on_login(password: str, request: gr.Request) -> tuple:
        try:
            tok = admin.login(password, client_key(request))
        except UserError as exc:
            return None, gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), f"**{html.escape(str(exc))}**", gr.update()
        dd, table = studies_view(tok)
        sel = dd.get("value")
        prog = _progress_rows(admin.progress(tok, sel)) if sel else []
        return tok, gr.update(visible=False), gr.update(visible=True), dd, table, prog, "", gr.Timer(active=True)

    login_outs = [token, login_row, panel, study, studies_tbl, progress_tbl, login_msg, timer]
    login_btn.click(on_login, [pw], login_outs, api_visibility="private")
    pw.submit(on_login, [pw], login_outs, api_visibility="private")

    def on_tick(tok: str | None, sel: str | None) -> Any:
        # live progress while the admin watches; a stale or missing token just stops updating
        try:
            return _progress_rows(admin.progress(tok, sel)) if sel else gr.update()
        except UserError:
            return gr.update()

    timer.tick(on_tick, [token, study], [progress_tbl], api_visibility="private", show_progress="hidden")

    def on_refresh(tok: str | None, sel: str | None) -> tuple:
        dd, table = studies_view(tok, sel)
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
        dd, table = studies_view(tok, res["study_id"])
        text = (f"Created **{html.escape(res['study_id'])}** with {res['n_cases']} cases. Access code for readers: "
                f"`{res['access_code']}` (shown once; use *New access code* to replace it).\n\n"
                f"**Size:** {html.escape(res['size_advice'])}"
                + "".join(f"\n\n**Warning:** {html.escape(w)}" for w in res["warnings"]))
        return dd, table, [], text

    def on_status(status: str):
        def run(tok, sel) -> tuple:
            admin.set_status(tok, sel, status)
            dd, table = studies_view(tok, sel)
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

    refresh.click(guarded(on_refresh), [token, study], outs, api_visibility="private")
    study.change(guarded(on_refresh), [token, study], outs, api_visibility="private")
    create_btn.click(guarded(on_create), [token, c_name, c_real, c_part, c_syn, c_classes, c_nreal, c_nsyn, c_rep, c_score, c_seed,
                                          c_margin, c_readers],
                     outs, api_visibility="private")
    close_btn.click(guarded(on_status("closed")), [token, study], outs, api_visibility="private")
    open_btn.click(guarded(on_status("open")), [token, study], outs, api_visibility="private")
    code_btn.click(guarded(on_code), [token, study], outs, api_visibility="private")
    reader_btn.click(guarded(on_reader), [token, study, r_name], outs, api_visibility="private")
    reset_btn.click(guarded(on_reset), [token, study, r_name], outs, api_visibility="private")

    def on_results(tok, sel) -> tuple:
        try:
            res = admin.results(tok, sel)
        except UserError as exc:
            return (gr.update(),) * 7 + (f"**{html.escape(str(exc))}**",)
        return (res["conclusion"], analysis.summary_table(res["result"]), res["roc"], res["forest"], res["figure"], res["csv"],
                res["turing_test"], "")

    results_btn.click(on_results, [token, study], [conclusion, results_tbl, roc_img, forest_img, figure, csv_file, tt_json, action_msg],
                      api_visibility="private")
    return admin
