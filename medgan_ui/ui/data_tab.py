"""Data tab: pick a source (built-in demo, a server path, an uploaded zip), load it, see what is in it.

Thin: reading, caching and splitting live in medgan_ui.data; this module only gathers the choices,
calls load_dataset and turns the ImageSet into a preview grid, a counts table, a chart of
general x detailed labels, the split summary and the list of skipped files.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np
import pandas as pd

from medgan_ui.data.imageset import SPLIT_NAMES, ImageSet
from medgan_ui.errors import UserError
from medgan_ui.security.limits import dataset_folder, safe_unzip
from medgan_ui.security.paths import PathPolicy, hide_paths, relative_name
from medgan_ui.ui.context import AppContext
from medgan_ui.ui.errors import friendly, scrub
from medgan_ui.ui.widgets import gallery_items, label_caption

SOURCES = ["Built-in demo (synthetic phantom)", "Folder or file on this server", "Upload a .zip"]
SIZES = [16, 32, 64, 128]
PREVIEW_N = 24


def _format_choices() -> list[str]:
    from medgan_ui.data.readers import READERS

    return ["auto"] + [str(n) for n in READERS]


# ---- pure helpers (also used by tests) ---------------------------------------------------------
def extract_zip(upload: str | Path, uploads_dir: Path) -> Path:
    """Unpack a browser upload into <workspace>/uploads/ within the zip limits (security.limits);
    a zip of one folder gives that folder."""
    return dataset_folder(safe_unzip(upload, uploads_dir))


def csv_columns(folder: Path, name: str | None, policy: PathPolicy) -> list[str]:
    """Header of the labels CSV named inside the folder (or of the one CSV at its top), for the
    column-mapping dropdowns. The name must be relative and stay inside the folder."""
    from medgan_ui.data.readers.csv_folder import find_csvs, read_header

    if not name:
        if folder.is_file():
            raise UserError("name the labels CSV inside the folder (e.g. labels.csv), or give the folder itself")
        csvs = find_csvs(folder)
        if not csvs:
            raise UserError("no .csv or .csv.gz file at the top of the data folder: name the labels CSV")
        name = csvs[0].name
    return read_header(policy.resolve_csv(name, folder))


def preview_indices(ds: ImageSet, n: int = PREVIEW_N, seed: int = 0) -> np.ndarray:
    """Show the rare findings too: up to 3 examples of each finding, the rest at random."""
    rng = np.random.default_rng(seed)
    det = ds.detailed.numpy().astype(bool)
    picked: list[int] = []
    for j in np.argsort(det.sum(0)):  # rarest first
        rows = np.flatnonzero(det[:, j])
        picked += [int(i) for i in rng.permutation(rows)[:3] if i not in picked]
    rest = [int(i) for i in rng.permutation(len(ds)) if i not in set(picked)]
    return np.array((picked + rest)[: min(n, len(ds))])


def counts_table(ds: ImageSet) -> pd.DataFrame:
    """Rows: all images, then each general value; columns: images, each finding, No Finding."""
    det = ds.detailed.numpy().astype(bool)
    cols = list(ds.findings) + ["No Finding"]

    def row(label: str, mask: np.ndarray) -> dict[str, Any]:
        d = det[mask]
        out = {"group": label, "images": int(mask.sum())}
        out.update({f: int(d[:, j].sum()) for j, f in enumerate(ds.findings)})
        out["No Finding"] = int((~d.any(axis=1)).sum()) if len(d) else 0
        return out

    rows = [row("all", np.ones(len(ds), dtype=bool))]
    for g, name in enumerate(ds.general_names):
        codes = ds.general[:, g].numpy()
        for k, value in enumerate(ds.general_values[name]):
            rows.append(row(f"{name} = {value}", codes == k))
        if (codes < 0).any():
            rows.append(row(f"{name} unknown", codes < 0))
    return pd.DataFrame(rows, columns=["group", "images"] + cols)


def counts_chart(ds: ImageSet):
    """One panel per general label (sex, view, ...): images per finding, one bar per value, log scale,
    so the rare cells (e.g. Cardiomegaly in women, AP) stand out as the short bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(ds.findings) + ["No Finding"]
    stats = ds.counts()  # cells: general label -> value -> finding (and No Finding) -> images
    panels = stats["cells"] or {"all images": {"all": {**stats["findings"], "No Finding": stats["no_finding"]}}}
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels) + 0.8, 0.9 + 0.5 * len(labels)), dpi=100,
                             squeeze=False, sharey=True)
    palette = ["#0f5e78", "#f2b134", "#7fb8c9", "#c0504d", "#6b8e23", "#8064a2"]
    y = np.arange(len(labels))
    for ax, (name, per_value) in zip(axes[0], panels.items()):
        h = 0.8 / len(per_value)
        for k, (value, cell) in enumerate(per_value.items()):
            bars = ax.barh(y + k * h, [cell[f] for f in labels], height=h, label=value, color=palette[k % len(palette)])
            ax.bar_label(bars, fontsize=7, padding=2)
        ax.set_yticks(y + 0.4 - h / 2, labels)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=8, frameon=False, loc="upper right")  # the rare (short) bars leave that corner free
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=8)
    axes[0][0].invert_yaxis()
    fig.supxlabel("images (log scale)", fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def split_summary(ds: ImageSet) -> str:
    """Images, patients and the rarest finding (plus the one the split was stratified on) per part."""
    if ds.split is None:
        return "No split stored with this dataset."
    det = ds.detailed.numpy().astype(bool)
    info = ds.meta.get("split_info") or ds.meta.get("split") or {}
    strat = info.get("stratify") if isinstance(info, dict) else None
    cols = [ds.findings[int(np.argmin(det.sum(0)))]] if ds.findings else []
    if strat in ds.findings and strat not in cols:
        cols.append(strat)
    lines = ["| split | images | patients |" + "".join(f" {c} |" for c in cols),
             "|---|---:|---:|" + "---:|" * len(cols)]
    for i, name in enumerate(SPLIT_NAMES):
        m = ds.split == i
        cells = "".join(f" {int(det[m, ds.findings.index(c)].sum())} |" for c in cols)
        lines.append(f"| {name} | {int(m.sum())} | {len(np.unique(ds.patient_id[m]))} |{cells}")
    from medgan_ui.data.split import split_note  # patient-level, image-level (no patient ids) or official
    note = split_note(ds)
    if strat:
        note += f" Stratified on {strat}."
    return "\n".join(lines) + f"\n\n{note}"


def skipped_table(ds: ImageSet) -> tuple[pd.DataFrame, str]:
    """Skipped files named relative to the dataset folder (never the server's own folder layout)."""
    report = ds.meta.get("report") or {}
    skipped = report.get("skipped", [])
    root = ds.meta.get("source_root")
    df = pd.DataFrame([{"file": relative_name(s.get("path", ""), root), "reason": s.get("reason", "")}
                       for s in skipped[:500]], columns=["file", "reason"])
    notes = []
    if skipped:
        notes.append(f"**{len(skipped)} file(s) skipped** (shown below with the reason).")
    missing = int(report.get("missing_images", 0) or 0)
    if missing:
        ex = ", ".join(report.get("missing_examples", [])[:5])
        notes.append(f"**{missing:,} label row(s) have no image file** in the folder and were left out (e.g. {ex}).")
    notes += report.get("notes", [])
    return df, "\n\n".join(notes) or "Every file was read; nothing was skipped."


def summary(ds: ImageSet) -> str:
    general = "; ".join(f"{n}: {', '.join(v)}" for n, v in ds.general_values.items()) or "none"
    return (f"### {ds.name}\n**{len(ds):,} images** from **{ds.n_patients():,} patients**, "
            f"{ds.size}x{ds.size} px, format `{ds.meta.get('format', '?')}`.  \n"
            f"General labels: {general}.  \nFindings: {', '.join(ds.findings) or 'none'}.")


# the view of the last set shown: a page reload must not redraw the chart. Held by weak reference,
# not id(): a new set may reuse a freed set's id and would get its stale view
_VIEW: dict[str, Any] = {"ds": lambda: None, "view": None}


def dataset_view(ds: ImageSet | None) -> tuple:
    """Values for: summary, preview, counts, chart, split, skipped note, skipped table (cached per set)."""
    if ds is not None and _VIEW["ds"]() is ds:
        return _VIEW["view"]
    if ds is None:
        empty = pd.DataFrame()
        return ("No dataset loaded yet: choose a source above and press **Load dataset**.", [], empty, None, "", "",
                gr.update(value=empty, visible=False))
    idx = preview_indices(ds)
    images = ds.images[torch_index(idx)].numpy()
    captions = [label_caption(ds.general_label(int(i)), ds.finding_labels(int(i))) for i in idx]
    df, note = skipped_table(ds)
    view = (summary(ds), gallery_items(images, captions, px=128), counts_table(ds), counts_chart(ds),
            split_summary(ds), note, gr.update(value=df, visible=len(df) > 0))
    _VIEW.update(ds=weakref.ref(ds), view=view)  # one dataset is loaded at a time
    return view


def torch_index(idx: np.ndarray):
    import torch

    return torch.as_tensor(idx, dtype=torch.long)


def on_page_load(ctx: AppContext) -> Callable[[], tuple]:
    """A reload (or a second browser) shows the dataset the app has loaded."""
    def load() -> tuple:
        ds = ctx.wait_for_dataset(timeout=600)  # a first start is still generating the demo
        if ds is None and ctx.load_error:
            raise gr.Error(f"the demo dataset could not be prepared: {scrub(ctx.load_error)}", print_exception=False)
        return dataset_view(ds)

    return load


# ---- the tab -----------------------------------------------------------------------------------
@dataclass
class SourcePanel:
    source: gr.Radio
    path: gr.Textbox
    upload: gr.File
    fmt: gr.Dropdown
    size: gr.Dropdown
    fit: gr.Radio


@dataclass
class MappingPanel:
    csv_name: gr.Textbox
    read_cols: gr.Button
    image_col: gr.Dropdown
    patient_col: gr.Dropdown
    general_cols: gr.Dropdown
    finding_col: gr.Dropdown
    finding_sep: gr.Textbox
    finding_cols: gr.Dropdown

    @property
    def column_pickers(self) -> list[Any]:
        """The dropdowns 'Read columns from CSV' fills."""
        return [self.image_col, self.patient_col, self.general_cols, self.finding_col, self.finding_cols]


def source_panel(ctx: AppContext) -> SourcePanel:
    """Where the images come from, and how they are read."""
    with gr.Row():
        with gr.Column(scale=3):
            source = gr.Radio(SOURCES, value=SOURCES[0], label="Source")
            path = gr.Textbox(label="Path on the server", visible=False,
                              placeholder="nih-cxr14 or /data/nih-cxr14  (a folder or a .npz)",
                              info="A folder of images with a labels CSV, class sub-folders, DICOM files, or a MedMNIST .npz. "
                                   f"This server reads {ctx.paths.describe()}.")
            upload = gr.File(label="Dataset .zip", file_types=[".zip"], visible=False)
        with gr.Column(scale=2):
            fmt = gr.Dropdown(_format_choices(), value="auto", label="Format",
                              info="'auto' detects it from the file names; pick one if detection guesses wrong.")
            with gr.Row():
                size = gr.Dropdown(SIZES, value=64, label="Image size (px)", elem_id="mg-size", info="Images are resized to a square of this size.")
                fit = gr.Radio(["crop", "pad"], value="crop", label="Fit", info="Non-square images: centre crop or pad.")
    return SourcePanel(source, path, upload, fmt, size, fit)


def mapping_panel() -> MappingPanel:
    """Which CSV columns hold what (generic csv format only)."""
    with gr.Accordion("Column mapping (generic CSV + image folder)", open=False):
        gr.Markdown("Only for the generic `csv` format: say which CSV columns hold what. Leave blank to let the reader guess.")
        with gr.Row():
            csv_name = gr.Textbox(label="Labels CSV", placeholder="labels.csv (inside the folder)")
            read_cols = gr.Button("Read columns from CSV", size="sm")
        with gr.Row():
            image_col = gr.Dropdown([], label="Image file column", allow_custom_value=True)
            patient_col = gr.Dropdown([], label="Patient id column", allow_custom_value=True)
            general_cols = gr.Dropdown([], label="General label columns (e.g. sex, view)", multiselect=True, allow_custom_value=True)
        with gr.Row():
            finding_col = gr.Dropdown([], label="Findings column (one column, joined)", allow_custom_value=True)
            finding_sep = gr.Textbox(value="|", label="Separator between findings", max_lines=1)
            finding_cols = gr.Dropdown([], label="...or one 0/1 column per finding", multiselect=True, allow_custom_value=True)
    return MappingPanel(csv_name, read_cols, image_col, patient_col, general_cols, finding_col, finding_sep, finding_cols)


def view_panel() -> list[gr.components.Component]:
    """What is in the loaded set, in dataset_view()'s order."""
    info = gr.Markdown(elem_id="mg-data-info")
    gr.Markdown("**Preview** (rare findings first)")
    preview = gr.Gallery(show_label=False, columns=8, height="auto", object_fit="contain",
                         format="png", allow_preview=True, elem_classes=["mg-pixels"], interactive=False,
                         elem_id="mg-preview")
    counts = gr.Dataframe(label="Counts: general label x finding", interactive=False, wrap=True, max_height=360)
    with gr.Row():
        with gr.Column(scale=3):
            gr.Markdown("**Where the data is thin** (images per finding, per general label)")
            chart = gr.Plot(show_label=False)
        with gr.Column(scale=2):
            gr.Markdown("**Split** (train / validation / test)")
            split = gr.Markdown()
    skipped_note = gr.Markdown()
    skipped = gr.Dataframe(label="Skipped files and why", interactive=False, wrap=True, max_height=260, visible=False)
    return [info, preview, counts, chart, split, skipped_note, skipped]


def server_folder(p: str | None, policy: PathPolicy) -> tuple[Path, str]:
    """(resolved folder, what the user calls it) for a typed server path, through the allow-list."""
    if not (p or "").strip():
        raise UserError("type the path of a dataset folder or file on the server, then press Load dataset")
    return policy.resolve_existing(p, "data path"), p.strip()


def shown(exc: Exception, root: Path | None, label: str) -> UserError:
    """The message with the data folder named as the user knows it (friendly() hides the workspace)."""
    text = str(exc) if isinstance(exc, UserError) else f"{exc.strerror or type(exc).__name__}: {exc.filename or exc}"
    return UserError(hide_paths(text, [(root, label)] if root is not None else []))


def wire_source(src: SourcePanel) -> None:
    def on_source(choice: str):
        return gr.update(visible=choice == SOURCES[1]), gr.update(visible=choice == SOURCES[2])

    src.source.change(on_source, src.source, [src.path, src.upload], queue=False, api_visibility="private")


def wire_read_columns(ctx: AppContext, src: SourcePanel, mp: MappingPanel, status: gr.Markdown) -> None:
    @friendly
    def on_read_columns(p: str, up: Any, name: str, request: gr.Request):
        root, label, policy = None, "", ctx.paths.for_request(request)
        try:
            if up is not None and not (p or "").strip():
                root, label = extract_zip(up, ctx.workspace.uploads), "the uploaded zip"
            else:
                root, label = server_folder(p, policy)
            if root.is_file() and not name:
                root, name = root.parent, root.name
            cols = csv_columns(root, name, policy)
        except (UserError, OSError) as exc:
            raise shown(exc, root, label) from None
        upd = gr.update(choices=cols)
        return upd, upd, upd, upd, upd, f"Columns of the CSV: {', '.join(cols)}"

    mp.read_cols.click(on_read_columns, [src.path, src.upload, mp.csv_name], mp.column_pickers + [status],
                       api_name="read_columns")


def read_source(ctx: AppContext, policy: PathPolicy, choice: str, p: str | None, up: Any,
                progress: Callable[..., Any]) -> tuple[str, Path | None, str]:
    """(what load_dataset reads, the data folder or None for the demo, what the user calls it)."""
    if choice == SOURCES[0]:
        return "demo", None, ""
    if choice == SOURCES[1]:
        root, label = server_folder(p, policy)
        return str(root), root, label
    if up is None:
        raise UserError("choose a .zip file to upload first (or pick another source)")
    progress(0.02, desc="Unpacking the zip")
    root = extract_zip(up, ctx.workspace.uploads)
    return str(root), root, "the uploaded zip"


def wire_load(ctx: AppContext, src: SourcePanel, mp: MappingPanel, load_btn: gr.Button, status: gr.Markdown,
              view: list[gr.components.Component]) -> None:
    @friendly
    def on_load(choice, p, up, fmt_name, size_px, fit_mode, csv_file, img_c, pat_c, gen_c, find_c, sep, find_cs,
                request: gr.Request, progress=gr.Progress()):
        from medgan_ui.data.load import load_dataset
        from medgan_ui.data.readers.base import ReadOptions

        progress(0.05, desc="Reading images (a second load of the same data comes from the cache)")
        root, label, policy = None, "", ctx.paths.for_request(request)
        try:
            src_name, root, label = read_source(ctx, policy, choice, p, up, progress)
            # a labels CSV is named inside the data folder; the reader gets the checked absolute path
            csv_path = str(policy.resolve_csv(csv_file, root)) if csv_file and root is not None else None
            opts = ReadOptions(size=int(size_px), fit=fit_mode, csv=csv_path, image_column=img_c or None,
                               general_columns=list(gen_c or []), finding_column=find_c or None,
                               finding_separator=sep or "|", finding_columns=list(find_cs or []),
                               patient_column=pat_c or None)
            ds = load_dataset(src_name, None if fmt_name == "auto" else fmt_name, opts, ctx.workspace)
        except (UserError, OSError) as exc:
            raise shown(exc, root, label) from None
        if len(ds) == 0:
            raise UserError(f"{label or 'the demo'}: no images could be read; see the reasons in the report")
        ctx.set_dataset(ds)
        progress(0.9, desc="Drawing the preview")
        return (f"Loaded **{ds.name}**: {len(ds):,} images. Go to **Train** to train a model on it.",
                *dataset_view(ds))

    load_btn.click(on_load, [src.source, src.path, src.upload, src.fmt, src.size, src.fit, mp.csv_name, mp.image_col,
                             mp.patient_col, mp.general_cols, mp.finding_col, mp.finding_sep, mp.finding_cols],
                   [status] + view, concurrency_limit=2, api_name="load_data")


def build(ctx: AppContext) -> list[gr.components.Component]:
    """The tab's content; returns the dataset view (the app's page load fills it)."""
    gr.Markdown("Choose where the images come from and press **Load dataset**. The built-in demo is a "
                "synthetic chest phantom with rare findings, so everything works without real data.")
    src = source_panel(ctx)
    mp = mapping_panel()
    load_btn = gr.Button("Load dataset", variant="primary", elem_classes=["mg-big"], elem_id="mg-load")
    status = gr.Markdown(elem_classes=["mg-status"], elem_id="mg-data-status")
    view = view_panel()
    wire_source(src)
    wire_read_columns(ctx, src, mp, status)
    wire_load(ctx, src, mp, load_btn, status, view)
    return view
