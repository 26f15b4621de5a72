"""Train tab: model, preset and main settings; start / stop / resume; the runs list; live progress.

The live panel is refreshed by a gr.Timer. Its handler reads only small things (the job's last
progress event, the tail of metrics.jsonl when it grew, latest.png when its mtime changed) and sends
gr.skip() for what did not change, so clicks stay fast while a job trains.
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from medgan_ui.errors import UserError
from medgan_ui.gan.base import loss_order
from medgan_ui.gan.config import AUGMENTS, PRESETS, make_configs
from medgan_ui.gan.device import pick_device
from medgan_ui.gan.registry import families
from medgan_ui.gan.runs import Run
from medgan_ui.jobs import ACTIVE, resume_training, start_training, stop_training
from medgan_ui.ui.context import AppContext
from medgan_ui.ui.errors import friendly, message_for

TIMER_S = 1.5
RUN_COLUMNS = ["run", "model", "preset", "status", "step", "of", "note"]


def default_preset() -> str:
    return "fast-cpu" if pick_device("auto").type == "cpu" else "paper"


def lr_settings(kind: str) -> tuple[str, str | None]:
    """The family settings behind the form's two learning-rate boxes: a GAN's G and D, or the one
    learning rate of a single-net family (a diffusion model), the second box then hidden."""
    names = {f.name for f in fields(families()[kind].Config)}
    return ("lr_g", "lr_d") if "lr_g" in names else ("lr", None)


def preset_values(kind: str, preset: str) -> dict[str, Any]:
    """The settings a preset gives a model, for filling the form."""
    train, model = make_configs(kind, preset)
    g, d = lr_settings(kind)
    return {"steps": train.steps, "batch_size": train.batch_size, "lr_g": getattr(model, g),
            "lr_d": getattr(model, d) if d else None,
            "seed": train.seed, "augment": train.augment, "image_size": train.image_size}


def runs_table(ctx: AppContext) -> pd.DataFrame:
    rows = [[r["run_id"], r["model"], r["preset"], r["status"], r["step"], r["total"], (r["message"] or "")[:160]]
            for r in ctx.list_runs()]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def loss_figure(run_dir: Path):
    """Small multiples from metrics.jsonl: one panel per loss, each on its own scale (a critic loss
    of 150 next to an auxiliary loss of 0.7 would flatten one of them on a shared axis), in the
    order of the loss vocabulary (gan.base.LOSS_KEYS), so every family's panels line up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lines = Run(run_dir).metrics()
    names = loss_order({k for m in lines for k, v in (m.get("losses") or {}).items() if v is not None})
    if not names:
        return None
    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 1.55 * rows + 0.3), dpi=90, squeeze=False)
    for ax, name in zip(axes.flat, names):
        pts = [(m["step"], m["losses"][name]) for m in lines if (m.get("losses") or {}).get(name) is not None]
        x, y = np.array(pts, dtype=float).T
        ax.plot(x, y, color="#9ec9d6", lw=0.8)
        if len(y) > 5:  # a running mean shows the trend through GAN noise
            k = max(2, len(y) // 20)
            ax.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), color="#0f5e78", lw=1.4)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout(pad=0.4)
    plt.close(fig)
    return fig


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def live_html(ctx: AppContext, run_id: str | None) -> str:
    """Status line with a progress bar for one run."""
    if not run_id:
        return "<p>No run selected. Load data, choose a model and press <b>Start training</b>.</p>"
    st = Run(ctx.run_dir(run_id), ctx.workspace).status()
    job = ctx.jobs.job_for_run(run_id)
    prog = job["progress"] if job and job["status"] in ACTIVE else {}
    step, total = max(st["step"], int(prog.get("step") or 0)), max(st["total"], 1)
    ips = prog.get("img_per_s")
    parts = [f"<b>{html.escape(run_id)}</b> &middot; <span class='mg-st-{st['status']}'>{st['status']}</span>",
             f"step <b id='mg-step'>{step}</b> / {st['total']}"]
    if st["status"] in ("running", "stopping"):
        parts += [f"{ips:.0f} img/s" if ips else "measuring speed...", f"ETA {_fmt_eta(prog.get('eta_s'))}"]
    if st["status"] == "queued":
        parts.append("waiting for the running job to finish")
    bar = f"<progress max='{total}' value='{min(step, total)}' style='width:100%;height:10px'></progress>"
    text = st["message"]
    if st["status"] in ("stopped", "interrupted"):  # the engine's hint names the CLI; here it is a button
        text = f"{st['status'].capitalize()} at step {step}: press 'Resume selected run' to continue from its last checkpoint."
    msg = f"<div>{html.escape(text)}</div>" if text else ""
    return f"<div class='mg-live'>{' &middot; '.join(parts)}{bar}{msg}</div>"


