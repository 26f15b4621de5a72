"""Statistics of a visual Turing test, per reader and pooled.

Conventions (stated in every output so a reader of the numbers can check them):
  * "synthetic" is the positive class: sensitivity = synthetic images called synthetic,
    specificity = real images called real.
  * Reader ROC AUC needs one ordinal score per case where higher = "more synthetic":
      - confidence studies: +c for a synthetic call with confidence c, -c for a real call
        (a 10-level scale from "surely real" to "surely synthetic");
      - realism studies (1 = clearly synthetic .. 5 = clearly real): -realism; the call is not used.
  * Accuracy, AUC and finding accuracy use first readings only; repeated cases feed only the
    intra-reader consistency numbers.
  * The pooled binomial test treats every rating as independent, which ratings of the same case by
    several readers are not; the per-reader tests are the ones to quote.
"""
from __future__ import annotations

import io
import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medgan_ui.security.csv_cells import SafeDictWriter
from medgan_ui.study.store import StudyStore

NO_FINDING = "No Finding"
CSV_FIELDS = ["reader", "case_id", "truth", "source", "class", "findings", "repeat_of", "call", "score",
              "finding", "finding_correct", "comment", "ms", "created", "updated"]


# ---- small, checkable building blocks --------------------------------------------------------------
def signed_score(call: str, score: int, score_kind: str) -> float:
    """One number per rating, higher = more synthetic (see module docstring)."""
    if score_kind == "confidence":
        return float(score) if call == "synthetic" else -float(score)
    return -float(score)


def finding_correct(chosen: str | None, findings: list[str]) -> bool | None:
    """Is the reader's finding on the image? None when the reader gave none."""
    if not chosen:
        return None
    return (not findings) if chosen == NO_FINDING else chosen in findings


def fleiss_kappa(table: np.ndarray) -> float:
    """Fleiss' kappa from a [cases, categories] count table with the same number of raters per case."""
    table = np.asarray(table, dtype=float)
    n_raters = table.sum(axis=1)
    if table.shape[0] == 0 or not np.allclose(n_raters, n_raters[0]) or n_raters[0] < 2:
        raise ValueError("Fleiss' kappa needs >= 1 case and the same number (>= 2) of raters per case")
    n = n_raters[0]
    p_j = table.sum(axis=0) / table.sum()  # share of all assignments per category
    p_i = (np.square(table).sum(axis=1) - n) / (n * (n - 1))  # agreement within each case
    p_bar, p_e = p_i.mean(), np.square(p_j).sum()
    if np.isclose(p_e, 1.0):
        return float("nan")  # everyone used one category: agreement beyond chance is undefined
    return float((p_bar - p_e) / (1.0 - p_e))


def _binom(k: int, n: int) -> dict[str, Any]:
    from scipy.stats import binomtest

    if n == 0:
        return {"correct": 0, "n": 0, "accuracy": None, "p_value": None, "ci95": None}
    res = binomtest(k, n, 0.5, alternative="two-sided")
    ci = res.proportion_ci(confidence_level=0.95, method="exact")
    return {"correct": k, "n": n, "accuracy": k / n, "p_value": float(res.pvalue), "ci95": [float(ci.low), float(ci.high)]}


