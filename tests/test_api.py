"""The Python API (synthmed.api, exposed as `synthmed.<stage>`): one argument order, configs by
path / name / object, typed results, and errors that speak of arguments (flags only on the CLI)."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import synthmed
from synthmed import api
from synthmed.cli import main
from synthmed.cli.options import FLAGS
from synthmed.errors import ConfigError, InputError, arg, render

ROOT = Path(__file__).resolve().parents[1]

# stage -> its inputs, in order (what comes before `out`)
INPUTS = {"ingest": ["sources"], "train": ["dataset"], "generate": ["model"],
          "evaluate": ["dataset"], "audit": ["dataset", "cohort"], "release": ["cohort"],
          "canaries": ["dataset"]}


# ------------------------------------------------------------------------------ argument order
@pytest.mark.parametrize("stage", list(INPUTS))
def test_every_stage_takes_inputs_then_out_then_keyword_only_options(stage):
    for fn in (getattr(api, stage), getattr(synthmed, stage)):
        params = list(inspect.signature(fn).parameters.values())
        names = [p.name for p in params]
        n_in = len(INPUTS[stage])
        assert names[:n_in + 1] == INPUTS[stage] + ["out"], names
        for p in params[:n_in + 1]:
            assert p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty, (stage, p)
        rest = params[n_in + 1:]
        assert rest and all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in rest), (stage, rest)
        if stage not in ("release",):  # release's audit / dataset / model are required keywords
            assert all(p.default is not p.empty for p in rest if p.kind is p.KEYWORD_ONLY), stage


def test_load_takes_the_run_then_keyword_only_device():
    params = list(inspect.signature(synthmed.load).parameters.values())
    assert [p.name for p in params] == ["run", "device"]
    assert params[1].kind is params[1].KEYWORD_ONLY


def test_import_synthmed_is_light_and_stage_names_survive_their_subpackages():
    code = ("import sys, inspect, synthmed\n"
            "assert 'torch' not in sys.modules and 'synthmed.api' not in sys.modules\n"
            "import synthmed.audit.runner, synthmed.release.bundle, synthmed.generate.runner\n"
            "import synthmed.evaluate.runner, synthmed.api as api\n"
            "for s in ('audit', 'release', 'generate', 'evaluate'):\n"
            "    f = getattr(synthmed, s)\n"
            "    assert callable(f) and inspect.signature(f) == inspect.signature(getattr(api, s)), s\n"
            "assert synthmed.audit.run_audit and synthmed.release.ReleaseRefused is synthmed.ReleaseRefused\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_result_types_all_have_out_and_summary():
    from synthmed.generate.runner import Shard

    names = ["IngestResult", "TrainResult", "InspectResult", "GenerateResult",
             "GeneratorEvaluation", "AuditResult", "ReleaseResult", "PhantomSummary"]
    for name in names:
        cls = getattr(synthmed, name)
        assert "out" in {f.name for f in dataclasses.fields(cls)}, name
        assert callable(getattr(cls, "summary", None)), name
    # the ones that need no trained model, made and summarised
    card = {"model_sha256": "ab" * 32, "steps": 7, "final_loss": 0.25, "world_size": 1}
    t = synthmed.TrainResult.from_card(Path("r"), card)
    assert isinstance(t, synthmed.Result)
    assert t.summary() == f"trained 7 steps; final loss 0.2500; model {'ab' * 6} -> r"
    g = synthmed.GenerateResult(Path("c"), Shard(0, 2), generated=["a", "b"], seconds=2.0,
                                sampling={"sampler": "ddim", "steps": 5, "guidance_scale": 2.0})
    assert "2 patients generated" in g.summary() and "shard 0/2" in g.summary()


# ------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("kind,name,model_path", [
    ("train", "demo", "synthmed.models.config:TrainConfig"),
    ("audit", "public", "synthmed.audit.profile:AuditProfile"),
    ("ingest", "cxr-64", "synthmed.data.ingest_config:IngestConfig"),
    ("cohort", "cohort-followup", "synthmed.generate.spec:CohortSpec"),
    ("evaluate", "evaluate-quick", "synthmed.evaluate.config:CohortEvalConfig"),
])
def test_config_by_path_name_object_and_mapping_resolve_alike(kind, name, model_path):
    import importlib

    import yaml

    from synthmed.config import find_shipped_config

    mod, cls_name = model_path.split(":")
    cls = getattr(importlib.import_module(mod), cls_name)
    shipped = find_shipped_config(name, kind)
    by_name = api.resolve_config(name, cls, kind)
    by_path = api.resolve_config(shipped.path, cls, kind)
    by_str_path = api.resolve_config(str(shipped.path), cls, kind)
    by_object = api.resolve_config(by_name, cls, kind)
    by_mapping = api.resolve_config(yaml.safe_load(shipped.text()), cls, kind)
    assert by_name == by_path == by_str_path == by_object == by_mapping
    assert by_name != cls.model_validate({"patients": 1} if kind == "cohort" else {})  # not the defaults
    with pytest.raises(ConfigError, match=r"config=: expected a path"):
        api.resolve_config(3.5, cls, kind)


def test_overrides_apply_on_any_form_of_config():
    from synthmed.models import TrainConfig

    a = api.resolve_config("demo", TrainConfig, "train", overrides={"steps": 3, "sampling": {"steps": 2}})
    b = api.resolve_config(api.resolve_config("demo", TrainConfig, "train"), TrainConfig, "train",
                           overrides={"steps": 3, "sampling": {"steps": 2}})
    assert a == b and a.steps == 3 and a.sampling.steps == 2
    assert a.sampling.sampler == api.resolve_config("demo", TrainConfig, "train").sampling.sampler
    with pytest.raises(ConfigError, match="stepz"):
        api.resolve_config("demo", TrainConfig, "train", overrides={"stepz": 3})


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    summary = synthmed.make_phantoms(tmp / "phantoms", patients=12, seed=0, size=64,
                                     studies_per_patient=(1, 1), workers=1)
    key = tmp / "test.key"
    key.write_bytes(hashlib.sha256(b"test_api").digest())
    return summary, key, tmp


def test_ingest_with_config_by_name_path_or_object_writes_the_same_dataset(phantoms):
    from synthmed.config import find_shipped_config
    from synthmed.data.ingest_config import IngestConfig

    summary, key, tmp = phantoms
    path = find_shipped_config("ingest-demo").path
    forms = {"name": "ingest-demo", "path": path,
             "object": api.resolve_config(path, IngestConfig, "ingest")}
    written = {}
    for form, config in forms.items():
        r = synthmed.ingest(summary.out, tmp / f"ds-{form}", config=config,
                            metadata=summary.metadata_csv, key=key, workers=1)
        assert isinstance(r, synthmed.IngestResult) and r.out == tmp / f"ds-{form}"
        assert r.patients == 12 and str(r.out) in r.summary()
        written[form] = {p.name: p.read_bytes() for p in r.out.iterdir()
                         if p.name in ("images.npy", "manifest.csv", "dataset.json")}
    assert len(written["name"]) == 3
    assert written["name"] == written["path"] == written["object"]
    # the defaults differ (a 64 px config would give other bytes): the config was really used
    other = synthmed.ingest(summary.out, tmp / "ds-cxr", config="cxr-64",
                            metadata=summary.metadata_csv, key=key, workers=1)
    assert (other.out / "images.npy").read_bytes() != written["name"]["images.npy"]
    # inspect's result, on the same dataset
    from synthmed.data.inspect import inspect as inspect_stage

    seen = inspect_stage(tmp / "ds-name", tmp / "sheet.png")
    assert seen.out == tmp / "sheet.png" and seen.out.is_file() and seen.patients == 12
    assert str(seen.out) in seen.summary()


# ------------------------------------------------------------------------------------ errors
def test_errors_name_the_argument_from_python_and_the_flag_from_the_cli(phantoms, capsys):
    summary, _, tmp = phantoms
    missing = tmp / "no-such.key"
    with pytest.raises(InputError) as err:
        synthmed.ingest(summary.out, tmp / "py", config="ingest-demo", key=missing, workers=1)
    text = str(err.value)
    assert "omit key=" in text and "--" not in text and err.value.arguments == ["key"]
    assert not (tmp / "py").exists()  # nothing left behind

    with pytest.raises(SystemExit) as code:
        main(["ingest", str(summary.out), "--out", str(tmp / "cli"), "--config", "ingest-demo",
              "--key", str(missing), "--workers", "1"])
    line = capsys.readouterr().err.strip()
    assert code.value.code == 2
    assert "omit --key" in line and "key=" not in line and str(missing) in line


def test_an_existing_output_names_overwrite_true_in_python_and_the_switch_on_the_cli(phantoms, capsys):
    summary, key, tmp = phantoms
    out = tmp / "again"
    synthmed.ingest(summary.out, out, config="ingest-demo", metadata=summary.metadata_csv,
                    key=key, workers=1)
    with pytest.raises(InputError, match=r"pass overwrite=True to replace it"):
        synthmed.ingest(summary.out, out, config="ingest-demo", key=key, workers=1)
    with pytest.raises(SystemExit):
        main(["ingest", str(summary.out), "--out", str(out), "--config", "ingest-demo",
              "--key", str(key)])
    line = capsys.readouterr().err
    assert "pass --overwrite to replace it" in line and "overwrite=" not in line


def test_argument_rendering_and_release_reasons():
    from synthmed.release.bundle import ReleaseRefused

    msg = f"x: pass {arg('overwrite', True)}, {arg('override', 'why')} or another {arg('out')}"
    assert render(msg) == "x: pass overwrite=True, override='why' or another out="
    assert render(msg, FLAGS) == "x: pass --overwrite, --override 'why' or another --out"
    refused = ReleaseRefused([f"name the sources ({arg('sources')})", "the audit failed"])
    assert refused.reasons == ["name the sources (sources=)", "the audit failed"]
    assert "(--source)" in refused.message(FLAGS) and "sources=" in str(refused)
    assert refused.reasons_for(FLAGS) == ["name the sources (--source)", "the audit failed"]


def test_the_demo_keeps_a_refusal_and_its_cli_lists_the_reasons_with_flags(tmp_path, monkeypatch, capsys):
    """`synthmed demo` prints a refused release's reasons as `synthmed release` would (`--override
    'why'`); the demo's result gives them to Python callers as Python spells them."""
    import synthmed.demo
    from synthmed.release.bundle import ReleaseRefused

    refused = ReleaseRefused(["the audit failed", f"accept it with {arg('override', 'why')}"])
    result = synthmed.demo.DemoResult(out=tmp_path / "demo", refusal=refused)
    assert result.release_refused == ["the audit failed", "accept it with override='why'"]
    monkeypatch.setattr(synthmed.demo, "run_demo", lambda out, **kw: result)
    with pytest.raises(SystemExit) as code:
        main(["demo", "--out", str(tmp_path / "demo")])
    assert code.value.code == 0
    shown = capsys.readouterr().out
    assert "  - the audit failed\n  - accept it with --override 'why'\n" in shown
    assert "override=" not in shown


def _library_messages():
    """(file, line, text) of every literal in a raised error or a release Reason outside the CLI."""
    for path in sorted((ROOT / "synthmed").rglob("*.py")):
        if "cli" in path.relative_to(ROOT / "synthmed").parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = [n.exc for n in ast.walk(tree) if isinstance(n, ast.Raise) and n.exc is not None]
        nodes += [n for n in ast.walk(tree) if isinstance(n, ast.Call)
                  and getattr(n.func, "id", getattr(n.func, "attr", None)) in ("Reason", "ReleaseRefused")]
        for node in nodes:
            parts = {id(v) for s in ast.walk(node) if isinstance(s, ast.JoinedStr) for v in s.values}
            for s in ast.walk(node):
                if id(s) in parts:  # a piece of an f-string: read with the whole string
                    continue
                if isinstance(s, ast.JoinedStr):
                    text = "".join(v.value for v in s.values if isinstance(v, ast.Constant))
                elif isinstance(s, ast.Constant) and isinstance(s.value, str):
                    text = s.value
                else:
                    continue
                yield path.relative_to(ROOT), s.lineno, text


def test_no_library_error_names_a_command_line_flag():
    flag = re.compile(r"(?<![\w`-])--[a-z][a-z-]+")
    found = [(str(p), line, text) for p, line, text in _library_messages()
             if flag.search(text) and "synthmed " not in text]  # a command to run may name flags
    assert not found, found