def size_note(ctx: AppContext) -> str:
    ds = ctx.dataset
    if ds is None:
        return "Image size: no dataset loaded yet (Data tab)."
    return (f"Image size: **{ds.size}x{ds.size} px**, from the loaded dataset *{html.escape(ds.name)}* "
            f"({len(ds):,} images). Reload the data at another size in the Data tab to change it.")


@dataclass
class SettingsPanel:
    kind: gr.Dropdown
    preset: gr.Dropdown
    steps: gr.Number
    batch: gr.Number
    seed: gr.Number
    lr_g: gr.Number
    lr_d: gr.Number
    augment: gr.Dropdown
    size_md: gr.Markdown

    @property
    def form(self) -> list[Any]:
        """The inputs of Start, in on_start's order."""
        return [self.kind, self.preset, self.steps, self.batch, self.seed, self.lr_g, self.lr_d, self.augment]


@dataclass
class LivePanel:
    run_sel: gr.Dropdown
    live: gr.HTML
    losses: gr.Plot
    sample: gr.Image
    runs: gr.Dataframe
    size_md: gr.Markdown
    seen: gr.State  # per browser tab: what the live panel already shows

    @property
    def outputs(self) -> list[Any]:
        """What a refresh updates, in refresh()'s order (the train_status API returns these)."""
        return [self.live, self.losses, self.sample, self.runs, self.run_sel, self.size_md, self.seen]


def settings_panel() -> SettingsPanel:
    """Model, preset and the main settings, filled from the preset."""
    kind0, preset0 = "gdgan", default_preset()
    v0 = preset_values(kind0, preset0)
    with gr.Row():
        kind = gr.Dropdown(list(families()), value=kind0, label="Model", info=families()[kind0].help)
        preset = gr.Dropdown(list(PRESETS), value=preset0, label="Preset", info=PRESETS[preset0]["description"],
                             elem_id="mg-preset")
    with gr.Row():
        steps = gr.Number(v0["steps"], label="Steps", precision=0, elem_id="mg-steps",
                          info="Optimisation steps in total (GDGAN: both stages).")
        batch = gr.Number(v0["batch_size"], label="Batch size", precision=0, info="Images per step.")
        seed = gr.Number(v0["seed"], label="Seed", precision=0, info="Same seed + same data = same run.")
    with gr.Row():
        lr_g = gr.Number(v0["lr_g"], label="Learning rate G", info="Generator (Adam).")
        lr_d = gr.Number(v0["lr_d"], label="Learning rate D", info="Discriminator / critic (Adam).")
        augment = gr.Dropdown(list(AUGMENTS), value=v0["augment"], label="Augmentation",
                              info="For small datasets: DiffAugment or adaptive (ADA); the paper used none.")
    size_md = gr.Markdown()
    return SettingsPanel(kind, preset, steps, batch, seed, lr_g, lr_d, augment, size_md)


