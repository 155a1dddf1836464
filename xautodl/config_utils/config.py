"""`Config`: the loaded values of a config file, read-only, with attribute and item access."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from xautodl.errors import ConfigError
from xautodl.runtime.serialization import to_plain


class MissingConfigKeyError(ConfigError, AttributeError, KeyError):
    """A key that the config does not have (an AttributeError for `cfg.x`, a KeyError for `cfg["x"]`)."""

    def __str__(self) -> str:
        # KeyError would quote the message; this error is read by people.
        return str(self.args[0])


class Config(Mapping[str, Any]):
    """Values of a config file plus merged extras; `cfg.LR`, `cfg["LR"]`, `cfg.get("LR")`.

    `types` remembers the type tag of every key (None when no tag fits an extra value) so that command-line
    overrides can be parsed to the right type. `source` is the file the values came from.
    """

    __slots__ = ("_values", "_types", "_source")

    def __init__(self, values: Mapping[str, Any], types: Mapping[str, str | None], source: str | None = None) -> None:
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_types", dict(types))
        object.__setattr__(self, "_source", source)

    @property
    def source(self) -> str | None:
        """The config file these values were read from (None for configs built in code)."""
        return self._source

    def type_of(self, key: str) -> str | None:
        """The type tag of `key` ("str", "int", "float", "bool", "none"), or None for untyped extras."""
        self._require(key)
        return self._types.get(key)

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-safe dict of the values (tuples become lists)."""
        return to_plain(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            # Keeps copy/pickle probing (`__deepcopy__`, `__getstate__`, ...) away from the key lookup.
            raise AttributeError(name)
        return self._values[self._require(name)]

    def __setattr__(self, name: str, value: Any) -> None:
        raise ConfigError(
            f"config values are read-only (tried to set {name!r}); pass overrides to load_config instead"
        )

    def __getitem__(self, key: str) -> Any:
        return self._values[self._require(key)]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        body = ", ".join(f"{key}={_short_repr(value)}" for key, value in self._values.items())
        return f"Config({body})"

    def __reduce__(self) -> tuple:
        return (Config, (self._values, self._types, self._source))

    def _require(self, key: str) -> str:
        if key not in self._values:
            where = f" in {self._source}" if self._source else ""
            raise MissingConfigKeyError(
                f"config key {key!r} not found{where}; available keys: {', '.join(sorted(self._values)) or 'none'}"
            )
        return key


def _short_repr(value: Any) -> str:
    if isinstance(value, list) and len(value) > 6:
        return f"[{', '.join(map(repr, value[:3]))}, ... ({len(value)} items)]"
    return repr(value)
