"""Typed config dataclasses overridden from plain dicts (YAML, CLI): strict, with key paths.

`apply_overrides(cfg, {"density": 2.0}, where="groups[1].traffic")` returns a copy of the
dataclass with those fields replaced. An unknown key, a value of the wrong type or (when the
dataclass defines `validate_config(where)`) a value out of range raises `ConfigError` whose
message starts with the key path, e.g. ``groups[1].traffic.densty: unknown key; allowed: ...``.
Configs only override fields: nothing is built from strings.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Mapping, Union


class ConfigError(ValueError):
    """A config value is unknown, mistyped or out of range; the message names the key path."""


def join_path(where: str, key: str | int) -> str:
    """`groups` + 3 -> `groups[3]`; `groups[3]` + `map` -> `groups[3].map`."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


def describe(value: Any) -> str:
    """Short `type value` text for error messages."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def unknown_key_error(where: str, key: Any, allowed) -> ConfigError:
    allowed = sorted(allowed)
    hint = difflib.get_close_matches(str(key), allowed, n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(f"{join_path(where, str(key))}: unknown key{extra}; allowed: {', '.join(allowed)}")


def field_types(cls) -> dict[str, Any]:
    """Resolved type hints of the fields of a dataclass type (string annotations included)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_type(value: Any, tp: Any, where: str) -> Any:
    """Return `value` converted to `tp` (int -> float, list -> tuple) or raise ConfigError.

    Supports bool, int, float, str, Any, Optional/Union, Literal, tuple[...] (fixed or `...`),
    list[...], dict[str, ...] and nested dataclasses (given as a mapping of overrides).
    """
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in args:
            try:
                return check_type(value, option, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {type_name(tp)}, got {describe(value)}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: expected one of {list(args)}, got {describe(value)}")
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if _is_number(value):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list, dict) or dataclasses.is_dataclass(tp):
        return _check_container(value, tp, where)
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {type_name(tp)}, got {describe(value)}")


def _check_container(value: Any, tp: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        return _check_tuple(value, tp, args, where)
    if origin is list and isinstance(value, (list, tuple)):
        return [check_type(v, args[0] if args else Any, join_path(where, i)) for i, v in enumerate(value)]
    if origin is dict and isinstance(value, Mapping):
        return {check_type(k, args[0], where): check_type(v, args[1], join_path(where, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return apply_overrides(tp(), value, where)
    raise ConfigError(f"{where}: expected {type_name(tp)}, got {describe(value)}")


def _check_tuple(value, tp, args, where):
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected {type_name(tp)} (a list), got {describe(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(check_type(v, args[0], join_path(where, i)) for i, v in enumerate(value))
    if args and len(value) != len(args):
        raise ConfigError(f"{where}: expected {len(args)} values ({type_name(tp)}), got {len(value)}")
    return tuple(check_type(v, a, join_path(where, i)) for i, (v, a) in enumerate(zip(value, args or [Any] * len(value))))


def apply_overrides(obj: Any, overrides: Mapping[str, Any] | None, where: str = "config") -> Any:
    """A copy of the dataclass instance `obj` with the fields in `overrides` replaced.

    Nested dataclass fields take a mapping (overridden recursively). Unknown keys and wrong
    types raise ConfigError naming `where.key`. If the result defines `validate_config(where)`,
    it is called so that range errors carry the same path.
    """
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"apply_overrides needs a dataclass instance, got {type(obj).__name__}")
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{where}: expected a mapping of overrides, got {describe(overrides)}")
    hints = field_types(type(obj))
    changes = {}
    for key, value in overrides.items():
        if key not in hints:
            raise unknown_key_error(where, key, hints)
        path = join_path(where, key)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[key] = apply_overrides(current, value, path)
        else:
            changes[key] = check_type(value, hints[key], path)
    new = dataclasses.replace(obj, **changes)
    if hasattr(new, "validate_config"):
        new.validate_config(where)
    return new


def config_from_dict(cls, d: Mapping[str, Any], what: str) -> Any:
    """`cls(**d)` for a config read back from JSON or YAML: unknown keys are a ValueError naming
    `what` and the known keys; lists become tuples; a nested config dataclass field given as a
    mapping is built by that class's own `from_dict`."""
    hints = field_types(cls)
    unknown = set(d) - set(hints)
    if unknown:
        raise ValueError(f"unknown {what} config keys {sorted(unknown)}; known: {sorted(hints)}")
    out = {}
    for k, v in d.items():
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, Mapping):
            v = hints[k].from_dict(v)
        out[k] = tuple(v) if isinstance(v, list) else v
    return cls(**out)


def config_to_dict(obj: Any) -> dict:
    """Plain dict of a config dataclass (tuples become lists: YAML- and JSON-friendly)."""

    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(obj))


def tuples_from_json(d: Mapping[str, Any]) -> dict:
    """A config dict read back from JSON, its lists turned back into tuples (ranges, bins)."""
    return {k: (tuples_from_json(v) if isinstance(v, Mapping) else tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
