"""Compare tab: run the augmentation-comparison experiment and the GAN metrics as background jobs,
then show the AUC table (pooled AUC with patient-cluster bootstrap CI, fold mean ± SD, difference
against none with bootstrap CI / p and corrected t-test p, Holm-adjusted), the ROC overlay,
sensitivity/specificity and the generator-metric tables (against held-out real images, Welch test over
training seeds). All computation lives in medgan_ui.evaluate; this module only wires widgets.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from medgan_ui.errors import UserError
from medgan_ui.evaluate.gan_metric_table import (METRIC_COLUMNS, WELCH_COLUMNS, metric_rows,  # light: no torch
                                                 summary_lines, welch_rows)
# the rest of medgan_ui.evaluate (torchvision, scipy, torchmetrics, matplotlib) is imported inside the handlers:
# importing it here added ~4 s to the app's first page
from medgan_ui.jobs import ACTIVE, start_experiment, start_gan_metrics
from medgan_ui.security.paths import PathPolicy, plain_name
from medgan_ui.ui.errors import friendly

TIMER_S = 2.0
BASE = ["none", "classic", "undersample", "oversample"]
INITS = ["scratch", "imagenet", "segmentation"]
TABLE_NAMES = {"auc_pooled": "AUC (pooled)", "ci95_lo": "CI95 lo", "ci95_hi": "CI95 hi",
               "auc_fold_mean": "fold mean", "auc_fold_sd": "fold SD", "diff_vs_none": "Δ vs none",
               "diff_ci95_lo": "Δ CI95 lo", "diff_ci95_hi": "Δ CI95 hi", "p_bootstrap": "p boot",
               "p_bootstrap_holm": "p boot (Holm)", "p_corrected_t": "p corr. t", "p_corrected_t_holm": "p corr. t (Holm)",
               "sens_at_spec": "sens@spec", "sensitivity": "sens (Youden)", "specificity": "spec (Youden)", "auc_per_fold": "AUC per fold",
               "label_fidelity_auc": "label fidelity AUC", "leakage_overlap": "leaked patients"}


def present(columns: list[str], rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a table with those of `columns` that a row has (IS or domain IS, not both)."""
    return pd.DataFrame(rows, columns=[c for c in columns if any(c in r for r in rows)] if rows else columns)


