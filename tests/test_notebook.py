"""docs/walkthrough.ipynb runs, top to bottom, through `import synthmed` alone.

The notebook is read as the JSON it is (nbformat 4) and its code cells are executed in order in
one namespace, in a temporary working folder, as a kernel would run them (no Jupyter needed).
The assertions are on what the cells leave behind: the stages' typed results and a few properties
that would be false if a stage did not do its job.
"""

from __future__ import annotations

import ast
import csv
import json
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "walkthrough.ipynb"
STAGES = ("ingest", "train", "load", "generate", "evaluate", "audit", "release")


def _notebook() -> dict:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def _code_cells(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_notebook_is_a_clean_nbformat_4_notebook_that_uses_only_synthmed():
    nb = _notebook()
    assert nb["nbformat"] == 4 and nb["cells"]
    kinds = [c["cell_type"] for c in nb["cells"]]
    assert set(kinds) <= {"markdown", "code"} and kinds.count("markdown") >= len(STAGES)
    for c in nb["cells"]:
        assert isinstance(c["source"], list) and "id" in c
        if c["cell_type"] == "code":  # stored without outputs
            assert c["outputs"] == [] and c["execution_count"] is None
    source = "\n".join(_code_cells(nb))
    tree = ast.parse(source)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    # synthmed and the standard library, nothing else (no synthmed submodule either)
    assert "synthmed" in imported
    assert all(m == "synthmed" or m in sys.stdlib_module_names for m in imported), imported
    assert not any(isinstance(n, ast.ImportFrom) and n.module.startswith("synthmed") for n in ast.walk(tree))
    called = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
              and n.func.value.id == "synthmed"}
    assert set(STAGES) | {"make_phantoms"} <= called, called


@pytest.mark.slow
def test_walkthrough_notebook_runs_every_stage(tmp_path, monkeypatch):
    import torch

    import synthmed

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread, as the other tests on this shared 2-core machine
    ns: dict = {"__name__": "__main__"}
    try:
        for i, cell in enumerate(_code_cells(_notebook())):
            exec(compile(cell, f"{NOTEBOOK.name} code cell {i}", "exec"), ns)
    finally:
        torch.set_num_threads(threads)

    work = ns["work"]
    assert work.resolve().parent == tmp_path.resolve()  # wrote into the working folder only

    results = {name: ns[name] for name in ("phantoms", "data", "run", "cohort", "evaluation", "audit")}
    types = {"data": synthmed.IngestResult, "run": synthmed.TrainResult,
             "cohort": synthmed.GenerateResult, "evaluation": synthmed.CohortEvaluation,
             "audit": synthmed.AuditResult}
    for name, cls in types.items():
        assert isinstance(results[name], cls), (name, type(results[name]))
    for name, r in results.items():
        assert isinstance(r.out, Path) and r.out.exists(), name
        assert r.out.resolve().is_relative_to(work.resolve()), name
        text = r.summary()
        assert isinstance(text, str) and len(text.split()) >= 5, (name, text)

    # ingest: split by patient, and no patient ID of the phantoms survives into the dataset
    data = results["data"]
    assert data.kept == data.images == 120 and data.refused == 0
    assert sum(s["patients"] for s in data.splits.values()) == data.patients == 80
    with open(ns["phantoms"].metadata_csv, newline="") as f:
        real_ids = {row["patient_id"] for row in csv.DictReader(f)}
    assert len(real_ids) == 80
    dataset_text = "".join(p.read_text(errors="ignore") for p in data.out.iterdir()
                           if p.suffix in (".csv", ".json"))
    assert not [pid for pid in real_ids if pid in dataset_text]

    # train: the overrides were applied, and the model loaded is the one trained
    run, model = results["run"], ns["model"]
    assert run.steps == 10 and run.card["batch_size"] == 8 and len(run.model_sha256) == 64
    assert model.model_hash == run.model_sha256

    # generate: several studies per patient, as the spec asked, in the formats asked
    cohort = results["cohort"]
    assert cohort.merged and len(cohort.generated) == 24
    info = json.loads((cohort.out / "cohort.json").read_text())
    assert info["n_patients"] == 24 and info["n_images"] > 24
    assert info["model_sha256"] == run.model_sha256
    assert {"dicom", "png"} <= {p.name for p in cohort.out.iterdir() if p.is_dir()}

    # evaluate: this cohort, against this dataset's real patients
    ev = results["evaluation"]
    assert ev.record["model_hash"] == run.model_sha256
    assert ev.record["data"]["synthetic_images"] == info["n_images"]
    assert ev.record["data"]["synthetic_patients"] == 24
    assert ev.record["data"]["train_patients"] == data.splits["train"]["patients"]

    # audit: far too few patients, so not a pass, and it says so
    audit = results["audit"]
    assert audit.verdict.verdict in ("inconclusive", "fail") and not audit.passed
    assert audit.verdict.verdict.upper() in audit.summary()

    # release: refused with its reasons, and nothing written
    refusal = ns["refusal"]
    assert isinstance(refusal, synthmed.ReleaseRefused) and "bundle" not in ns
    assert any(audit.verdict.verdict.upper() in r for r in refusal.reasons), refusal.reasons
    assert not (work / "bundle").exists()
