"""YAML -> typed config dataclasses, one builder for every config (pipeline, training).

`ConfigError` is the one config error type users see; its message starts with the dotted path of the key
(``streams[0].compressor.budget: expected ...``). Component configs (model, compressor, source, ...) raise their
own ValueErrors naming only their field; `build` puts the path in front. Nested dataclasses, tuples of them and
scalar types are found from the dataclass's type hints, so a config class needs no registration here.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

#: Where the shipped YAML configs live (this package's folder).
CONFIG_DIR = Path(__file__).resolve().parent

T = TypeVar("T")
_SCALARS = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


class ConfigError(ValueError):
    """A config value or key is wrong; the message starts with the dotted path of the key."""


def check(ok: bool, key: str, expected: str, got: Any) -> None:
    """Raise ConfigError("<key>: expected <expected>, got <got>") unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {got!r}")


def _resolve(hint: Any) -> tuple[Any, bool]:
    """A field's type hint -> (the type inside Optional / tuple[X, ...], whether it is a tuple of it)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is tuple and args and args[-1] is Ellipsis:
        return args[0], True
    if args and typing.get_origin(hint) is not dict and len(args) == 1:
        return args[0], False
    return hint, False


def _field(value: Any, hint: Any, where: str) -> Any:
    """One field's raw value -> the value the dataclass takes (nested configs built, types checked)."""
    inner, is_tuple = _resolve(hint)
    if dataclasses.is_dataclass(inner):
        if is_tuple:
            check(isinstance(value, (list, tuple)), where, "a list", value)
            return tuple(build(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
        return build(inner, value, where)
    if is_tuple:
        check(isinstance(value, (list, tuple)), where, "a list", value)
        return tuple(value)
    if inner in _SCALARS and value is not None:
        ok = isinstance(value, _SCALARS[inner]) and not (inner is not bool and isinstance(value, bool))
        check(ok, where, inner.__name__, value)
    elif typing.get_origin(inner) is dict:
        check(isinstance(value, Mapping), where, "a mapping", value)
    return value


def build(cls: type[T], data: Any, key: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursively; unknown keys, wrong scalar types and bad values raise
    ConfigError naming the dotted key. An instance of ``cls`` is returned as it is."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key or cls.__name__}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{key + '.' if key else ''}{unknown[0]}: unknown key (expected one of {sorted(names)})")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _field(value, hints[name], f"{key}.{name}" if key else name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        raise ConfigError(message if not key or message.startswith(key) else f"{key}.{message}") from None


def config_path(path_or_name: str | Path) -> Path:
    """A shipped config name ("default", "train-default", ...) or a YAML path -> its path."""
    path = Path(path_or_name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    shipped = CONFIG_DIR / f"{path_or_name}.yaml"
    if not shipped.exists():
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"config: expected a YAML path or one of {names}, got {str(path_or_name)!r}")
    return shipped
