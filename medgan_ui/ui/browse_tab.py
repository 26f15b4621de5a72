"""Browse tab: pick a run and checkpoint, choose labels, look at generated images, check memorisation,
export a synthetic set sized per label cell.

Generation, loading and export are gan.generate's, the memorisation check (nearest real training
images of a synthetic one) is evaluate.gan_metrics.nearest_real; this module maps widgets to those calls.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.security.paths import plain_name
from medgan_ui.ui.context import AppContext
from medgan_ui.ui.errors import friendly, scrub
from medgan_ui.ui.widgets import gallery_items, label_caption, side_by_side

MAX_GENERAL = 4  # general-label dropdowns shown (a schema rarely has more than sex, view, age band)
ANY = "any"
MAX_SHOWN = 256
_POOL: dict[str, ImageSet] = {}  # run id -> its training images (one entry: the run being browsed)


# ---- pure helpers ------------------------------------------------------------------------------
def trained_runs(ctx: AppContext) -> list[str]:
    """Runs with at least one checkpoint, newest first."""
    from medgan_ui.gan.runs import Run

    return [p.name for p in reversed(ctx.workspace.list_runs()) if Run(p, ctx.workspace).checkpoints()]


def run_pool(ctx: AppContext, run_id: str) -> ImageSet:
    """The training images of a run (gan.topup.run_training_images), cached for the run being browsed."""
    from medgan_ui.gan.topup import run_training_images

    if run_id in _POOL:
        return _POOL[run_id]
    ctx.run_dir(run_id)  # a bad or missing id -> a message saying what to pick
    pool = run_training_images(ctx.workspace, run_id, ctx.dataset)
    _POOL.clear()
    _POOL[run_id] = pool
    return pool


def cell_plan(schema: Any, pool: ImageSet | None, target: int) -> pd.DataFrame:
    """gan.topup.cell_plan as a table; '?' where the data is gone and real counts are unknown."""
    from medgan_ui.gan import topup

    rows = topup.cell_plan(schema, pool, target)
    df = pd.DataFrame(rows, columns=topup.plan_columns(schema))
    if pool is None:
        df[topup.REAL] = "?"
    return df


def cells_from_plan(df: pd.DataFrame, general_names: list[str]) -> list[tuple[dict[str, str], list[str], int]]:
    from medgan_ui.gan import topup

    return topup.cells_from_plan(df.to_dict("records"), general_names)


def run_summary(run: Any) -> tuple[str, list[str], dict[str, Any]]:
    """(markdown about the run, checkpoint names oldest first, label schema) for the run picker."""
    cfg = run.config()
    schema = cfg["schema"]
    names = [p.stem for p in run.checkpoints()]
    ds = cfg.get("dataset", {})
    info = (f"**{cfg['kind']}** on *{ds.get('name', '?')}* ({ds.get('n_train', '?')} training images), "
            f"{schema['image_size']} px, checkpoints: {', '.join(names) or 'none'}.")
    if cfg["kind"] in STAGE_PAIRS:
        info += "  \n" + STAGE_PAIRS[cfg["kind"]]
    return info, names, schema


STAGE_PAIRS = {  # families whose images come as stage-1 | stage-2 pairs
    "gdgan": "Each image shows GDGAN's two stages side by side: **stage 1** (general labels) | **stage 2** (findings added).",
    "gd-ddpm": ("Each image shows gd-ddpm's two stages side by side: **stage 1** (sampled from the general labels) | "
                "**stage 2** (stage 1 re-noised to the *strength* below, then denoised with the findings added)."),
}


# ---- panels ------------------------------------------------------------------------------------
NO_RUN = "No trained run yet: start one in the **Train** tab; it shows here after its first checkpoint."


@dataclass
class Picker:
    run: gr.Dropdown
    ckpt: gr.Dropdown
    refresh: gr.Button
    info: gr.Markdown
    general: list[gr.Dropdown]
    findings: gr.Dropdown
    n_img: gr.Slider
    seed: gr.Number
    gen_btn: gr.Button
    more_btn: gr.Button
    strength: gr.Slider  # gd-ddpm's stage-2 strength, shown for families that take one


@dataclass
class Viewer:
    gallery: gr.Gallery
    shown: gr.State  # {"images": uint8 [n,H,W], "shown": ..., "captions": [...]} of this browser tab
    nn_note: gr.Markdown
    nn_gallery: gr.Gallery


@dataclass
class Exporter:
    target: gr.Number
    fmt: gr.Radio
    plan_btn: gr.Button
    plan: gr.Dataframe
    export_btn: gr.Button
    note: gr.Markdown


def picker_panel() -> Picker:
    """Run, checkpoint, labels, how many images, the seed and the Generate buttons."""
    with gr.Row():
        run = gr.Dropdown([], value=None, label="Run", info="Runs with at least one checkpoint.", allow_custom_value=True)
        ckpt = gr.Dropdown(["latest"], value="latest", label="Checkpoint", allow_custom_value=True)
        refresh = gr.Button("Refresh runs", size="sm", elem_id="mg-refresh-runs")
    info = gr.Markdown(elem_id="mg-run-info", value=NO_RUN)
    with gr.Row():
        # custom values allowed: the run's LabelSchema checks names and lists what exists
        general = [gr.Dropdown([ANY], value=ANY, label=f"general {i}", visible=False, min_width=120,
                               elem_id=f"mg-general-{i}", allow_custom_value=True) for i in range(MAX_GENERAL)]
        findings = gr.Dropdown([], value=[], multiselect=True, label="Findings (none = No Finding)", scale=2,
                               elem_id="mg-findings", allow_custom_value=True)
    with gr.Row():
        n_img = gr.Slider(1, 64, value=16, step=1, label="Images")
        seed = gr.Number(0, label="Seed", precision=0, info="Same seed, same images.", elem_id="mg-seed")
        gen_btn = gr.Button("Generate", variant="primary", elem_classes=["mg-big"], elem_id="mg-generate")
        more_btn = gr.Button("More (next seed)", elem_classes=["mg-big"])
    strength = gr.Slider(0.05, 1.0, value=0.8, step=0.05, label="Stage-2 strength", visible=False,
                         elem_id="mg-strength",
                         info="How far stage 2 re-noises the stage-1 image before adding the findings: "
                              "low keeps the stage-1 anatomy, 1 samples afresh.")
    return Picker(run, ckpt, refresh, info, general, findings, n_img, seed, gen_btn, more_btn, strength)


def viewer_panel() -> Viewer:
    """The generated images and, for a clicked one, its nearest real training images."""
    gr.Markdown("**Synthetic images**: click one to see its nearest real training images below.")
    gallery = gr.Gallery(show_label=False, columns=8, height="auto", object_fit="contain", format="png",
                         elem_classes=["mg-pixels"], interactive=False, allow_preview=False, elem_id="mg-gallery")
    shown = gr.State(None)
    with gr.Accordion("Memorisation check: nearest real training images", open=True):
        nn_note = gr.Markdown("Click a synthetic image above.", elem_id="mg-nn-note")
        nn_gallery = gr.Gallery(columns=6, height="auto", object_fit="contain", format="png",
                                elem_classes=["mg-pixels"], interactive=False, allow_preview=False, show_label=False,
                                elem_id="mg-nn-gallery", visible=False)
    return Viewer(gallery, shown, nn_note, nn_gallery)


def export_panel() -> Exporter:
    with gr.Accordion("Export a synthetic set to top up rare label cells", open=False):
        with gr.Row():
            target = gr.Number(100, label="Target images per cell", precision=0,
                               info="Each cell gets (target - real images) synthetic ones; edit the table to change any.")
            fmt = gr.Radio(["PNG + labels.csv", "DICOM"], value="PNG + labels.csv", label="Format")
            plan_btn = gr.Button("Fill the table", size="sm")
        plan = gr.Dataframe(label="Cells", interactive=True, wrap=True, max_height=320)
        export_btn = gr.Button("Export", variant="primary")
        note = gr.Markdown()
    return Exporter(target, fmt, plan_btn, plan, export_btn, note)


# ---- wiring ------------------------------------------------------------------------------------
def _checkpoint_arg(name: str | None) -> str | None:
    return None if name in (None, "", "latest") else plain_name(name, "checkpoint")


def wire_picker(ctx: AppContext, pk: Picker) -> None:
    """A run choice fills the checkpoint list and the label dropdowns from the run's schema."""
    from medgan_ui.gan.registry import family
    from medgan_ui.gan.runs import Run

    @friendly
    def on_run(run_id: str | None):
        if not run_id:
            hidden = [gr.update(visible=False)] * MAX_GENERAL
            return (NO_RUN, gr.update(choices=["latest"], value="latest"), *hidden, gr.update(choices=[], value=[]),
                    gr.update(visible=False))
        run = Run(ctx.run_dir(run_id), ctx.workspace)
        info, names, schema = run_summary(run)
        upd = []
        for i in range(MAX_GENERAL):
            if i < len(schema["general_names"]):
                name = schema["general_names"][i]
                upd.append(gr.update(label=name, choices=[ANY] + schema["general_values"][name], value=ANY, visible=True))
            else:
                upd.append(gr.update(visible=False, value=ANY))
        cfg = run.config()
        takes = "strength" in family(cfg["kind"]).sample_options
        strength = gr.update(visible=True, value=cfg["model"]["strength"]) if takes else gr.update(visible=False)
        return (info, gr.update(choices=["latest"] + names[::-1], value="latest"), *upd,
                gr.update(choices=schema["findings"], value=[]), strength)

    pk.run.change(on_run, pk.run, [pk.info, pk.ckpt, *pk.general, pk.findings, pk.strength], api_name="select_run")


