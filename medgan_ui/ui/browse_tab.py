"""Browse tab: pick a run and checkpoint, choose labels, look at generated images, check memorisation,
export a synthetic set sized per label cell.

Generation, loading and export are gan.sampling's, the memorisation check (nearest real training
images of a synthetic one) is evaluate.gan_metrics.nearest_real; this module maps widgets to those calls.
"""
from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.security.paths import plain_name
from medgan_ui.ui.context import AppContext
from medgan_ui.ui.errors import friendly
from medgan_ui.ui.widgets import gallery_items, label_caption, side_by_side
from medgan_ui.workspace import read_json

MAX_GENERAL = 4  # general-label dropdowns shown (a schema rarely has more than sex, view, age band)
ANY = "any"
MAX_SHOWN = 256
_POOL: dict[str, ImageSet] = {}  # run id -> its training images (one entry: the run being browsed)


# ---- pure helpers ------------------------------------------------------------------------------
def trained_runs(ctx: AppContext) -> list[str]:
    """Runs with at least one checkpoint, newest first."""
    from medgan_ui.gan.checkpoint import list_checkpoints

    return [p.name for p in reversed(ctx.workspace.list_runs()) if list_checkpoints(p / "checkpoints")]


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


# ---- the tab -----------------------------------------------------------------------------------
def build(ctx: AppContext, demo: gr.Blocks) -> tuple:
    """Lay out the tab; returns (fn, inputs, outputs) that refresh its run list (for the tab's select event)."""
    from medgan_ui.gan.checkpoint import list_checkpoints
    from medgan_ui.gan.sampling import export_dicom, export_png, generate, load_run

    with gr.Row():
        run = gr.Dropdown([], value=None, label="Run", info="Runs with at least one checkpoint.", allow_custom_value=True)
        ckpt = gr.Dropdown(["latest"], value="latest", label="Checkpoint", allow_custom_value=True)
        refresh = gr.Button("Refresh runs", size="sm", elem_id="mg-refresh-runs")
    run_info = gr.Markdown(elem_id="mg-run-info", value="No trained run yet: start one in the **Train** tab; it shows here after its first checkpoint.")
    with gr.Row():
        # custom values allowed: the run's LabelSchema checks names and lists what exists
        general = [gr.Dropdown([ANY], value=ANY, label=f"general {i}", visible=False, min_width=120,
                               elem_id=f"mg-general-{i}",
                               allow_custom_value=True) for i in range(MAX_GENERAL)]
        findings = gr.Dropdown([], value=[], multiselect=True, label="Findings (none = No Finding)", scale=2, elem_id="mg-findings",
                               allow_custom_value=True)
    with gr.Row():
        n_img = gr.Slider(1, 64, value=16, step=1, label="Images")
        seed = gr.Number(0, label="Seed", precision=0, info="Same seed, same images.", elem_id="mg-seed")
        gen_btn = gr.Button("Generate", variant="primary", elem_classes=["mg-big"], elem_id="mg-generate")
        more_btn = gr.Button("More (next seed)", elem_classes=["mg-big"])
    gr.Markdown("**Synthetic images**: click one to see its nearest real training images below.")
    gallery = gr.Gallery(show_label=False, columns=8,
                         height="auto", object_fit="contain", format="png", elem_classes=["mg-pixels"],
                         interactive=False, allow_preview=False, elem_id="mg-gallery")
    shown = gr.State(None)  # {"images": uint8 [n,H,W], "captions": [...]} of this browser tab
    with gr.Accordion("Memorisation check: nearest real training images", open=True):
        nn_note = gr.Markdown("Click a synthetic image above.", elem_id="mg-nn-note")
        nn_gallery = gr.Gallery(columns=6, height="auto", object_fit="contain", format="png",
                                elem_classes=["mg-pixels"], interactive=False, allow_preview=False, show_label=False,
                                elem_id="mg-nn-gallery", visible=False)
    with gr.Accordion("Export a synthetic set to top up rare label cells", open=False):
        with gr.Row():
            target = gr.Number(100, label="Target images per cell", precision=0,
                               info="Each cell gets (target - real images) synthetic ones; edit the table to change any.")
            fmt = gr.Radio(["PNG + labels.csv", "DICOM"], value="PNG + labels.csv", label="Format")
            plan_btn = gr.Button("Fill the table", size="sm")
        plan = gr.Dataframe(label="Cells", interactive=True, wrap=True, max_height=320)
        export_btn = gr.Button("Export", variant="primary")
        export_note = gr.Markdown()

    def _labels(values: list[str], schema) -> dict[str, str]:
        return {n: v for n, v in zip(schema.general_names, values) if v and v != ANY}

    @friendly
    def on_run(run_id: str | None):
        if not run_id:
            hidden = [gr.update(visible=False)] * MAX_GENERAL
            return ("No trained run yet: start one in the **Train** tab; it shows here after its first checkpoint.",
                    gr.update(choices=["latest"], value="latest"), *hidden, gr.update(choices=[], value=[]))
        folder = ctx.run_dir(run_id)
        cfg = read_json(folder / "config.json")
        schema = cfg["schema"]
        names = [p.stem for p in list_checkpoints(folder / "checkpoints")]
        upd = []
        for i in range(MAX_GENERAL):
            if i < len(schema["general_names"]):
                name = schema["general_names"][i]
                upd.append(gr.update(label=name, choices=[ANY] + schema["general_values"][name], value=ANY, visible=True))
            else:
                upd.append(gr.update(visible=False, value=ANY))
        ds = cfg.get("dataset", {})
        info = (f"**{cfg['kind']}** on *{ds.get('name', '?')}* ({ds.get('n_train', '?')} training images), "
                f"{schema['image_size']} px, checkpoints: {', '.join(names) or 'none'}.")
        if cfg["kind"] == "gdgan":
            info += "  \nEach image shows GDGAN's two stages side by side: **stage 1** (general labels) | **stage 2** (findings added)."
        return (info, gr.update(choices=["latest"] + names[::-1], value="latest"), *upd,
                gr.update(choices=schema["findings"], value=[]))

    run.change(on_run, run, [run_info, ckpt, *general, findings], api_name="select_run")

    def _generate(run_id, ckpt_name, n, sd, fnd, *gvals):
        if not run_id:
            raise UserError("no trained run to generate from: train a model in the Train tab first "
                            "(a run appears here once it has written a checkpoint)")
        loaded = load_run(ctx.run_dir(run_id), None if ckpt_name in (None, "", "latest") else plain_name(ckpt_name, "checkpoint"))
        res = generate(loaded, int(n), _labels(list(gvals), loaded.schema), list(fnd or []), seed=int(sd or 0))
        imgs = res.images.numpy()
        shown_imgs = imgs if res.stage1 is None else np.stack([side_by_side(a, b) for a, b in zip(res.stage1.numpy(), imgs)])
        caps = [label_caption(lab["general"], lab["findings"]) for lab in res.labels]
        return imgs, shown_imgs, caps

    @friendly
    def on_generate(run_id, ckpt_name, n, sd, fnd, *gvals):
        imgs, shown_imgs, caps = _generate(run_id, ckpt_name, n, sd, fnd, *gvals)
        state = {"images": imgs, "shown": shown_imgs, "captions": caps}
        return (gallery_items(shown_imgs, caps, px=160), state, "Click a synthetic image above.",
                gr.update(value=[], visible=False))

    @friendly
    def on_more(run_id, ckpt_name, n, sd, fnd, state, *gvals):
        sd = int(sd or 0) + 1
        imgs, shown_imgs, caps = _generate(run_id, ckpt_name, n, sd, fnd, *gvals)
        if state and state["images"].shape[1:] == imgs.shape[1:]:
            imgs = np.concatenate([state["images"], imgs])[-MAX_SHOWN:]
            shown_imgs = np.concatenate([state["shown"], shown_imgs])[-MAX_SHOWN:]
            caps = (state["captions"] + caps)[-MAX_SHOWN:]
        state = {"images": imgs, "shown": shown_imgs, "captions": caps}
        return gallery_items(shown_imgs, caps, px=160), state, sd

    gen_inputs = [run, ckpt, n_img, seed, findings]
    gen_btn.click(on_generate, gen_inputs + general, [gallery, shown, nn_note, nn_gallery], concurrency_limit=4,
                  api_name="generate")
    more_btn.click(on_more, gen_inputs + [shown] + general, [gallery, shown, seed], concurrency_limit=4,
                   api_name="more")

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

    gallery.select(on_select, [run, shown], [nn_note, nn_gallery], api_visibility="private")

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

    plan_btn.click(on_plan, [run, target], plan, api_name="export_plan")

    @friendly
    def on_export(run_id, ckpt_name, table, fmt_name, sd, progress=gr.Progress()):
        if not run_id:
            raise UserError("choose a trained run first")
        if table is None or len(table) == 0:
            raise UserError("press 'Fill the table' first, then set how many images each cell gets")
        loaded = load_run(ctx.run_dir(run_id), None if ckpt_name in (None, "", "latest") else plain_name(ckpt_name, "checkpoint"))
        cells = cells_from_plan(pd.DataFrame(table), loaded.schema.general_names)
        total = sum(c[2] for c in cells)
        if total > 50_000:
            raise UserError(f"{total:,} images is more than one export allows (50,000); lower the target")
        progress(0.1, desc=f"Generating {total:,} images")
        export = export_dicom if fmt_name == "DICOM" else export_png
        folder = export(loaded, cells, ctx.workspace.synthetic, seed=int(sd or 0))
        return f"Wrote **{total:,}** synthetic images in {len(cells)} cells to `{folder}` (with labels.csv and manifest.json)."

    export_btn.click(on_export, [run, ckpt, plan, fmt, seed], export_note, concurrency_limit=1, api_name="export")

    def on_refresh(current: str | None):
        ids = trained_runs(ctx)
        return gr.update(choices=ids, value=current if current in ids else (ids[0] if ids else None))

    refresh.click(on_refresh, run, run, api_name="refresh_runs")
    demo.load(on_refresh, run, run, api_visibility="private")
    return on_refresh, run, run
