"""Typed configs, loaded from YAML and validated at the edge.

Each command has a pydantic model (`IngestConfig`, `TrainConfig`, ...) built on `StrictConfig`.
`load_config(path, Model)` reads YAML as plain data (never as objects) and turns every validation
problem into one line naming the file, the key and what is allowed.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from synthmed.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base for every config: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


__all__ = ["StrictConfig", "load_config", "validate_config", "Literal"]