def test_every_argument_a_message_names_has_a_cli_flag():
    used = set()
    for path in (ROOT / "synthmed").rglob("*.py"):
        used |= set(re.findall(r"\barg\(['\"](\w+)['\"]", path.read_text(encoding="utf-8")))
    assert used, "no message names an argument"
    assert not used - set(FLAGS), used - set(FLAGS)


def test_stage_misuse_is_a_clear_error_naming_the_arguments(tmp_path):
    with pytest.raises(InputError, match=r"exactly one of synthetic= .* or model="):
        synthmed.evaluate(tmp_path, tmp_path / "e")
    with pytest.raises(InputError, match=r"exactly one of synthetic="):
        synthmed.evaluate(tmp_path, tmp_path / "e", synthetic=tmp_path, model=tmp_path)

    class Pipe:  # a loaded model as far as `generate` can tell before any work
        model_hash = "0" * 64

        def sample(self):
            pass

    with pytest.raises(InputError, match=r"needs spec= .* or n="):
        synthmed.generate(Pipe(), tmp_path / "c")
    with pytest.raises(InputError, match=r"dataset: expected a path"):
        synthmed.train(3, tmp_path / "r")
    import importlib

    with pytest.raises(InputError, match=r"config= applies to a cohort evaluation \(synthetic=\)"):
        synthmed.evaluate(tmp_path, tmp_path / "e", model=tmp_path, config="evaluate-quick")
    try:
        importlib.import_module("synthmed.evaluate.cohort")  # the cohort evaluation (CONTRACTS C1)
    except ImportError:
        with pytest.raises(InputError, match="cohort evaluation is not in this build"):
            synthmed.evaluate(tmp_path, tmp_path / "e", synthetic=tmp_path)
