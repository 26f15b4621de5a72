"""Reader-study figures: per-reader ROC curves with the reader-averaged curve, a forest plot of
per-reader AUCs with their CIs (and the OR reader average), and finding recognition real vs synthetic.

Built on matplotlib.figure.Figure (no pyplot state), so handlers in threads can draw safely.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from medgan_ui.workspace import atomic_write_bytes


TURING_AXES = ("real images called synthetic (1 - specificity)", "synthetic images called synthetic (sensitivity)",
               "AUC (95% CI): 0.5 = synthetic indistinguishable from real")
GENERIC_AXES = ("false positive fraction", "true positive fraction", "AUC (95% CI)")


def draw_roc(ax: Any, roc: dict[str, Any], auc: dict[str, Any] | None, per_reader: dict[str, Any],
             labels: tuple[str, str, str] = TURING_AXES) -> None:
    for name, c in roc["readers"].items():
        a = per_reader.get(name, {}).get("auc")
        ax.plot(c["fpr"], c["tpr"], lw=1, alpha=0.6, marker=".", ms=3, label=f"{name}" + (f" (AUC {a:.2f})" if a is not None else ""))
    avg = roc["average"]
    ax.plot(avg["fpr"], avg["tpr"], color="k", lw=2.5,
            label="reader average" + (f" (AUC {auc['estimate']:.2f})" if auc else ""))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title("ROC per reader and reader-averaged")
    ax.legend(fontsize=7, loc="lower right")


def draw_forest(ax: Any, per_reader: dict[str, Any], auc: dict[str, Any] | None, margin: float | None,
                labels: tuple[str, str, str] = TURING_AXES) -> None:
    names = list(per_reader)
    y = np.arange(len(names), 0, -1, dtype=float)
    if margin:
        ax.axvspan(0.5 - margin, 0.5 + margin, color="#55A868", alpha=0.15, label=f"equivalence ±{margin:g}")
    ax.axvline(0.5, color="grey", ls="--", lw=1, label="chance")
    for yi, name in zip(y, names):
        p = per_reader[name]
        ax.errorbar(p["auc"], yi, xerr=[[p["auc"] - p["ci95"][0]], [p["ci95"][1] - p["auc"]]], fmt="s", color="#4C72B0", capsize=3)
    ticks = list(names)
    if auc:
        lo, hi = auc["ci95"]
        ax.fill([lo, auc["estimate"], hi, auc["estimate"]], [0, 0.18, 0, -0.18], color="k")
        ticks.append("reader average (OR)")
        y = np.append(y, 0.0)
    ax.set_yticks(y, ticks)
    ax.set_xlim(0, 1)
    ax.set_xlabel(labels[2])
    ax.set_title("Per-reader AUC (DeLong) and reader average")
    ax.legend(fontsize=7, loc="lower left")


def draw_recognition(ax: Any, findings: dict[str, Any]) -> None:
    rec = {k: v for k, v in findings.get("recognition", {}).items() if v["real"]["n"] or v["synthetic"]["n"]}
    x = np.arange(len(rec))
    for off, kind, col in ((-0.2, "real", "#55A868"), (0.2, "synthetic", "#C44E52")):
        vals = [v[kind]["p"] or 0.0 for v in rec.values()]
        err = np.array([[v[kind]["p"] - v[kind]["ci95"][0], v[kind]["ci95"][1] - v[kind]["p"]] if v[kind]["ci95"] else [0, 0]
                        for v in rec.values()]).T
        err = np.clip(err, 0, None)  # a Wilson bound at p = 0 or 1 can sit 1e-17 past p
        ax.bar(x + off, vals, width=0.4, color=col, label=kind, yerr=err if len(vals) else None, capsize=3)
    ax.set_xticks(x, list(rec), rotation=15, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("requested finding named (Wilson 95% CI)")
    ax.set_title("Finding recognised: real vs synthetic")
    ax.legend(fontsize=8)


def draw_generators(ax: Any, gen: dict[str, Any], margin: float | None) -> None:
    """Reader-averaged AUC per generator with its OR 95% CI (lower = harder to tell from real)."""
    names = list(gen["auc"])
    y = np.arange(len(names), 0, -1, dtype=float)
    if margin:
        ax.axvspan(0.5 - margin, 0.5 + margin, color="#55A868", alpha=0.15)
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    for yi, name in zip(y, names):
        a = gen["auc"][name]
        ax.errorbar(a["estimate"], yi, xerr=[[a["estimate"] - a["ci95"][0]], [a["ci95"][1] - a["estimate"]]],
                    fmt="D", color="k", capsize=4)
    ax.set_yticks(y, names)
    ax.set_ylim(0.3, len(names) + 0.7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("reader-averaged AUC (OR 95% CI); lower = harder to tell from real")
    ax.set_title(f"Generators (OR F-test p = {gen['test']['p']:.3g})")


def roc_figure(result: dict[str, Any]) -> Figure:
    t = result["turing"]
    fig = Figure(figsize=(5.5, 5.5), dpi=100, layout="constrained")
    ax = fig.subplots()
    if t.get("roc"):
        draw_roc(ax, t["roc"], t.get("auc"), t.get("per_reader", {}))
    else:
        ax.text(0.5, 0.5, "no ROC yet", ha="center")
    return fig


def forest_figure(result: dict[str, Any]) -> Figure:
    t = result["turing"]
    per = t.get("per_reader", {})
    fig = Figure(figsize=(6, 1.6 + 0.4 * len(per)), dpi=100, layout="constrained")
    ax = fig.subplots()
    if per:
        draw_forest(ax, per, t.get("auc"), t.get("margin"))
    else:
        ax.text(0.5, 0.5, "no reader AUC yet", ha="center")
    return fig


def summary_figure(result: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> Figure:
    """ROC, forest plot and finding recognition side by side (what `study analyze --figure` writes)."""
    t = result["turing"]
    has_rec = bool(result.get("findings", {}).get("recognition"))
    has_gen = bool((t.get("generators") or {}).get("auc"))
    panels = 2 + has_rec + has_gen
    fig = Figure(figsize=(6 * panels, 6), dpi=100, layout="constrained")
    axes = fig.subplots(1, panels)
    if t.get("roc"):
        draw_roc(axes[0], t["roc"], t.get("auc"), t.get("per_reader", {}))
    if t.get("per_reader"):
        draw_forest(axes[1], t["per_reader"], t.get("auc"), t.get("margin"))
    if has_gen:
        draw_generators(axes[2], t["generators"], t.get("margin"))
    if has_rec:
        draw_recognition(axes[-1], result["findings"])
    fig.suptitle(t.get("conclusion", ""), wrap=True, fontsize=9)
    return fig


def mrmc_figure(result: dict[str, Any]) -> Figure:
    """For `analyze --mrmc-csv`: one row per treatment, ROC with reader average and forest plot."""
    blocks = result["treatments"]
    fig = Figure(figsize=(12, 5.5 * len(blocks)), dpi=100, layout="constrained")
    axes = fig.subplots(len(blocks), 2, squeeze=False)
    for (name, b), (ax_roc, ax_forest) in zip(blocks.items(), axes):
        axes_text = TURING_AXES if result.get("turing_wording") else GENERIC_AXES
        draw_roc(ax_roc, b["roc"], b["auc"], b["per_reader"], axes_text)
        ax_roc.set_title(f"{name}: ROC per reader and reader-averaged")
        draw_forest(ax_forest, b["per_reader"], b["auc"], b.get("margin"), axes_text)
        ax_forest.set_title(f"{name}: per-reader AUC (DeLong) and reader average")
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())