def _auc(truth: list[str], scores: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    y = [t == "synthetic" for t in truth]
    if len(set(y)) < 2:
        return None
    return float(roc_auc_score(y, scores))


def call_stats(rows: list[dict[str, Any]], score_kind: str) -> dict[str, Any]:
    """Accuracy + binomial test, sensitivity/specificity, AUC, finding accuracy, time, for some ratings."""
    truth = [r["truth"] for r in rows]
    calls = [r["call"] for r in rows]
    k = sum(t == c for t, c in zip(truth, calls))
    tp = sum(t == c == "synthetic" for t, c in zip(truth, calls))
    tn = sum(t == c == "real" for t, c in zip(truth, calls))
    n_syn, n_real = truth.count("synthetic"), truth.count("real")
    out = _binom(k, len(rows))
    out.update({
        "sensitivity": tp / n_syn if n_syn else None,
        "specificity": tn / n_real if n_real else None,
        "auc": _auc(truth, [signed_score(r["call"], r["score"], score_kind) for r in rows]),
        "finding_accuracy": {},
        "mean_ms": float(np.mean([r["ms"] for r in rows if r["ms"] is not None])) if any(r["ms"] is not None for r in rows) else None,
        "median_ms": float(np.median([r["ms"] for r in rows if r["ms"] is not None])) if any(r["ms"] is not None for r in rows) else None,
    })
    for kind in ("real", "synthetic", "all"):
        graded = [finding_correct(r["finding"], r["labels"].get("findings", [])) for r in rows if kind in ("all", r["truth"])]
        graded = [g for g in graded if g is not None]
        out["finding_accuracy"][kind] = {"correct": int(sum(graded)), "n": len(graded),
                                         "accuracy": sum(graded) / len(graded) if graded else None}
    return out


# ---- agreement -----------------------------------------------------------------------------------------
def _by_case(rows: list[dict[str, Any]], field: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in rows:
        if r[field] is not None:
            out[r["reader"]][r["case_id"]] = r[field]
    return out


def agreement(rows: list[dict[str, Any]], field: str) -> dict[str, Any]:
    """Cohen's kappa for each reader pair and Fleiss' kappa over the cases every reader rated."""
    from sklearn.metrics import cohen_kappa_score

    per = _by_case(rows, field)
    readers = sorted(per)
    pairs = []
    for a, b in itertools.combinations(readers, 2):
        common = sorted(set(per[a]) & set(per[b]))
        if len(common) < 2:
            continue
        xa, xb = [per[a][c] for c in common], [per[b][c] for c in common]
        agree = sum(x == y for x, y in zip(xa, xb)) / len(common)
        kappa = float(cohen_kappa_score(xa, xb)) if len(set(xa) | set(xb)) > 1 else None
        if kappa is not None and np.isnan(kappa):
            kappa = None
        pairs.append({"readers": [a, b], "n": len(common), "agreement": agree, "cohen_kappa": kappa})
    fleiss = None
    # Fleiss needs the same raters on every case: use the readers who answered every case, so one
    # reader who has just started does not shrink the table to a handful of cases
    n_all = len({c for r in readers for c in per[r]})
    complete = [r for r in readers if len(per[r]) == n_all]
    used = complete if len(complete) >= 2 else readers
    all_cases = set.intersection(*(set(per[r]) for r in used)) if len(used) >= 2 else set()
    if all_cases:
        cats = sorted({v for r in used for v in per[r].values()})
        table = np.array([[sum(per[r][c] == cat for r in used) for cat in cats] for c in sorted(all_cases)])
        k = fleiss_kappa(table)
        fleiss = None if np.isnan(k) else k
    kappas = [p["cohen_kappa"] for p in pairs if p["cohen_kappa"] is not None]
    return {"pairs": pairs, "mean_cohen_kappa": float(np.mean(kappas)) if kappas else None,
            "fleiss_kappa": fleiss, "fleiss_cases": len(all_cases), "fleiss_readers": used if all_cases else [],
            "readers": readers}


def intra_reader(rows: list[dict[str, Any]], repeat_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Same image read twice: how often the call agrees, and how far the scores move."""
    first = {(r["reader"], r["case_id"]): r for r in rows}
    out: dict[str, Any] = {}
    for r in repeat_rows:
        a = first.get((r["reader"], r["repeat_of"]))
        if a is None:
            continue
        d = out.setdefault(r["reader"], {"n": 0, "same_call": 0, "abs_score_diff": []})
        d["n"] += 1
        d["same_call"] += int(a["call"] == r["call"])
        d["abs_score_diff"].append(abs(int(a["score"]) - int(r["score"])))
    return {name: {"n": d["n"], "call_agreement": d["same_call"] / d["n"],
                   "mean_abs_score_diff": float(np.mean(d["abs_score_diff"]))} for name, d in out.items()}


# ---- the whole analysis ------------------------------------------------------------------------------
def analyze_rows(rows: list[dict[str, Any]], score_kind: str) -> dict[str, Any]:
    firsts = [r for r in rows if not r.get("repeat_of")]
    repeats = [r for r in rows if r.get("repeat_of")]
    readers = sorted({r["reader"] for r in rows})
    per_reader = {name: call_stats([r for r in firsts if r["reader"] == name], score_kind) for name in readers}
    per_source: dict[str, dict[str, Any]] = {}
    for src in sorted({r["labels"].get("source_name", r["truth"]) for r in firsts}):
        sel = [r for r in firsts if r["labels"].get("source_name", r["truth"]) == src]
        per_source[src] = {"n": len(sel), "truth": sel[0]["truth"], "mean_score": float(np.mean([r["score"] for r in sel])),
                           "called_synthetic": sum(r["call"] == "synthetic" for r in sel) / len(sel)}
    return {
        "score_kind": score_kind,
        "conventions": {"positive": "synthetic",
                        "auc_score": "+c synthetic call / -c real call" if score_kind == "confidence" else "-realism",
                        "repeats": "used only for intra-reader consistency"},
        "n_ratings": len(rows), "n_readers": len(readers), "n_cases": len({r["case_id"] for r in firsts}),
        "per_reader": per_reader,
        "pooled": call_stats(firsts, score_kind) if firsts else None,
        "agreement_call": agreement(firsts, "call"),
        "agreement_finding": agreement(firsts, "finding"),
        "intra_reader": intra_reader(firsts, repeats),
        "per_source": per_source,
    }


def analyze(store: StudyStore, study_id: str) -> dict[str, Any]:
    study = store.study(study_id)
    out = analyze_rows(store.ratings_rows(study_id), study["settings"].get("score_kind", "realism"))
    out["study"] = {"id": study["id"], "name": study["name"], "status": study["status"]}
    return out


def turing_test_block(result: dict[str, Any]) -> dict[str, Any]:
    """Compact summary for a model card: readers, accuracy, AUC, agreement."""
    pooled = result.get("pooled") or {}
    return {
        "readers": result["n_readers"], "cases": result["n_cases"], "ratings": result["n_ratings"],
        "accuracy": pooled.get("accuracy"), "accuracy_ci95": pooled.get("ci95"), "p_value_vs_chance": pooled.get("p_value"),
        "auc": pooled.get("auc"), "sensitivity": pooled.get("sensitivity"), "specificity": pooled.get("specificity"),
        "per_reader": [{"reader": k, "accuracy": v["accuracy"], "auc": v["auc"], "p_value": v["p_value"]}
                       for k, v in result["per_reader"].items()],
        "agreement": {"fleiss_kappa_call": result["agreement_call"]["fleiss_kappa"],
                      "mean_cohen_kappa_call": result["agreement_call"]["mean_cohen_kappa"],
                      "fleiss_kappa_finding": result["agreement_finding"]["fleiss_kappa"]},
        "finding_accuracy": {k: v["accuracy"] for k, v in (pooled.get("finding_accuracy") or {}).items()},
        "conventions": result["conventions"],
    }


# ---- exports ---------------------------------------------------------------------------------------------
def ratings_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = SafeDictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")  # reader text: no formulas
    w.writeheader()
    for r in rows:
        fc = finding_correct(r["finding"], r["labels"].get("findings", []))
        w.writerow({**{k: r.get(k) for k in CSV_FIELDS if k in r}, "class": r["labels"].get("class"),
                    "findings": "|".join(r["labels"].get("findings", [])), "repeat_of": r.get("repeat_of") or "",
                    "finding_correct": "" if fc is None else int(fc), "finding": r["finding"] or ""})
    return buf.getvalue()


def summary_table(result: dict[str, Any]) -> list[list[Any]]:
    """Rows for a UI table: reader, n, accuracy, p, sensitivity, specificity, AUC, finding acc real/synthetic."""
    def fmt(x: Any, nd: int = 3) -> Any:
        return None if x is None else round(float(x), nd)

    out = []
    for name, s in list(result["per_reader"].items()) + ([("(pooled)", result["pooled"])] if result.get("pooled") else []):
        fa = s["finding_accuracy"]
        out.append([name, s["n"], fmt(s["accuracy"]), fmt(s["p_value"], 4), fmt(s["sensitivity"]), fmt(s["specificity"]),
                    fmt(s["auc"]), fmt(fa["real"]["accuracy"]), fmt(fa["synthetic"]["accuracy"]), fmt(s["median_ms"], 0)])
    return out


SUMMARY_HEADERS = ["reader", "n", "accuracy", "p (vs 50%)", "sensitivity", "specificity", "AUC",
                   "finding acc. real", "finding acc. synthetic", "median ms"]


def summary_figure(result: dict[str, Any], rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Accuracy with 95% CIs vs chance, ROC per reader, finding accuracy real vs synthetic, score by source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    from medgan_ui.workspace import atomic_write_bytes

    fig, ax = plt.subplots(2, 2, figsize=(10, 8))
    names = list(result["per_reader"]) + (["pooled"] if result.get("pooled") else [])
    stats = list(result["per_reader"].values()) + ([result["pooled"]] if result.get("pooled") else [])
    acc = [s["accuracy"] or 0 for s in stats]
    err = np.array([[a - s["ci95"][0], s["ci95"][1] - a] if s["ci95"] else [0, 0] for a, s in zip(acc, stats)]).T
    ax[0, 0].bar(names, acc, yerr=err if len(acc) else None, color="#4C72B0", capsize=4)
    ax[0, 0].axhline(0.5, color="k", ls="--", lw=1, label="chance")
    ax[0, 0].set_ylim(0, 1)
    ax[0, 0].set_title("Real vs synthetic accuracy (95% CI)")
    ax[0, 0].legend()
    firsts = [r for r in rows if not r.get("repeat_of")]
    for name in result["per_reader"]:
        sel = [r for r in firsts if r["reader"] == name]
        y = [r["truth"] == "synthetic" for r in sel]
        if len(set(y)) == 2:
            fpr, tpr, _ = roc_curve(y, [signed_score(r["call"], r["score"], result["score_kind"]) for r in sel])
            ax[0, 1].plot(fpr, tpr, label=f"{name} (AUC {result['per_reader'][name]['auc']:.2f})")
    ax[0, 1].plot([0, 1], [0, 1], "k--", lw=1)
    ax[0, 1].set_xlabel("1 - specificity (real called synthetic)")
    ax[0, 1].set_ylabel("sensitivity (synthetic called synthetic)")
    ax[0, 1].set_title("Reader ROC")
    if result["per_reader"]:
        ax[0, 1].legend(fontsize=8)
    x = np.arange(len(names))
    for off, kind, col in ((-0.2, "real", "#55A868"), (0.2, "synthetic", "#C44E52")):
        vals = [s["finding_accuracy"][kind]["accuracy"] or 0 for s in stats]
        ax[1, 0].bar(x + off, vals, width=0.4, label=kind, color=col)
    ax[1, 0].set_xticks(x, names)
    ax[1, 0].set_ylim(0, 1)
    ax[1, 0].set_title("Finding accuracy: real vs synthetic")
    ax[1, 0].legend()
    src = result["per_source"]
    ax[1, 1].bar(list(src), [v["mean_score"] for v in src.values()], color="#8172B2")
    ax[1, 1].set_ylim(0, 5)
    ax[1, 1].set_title(f"Mean {result['score_kind']} score per source")
    ax[1, 1].tick_params(axis="x", labelrotation=15, labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=True, default=float)
