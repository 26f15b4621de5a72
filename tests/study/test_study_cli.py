"""`medgan study create | add-reader | status | export | analyze | close` end to end on demo images."""
from __future__ import annotations

import csv
import json

import _study_fixtures as fx
from medgan_ui.cli import main
from medgan_ui.study.store import StudyStore
from medgan_ui.workspace import Workspace


def test_study_cli_round_trip(tmp_path, capsys):
    ws = Workspace(tmp_path / "ws")
    real = fx.demo().save(tmp_path / "real.npz")
    syn = fx.write_synthetic_folder(tmp_path / "syn")
    w = ["--workspace", str(ws.root)]
    assert main(["study", "create", "--name", "CLI study", "--real", str(real), "--part", "all", "--synthetic", str(syn),
                 "--classes", "Effusion", "--real-per-class", "3", "--synthetic-per-class", "3", "--repeats", "1",
                 "--score", "confidence", *w]) == 0
    out = capsys.readouterr().out
    sid = out.split("study id:")[1].split()[0]
    code = out.split("access code:")[1].split()[0]
    assert main(["study", "add-reader", sid, "Dr Code", *w]) == 0
    personal = capsys.readouterr().out.rsplit(":", 1)[1].strip()
    store = StudyStore(ws.studies_db)
    for name, c in (("Dr Code", personal), ("Dr Shared", code)):
        tok = store.sign_in(name, c).token
        while (n := store.next_case(tok)).case_id:
            store.rate(tok, n.case_id, "synthetic", 3, "Effusion")
    assert main(["study", "status", sid, *w]) == 0
    assert "13 / 13" in capsys.readouterr().out
    assert main(["study", "export", sid, "--out", str(tmp_path / "r.csv"), *w]) == 0
    with open(tmp_path / "r.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 26
    capsys.readouterr()
    assert main(["study", "analyze", sid, "--json", "--figure", str(tmp_path / "f.png"),
                 "--model-card", str(tmp_path / "card.json"), *w]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_ratings"] == 26 and res["pooled"]["accuracy"] == 0.5  # everything called synthetic
    assert res["pooled"]["sensitivity"] == 1.0 and res["pooled"]["specificity"] == 0.0
    assert json.loads((tmp_path / "card.json").read_text())["turing_test"]["readers"] == 2
    assert (tmp_path / "f.png").stat().st_size > 1000
    assert main(["study", "close", sid, *w]) == 0
    assert store.study(sid)["status"] == "closed"
    assert main(["study", "status", "study-nope", *w]) == 2
    assert main(["study", "create", "--name", "x", "--real", "nowhere", "--synthetic", str(syn), *w]) == 2
    assert "not found" in capsys.readouterr().err
