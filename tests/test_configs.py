"""Shipped configs: found by name or path, listed and printed by `synthmed configs`; the lock.

The configs live inside the package (synthmed/configs), so an installed wheel has them; the
top-level configs/ is a link for people browsing the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from synthmed.audit.profile import AuditProfile
from synthmed.cli import main
from synthmed.config import find_shipped_config, load_config, resolve_config_path, shipped_configs
from synthmed.data.ingest_config import IngestConfig
from synthmed.errors import ConfigError
from synthmed.models import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_CONFIGS = ROOT / "synthmed" / "configs"
from synthmed.generate.spec import CohortSpec  # noqa: E402

from synthmed.evaluate.config import CohortEvalConfig  # noqa: E402

MODELS = {"ingest": IngestConfig, "train": TrainConfig, "audit": AuditProfile, "cohort": CohortSpec,
          "evaluate": CohortEvalConfig}


def test_every_shipped_config_has_a_kind_a_description_and_validates():
    found = shipped_configs()
    assert sorted(c.name for c in found) == sorted(p.stem for p in PACKAGE_CONFIGS.glob("*.yaml"))
    assert {c.kind for c in found} == set(MODELS)
    for c in found:
        assert c.description and c.description.endswith("."), c
        load_config(c.path, MODELS[c.kind])


@pytest.mark.parametrize("name, kind, stem", [
    ("demo", "train", "demo"), ("cxr-64", "train", "cxr-64"),
    ("public", "audit", "audit-public"), ("audit-public", "audit", "audit-public"),
    ("controlled", "audit", "audit-controlled"),
    ("ingest-cxr-64", "ingest", "ingest-cxr-64"), ("cxr-64", "ingest", "ingest-cxr-64"),
])
def test_names_resolve_to_the_packaged_file(name, kind, stem):
    assert resolve_config_path(name, kind) == PACKAGE_CONFIGS / f"{stem}.yaml"


def test_a_path_wins_and_none_means_defaults(tmp_path, monkeypatch):
    f = tmp_path / "mine.yaml"
    f.write_text("steps: 5\n")
    assert resolve_config_path(f, "train") == f
    assert resolve_config_path(str(f), "train") == f
    assert resolve_config_path(None, "audit") is None
    # A file in the working directory called like a shipped name is the user's file.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").write_text("steps: 7\n")
    assert resolve_config_path("demo", "train") == Path("demo")
    # ... but a folder of that name (`synthmed demo --out demo`) is not a config
    (tmp_path / "public").mkdir()
    assert resolve_config_path("public", "audit") == PACKAGE_CONFIGS / "audit-public.yaml"
    with pytest.raises(ConfigError, match="is not a config file"):
        resolve_config_path("public/", "audit")


def test_unknown_name_lists_the_names_of_that_kind():
    with pytest.raises(ConfigError) as e:
        resolve_config_path("pubic", "audit")
    msg = str(e.value)
    assert "'pubic'" in msg and "audit-public" in msg and "audit-controlled" in msg
    assert "demo" not in msg and "\n" not in msg
    # a name of another kind is not taken silently
    with pytest.raises(ConfigError, match="train config named 'ingest-ct'.*cxr-64, demo, mri-3d"):
        resolve_config_path("ingest-ct", "train")
    with pytest.raises(ConfigError, match="does not exist; shipped ingest configs: ingest-ct"):
        resolve_config_path("missing/ingest.yaml", "ingest")


def test_cli_options_take_names_and_fail_in_one_line(tmp_path, capsys):
    for argv in (["train", str(tmp_path), "--config", "nope", "--out", str(tmp_path / "r")],
                 ["ingest", str(tmp_path), "--config", "nope", "--out", str(tmp_path / "d")],
                 ["audit", "--dataset", str(tmp_path), "--synthetic", str(tmp_path), "--profile",
                  "nope", "--out", str(tmp_path / "a")]):
        assert _cli(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "'nope'; available:" in err, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "a").exists()


def _cli(argv) -> int:
    try:
        main(argv)
    except SystemExit as e:
        return e.code or 0
    return 0


def test_configs_command_lists_and_prints(capsys):
    assert _cli(["configs"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = {ln.split()[0]: ln.split()[1] for ln in lines}
    assert rows == {c.name: c.kind for c in shipped_configs()}
    assert _cli(["configs", "public"]) == 0
    assert capsys.readouterr().out == (PACKAGE_CONFIGS / "audit-public.yaml").read_text()
    assert _cli(["configs", "nope"]) == 2 and "available: ingest-ct" in capsys.readouterr().err
    # an exact name wins over a name without its kind's prefix
    assert find_shipped_config("mri-3d").kind == "train"
    assert find_shipped_config("mri-3d", "ingest").name == "ingest-mri-3d"
    assert find_shipped_config("public").name == "audit-public"



def test_top_level_configs_is_the_package_folder():
    assert (ROOT / "configs").resolve() == PACKAGE_CONFIGS.resolve()


# ---------------------------------------------------------------------------------------------
# The lock file CI installs from (requirements/lock.txt, `make lock`).
# ---------------------------------------------------------------------------------------------

def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def test_lock_pins_every_dependency_exactly_and_cannot_pull_cuda():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    pins = _pins()
    for req in wanted:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", req).group(0)).lower()
        if name == "torch":  # installed first, on its own, as the CPU build (Makefile)
            assert name not in pins
            continue
        assert name in pins, f"{name} is in pyproject.toml but not in requirements/lock.txt: run `make lock`"
    assert not [n for n in pins if n.startswith(("nvidia", "triton", "torch"))]
    text = (ROOT / "requirements" / "lock.txt").read_text()
    assert not re.search(r"^[^#\s].*(>=|<=|~=|>|<)", text, re.M), "every line is an exact pin"
