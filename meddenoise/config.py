"""The one TOML loader: read a file, and build frozen dataclasses from its tables, rejecting unknown keys.

Training recipes, batch selection rules and the DICOM node's settings all load through here, so
every config names the file and the key on error, suggests the key that was probably meant, and
checks types against the dataclass's annotations (TOML reads ``1e-4`` as a float, unlike YAML 1.1).
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from meddenoise.errors import ConfigError

__all__ = ["build_config", "read_toml"]


def read_toml(path: str | Path, *, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or malformed one is a ConfigError naming ``what``.

    Examples
    --------
    >>> read_toml("/no/such.toml", what="rules")
    Traceback (most recent call last):
    ...
    meddenoise.errors.ConfigError: /no/such.toml: cannot read rules (no such config file)
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: cannot read {what} (no such config file)") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: cannot read {what} (not valid TOML: {err})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read {what} ({err})") from err


def _coerce_literal(value: Any, annotation: Any, where: str) -> Any:
    if value not in get_args(annotation):
        raise ConfigError(f"{where} = {value!r}; valid values: {', '.join(map(str, get_args(annotation)))}")
    return value


def _coerce_tuple(value: Any, annotation: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list, got {value!r}")
    args = get_args(annotation)
    item_types = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
    if len(item_types) != len(value):
        raise ConfigError(f"{where} must have {len(item_types)} items, got {len(value)}")
    return tuple(
        _coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, item_types, strict=True))
    )


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a dataclass field annotation, converting lists to tuples."""
    origin = get_origin(annotation)
    if origin is Literal:
        return _coerce_literal(value, annotation, where)
    if origin is tuple:
        return _coerce_tuple(value, annotation, where)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return value if value is None or len(options) != 1 else _coerce(value, options[0], where)
    return _coerce_plain(value, annotation, where)


def _coerce_plain(value: Any, annotation: Any, where: str) -> Any:
    if get_origin(annotation) is dict:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is Path and isinstance(value, str):
        return Path(value)
    if (isinstance(annotation, type) and not isinstance(value, annotation)) or (
        isinstance(value, bool) and annotation is not bool
    ):
        raise ConfigError(f"{where} must be {getattr(annotation, '__name__', annotation)}, got {value!r}")
    return value


def build_config(cls: type, table: Any, where: str = "") -> Any:
    """An instance of dataclass ``cls`` from a TOML table: unknown keys and wrong types are ConfigErrors.

    ``where`` prefixes key names in messages (``"data"`` gives ``data.dose_range``).

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True)
    ... class Rules:
    ...     min_slices: int = 1
    >>> build_config(Rules, {"min_slices": 3})
    Rules(min_slices=3)
    >>> build_config(Rules, {"min_slice": 3})
    Traceback (most recent call last):
    ...
    meddenoise.errors.ConfigError: unknown key min_slice (did you mean 'min_slices'?)
    """
    prefix = f"{where}." if where else ""
    if not isinstance(table, dict):
        raise ConfigError(f"{where or 'the config'} must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    unknown = sorted(set(table) - names)
    if unknown:
        close = difflib.get_close_matches(unknown[0], names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {', '.join(sorted(names))}"
        raise ConfigError(f"unknown key {prefix}{unknown[0]}{hint}")
    values = {key: _coerce(value, hints[key], f"{prefix}{key}") for key, value in table.items()}
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{where or 'the config'}: {err}") from err
