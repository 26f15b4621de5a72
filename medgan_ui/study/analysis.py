"""Statistics of a visual Turing test: the MRMC ROC analysis (`turing`), findings on real vs
synthetic (`findings`), agreement between and within readers, and the exports.

Conventions (stated in every output so a reader of the numbers can check them):
  * "synthetic" is the positive class: sensitivity = synthetic images called synthetic,
    specificity = real images called real.
  * The rating is the reader's confidence that the image is synthetic, defined once in
    `turing.turing_rating` (10 levels for confidence studies, 5 for realism studies).
  * Accuracy, AUC and finding answers use first readings only; repeated cases feed only the
    intra-reader consistency numbers.
  * No AUC pools readers' ratings (each reader has his or her own scale); the reader-averaged AUC
    and its CI come from the Obuchowski-Rockette analysis. Accuracy against 0.5 is tested with the
    exact binomial test only when real and synthetic cases are balanced.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medgan_ui.security.csv_cells import SafeDictWriter
from medgan_ui.study import turing
from medgan_ui.study.findings import finding_stats
from medgan_ui.study.store import StudyStore

NO_FINDING = "No Finding"
# MRMC long format first (MRMCaov / iMRMC read these five plus time), then everything else we know.
# truth 1 = synthetic; rating = turing.turing_rating; time in seconds. Real cases shared by several
# generators appear once under each generator's treatment; rows with repeat_of are re-readings.
CSV_FIELDS = ["reader", "treatment", "case", "truth", "rating", "time", "call", "score", "source", "class", "findings",
              "finding", "finding_correct", "repeat_of", "comment", "created", "updated"]


# ---- small, checkable building blocks --------------------------------------------------------------
def signed_score(call: str, score: int, score_kind: str) -> float:
    """One number per rating, higher = more synthetic: turing.turing_rating (kept under its old name)."""
    return float(turing.turing_rating(call, score, score_kind))


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
    if 2 * n_syn != len(rows):  # unbalanced: accuracy vs 0.5 tests nothing (all-"synthetic" scores n_syn/n)
        out.update({"p_value": None, "binomial_note": "not tested: real and synthetic not balanced"})
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
def analyze_rows(rows: list[dict[str, Any]], score_kind: str, margin: float = turing.DEFAULT_MARGIN,
                 classes: list[str] | None = None, n_perm: int = 2000) -> dict[str, Any]:
    firsts = [r for r in rows if not r.get("repeat_of")]
    repeats = [r for r in rows if r.get("repeat_of")]
    readers = sorted({r["reader"] for r in rows})
    per_reader = {name: call_stats([r for r in firsts if r["reader"] == name], score_kind) for name in readers}
    per_source: dict[str, dict[str, Any]] = {}
    for src in sorted({r["labels"].get("source_name", r["truth"]) for r in firsts}):
        sel = [r for r in firsts if r["labels"].get("source_name", r["truth"]) == src]
        per_source[src] = {"n": len(sel), "truth": sel[0]["truth"], "mean_score": float(np.mean([r["score"] for r in sel])),
                           "called_synthetic": sum(r["call"] == "synthetic" for r in sel) / len(sel)}
    pooled = call_stats(firsts, score_kind) if firsts else None
    if pooled:
        pooled["auc"] = None  # readers' rating scales differ: see turing["auc"] for the reader-averaged AUC
        pooled["p_value"] = None  # readers' calls on the same images are not independent: per-reader tests only
        pooled["binomial_note"] = "not pooled over readers; see the per-reader tests and turing['auc']"
    if classes is None:
        classes = sorted({r["labels"].get("class") for r in firsts if r["labels"].get("class")})
    return {
        "score_kind": score_kind,
        "conventions": {"positive": "synthetic", "rating": turing._scale_text(score_kind),
                        "repeats": "used only for intra-reader consistency",
                        "pooled": "descriptive only; no pooled AUC (readers' scales differ)"},
        "n_ratings": len(rows), "n_readers": len(readers), "n_cases": len({r["case_id"] for r in firsts}),
        "turing": turing.turing_analysis(rows, score_kind, margin, n_perm=n_perm),
        "findings": finding_stats(rows, classes),
        "per_reader": per_reader,
        "pooled": pooled,
        "agreement_call": agreement(firsts, "call"),
        "agreement_finding": agreement(firsts, "finding"),
        "intra_reader": intra_reader(firsts, repeats),
        "per_source": per_source,
    }


def analyze(store: StudyStore, study_id: str) -> dict[str, Any]:
    study = store.study(study_id)
    settings = study["settings"]
    out = analyze_rows(store.ratings_rows(study_id), settings.get("score_kind", "realism"),
                       float(settings.get("equivalence_margin", turing.DEFAULT_MARGIN)), settings.get("findings"))
    out["study"] = {"id": study["id"], "name": study["name"], "status": study["status"]}
    return out


def turing_test_block(result: dict[str, Any]) -> dict[str, Any]:
    """Compact summary for a model card: the conclusion, reader-averaged AUC, equivalence, agreement."""
    t = result["turing"]
    auc, eq = t.get("auc") or {}, t.get("equivalence") or {}
    return {
        "readers": result["n_readers"], "cases": result["n_cases"], "ratings": result["n_ratings"],
        "conclusion": t["conclusion"],
        "auc": auc.get("estimate"), "auc_ci95": auc.get("ci95"), "p_value_vs_chance": auc.get("p_vs_chance"),
        "auc_method": auc.get("method"),
        "equivalence": {"margin": t["margin"], "ci90": eq.get("ci90"), "equivalent": eq.get("equivalent"), "p": eq.get("p")},
        "balanced_accuracy": (t.get("balanced_accuracy") or {}).get("balanced_accuracy"),
        "balanced_accuracy_p_perm": (t.get("balanced_accuracy") or {}).get("p_perm"),
        "binomial": t.get("binomial"),
        "accuracy": (result.get("pooled") or {}).get("accuracy"),
        "sensitivity": (result.get("pooled") or {}).get("sensitivity"),
        "specificity": (result.get("pooled") or {}).get("specificity"),
        "per_reader": [{"reader": k, "auc": v["auc"], "auc_ci95": v["ci95"], "balanced_accuracy": v["balanced_accuracy"],
                        "p_perm": v["p_perm"]} for k, v in (t.get("per_reader") or {}).items()],
        "generators": (t.get("generators") or {}).get("conclusion"),
        "agreement": {"fleiss_kappa_call": result["agreement_call"]["fleiss_kappa"],
                      "mean_cohen_kappa_call": result["agreement_call"]["mean_cohen_kappa"],
                      "fleiss_kappa_finding": result["agreement_finding"]["fleiss_kappa"]},
        "finding_recognition": {k: v.get("text") for k, v in result["findings"]["recognition"].items() if v.get("text")},
        "conventions": result["conventions"],
    }


def analyze_mrmc_file(path: str | Path, cov_method: str = "DeLong", readers: str = "random", cases: str = "random",
                      margin: float = turing.DEFAULT_MARGIN) -> dict[str, Any]:
    """Any MRMC long-format CSV (ours or MRMCaov's): the OR analysis, every treatment against 0.5 with
    equivalence, per-reader DeLong CIs. Turing wording only for our own exports (they have a `call` column)."""
    from medgan_ui.study import mrmc

    data = mrmc.read_mrmc_csv(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        ours = "call" in (next(csv.reader(fh), None) or [])
    if readers == "random" and len(set(data.reader.tolist())) < 2:
        readers = "fixed"
    res = mrmc.or_analysis(data, cov_method, readers, cases)
    res.pop("cov")
    single = mrmc.single_reader(data)
    per_t: dict[str, Any] = {}
    for tr in res["treatments"]:
        sel = data.treatment == tr
        sub = mrmc.MRMCData(data.reader[sel], data.treatment[sel], data.case[sel], data.truth[sel], data.rating[sel])
        n_pos, n_neg = len(set(sub.case[sub.truth == 1].tolist())), len(set(sub.case[sub.truth == 0].tolist()))
        who = f"{len(set(sub.reader.tolist()))} readers, {n_pos} positive and {n_neg} negative cases"
        block = turing.vs_chance(sub, margin, who, cov_method, readers, cases)
        if not ours:
            a = block["auc"]
            eq = block["equivalence"]
            block["conclusion"] = (f"Treatment {tr}: reader-averaged AUC {a['estimate']:.3f} (95% CI {a['ci95'][0]:.3f} to "
                                   f"{a['ci95'][1]:.3f}, p = {a['p_vs_chance']:.4g} vs 0.5; equivalence to 0.5 within "
                                   f"±{margin:g} {'shown' if eq['equivalent'] else 'not shown'}; {who}; {a['method']}).")
        block.update({"margin": margin, "roc": turing.roc_curves(data, tr),
                      "per_reader": {p["reader"]: {"auc": p["estimate"], "ci95": p["ci"], "se": p["se"]}
                                     for p in single if p["treatment"] == str(tr)}})
        per_t[str(tr)] = block
    lines = [b["conclusion"] for b in per_t.values()]
    if "test" in res:
        t = res["test"]
        lines.append(f"Equal AUC across treatments ({res['reader_type']} readers, {res['case_type']} cases, {cov_method}): "
                     + (f"F = {t['F']:.3f}, df = {t['df1']}, {t['df2']:.2f}, p = {t['p']:.4g}." if t["statistic"] == "F"
                        else f"X2 = {t['X2']:.3f}, df = {t['df']}, p = {t['p']:.4g}."))
        lines += [f"{d['comparison']}: {d['estimate']:+.4f} (95% CI {d['ci'][0]:+.4f} to {d['ci'][1]:+.4f}, p = {d['p']:.4g})"
                  for d in res["differences"]]
    return {"file": str(path), "or": res, "per_reader": single, "treatments": per_t, "conclusion": " ".join(lines),
            "turing_wording": ours}


# ---- exports ---------------------------------------------------------------------------------------------
def ratings_csv(rows: list[dict[str, Any]], score_kind: str = "realism") -> str:
    """Every rating in the MRMC long format (see CSV_FIELDS); `medgan study analyze --mrmc-csv` reads it back."""
    gens = sorted({turing.generator_of(r) for r in rows if r["truth"] == "synthetic"})
    buf = io.StringIO()
    w = SafeDictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")  # reader text: no formulas
    w.writeheader()
    for r in rows:
        fc = finding_correct(r["finding"], r["labels"].get("findings", []))
        row = {"reader": r["reader"], "case": r["case_id"], "truth": int(r["truth"] == "synthetic"),
               "rating": turing.turing_rating(r["call"], r["score"], score_kind),
               "time": "" if r.get("ms") is None else round(r["ms"] / 1000.0, 3), "call": r["call"], "score": r["score"],
               "source": r["labels"].get("source_name", r["truth"]), "class": r["labels"].get("class"),
               "findings": "|".join(r["labels"].get("findings", [])), "finding": r["finding"] or "",
               "finding_correct": "" if fc is None else int(fc), "repeat_of": r.get("repeat_of") or "",
               "comment": r.get("comment", ""), "created": r.get("created"), "updated": r.get("updated")}
        for g in ([turing.generator_of(r)] if r["truth"] == "synthetic" else gens or ["none"]):
            w.writerow({**row, "treatment": g})
    return buf.getvalue()


SUMMARY_HEADERS = ["reader", "n", "AUC", "AUC 95% CI", "balanced acc.", "p (permutation)", "accuracy", "p (binomial)",
                   "sensitivity", "specificity", "finding acc. real", "finding acc. synthetic", "median ms"]


def summary_table(result: dict[str, Any]) -> list[list[Any]]:
    """Rows for a UI table: one per reader, then '(pooled)': the OR reader-averaged AUC with its CI, the
    balanced accuracy over all readers, and the pooled descriptives (no pooled AUC: scales differ)."""
    def fmt(x: Any, nd: int = 3) -> Any:
        return None if x is None else round(float(x), nd)

    def ci(c: list[float] | None) -> str | None:
        return None if not c else f"{c[0]:.3f} to {c[1]:.3f}"

    tur = result["turing"].get("per_reader") or {}
    out = []
    for name, s in result["per_reader"].items():
        t, fa = tur.get(name, {}), s["finding_accuracy"]
        out.append([name, s["n"], fmt(t.get("auc")), ci(t.get("ci95")), fmt(t.get("balanced_accuracy")), fmt(t.get("p_perm"), 4),
                    fmt(s["accuracy"]), fmt(s["p_value"], 4), fmt(s["sensitivity"]), fmt(s["specificity"]),
                    fmt(fa["real"]["accuracy"]), fmt(fa["synthetic"]["accuracy"]), fmt(s["median_ms"], 0)])
    auc, ba, pooled = result["turing"].get("auc"), result["turing"].get("balanced_accuracy") or {}, result.get("pooled")
    if pooled:
        fa = pooled["finding_accuracy"]
        out.append(["(pooled)", pooled["n"], fmt(auc and auc["estimate"]), ci(auc and auc["ci95"]),
                    fmt(ba.get("balanced_accuracy")), fmt(ba.get("p_perm"), 4), fmt(pooled["accuracy"]), None,
                    fmt(pooled["sensitivity"]), fmt(pooled["specificity"]), fmt(fa["real"]["accuracy"]),
                    fmt(fa["synthetic"]["accuracy"]), fmt(pooled["median_ms"], 0)])
    return out


def summary_figure(result: dict[str, Any], rows: list[dict[str, Any]], path: str | Path) -> Path:
    """ROC per reader with the reader average, forest plot of reader AUCs, finding recognition (PNG)."""
    from medgan_ui.study import figures

    return figures.save_png(figures.summary_figure(result, rows), path)


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=True, default=float)