def sample_panel() -> gr.Image:
    """The latest sample grid at its native size (it is laid out wider than tall, see gan/grid.py);
    wider than the page it scrolls sideways, and fullscreen zooms it."""
    gr.Markdown("**Latest sample grid**: one row per label combination, the same noise in every row "
                "(GDGAN: stage 1 on the left, stage 2 on the right)")
    return gr.Image(show_label=False, type="filepath", interactive=False, elem_classes=["mg-pixels", "mg-native"],
                    elem_id="mg-sample", buttons=["fullscreen", "download"])


def runs_panel() -> gr.Dataframe:
    return gr.Dataframe(pd.DataFrame(columns=RUN_COLUMNS), label="Runs in this workspace", interactive=False,
                        wrap=True, max_height=300, column_widths=["26%", "8%", "9%", "10%", "7%", "7%", "33%"])


def wire_form(p: SettingsPanel) -> None:
    """A model or preset change refills the settings and the help texts."""
    def on_form(k: str, preset: str):
        v = preset_values(k, preset)
        two = lr_settings(k)[1] is not None
        return (gr.update(info=families()[k].help), gr.update(info=PRESETS[preset]["description"]), v["steps"],
                v["batch_size"], v["seed"], gr.update(value=v["lr_g"], label="Learning rate G" if two else "Learning rate",
                          info="Generator (Adam)." if two else "The one network's (Adam)."),
                gr.update(value=v["lr_d"], visible=two), v["augment"])

    for comp in (p.kind, p.preset):
        comp.change(friendly(on_form), [p.kind, p.preset], [p.kind, p.preset, p.steps, p.batch, p.seed, p.lr_g,
                                                            p.lr_d, p.augment], queue=False, api_visibility="private")


def wire_actions(ctx: AppContext, p: SettingsPanel, view: LivePanel, start: gr.Button, stop: gr.Button,
                 resume: gr.Button, status: gr.Markdown) -> None:
    """Start / Stop / Resume: jobs.py decides (one training at a time); these only read the form."""
    @friendly
    def on_start(k, preset, n_steps, bs, sd, lrg, lrd, aug):
        ds = ctx.require_dataset()
        g, d = lr_settings(k)
        values = {"steps": n_steps, "batch_size": bs, "seed": sd, g: lrg, "augment": aug, **({d: lrd} if d else {})}
        for name, v in values.items():
            if v is None or v == "":
                raise UserError(f"{name.replace('_', ' ')} is empty: enter a value")
        train_cfg, model_cfg = make_configs(k, preset, image_size=ds.size, **values)
        run_id, _ = start_training(ctx.jobs, ctx.workspace, ds, train_cfg, model_cfg)
        gr.Info(f"Training started: {run_id}")
        ids = [r["run_id"] for r in ctx.list_runs()]
        return (f"Started **{run_id}** ({k}, preset {preset}, {train_cfg.steps} steps). Progress shows on the right.",
                gr.update(choices=ids, value=run_id), runs_table(ctx))

    start.click(on_start, p.form, [status, view.run_sel, view.runs], concurrency_limit=1,
                concurrency_id="train-start", api_name="start_training")

    @friendly
    def on_stop(run_id):
        return stop_training(ctx.jobs, run_id), runs_table(ctx)

    stop.click(on_stop, [view.run_sel], [status, view.runs], queue=False, api_name="stop_training")

    @friendly
    def on_resume(run_id, n_steps):
        if not run_id:
            raise UserError("choose a run in 'Run shown below' first")
        resume_training(ctx.jobs, ctx.workspace, run_id, ctx.dataset, steps=int(n_steps) if n_steps else None)
        return f"Resuming **{run_id}** from its latest checkpoint.", runs_table(ctx)

    resume.click(on_resume, [view.run_sel, p.steps], [status, view.runs], concurrency_limit=1,
                 concurrency_id="train-start", api_name="resume_training")


