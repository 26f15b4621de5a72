"""A two-generator study end to end from the CLI: create (margin, size advice), rate, analyze with the
generator comparison and a figure, export the MRMC CSV and re-analyse it with --mrmc-csv."""
from __future__ import annotations

import csv
import json

import numpy as np

import _study_fixtures as fx
from medgan_ui.cli import main
from medgan_ui.study.store import StudyStore
from medgan_ui.workspace import Workspace


def test_two_generators_from_the_cli(tmp_path, capsys):
    ws = Workspace(tmp_path / "ws")
    real = fx.demo().save(tmp_path / "real.npz")
    s1 = fx.write_synthetic_folder(tmp_path / "gdgan", seed=7)
    s2 = fx.write_synthetic_folder(tmp_path / "acgan", seed=11)
    w = ["--workspace", str(ws.root)]
    assert main(["study", "create", "--name", "GDGAN vs ACGAN", "--real", str(real), "--part", "all",
                 "--synthetic", str(s1), str(s2), "--classes", "Effusion", "--real-per-class", "8",
                 "--synthetic-per-class", "16", "--score", "confidence", "--margin", "0.15", "--no-finding-question", *w]) == 0
    out = capsys.readouterr().out
    sid, code = out.split("study id:")[1].split()[0], out.split("access code:")[1].split()[0]
    assert "±0.15" in out and "Hillis-Obuchowski-Berbaum" in out and "not balanced" in out
    store = StudyStore(ws.studies_db)
    case = {c["id"]: c for c in store.cases(sid)}
    rng = np.random.default_rng(0)
    for reader in ("Ann", "Bob", "Cy", "Di"):
        tok = store.sign_in(reader, code).token
        while (n := store.next_case(tok)).case_id:
            c = case[n.case_id]
            # ACGAN's images are easy to spot, GDGAN's are not (readers guess)
            easy = c["labels"]["source_name"] == "synthetic:acgan"
            x = (1.5 if easy else 0.0) + rng.normal(0, 1) if c["truth"] == "synthetic" else rng.normal(0, 1)
            store.rate(tok, n.case_id, "synthetic" if x > 0 else "real", int(np.clip(1 + abs(x) // 0.5, 1, 5)))
    capsys.readouterr()
    assert main(["study", "analyze", sid, "--figure", str(tmp_path / "fig.png"), *w]) == 0
    text = capsys.readouterr().out
    assert "conclusion:" in text and "generators: OR F-test" in text and "gdgan's images were harder to tell" in text
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    assert main(["study", "analyze", sid, "--json", *w]) == 0
    res = json.loads(capsys.readouterr().out)
    gen = res["turing"]["generators"]
    assert gen["hardest_to_tell"] == "gdgan" and res["turing"]["margin"] == 0.15
    # export: MRMC long format, real ratings under both generators
    assert main(["study", "export", sid, "--out", str(tmp_path / "r.csv"), *w]) == 0
    with open(tmp_path / "r.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:6] == ["reader", "treatment", "case", "truth", "rating", "time"]
    assert {r["treatment"] for r in rows} == {"acgan", "gdgan"}
    # per reader: 16 real (8 x 2 classes) under both treatments + 16 synthetic of each generator
    assert len(rows) == 4 * (2 * 16 + 2 * 16)
    capsys.readouterr()
    assert main(["study", "analyze", "--mrmc-csv", str(tmp_path / "r.csv"), "--json", "--figure", str(tmp_path / "m.png")]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["or"]["test"]["F"] == gen["test"]["F"] and again["or"]["differences"][0]["ci"] == gen["differences"][0]["ci"]
    assert (tmp_path / "m.png").stat().st_size > 10_000
    assert main(["study", "analyze", *w]) == 2  # neither id nor file
