"""Matplotlib figures for experiments: ROC curves overlaid per strategy, confusion matrices.

Figures are built with matplotlib.figure.Figure (no pyplot state), so background jobs in threads
can draw safely; the app shows the same Figure objects in gr.Plot.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from medgan_ui.workspace import atomic_write_bytes


def roc_figure(results: dict[str, Any]) -> Figure:
    targets = [t for t in results["config"]["targets"] if t in results["targets"]]
    n = len(results["config"]["strategies"])
    fig = Figure(figsize=(4.8 * len(targets), 4.9 + 0.18 * n), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(targets), squeeze=False)[0]
    for ax, target in zip(axes, targets):
        per = results["targets"][target]
        for s in [s for s in results["config"]["strategies"] if s in per]:  # configured order, not JSON's
            e = per[s]
            for p in e["per_fold"]:  # faint per-fold curves show the spread between folds
                ax.plot(p["roc"]["fpr"], p["roc"]["tpr"], lw=0.6, alpha=0.25, color=_color(results, s))
            lo, hi = e["auc_pooled_ci95"]
            label = f"{s}: AUC {e['auc_pooled']:.3f} [{lo:.3f}, {hi:.3f}]"
            d = e.get("vs_none")
            if d is not None:
                label += f" (p={d.get('p_bootstrap_holm', d['p_bootstrap']):.3g})"
            ax.plot(e["roc_mean"]["fpr"], e["roc_mean"]["tpr"], lw=2, color=_color(results, s), label=label)
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="grey")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity (FPR)", ylabel="sensitivity (TPR)",
               title=f"{target}: test ROC ({len(results.get('complete_folds', []))} folds)")
        ax.set_aspect("equal")
        # below the axes: run ids make long labels that would hide the curves
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, frameon=False)
    return fig


def confusion_figure(results: dict[str, Any]) -> Figure:
    targets = [t for t in results["config"]["targets"] if t in results["targets"]]
    strategies = [s for s in results["config"]["strategies"] if any(s in results["targets"][t] for t in targets)]
    fig = Figure(figsize=(2.4 * len(strategies) + 0.5, 2.4 * len(targets) + 0.4), dpi=110, layout="constrained")
    axes = fig.subplots(len(targets), len(strategies), squeeze=False)
    for i, t in enumerate(targets):
        for j, s in enumerate(strategies):
            ax = axes[i][j]
            e = results["targets"][t].get(s)
            ax.set_xticks([0, 1], ["pred −", "pred +"], fontsize=7)
            ax.set_yticks([0, 1], ["true −", "true +"], fontsize=7)
            if e is None:
                continue
            cm = e["confusion_sum"]
            ax.imshow([[cm[0][0] / max(sum(cm[0]), 1), cm[0][1] / max(sum(cm[0]), 1)],
                       [cm[1][0] / max(sum(cm[1]), 1), cm[1][1] / max(sum(cm[1]), 1)]],
                      cmap="Blues", vmin=0, vmax=1)
            for r in range(2):
                for c in range(2):
                    dark = cm[r][c] / max(sum(cm[r]), 1) > 0.6  # white numbers on dark cells
                    ax.text(c, r, str(cm[r][c]), ha="center", va="center", fontsize=9,
                            color="white" if dark else "black")
            ax.set_title(f"{t} · {s}\nsens {e['sensitivity_mean']:.2f} spec {e['specificity_mean']:.2f}", fontsize=8)
    return fig


def _color(results: dict[str, Any], strategy: str) -> str:
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
    return palette[results["config"]["strategies"].index(strategy) % len(palette)]


def save_figure(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def save_roc(results: dict[str, Any], path: Path) -> Path:
    return save_figure(roc_figure(results), path)


def save_confusion(results: dict[str, Any], path: Path) -> Path:
    return save_figure(confusion_figure(results), path)