def wire_viewer(ctx: AppContext, pk: Picker, vw: Viewer) -> None:
    """Generate / More and the memorisation check of a clicked image."""
    from medgan_ui.gan.generate import generate, load_run

    def _generate(run_id, ckpt_name, n, sd, fnd, *rest):
        if not run_id:
            raise UserError("no trained run to generate from: train a model in the Train tab first "
                            "(a run appears here once it has written a checkpoint)")
        *gvals, strength = rest if len(rest) > MAX_GENERAL else (*rest, None)  # API callers may omit strength
        loaded = load_run(ctx.run_dir(run_id), _checkpoint_arg(ckpt_name))
        labels = {n: v for n, v in zip(loaded.schema.general_names, gvals) if v and v != ANY}
        options = {"strength": strength} if "strength" in loaded.model.sample_options else None
        res = generate(loaded, int(n), labels, list(fnd or []), seed=int(sd or 0), options=options)
        imgs = res.images.numpy()
        shown_imgs = imgs if res.stage1 is None else np.stack([side_by_side(a, b) for a, b in zip(res.stage1.numpy(), imgs)])
        caps = [label_caption(lab["general"], lab["findings"]) for lab in res.labels]
        return imgs, shown_imgs, caps

    @friendly
    def on_generate(run_id, ckpt_name, n, sd, fnd, *rest):
        imgs, shown_imgs, caps = _generate(run_id, ckpt_name, n, sd, fnd, *rest)
        state = {"images": imgs, "shown": shown_imgs, "captions": caps}
        return (gallery_items(shown_imgs, caps, px=160), state, "Click a synthetic image above.",
                gr.update(value=[], visible=False))

    @friendly
    def on_more(run_id, ckpt_name, n, sd, fnd, state, *rest):
        sd = int(sd or 0) + 1
        imgs, shown_imgs, caps = _generate(run_id, ckpt_name, n, sd, fnd, *rest)
        if state and state["images"].shape[1:] == imgs.shape[1:]:
            imgs = np.concatenate([state["images"], imgs])[-MAX_SHOWN:]
            shown_imgs = np.concatenate([state["shown"], shown_imgs])[-MAX_SHOWN:]
            caps = (state["captions"] + caps)[-MAX_SHOWN:]
        state = {"images": imgs, "shown": shown_imgs, "captions": caps}
        return gallery_items(shown_imgs, caps, px=160), state, sd

    gen_inputs = [pk.run, pk.ckpt, pk.n_img, pk.seed, pk.findings]
    pk.gen_btn.click(on_generate, gen_inputs + pk.general + [pk.strength],
                     [vw.gallery, vw.shown, vw.nn_note, vw.nn_gallery], concurrency_limit=4, api_name="generate")
    pk.more_btn.click(on_more, gen_inputs + [vw.shown] + pk.general + [pk.strength], [vw.gallery, vw.shown, pk.seed],
                      concurrency_limit=4, api_name="more")

    @friendly
    def on_select(run_id, state, evt: gr.SelectData):
        if not state or evt.index is None:
            raise UserError("generate some images first, then click one")
        i = int(evt.index if not isinstance(evt.index, (list, tuple)) else evt.index[0])
        pool = run_pool(ctx, run_id)
        from medgan_ui.evaluate.gan_metrics import nearest_real

        try:
            hits = nearest_real(state["images"][i], pool.images)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        imgs = [state["images"][i]] + [pool.images[j].numpy() for j, _, _ in hits]
        caps = ["synthetic #%d" % (i + 1)] + [
            f"RMSE {d:.3f} · SSIM {s:.2f} · " + label_caption(pool.general_label(j), pool.finding_labels(j))
            for j, d, s in hits]
        close = hits[0][2] if hits else 0.0
        verdict = ("**Very close to a training image (SSIM > 0.9): possible memorisation.**" if close > 0.9
                   else "No training image is a near copy (best SSIM %.2f; 1.0 would be identical)." % close)
        return (f"Nearest of {len(pool):,} training images by pixel RMSE. {verdict}",
                gr.update(value=gallery_items(imgs, caps, px=128), visible=True))

    vw.gallery.select(on_select, [pk.run, vw.shown], [vw.nn_note, vw.nn_gallery], api_visibility="private")