def show_metrics(ctx: Any, mid: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(metric table, Welch-over-seeds table, what the numbers rest on) for one metrics result."""
    from medgan_ui.evaluate.results import load_results

    if not mid:
        return present(METRIC_COLUMNS, []), present(WELCH_COLUMNS, []), ""
    res = load_results(ctx.workspace, mid)
    return (present(METRIC_COLUMNS, metric_rows(res)), present(WELCH_COLUMNS, welch_rows(res)),
            "\n".join(f"- {html.escape(line)}" for line in summary_lines(res)))


CONTROLS = {"classic on top of synthetic": "composite", "train on synthetic only (TSTR)": "tstr",
            "synthetic negatives": "negatives", "equal optimisation steps": "equal_steps"}


def synthetic_choices(ctx: Any) -> list[str]:
    """Finished runs and exported synthetic sets: what a 'synthetic:<id>' strategy can use."""
    runs = [r["run_id"] for r in ctx.list_runs() if r.get("status") not in ("running", "queued", "created")]
    sets = sorted((p.name for p in ctx.workspace.synthetic.iterdir() if (p / "labels.csv").is_file()), reverse=True)
    return runs + sets


def strategy_choices(ctx: Any) -> list[str]:
    """The synthetic strategy dropdown: gan:MODEL@PRESET (one generator trained per fold), then runs and sets."""
    from medgan_ui.evaluate.gan_folds import gan_strategy_choices

    return gan_strategy_choices() + synthetic_choices(ctx)


def config_from_form(targets, base, synth, classifier, width, init, weights, splits, epochs, patience, batch,
                     lr, ratio, seed, controls=(), doses="") -> Any:
    from medgan_ui.evaluate.arms import control_arms, parse_doses
    from medgan_ui.evaluate.experiment import ExperimentConfig

    if not targets:
        raise UserError("choose at least one target finding")
    on = {CONTROLS[c] for c in controls or [] if c in CONTROLS}
    sources = [s.strip() if s.strip().startswith(("gan:", "synthetic:")) else f"synthetic:{s.strip()}" for s in synth or []]
    strategies = list(base or []) + sources + control_arms(sources, "composite" in on, "tstr" in on)
    dose_list = parse_doses(doses)
    if not strategies:
        raise UserError("tick at least one strategy (and keep 'none' to get p-values against it)")
    if init == "imagenet":
        if not (weights or "").strip():
            raise UserError("ImageNet init needs the path of a local torchvision weights file (nothing is downloaded)")
        init = f"imagenet:{weights.strip()}"
    values = {"folds": splits, "epochs": epochs, "patience": patience, "batch size": batch, "learning rate": lr,
              "width": width, "synthetic ratio": ratio, "seed": seed}
    for name, v in values.items():
        if v is None or v == "":
            raise UserError(f"{name} is empty: enter a value")
    return ExperimentConfig(targets=list(targets), strategies=strategies, classifier=classifier, width=float(width),
                            init=init, folds=int(splits), epochs=int(epochs), patience=int(patience),
                            batch_size=int(batch), lr=float(lr), synthetic_value=float(ratio), seed=int(seed),
                            synthetic_negatives="negatives" in on, equal_steps="equal_steps" in on, doses=dose_list)


def checked_spec(policy: PathPolicy, spec: str, what: str) -> str:
    """'kind:PATH' (imagenet:, domain:, inception:) with PATH through the server's allow-list, so a
    weights field cannot open an arbitrary server file; specs without a path pass unchanged."""
    kind, sep, path = spec.partition(":")
    if not sep:
        return spec
    found = policy.resolve_existing(path, what)
    if not found.is_file():
        raise UserError(f"{what} {path.strip()!r} is a folder: give the weights file itself")
    return f"{kind}:{found}"


def progress_html(job: dict | None) -> str:
    if not job:
        return "<p>No experiment running. Configure it on the left and press <b>Run experiment</b>.</p>"
    p = job.get("progress") or {}
    frac = float(p.get("progress", 0.0))
    msg = html.escape(str(p.get("message", "")))
    err = f"<div class='mg-error'>{html.escape(job['error'])}</div>" if job.get("error") else ""
    return (f"<div><b>{html.escape(job['name'])}</b> &middot; {job['status']} &middot; {100 * frac:.0f}%"
            f"<progress max='1' value='{frac:.3f}' style='width:100%;height:10px'></progress>"
            f"<div>{msg}</div>{err}</div>")


def show_experiment(ctx: Any, exp_id: str | None):
    """(table, interactive ROC rows, ROC figure, confusion figure, notes) for one experiment."""
    from medgan_ui.evaluate.plots import confusion_figure, roc_figure
    from medgan_ui.evaluate.results import load_results, roc_long, table_rows

    if not exp_id:
        return (pd.DataFrame(columns=["target", "strategy", *TABLE_NAMES.values()]),
                pd.DataFrame(columns=["strategy", "fpr", "tpr"]), None, None, "")
    res = load_results(ctx.workspace, exp_id)
    notes = "\n".join(f"- {html.escape(n)}" for n in res.get("notes", []))
    cfg = res["config"]
    if "complete_folds" not in res:  # written before K-fold cross-validation: no table in today's columns
        return (pd.DataFrame(columns=["target", "strategy", *TABLE_NAMES.values()]),
                pd.DataFrame(columns=["strategy", "fpr", "tpr"]), None, None,
                f"**{exp_id}** was written by an older version (repeated splits); rerun it for today's statistics.")
    head = (f"**{exp_id}**: {', '.join(cfg['targets'])} · {cfg['classifier']} ({cfg['init']}) · "
            f"{html.escape(res['split_kind'])}, {len(res['complete_folds'])}/{len(res['folds'])} folds · "
            f"status {res['status']}. {html.escape(res['method'])} Sensitivity at specificity "
            f"{cfg.get('specificity', 0.9):g} in column sens@spec.")
    return (pd.DataFrame(table_rows(res)).rename(columns=TABLE_NAMES), pd.DataFrame(roc_long(res)), roc_figure(res), confusion_figure(res),
            head + ("\n\n" + notes if notes else ""))


@dataclass
class ExperimentForm:
    targets: Any
    base: Any
    synth: Any
    fields: list  # every input of config_from_form, in its order
    start: Any
    stop: Any
    status: Any
    live: Any


@dataclass
class ResultsPanel:
    exp_sel: Any
    summary: Any
    table: Any
    roc_i: Any
    roc_png: Any
    conf: Any


@dataclass
class MetricsPanel:
    runs: Any
    ext: Any
    n: Any
    go: Any
    sel: Any
    table: Any
    welch: Any
    notes: Any


def experiment_form() -> ExperimentForm:
    """Targets, strategies, classifier and CV settings, controls; start / stop and live progress."""
    targets = gr.Dropdown([], multiselect=True, label="Target finding(s)", elem_id="mg-cmp-targets",
                          allow_custom_value=True, info="One = binary classifier; several = one multi-label classifier.")
    base = gr.CheckboxGroup(BASE, value=["none", "oversample"], label="Strategies")
    synth = gr.Dropdown([], multiselect=True, label="Synthetic: gan:MODEL@PRESET, run or synthetic set",
                        allow_custom_value=True, elem_id="mg-cmp-synth",
                        info="Rare classes are topped up with its images; general labels match the real "
                             "positives. gan:MODEL[@PRESET][:STEPS] trains one generator per fold on that "
                             "fold's training patients (reused on a re-run); a run or set is refused if it "
                             "trained on a fold's validation/test patients.")
    with gr.Row():
        classifier = gr.Dropdown(["resnet18", "vgg19", "fridadar"], value="resnet18", label="Classifier",
                                 elem_id="mg-cmp-classifier")
        width = gr.Number(0.5, label="Width", elem_id="mg-cmp-width", info="Channel multiplier; 1 = published network.")
        init = gr.Dropdown(INITS, value="scratch", label="Initialisation")
    weights = gr.Textbox(label="ImageNet weights file (torchvision state dict, local path)", visible=True)
    with gr.Row():
        splits = gr.Number(5, label="Folds (K)", precision=0, elem_id="mg-cmp-folds")
        epochs = gr.Number(20, label="Max epochs", precision=0, elem_id="mg-cmp-epochs")
        patience = gr.Number(5, label="Patience", precision=0)
    with gr.Row():
        batch = gr.Number(64, label="Batch size", precision=0)
        lr = gr.Number(1e-3, label="Learning rate")
        ratio = gr.Number(1.0, label="Synthetic ratio", info="Positives reach ratio x negatives.")
        seed = gr.Number(0, label="Seed", precision=0)
    with gr.Row():
        controls = gr.CheckboxGroup(list(CONTROLS), value=[], label="Controls",
                                    info="Composite and TSTR arms use the synthetic sources above; equal steps "
                                         "gives every arm none's optimiser-step budget.")
        doses = gr.Textbox("", label="Dose sweep", placeholder="e.g. 0.25,0.5,1,2",
                           info="Each synthetic arm at each multiple of its synthetic amount.")
    with gr.Row():
        start = gr.Button("Run experiment", variant="primary", elem_id="mg-cmp-start")
        stop = gr.Button("Stop", variant="stop")
    status = gr.Markdown()
    live = gr.HTML(progress_html(None), elem_id="mg-cmp-live")
    fields = [targets, base, synth, classifier, width, init, weights, splits, epochs, patience, batch, lr, ratio, seed,
              controls, doses]
    return ExperimentForm(targets, base, synth, fields, start, stop, status, live)


def results_panel() -> ResultsPanel:
    """The chosen experiment: summary, AUC table, ROC curves, confusion matrices."""
    exp_sel = gr.Dropdown([], label="Experiment", allow_custom_value=True, elem_id="mg-cmp-exp")
    summary = gr.Markdown(elem_id="mg-cmp-summary")
    table = gr.Dataframe(label="Pooled AUC + 95 % CI, fold mean ± SD, Δ vs none + CI, p (bootstrap, "
                               "corrected t; Holm), sensitivity", interactive=False, wrap=True,
                         elem_id="mg-cmp-table")
    roc_i = gr.LinePlot(x="fpr", y="tpr", color="strategy", x_lim=[0, 1], y_lim=[0, 1],
                        label="Mean test ROC (interactive; first target)", height=400)
    gr.Markdown("**ROC curves** (per fold faint, mean bold; p = Holm-adjusted bootstrap p vs none)")
    roc_png = gr.Plot(show_label=False)
    gr.Markdown("**Confusion matrices** at the validation-chosen threshold, summed over folds")
    conf = gr.Plot(show_label=False)
    return ResultsPanel(exp_sel, summary, table, roc_i, roc_png, conf)


def metrics_panel() -> MetricsPanel:
    """Generator metrics: which runs, which extractor, how many images; the tables."""
    gr.Markdown("### Generator quality metrics (GAN and diffusion runs alike)")
    with gr.Row():
        runs = gr.Dropdown([], multiselect=True, allow_custom_value=True,
                           label="Runs / synthetic sets (2+ training seeds per model for a Welch t-test between models)")
        ext = gr.Textbox("domain", label="Feature extractor", info="domain, domain:PATH or inception:PATH (local weights)")
        n = gr.Number(500, label="Images per model", precision=0)
        go = gr.Button("Compute metrics")
    sel = gr.Dropdown([], label="Metrics result", allow_custom_value=True)
    table = gr.Dataframe(pd.DataFrame(columns=METRIC_COLUMNS), interactive=False, wrap=True,
                         label="Against held-out real images at one n: FID/KID with the real-vs-real floor, "
                               "IS (domain IS unless Inception), NN-SSIM to training (held-out real = baseline)")
    welch = gr.Dataframe(pd.DataFrame(columns=WELCH_COLUMNS), interactive=False, wrap=True,
                         label="Models compared over training seeds (Welch t-test on per-run FID and IS)")
    notes = gr.Markdown()
    return MetricsPanel(runs, ext, n, go, sel, table, welch, notes)


def build_compare_tab(ctx: Any) -> None:
    gr.Markdown("### Does synthetic augmentation help the rare-class classifier?\n"
                "Patient-level K-fold cross-validation shared by every strategy; early stopping on validation; "
                "pooled out-of-fold AUC with a patient-cluster bootstrap 95 % CI; difference against *none* with "
                "bootstrap and corrected t-test p-values (Holm-adjusted).")
    with gr.Row():
        with gr.Column(scale=2):
            form = experiment_form()
        with gr.Column(scale=3):
            res = results_panel()
    met = metrics_panel()
    jobs = gr.State({})
    wire_experiment(ctx, form, res, jobs)
    wire_metrics(ctx, form, met, jobs)
    wire_lists(ctx, form, res, met, jobs)


def wire_experiment(ctx: Any, form: ExperimentForm, res: ResultsPanel, jobs: Any) -> None:
    """Start (validated now, queued as a job), stop, and show a finished experiment."""
    @friendly
    def on_start(targets, base, synth, classifier, width, init, weights, splits, epochs, patience, batch, lr,
                 ratio, seed, controls, doses, request: gr.Request):
        cfg = config_from_form(targets, base, synth, classifier, width, init, weights, splits, epochs, patience, batch,
                               lr, ratio, seed, controls, doses)
        cfg.init = checked_spec(ctx.paths.for_request(request), cfg.init, "ImageNet weights file")
        for s in synth or []:
            plain_name(s, "synthetic run or set")  # workspace ids only, never a path
        jid = start_experiment(ctx.jobs, ctx.workspace, ctx.require_dataset(), cfg)
        return f"Experiment queued ({jid}).", {"exp": jid}

    form.start.click(on_start, form.fields, [form.status, jobs], concurrency_limit=1, api_name="compare_start")

    @friendly
    def on_stop(state):
        jid = (state or {}).get("exp")
        if not jid:
            raise UserError("no experiment was started from this page")
        return ctx.jobs.stop(jid)

    form.stop.click(on_stop, [jobs], [form.status], queue=False, api_visibility="private")

    @friendly
    def on_show(exp_id):
        return show_experiment(ctx, exp_id)

    res.exp_sel.change(on_show, [res.exp_sel], [res.table, res.roc_i, res.roc_png, res.conf, res.summary],
                       api_name="compare_show")


def wire_metrics(ctx: Any, form: ExperimentForm, met: MetricsPanel, jobs: Any) -> None:
    """Queue generator metrics; show a finished metrics result."""
    @friendly
    def on_metrics(runs, ext, n, state, request: gr.Request):
        runs = [plain_name(r, "run or synthetic set") for r in runs or []]
        ext = checked_spec(ctx.paths.for_request(request), (ext or "domain").strip(), "feature extractor weights file")
        jid = start_gan_metrics(ctx.jobs, ctx.workspace, ctx.require_dataset(), runs, extractor=ext, n=n)
        return f"Metrics queued ({jid}).", {**(state or {}), "metrics": jid}

    met.go.click(on_metrics, [met.runs, met.ext, met.n, jobs], [form.status, jobs], concurrency_limit=1,
                 api_name="compare_metrics")

    @friendly
    def on_show_metrics(mid):
        return show_metrics(ctx, mid)

    met.sel.change(on_show_metrics, [met.sel], [met.table, met.welch, met.notes], api_visibility="private")


def wire_lists(ctx: Any, form: ExperimentForm, res: ResultsPanel, met: MetricsPanel, jobs: Any) -> None:
    """The 2 s timer (live progress, lists that changed) and the Refresh button."""
    def on_tick(state):
        """Progress of this page's jobs; lists refreshed only when they changed (skip otherwise)."""
        from medgan_ui.evaluate.results import list_outputs

        state = dict(state or {})
        jid = state.get("exp")
        job = ctx.jobs.get(jid) if jid else None
        mjob = ctx.jobs.get(state["metrics"]) if state.get("metrics") else None
        exps, mets = list_outputs(ctx.workspace), list_outputs(ctx.workspace, "gan-metrics")
        exp_update = gr.update(choices=exps) if exps != state.get("exps") else gr.skip()
        if job and job["status"] not in ACTIVE and job.get("result", {}).get("id") and state.get("shown") != jid:
            exp_update = gr.update(choices=exps, value=job["result"]["id"])  # show the finished experiment
            state["shown"] = jid
        met_update = gr.update(choices=mets) if mets != state.get("mets") else gr.skip()
        if mjob and mjob["status"] not in ACTIVE and mjob.get("result", {}).get("id") and state.get("mshown") != mjob["id"]:
            met_update = gr.update(choices=mets, value=mjob["result"]["id"])
            state["mshown"] = mjob["id"]
        ds = ctx.dataset
        key = None if ds is None else f"{ds.name}:{ds.fingerprint}"
        t_update = gr.update(choices=list(ds.findings) if ds is not None else []) if key != state.get("ds") else gr.skip()
        sources = synthetic_choices(ctx)
        s_update = gr.update(choices=sources) if sources != state.get("sources") else gr.skip()
        g_update = gr.update(choices=strategy_choices(ctx)) if sources != state.get("sources") else gr.skip()
        state.update(exps=exps, mets=mets, ds=key, sources=sources)
        active = job if job and job["status"] in ACTIVE else (mjob if mjob and mjob["status"] in ACTIVE else job)
        html_out = progress_html(active)
        live_update = html_out if html_out != state.get("html") else gr.skip()
        state["html"] = html_out
        return live_update, exp_update, met_update, t_update, g_update, s_update, state

    gr.Timer(TIMER_S).tick(on_tick, [jobs], [form.live, res.exp_sel, met.sel, form.targets, form.synth, met.runs, jobs],
                           show_progress="hidden", api_visibility="private")

    def on_refresh():
        from medgan_ui.evaluate.results import list_outputs

        ds = ctx.dataset
        found = list(ds.findings) if ds is not None else []
        choices = synthetic_choices(ctx)
        return (gr.update(choices=found), gr.update(choices=strategy_choices(ctx)), gr.update(choices=choices),
                gr.update(choices=list_outputs(ctx.workspace)))

    refresh = gr.Button("Refresh lists (findings of the loaded data, runs, experiments)", size="sm")
    refresh.click(on_refresh, None, [form.targets, form.synth, met.runs, res.exp_sel], queue=False,
                  api_visibility="private")
