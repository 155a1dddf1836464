"""Finding and reading config files, merging extra values and command-line overrides."""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from dataclasses import dataclass
from typing import Any

from xautodl.config_utils.config import Config
from xautodl.config_utils.values import PARSERS, ValueParseError, infer_type_tag, parse_typed
from xautodl.errors import ConfigError

PathLike = str | os.PathLike
ENTRY_EXAMPLE = '"LR": ["float", "0.025"]'


@dataclass(frozen=True)
class FileKind:
    """What a file in the config format is for, as its error messages name it."""

    name: str  # "config file"
    example_path: str  # a shipped file of the kind
    entry_example: str  # one entry as such a file writes it


CONFIG_FILE = FileKind("config file", "configs/opts/NAS-CIFAR.config", ENTRY_EXAMPLE)
SPLIT_FILE = FileKind("split file", "configs/nas-benchmark/cifar-split.txt", '"train": ["int", ["0", "5", ...]]')

# Keys of the optimisation configs (REFERENCE section 4) whose values have a range: key -> (lowest, what it is).
# A value outside it would train nothing (epochs), or climb the loss (a negative learning rate) without a word.
VALUE_RANGES: dict[str, tuple[float, str]] = {
    "epochs": (1, "the number of epochs, 1 or more"),
    "warmup": (0, "the warm-up epochs, 0 or more"),
    "LR": (0, "the learning rate, 0 or more"),
    "eta_min": (0, "the final learning rate, 0 or more"),
    "decay": (0, "the weight decay, 0 or more"),
    "momentum": (0, "the momentum, 0 or more"),
    "batch_size": (1, "the batch size, 1 or more"),
}


def package_config_dir() -> Path:
    """The config folder shipped inside the installed package (`xautodl/configs`)."""
    return Path(__file__).resolve().parent.parent / "configs"


def resolve_config_path(path: PathLike, kind: FileKind = CONFIG_FILE) -> Path:
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
        f"{kind.name} {str(path)!r} not found (tried {places}); give the path of an existing {kind.name}, "
        f"for example {kind.example_path}"
    )


def load_config(
    path: PathLike,
    extra: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
    kind: FileKind = CONFIG_FILE,
) -> Config:
    """Read a `{"key": [type, value]}` config file, then merge `extra` values and `overrides`.

    `kind` names the file in error messages (a split file is not an optimiser config). The keys of
    `VALUE_RANGES` must lie in their range (ConfigError otherwise).

    `extra` adds (or replaces) keys with ready Python values, such as `class_num` and `xshape`.
    `overrides` change existing keys: "key=value" strings or a dict, parsed to the key's type
    ("LR=0.1", "nesterov=false"; comma-separated items for list values).
    """
    file = resolve_config_path(path, kind)
    values, types = _read_entries(file, kind)
    for key, value in (extra or {}).items():
        values[key] = value
        types[key] = infer_type_tag(value)
    if overrides:
        _apply_overrides(values, types, overrides, str(file))
    _check_ranges(values, file, kind)
    return Config(values, types, source=str(file))


def _check_ranges(values: Mapping[str, Any], file: Path, kind: FileKind) -> None:
    for key, (lowest, meaning) in VALUE_RANGES.items():
        value = values.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not (
                math.isfinite(value) and value >= lowest):
            raise ConfigError(f"{file}: {key} is {value}, but it is {meaning}; fix the {kind.name} (or pass "
                              f"another one)")


def _read_entries(file: Path, kind: FileKind) -> tuple[dict[str, Any], dict[str, str | None]]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {kind.name} {file}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{kind.name} {file} is not UTF-8 text (a binary file?); a {kind.name} is a JSON "
                          f"object whose entries look like {kind.entry_example}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{file}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}; a {kind.name} is a JSON "
            f"object whose entries look like {kind.entry_example}"
        ) from None
    if not isinstance(document, dict):
        raise ConfigError(f"{file}: expected a JSON object such as {{{kind.entry_example}}}, got "
                          f"{type(document).__name__}")
    values: dict[str, Any] = {}
    types: dict[str, str | None] = {}
    for key, entry in document.items():
        if not (isinstance(entry, list) and len(entry) == 2):
            raise ConfigError(f"{file}: key {key!r}: expected a [type, value] pair such as {kind.entry_example}, "
                              f"got {entry!r}")
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
