"""Typed configs, loaded from YAML and validated at the edge.

Each command has a pydantic model (`IngestConfig`, `TrainConfig`, ...) built on `StrictConfig`.
`load_config(path, Model)` reads YAML as plain data (never as objects) and turns every validation
problem into one line naming the file, the key and what is allowed.

The configs the project ships live inside the package (`synthmed/configs/*.yaml`, so a wheel
carries them) and are found by name: `resolve_config_path("public", "audit")` is
`synthmed/configs/audit-public.yaml`. Every CLI option that takes a config or a profile goes
through `resolve_config_path`, so a name and a path work everywhere.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from synthmed.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base for every config: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# A shipped config's kind is read from its file name: `ingest-*.yaml`, `audit-*.yaml`,
# `cohort-*.yaml` (a cohort spec), `evaluate*.yaml` (a cohort evaluation), and every
# other file is a training config. The prefix may be left out of a name (`--profile public`).
CONFIG_KINDS: dict[str, str] = {"ingest": "ingest-", "audit": "audit-", "cohort": "cohort-",
                                "evaluate": "evaluate", "train": ""}


@dataclass(frozen=True)
class ShippedConfig:
    """A config file that ships with synthmed."""

    name: str  # the file's stem, e.g. "ingest-cxr-64"
    kind: str  # "ingest" | "train" | "audit"
    path: Path
    description: str  # the file's first comment line

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")


def shipped_config_dir() -> Path:
    return Path(__file__).resolve().parent / "configs"


def _kind_of(stem: str) -> str:
    for kind, prefix in CONFIG_KINDS.items():
        if prefix and stem.startswith(prefix):
            return kind
    return "train"


def _first_comment(path: Path) -> str:
    """The first sentence of the file's leading comment block (which may wrap over lines)."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    text = " ".join(w for w in words if w)
    end = re.search(r"(?<!e\.g)(?<!i\.e)\.(\s|$)", text)
    return text[: end.start() + 1] if end else text


def shipped_configs(kind: str | None = None) -> list[ShippedConfig]:
    """The shipped configs (of one `kind`, or all), sorted by kind then name."""
    if kind is not None and kind not in CONFIG_KINDS:
        raise ValueError(f"unknown config kind {kind!r}; kinds: {', '.join(CONFIG_KINDS)}")
    found = []
    for path in sorted(shipped_config_dir().glob("*.yaml")):
        k = _kind_of(path.stem)
        if kind is None or k == kind:
            found.append(ShippedConfig(path.stem, k, path, _first_comment(path)))
    return sorted(found, key=lambda c: (list(CONFIG_KINDS).index(c.kind), c.name))


def find_shipped_config(name: str, kind: str | None = None) -> ShippedConfig:
    """The shipped config called `name` (its stem, or its stem without the kind's prefix).

    A name that matches nothing is a ConfigError listing the names that exist.
    """
    candidates = shipped_configs(kind)
    exact = [c for c in candidates if c.name == name]
    short = [c for c in candidates if c.name.removeprefix(CONFIG_KINDS[c.kind]) == name]
    if exact or len(short) == 1:
        return (exact or short)[0]
    what = f"{kind} config" if kind else "config"
    names = ", ".join(c.name for c in candidates) or "none"
    if short:
        raise ConfigError(f"config name '{name}' is ambiguous: {', '.join(c.name for c in short)}")
    raise ConfigError(f"no shipped {what} named '{name}'; available: {names} (or give a path to a YAML file)")


def resolve_config_path(name_or_path: str | Path | None, kind: str) -> Path | None:
    """A config path from a file path or a shipped config's name (`None` stays `None`: defaults).

    An existing file wins; something that looks like a path (a folder part or a .yaml/.yml
    suffix) and is not a file is an error naming it; anything else is a shipped config's name
    of this `kind` (`demo`, `public` or `audit-public`, `cxr-64` or `ingest-cxr-64`), even when a
    folder of that name happens to be in the working directory (`synthmed demo --out demo`).
    """
    if name_or_path is None:
        return None
    p = Path(name_or_path)
    if p.is_file():
        return p
    text = str(name_or_path)
    if "/" in text or "\\" in text or p.suffix.lower() in (".yaml", ".yml"):
        names = ", ".join(c.name for c in shipped_configs(kind))
        if p.exists():
            raise ConfigError(f"{p}: is not a config file (a folder?); shipped {kind} configs: {names}")
        raise ConfigError(f"{p}: config file does not exist; shipped {kind} configs: {names}")
    return find_shipped_config(text, kind).path


def load_config(path: str | Path | None, model: type[M], overrides: dict[str, Any] | None = None) -> M:
    """Read `path` (YAML) into `model`. `None` gives the defaults (with `overrides`)."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: config file does not exist")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise ConfigError(f"{p}: not valid YAML{where}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not a text file") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of keys to values at the top level")
        data = loaded
    if overrides:
        data = _deep_merge(data, overrides)
    return validate_config(data, model, source)


def validate_config(data: dict[str, Any], model: type[M], source: str = "<config>") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, model, source)) from None


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _describe(err: ValidationError, model: type[BaseModel], source: str) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, e["loc"][:-1])
            msg = f"unknown key '{key}'" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            msg = f"key '{key}': {e['msg']}{got_s}"
        parts.append(msg)
    return f"{source}: " + "; ".join(parts)


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _unwrap_model(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _unwrap_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


__all__ = ["CONFIG_KINDS", "ShippedConfig", "StrictConfig", "find_shipped_config", "load_config",
           "resolve_config_path", "shipped_config_dir", "shipped_configs", "validate_config", "Literal"]