def refresh(ctx: AppContext, run_id: str | None, state: dict) -> tuple:
    """Timer tick: send only what changed since this browser tab last looked (LivePanel.outputs order)."""
    state = dict(state or {})
    try:
        run = Run(ctx.run_dir(run_id), ctx.workspace) if run_id else None
    except UserError as exc:
        return f"<p>{html.escape(message_for(exc))}</p>", gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), state
    out_live = live_html(ctx, run_id)
    note = size_note(ctx)
    out_note = note if note != state.get("note") else gr.skip()
    state["note"] = note
    if run is None:
        return out_live, gr.skip(), gr.skip(), gr.skip(), gr.skip(), out_note, state
    metrics, grid = run.metrics_path, run.latest_sample
    m_size = metrics.stat().st_size if metrics.exists() else 0
    g_time = grid.stat().st_mtime_ns if grid.exists() else 0
    new_run = state.get("run") != run_id
    # redraw the curves when metrics grew, at most every 5 s: matplotlib is the costly part of a tick
    stale = m_size != state.get("m") and time.monotonic() - state.get("drawn", 0.0) > 5.0
    out_loss = gr.skip()
    if new_run or stale:
        out_loss = loss_figure(run.dir)
        state["drawn"] = time.monotonic()
        state["m"] = m_size
    out_grid = (str(grid) if g_time else None) if new_run or g_time != state.get("g") else gr.skip()
    table = runs_table(ctx)
    key = table.to_json()
    out_runs = table if key != state.get("t") else gr.skip()
    ids = list(table["run"])
    out_sel = gr.update(choices=ids) if ids != state.get("ids") else gr.skip()
    state.update(run=run_id, g=g_time, t=key, ids=ids)
    return out_live, out_loss, out_grid, out_runs, out_sel, out_note, state


def wire_refresh(ctx: AppContext, demo: gr.Blocks, view: LivePanel) -> None:
    """The timer, a run choice and a page (re)load redraw the live view."""
    def on_refresh(run_id: str | None, state: dict) -> tuple:
        return refresh(ctx, run_id, state)

    view_in = [view.run_sel, view.seen]
    gr.Timer(TIMER_S).tick(on_refresh, view_in, view.outputs, show_progress="hidden", concurrency_limit=None,
                           api_name="train_status")
    view.run_sel.change(on_refresh, view_in, view.outputs, show_progress="hidden", api_visibility="private")

    def on_load():
        """Page (re)load: show the running run, else the newest; the job survives the reload."""
        table = runs_table(ctx)
        active = ctx.jobs.active("train")
        ids = list(table["run"])
        pick = active[0]["run_id"] if active else (ids[0] if ids else None)
        return gr.update(choices=ids, value=pick), table, size_note(ctx)

    demo.load(on_load, None, [view.run_sel, view.runs, view.size_md], api_visibility="private")


def build(ctx: AppContext, demo: gr.Blocks) -> None:
    gr.Markdown(f"**Device:** {ctx.device}")
    with gr.Row():
        with gr.Column(scale=2):
            settings = settings_panel()
            with gr.Row():
                start = gr.Button("Start training", variant="primary", elem_classes=["mg-big"], elem_id="mg-start")
                stop = gr.Button("Stop", variant="stop", elem_classes=["mg-big"], elem_id="mg-stop")
                resume = gr.Button("Resume selected run", elem_classes=["mg-big"])
            status = gr.Markdown(elem_classes=["mg-status"], elem_id="mg-train-status")
        with gr.Column(scale=3):
            run_sel = gr.Dropdown([], label="Run shown below (and resumed by 'Resume')", allow_custom_value=True)
            live = gr.HTML(elem_id="mg-live")
            gr.Markdown("**Losses** (pale: per log window; dark: running mean)")
            losses = gr.Plot(show_label=False)
    sample = sample_panel()
    runs = runs_panel()
    view = LivePanel(run_sel, live, losses, sample, runs, settings.size_md, gr.State({}))
    wire_form(settings)
    wire_actions(ctx, settings, view, start, stop, resume, status)
    wire_refresh(ctx, demo, view)
