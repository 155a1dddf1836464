"""Finding and reading config files, merging extra values and command-line overrides."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xautodl.config_utils.config import Config
from xautodl.config_utils.values import PARSERS, ValueParseError, infer_type_tag, parse_typed
from xautodl.errors import ConfigError

PathLike = str | os.PathLike
ENTRY_EXAMPLE = '"LR": ["float", "0.025"]'


def package_config_dir() -> Path:
    """The config folder shipped inside the installed package (`xautodl/configs`)."""
    return Path(__file__).resolve().parent.parent / "configs"


def resolve_config_path(path: PathLike) -> Path:
    """`path` itself when it exists (relative to the working directory), else the same path inside the
    package's config folder (a leading "configs/" dropped), so shipped configs work from any directory."""
    given = Path(path)
    if given.is_file():
        return given
    tried = [given.resolve()]
    if not given.is_absolute():
        parts = given.parts[1:] if given.parts[:1] == ("configs",) else given.parts
        packaged = package_config_dir().joinpath(*parts)
        if packaged.is_file():
            return packaged
        tried.append(packaged)
    places = " and ".join(str(place) for place in tried)
    raise ConfigError(
        f"config file {str(path)!r} not found (tried {places}); give the path of an existing config file, "
        f"for example configs/opts/NAS-CIFAR.config"
    )


def load_config(
    path: PathLike,
    extra: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> Config:
    """Read a `{"key": [type, value]}` config file, then merge `extra` values and `overrides`.

    `extra` adds (or replaces) keys with ready Python values, such as `class_num` and `xshape`.
    `overrides` change existing keys: "key=value" strings or a dict, parsed to the key's type
    ("LR=0.1", "nesterov=false"; comma-separated items for list values).
    """
    file = resolve_config_path(path)
    values, types = _read_entries(file)
    for key, value in (extra or {}).items():
        values[key] = value
        types[key] = infer_type_tag(value)
    if overrides:
        _apply_overrides(values, types, overrides, str(file))
    return Config(values, types, source=str(file))


def _read_entries(file: Path) -> tuple[dict[str, Any], dict[str, str | None]]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {file}: {err}") from err
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{file}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}; a config file is a JSON "
            f"object whose entries look like {ENTRY_EXAMPLE}"
        ) from None
    if not isinstance(document, dict):
        raise ConfigError(f"{file}: expected a JSON object such as {{{ENTRY_EXAMPLE}}}, got {type(document).__name__}")
    values: dict[str, Any] = {}
    types: dict[str, str | None] = {}
    for key, entry in document.items():
        if not (isinstance(entry, list) and len(entry) == 2):
            raise ConfigError(f"{file}: key {key!r}: expected a [type, value] pair such as {ENTRY_EXAMPLE}, got {entry!r}")
        type_tag, raw = entry
        if type_tag not in PARSERS:
            raise ConfigError(
                f"{file}: key {key!r}: unknown type {type_tag!r}; expected one of {', '.join(PARSERS)}"
            )
        try:
            values[key] = parse_typed(type_tag, raw)
        except ValueParseError as err:
            raise ConfigError(f"{file}: key {key!r} of type {type_tag}: {err}") from None
        types[key] = type_tag
    return values, types


def _apply_overrides(
    values: dict[str, Any],
    types: dict[str, str | None],
    overrides: Mapping[str, Any] | Sequence[str],
    source: str,
) -> None:
    pairs = overrides.items() if isinstance(overrides, Mapping) else map(_split_override, overrides)
    for key, raw in pairs:
        if key not in values:
            raise ConfigError(
                f"override {key!r} for {source}: unknown key; the keys of this config are {', '.join(sorted(values))}"
            )
        values[key] = _override_value(key, raw, values[key], types[key], source)


def _split_override(text: str) -> tuple[str, str]:
    key, sep, raw = str(text).partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected the form key=value, for example LR=0.1")
    return key.strip(), raw.strip()


def _override_value(key: str, raw: Any, current: Any, type_tag: str | None, source: str) -> Any:
    if type_tag is None:
        if isinstance(raw, str):
            raise ConfigError(
                f"override {key!r} for {source}: this key holds a {type(current).__name__} value that cannot be "
                "parsed from text; pass it as a Python value in a dict"
            )
        return raw
    if isinstance(current, list) and isinstance(raw, str):
        raw = [item.strip() for item in raw.strip().strip("[]").split(",") if item.strip()]
    try:
        return parse_typed(type_tag, raw)
    except ValueParseError as err:
        raise ConfigError(f"override {key!r} for {source}: key of type {type_tag}: {err}") from None
