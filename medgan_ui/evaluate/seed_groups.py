"""Runs that differ only by their training seed form one model; models are compared over seeds.

A GAN's score varies from one training seed to the next far more than between chunks of one run's
samples, so a test over chunks of single runs says nothing about the models. Here the runs given are
grouped by their config.json less the seed, and each pair of groups with at least two seeds each is
compared with Welch's t-test (scipy.stats.ttest_ind, equal_var=False) on the per-run FID and IS.
A synthetic set is a group of its own.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from medgan_ui.evaluate.stats import welch_t
from medgan_ui.workspace import read_json

ONE_SEED = "one seed per model: no test"


def config_without_seed(config: dict[str, Any]) -> tuple[str, int | None]:
    """(canonical JSON of the config less its seed, the seed)."""
    c = copy.deepcopy(config)
    seed = (c.get("train") or {}).pop("seed", None)
    return json.dumps(c, sort_keys=True, default=str), seed


def seed_groups(sources: list[Any]) -> list[dict[str, Any]]:
    """[{name, kind, members, seeds}] in the order the sources were given."""
    groups: dict[str, dict[str, Any]] = {}
    for src in sources:
        if src.kind == "run" and (src.path / "config.json").is_file():
            cfg = read_json(src.path / "config.json")
            key, seed = config_without_seed(cfg)
            kind = str(cfg.get("kind", "run"))
        else:
            key, seed, kind = f"set:{src.ident}", None, "synthetic set"
        g = groups.setdefault(key, {"kind": kind, "members": [], "seeds": []})
        g["members"].append(src.ident)
        g["seeds"].append(seed)
    return [{"name": "+".join(g["members"]), **g} for g in groups.values()]


def welch_over_seeds(groups: list[dict[str, Any]], per_run: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Each pair of groups: Welch's t on per-run values (every key of per_run's entries), or why not."""
    out: dict[str, Any] = {}
    for a in range(len(groups)):
        for b in range(a + 1, len(groups)):
            ga, gb = groups[a], groups[b]
            ma = [m for m in ga["members"] if m in per_run]
            mb = [m for m in gb["members"] if m in per_run]
            row: dict[str, Any] = {"seeds": [len(ma), len(mb)]}
            if len(ma) < 2 or len(mb) < 2:
                both_single = len(ma) < 2 and len(mb) < 2
                row["note"] = ONE_SEED if both_single else "a model with one seed: no test (needs 2+ seeds each)"
            else:
                for metric in per_run[ma[0]]:
                    row[metric] = {**welch_t([per_run[m][metric] for m in ma], [per_run[m][metric] for m in mb]),
                                   "a": [per_run[m][metric] for m in ma], "b": [per_run[m][metric] for m in mb]}
            out[f"{ga['name']} vs {gb['name']}"] = row
    return out
