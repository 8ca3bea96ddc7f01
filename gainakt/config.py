"""Frozen dataclasses from plain dicts (TOML files, `--set key=value` overrides), with typed,
one-line errors."""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")
MAX_INT = 2**63 - 1  # what torch, numpy and Parquet hold in an int64
MAX_SEED = 2**32 - 1  # numpy's and torch's seeds are 32-bit


def build(cls: type[T], values: Mapping[str, Any], prefix: str = "") -> T:
    """`cls(**values)` with nested dataclasses built from tables and every value type-checked."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting '{prefix}{key}' (known: {', '.join(sorted(known))})")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, str) and hasattr(hint, "parse"):  # a type written as text, e.g. "auc:max"
            return hint.parse(value)
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{name}' must be {_describe(hint)}, got {value!r}")
        return build(hint, value, prefix=f"{name}.")
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(map(str, typing.get_args(hint)))
            raise ConfigError(f"'{name}' must be one of {choices}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, name)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"'{name}' must be a finite number, got {value!r}")
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        raise ConfigError(f"'{name}' is out of range (at most {MAX_INT} in size), got {value}")
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        item = typing.get_args(hint)[0]  # tuple[X, ...]
        return tuple(_coerce(v, item, f"{name}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) and isinstance(value, Mapping):
        item = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        return {key: _coerce(v, item, f"{name}.{key}") for key, v in value.items()}
    raise ConfigError(f"'{name}' must be {_describe(hint)}, got {value!r}")


def _describe(hint: Any) -> str:
    simple = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if hint in simple:
        return simple[hint]
    origin = typing.get_origin(hint)
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0]).removeprefix('a ').removeprefix('an ')}s"
    if dataclasses.is_dataclass(hint):
        return "a string" if hasattr(hint, "parse") else "a table of settings"
    if origin in (dict, Mapping):
        return "a table"
    return str(hint)


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a TOML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file (TOML must be UTF-8)") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None


def parse_assignment(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as TOML (`0.1`, `true`, `[1, 2]`), else as a bare string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts; `update` wins."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """{"model.gains": "relu"} -> {"model": {"gains": "relu"}}."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        out = merge(out, nested)
    return out


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"gains": "relu"}} -> {"model.gains": "relu"}: the inverse of `nest`."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def with_assignments(values: Mapping[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """Apply `a.b=value` overrides to a nested dict."""
    return merge(values, nest(dict(parse_assignment(text) for text in assignments)))
