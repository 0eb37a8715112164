"""YAML -> typed config dataclasses, one builder for every config (pipeline, training).

`ConfigError` is the one config error type users see; its message starts with the dotted path of the key
(``streams[0].compressor.budget: expected ...``). Component configs (model, compressor, source, ...) validate
themselves with `check` and `check_types`, raising ConfigError (or their own subclass of it) naming only their
field; `build` puts the path in front. Nested dataclasses, tuples of them and scalar types are found from the
dataclass's type hints, so a config class needs no registration here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
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


def check(ok: bool, key: str, expected: str, got: Any, error: type[ConfigError] = ConfigError) -> None:
    """Raise ``error("<key>: expected <expected>, got <got!r>")`` unless ``ok``."""
    if not ok:
        raise error(f"{key}: expected {expected}, got {got!r}")


def check_types(instance: Any, error: type[ConfigError] = ConfigError) -> None:
    """Check every field of dataclass ``instance`` against its type hint; the first wrong one raises
    ``error("<field>: expected <type>, got <type of value> <value!r>")``.

    Checked hints: ``int`` (not a bool), ``float`` (finite; an int is fine), ``str``, ``bool``, ``X | None`` and
    ``tuple[X, ...]`` of these (an element's key is ``<field>[i]``). Any other hint (a nested dataclass, a
    dict, an enum, a union of several types) is left to the class itself.
    """
    for name, inner, is_tuple, optional in _scalar_fields(type(instance)):
        value = getattr(instance, name)
        if value is None and optional:
            continue
        if is_tuple:
            check(isinstance(value, tuple), name, f"a tuple of {_expected(inner)}", value, error)
            items = {f"{name}[{i}]": item for i, item in enumerate(value)}
        else:
            items = {name: value}
        for key, item in items.items():
            if not _is_scalar(item, inner):
                raise error(f"{key}: expected {_expected(inner)}, got {type(item).__name__} {item!r}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)``, once per class (it evaluates every annotation: about 1 ms for a config)."""
    return typing.get_type_hints(cls)


@functools.cache
def _scalar_fields(cls: type) -> tuple[tuple[str, type, bool, bool], ...]:
    """The fields of dataclass ``cls`` that `check_types` checks: (name, scalar type, is a tuple, may be None)."""
    resolved = ((f.name, *_resolve(_hints(cls)[f.name])) for f in dataclasses.fields(cls))
    return tuple(field for field in resolved if field[1] in _SCALARS)


def _is_scalar(value: Any, kind: type) -> bool:
    """Whether ``value`` is a valid ``kind`` (a key of _SCALARS), the one definition `build` and `check_types`
    share: a bool is no int or float, an int is a fine float, and a float must be finite."""
    if not isinstance(value, _SCALARS[kind]) or (kind is not bool and isinstance(value, bool)):
        return False
    return kind is not float or isinstance(value, int) or math.isfinite(value)


def _expected(kind: type) -> str:
    """What an error message says a ``kind`` (a key of _SCALARS) must be."""
    return "a finite float" if kind is float else kind.__name__


def _resolve(hint: Any) -> tuple[Any, bool, bool]:
    """A field's type hint -> (the type inside ``X | None`` / ``tuple[X, ...]``, whether it is a tuple of it,
    whether None is allowed)."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) == 1:
            hint = args[0]
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0], True, optional
    return hint, False, optional


def _field(value: Any, hint: Any, where: str) -> Any:
    """One field's raw value -> the value the dataclass takes (nested configs built, types checked)."""
    inner, is_tuple, optional = _resolve(hint)
    if dataclasses.is_dataclass(inner):
        if is_tuple:
            check(isinstance(value, (list, tuple)), where, "a list", value)
            return tuple(build(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
        return build(inner, value, where)
    if is_tuple and not (value is None and optional):
        check(isinstance(value, (list, tuple)), where, "a list", value)
        return tuple(value)
    if inner in _SCALARS and value is not None:
        check(_is_scalar(value, inner), where, _expected(inner), value)
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
    hints = _hints(cls)
    kwargs = {name: _field(value, hints[name], f"{key}.{name}" if key else name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        raise ConfigError(message if not key or message.startswith(key) else f"{key}.{message}") from None


def apply_settings(data: Mapping[str, Any], settings: typing.Sequence[str]) -> dict[str, Any]:
    """``data`` with each ``"dotted.key=value"`` of ``settings`` set (value read as YAML: ``3``, ``0.5``,
    ``true``, ``null``, ``[1, 2]``, text), creating mappings on the way. A list in the path is not indexed:
    set the whole list instead. Returns a new dict; ``data`` is not changed."""
    import yaml

    out = _copy_mappings(data)
    for setting in settings:
        key, sep, text = setting.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set: expected KEY=VALUE with a dotted KEY (e.g. model.init=out/run/model), "
                              f"got {setting!r}")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: expected {'.'.join(parts[:i + 1])} to be a mapping, got "
                                  f"{type(child).__name__}")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: expected a YAML value, got {text!r} ({exc.problem})") from None
    return out


def _copy_mappings(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _copy_mappings(v) if isinstance(v, Mapping) else v for k, v in data.items()}


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