def wire_export(ctx: AppContext, pk: Picker, ex: Exporter) -> None:
    """Fill the per-cell plan from the run's real counts, then export that many images per cell."""
    from medgan_ui.gan.generate import export_dicom, export_png, load_run

    @friendly
    def on_plan(run_id, tgt):
        if not run_id:
            raise UserError("choose a trained run first")
        if tgt is None or int(tgt) < 1:
            raise UserError("target images per cell must be at least 1")
        loaded = load_run(ctx.run_dir(run_id))
        try:
            pool = run_pool(ctx, run_id)
        except UserError:
            pool = None  # the data is gone: the table still works, without real counts
        return cell_plan(loaded.schema, pool, int(tgt))

    ex.plan_btn.click(on_plan, [pk.run, ex.target], ex.plan, api_name="export_plan")

    @friendly
    def on_export(run_id, ckpt_name, table, fmt_name, sd, strength=None, progress=gr.Progress()):
        if not run_id:
            raise UserError("choose a trained run first")
        if table is None or len(table) == 0:
            raise UserError("press 'Fill the table' first, then set how many images each cell gets")
        loaded = load_run(ctx.run_dir(run_id), _checkpoint_arg(ckpt_name))
        cells = cells_from_plan(pd.DataFrame(table), loaded.schema.general_names)
        total = sum(c[2] for c in cells)
        if total > 50_000:
            raise UserError(f"{total:,} images is more than one export allows (50,000); lower the target")
        progress(0.1, desc=f"Generating {total:,} images")
        export = export_dicom if fmt_name == "DICOM" else export_png
        options = {"strength": strength} if "strength" in loaded.model.sample_options else None  # as shown above
        folder = export(loaded, cells, ctx.workspace.synthetic, seed=int(sd or 0), options=options)
        return f"Wrote **{total:,}** synthetic images in {len(cells)} cells to `{scrub(str(folder))}` (with labels.csv and manifest.json)."

    ex.export_btn.click(on_export, [pk.run, pk.ckpt, ex.plan, ex.fmt, pk.seed, pk.strength], ex.note, concurrency_limit=1,
                        api_name="export")


# ---- the tab -----------------------------------------------------------------------------------
def build(ctx: AppContext, demo: gr.Blocks) -> tuple:
    """Lay out the tab; returns (fn, inputs, outputs) that refresh its run list (for the tab's select event)."""
    pk = picker_panel()
    vw = viewer_panel()
    ex = export_panel()
    wire_picker(ctx, pk)
    wire_viewer(ctx, pk, vw)
    wire_export(ctx, pk, ex)

    def on_refresh(current: str | None):
        ids = trained_runs(ctx)
        return gr.update(choices=ids, value=current if current in ids else (ids[0] if ids else None))

    pk.refresh.click(on_refresh, pk.run, pk.run, api_name="refresh_runs")
    demo.load(on_refresh, pk.run, pk.run, api_visibility="private")
    return on_refresh, pk.run, pk.run
