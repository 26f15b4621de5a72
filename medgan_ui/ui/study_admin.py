"""Study administration (the Rate tab's panel at ?admin): create/close studies, reader codes, progress,
results. Every handler checks the admin token server-side first: the panel being hidden is not the
protection, since Gradio exposes each handler as an endpoint. The panel's widgets are study_admin_panel's.
"""
from __future__ import annotations

import hmac
import html
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from medgan_ui.errors import UserError
from medgan_ui.security.paths import PathPolicy, is_plain_name
from medgan_ui.security.throttle import format_wait, login_throttle
from medgan_ui.study import analysis
from medgan_ui.study.store import StudyStore
from medgan_ui.workspace import Workspace

DISABLED = ("The study administration view is disabled because no admin password is set. Start the app with "
            "`python launch.py --admin-password YOUR-PASSWORD` or set the environment variable "
            "`MEDGAN_ADMIN_PASSWORD`, then open this page with `?admin` at the end of the address.")
TOKEN_HOURS = 12


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
