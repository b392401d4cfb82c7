"""TOML loading with validation that names file, key and value (stdlib tomllib).

Every TOML file mediasvc reads (media profiles, film layouts, the MDS definition, the service
configuration) goes through :class:`Table`, so that an error always reads
``FILE: section.key = value: reason`` and a site can fix its own files without reading code.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from mediasvc.errors import NO_VALUE, ConfigError

T = TypeVar("T")
_MISSING: Any = object()
# Table has methods named str/int/float; annotations inside it use these aliases.
_Str = str
_Int = int
_Float = float


def load_toml(path: Path) -> Table:
    """Parse a TOML file into a root :class:`Table`; syntax errors become ConfigError."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(path, "", NO_VALUE, f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", NO_VALUE, f"not valid TOML: {exc}") from exc
    return Table(data, path)


class Table:
    """A TOML table with typed, validating accessors; errors name file, key and value."""

    def __init__(self, data: dict[_Str, Any], file: Path, prefix: _Str = "") -> None:
        self.data = data
        self.file = file
        self.prefix = prefix

    # -- errors -------------------------------------------------------------------------------
    def name(self, key: _Str) -> _Str:
        return f"{self.prefix}{key}"

    def error(self, key: _Str, reason: _Str, value: Any = _MISSING) -> ConfigError:
        if value is _MISSING:
            value = self.data.get(key, NO_VALUE)
        return ConfigError(self.file, self.name(key), value, reason)

    # -- structure ----------------------------------------------------------------------------
    def __contains__(self, key: _Str) -> bool:
        return key in self.data

    def keys(self) -> Iterable[_Str]:
        return self.data.keys()

    def check_keys(self, allowed: Iterable[_Str]) -> None:
        """Refuse keys this table does not know (typos must not be silently ignored)."""
        allowed_set = set(allowed)
        for key in self.data:
            if key not in allowed_set:
                raise self.error(key, f"unknown key (allowed: {', '.join(sorted(allowed_set))})")

    def _get(self, key: _Str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise ConfigError(self.file, self.name(key), NO_VALUE, "required key is missing")
        return default

    def _typed(self, key: _Str, default: Any, types: type | tuple[type, ...], what: _Str) -> Any:
        value = self._get(key, default)
        if key in self.data and (not isinstance(value, types) or isinstance(value, bool)
                                 and bool not in (types if isinstance(types, tuple) else (types,))):
            raise self.error(key, f"must be {what}")
        return value

    # -- scalars ------------------------------------------------------------------------------
    def str(self, key: _Str, default: Any = _MISSING, *, choices: Iterable[_Str] | None = None,
            pattern: _Str | None = None) -> Any:
        value = self._typed(key, default, _Str, "a string")
        if key in self.data:
            if choices is not None and value not in set(choices):
                raise self.error(key, f"must be one of {', '.join(sorted(set(choices)))}")
            if pattern is not None and not re.fullmatch(pattern, value):
                raise self.error(key, f"must match {pattern}")
        return value

    def int(self, key: _Str, default: Any = _MISSING, *, min: _Int | None = None,
            max: _Int | None = None) -> Any:
        value = self._typed(key, default, int, "an integer")
        if key in self.data:
            if min is not None and value < min:
                raise self.error(key, f"must be >= {min}")
            if max is not None and value > max:
                raise self.error(key, f"must be <= {max}")
        return value

    def float(self, key: _Str, default: Any = _MISSING, *, min: _Float | None = None,
              max: _Float | None = None) -> Any:
        value = self._typed(key, default, (int, float), "a number")
        if key in self.data:
            value = float(value)
            if min is not None and value < min:
                raise self.error(key, f"must be >= {min}")
            if max is not None and value > max:
                raise self.error(key, f"must be <= {max}")
        return value

    def bool(self, key: _Str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if key in self.data and not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def size(self, key: _Str, default: Any = _MISSING) -> Any:
        """A byte size: an integer or a string such as "700M", "4.7G" (decimal units)."""
        value = self._get(key, default)
        if key not in self.data:
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from exc

    def str_list(self, key: _Str, default: Any = _MISSING, *,
                 choices: Iterable[_Str] | None = None) -> Any:
        value = self._get(key, default)
        if key not in self.data:
            return value
        if not isinstance(value, list) or not all(isinstance(v, _Str) for v in value):
            raise self.error(key, "must be a list of strings")
        if choices is not None:
            allowed = set(choices)
            for item in value:
                if item not in allowed:
                    raise self.error(key, f"{item!r} is not one of {', '.join(sorted(allowed))}")
        return list(value)

    # -- nested -------------------------------------------------------------------------------
    def table(self, key: _Str, default: Any = _MISSING) -> Table:
        value = self._get(key, {} if default is _MISSING and key not in self.data else default)
        if key in self.data and not isinstance(value, dict):
            raise self.error(key, "must be a table")
        return Table(value if isinstance(value, dict) else {}, self.file, f"{self.name(key)}.")

    def tables(self, key: _Str, default: Any = _MISSING) -> list[Table]:
        """An array of tables (``[[key]]``)."""
        value = self._get(key, default)
        if key not in self.data:
            return list(value)
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, "must be an array of tables ([[...]])")
        return [Table(v, self.file, f"{self.name(key)}[{i}].") for i, v in enumerate(value)]

    def items(self) -> Iterator[tuple[_Str, Any]]:
        return iter(self.data.items())


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*$")
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_IUNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(value: object) -> int:
    """Parse a byte size: 700000000, "700M", "4.7G", "650MiB". Decimal units unless 'i'."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 700M or 4.7G")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be a positive size")
        return value
    if not isinstance(value, str):
        raise ValueError("must be a size such as 700M or 4.7G")
    m = _SIZE_RE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size such as 700M or 4.7G")
    number, unit, binary = float(m.group(1)), m.group(2).lower(), m.group(3)
    size = int(number * (_IUNITS if binary else _UNITS)[unit])
    if size <= 0:
        raise ValueError("must be a positive size")
    return size
