"""Finding answers on real vs synthetic images: does a reader see the finding the image should show?

For every finding class F offered to readers, on real and on synthetic cases separately:
  sensitivity = share of ratings of cases that have F where the reader chose F,
  specificity = share of ratings of cases without F where the reader did not choose F,
each with a Wilson 95 % CI ('No Finding' is a class like the others: the case has no finding).
"Recognised as often": for the class a case was selected for (labels['class'], the finding the
generator was asked for), the share of ratings naming it on synthetic minus on real cases, with a
Newcombe CI and Fisher's exact p. Ratings of one case by several readers are not independent, so these
CIs are somewhat narrow when many readers rated the same cases; they are descriptive, stated as such.
"""
from __future__ import annotations

from typing import Any

from scipy.stats import fisher_exact
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

NO_FINDING = "No Finding"


def has(findings: list[str], cls: str) -> bool:
    return not findings if cls == NO_FINDING else cls in findings


def _prop(k: int, n: int) -> dict[str, Any]:
    if n == 0:
        return {"k": 0, "n": 0, "p": None, "ci95": None}
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return {"k": k, "n": n, "p": k / n, "ci95": [float(lo), float(hi)]}


def finding_stats(rows: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    """Per class and truth: sensitivity, specificity (Wilson CIs); and recognition real vs synthetic."""
    firsts = [r for r in rows if not r.get("repeat_of") and r.get("finding")]
    out: dict[str, Any] = {"per_class": {}, "recognition": {}}
    for cls in classes:
        per: dict[str, Any] = {}
        for truth in ("real", "synthetic"):
            sel = [r for r in firsts if r["truth"] == truth]
            pos = [r for r in sel if has(r["labels"].get("findings", []), cls)]
            neg = [r for r in sel if not has(r["labels"].get("findings", []), cls)]
            per[truth] = {"sensitivity": _prop(sum(r["finding"] == cls for r in pos), len(pos)),
                          "specificity": _prop(sum(r["finding"] != cls for r in neg), len(neg))}
        out["per_class"][cls] = per
        asked = {t: [r for r in firsts if r["truth"] == t and r["labels"].get("class") == cls] for t in ("real", "synthetic")}
        kr, nr = sum(r["finding"] == cls for r in asked["real"]), len(asked["real"])
        ks, ns = sum(r["finding"] == cls for r in asked["synthetic"]), len(asked["synthetic"])
        rec: dict[str, Any] = {"real": _prop(kr, nr), "synthetic": _prop(ks, ns), "difference": None, "p": None}
        if nr and ns:
            lo, hi = confint_proportions_2indep(ks, ns, kr, nr, method="newcomb")
            rec["difference"] = {"estimate": ks / ns - kr / nr, "ci95": [float(lo), float(hi)]}
            rec["p"] = float(fisher_exact([[ks, ns - ks], [kr, nr - kr]])[1])
            rec["text"] = (f"'{cls}' named on {ks}/{ns} synthetic vs {kr}/{nr} real images it was requested for "
                           f"(difference {ks / ns - kr / nr:+.2f}, 95% CI {lo:+.2f} to {hi:+.2f}, Fisher p = {rec['p']:.3f}): "
                           + ("recognised less often in synthetic images." if hi < 0 else
                              "recognised more often in synthetic images." if lo > 0 else "no difference shown."))
        out["recognition"][cls] = rec
    return out
