"""Typed values of the config format: `"key": [type, value]` with type in str, int, float, bool, none.

A value is a string, a JSON number (or JSON true/false for bool) or a flat list of them. The original tool
wrote every number as a string ("LR": ["float", "0.025"]), so strings are parsed by the type tag.
"""
from __future__ import annotations

from typing import Any, Callable

TRUE_WORDS = frozenset({"1", "true"})
FALSE_WORDS = frozenset({"0", "false"})
NONE_WORDS = frozenset({"none", "null"})


def _parse_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        return int(raw)
    raise ValueError


def _parse_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError
    if isinstance(raw, (int, float, str)):
        return float(raw)
    raise ValueError


def _parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError


def _parse_str(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return str(raw)
    raise ValueError


def _parse_none(raw: Any) -> None:
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in NONE_WORDS):
        return None
    raise ValueError


PARSERS: dict[str, Callable[[Any], Any]] = {
    "str": _parse_str,
    "int": _parse_int,
    "float": _parse_float,
    "bool": _parse_bool,
    "none": _parse_none,
}

EXPECTED: dict[str, str] = {
    "str": "a string",
    "int": 'an integer such as "16" or 16',
    "float": 'a number such as "0.025" or 0.025',
    "bool": '"0", "1", "true", "false", 0, 1, true or false',
    "none": '"none" or null',
}


class ValueParseError(ValueError):
    """A raw value that does not fit its type tag; `expected` says what would have."""

    def __init__(self, expected: str, raw: Any) -> None:
        super().__init__(f"expected {expected}, got {raw!r}")
        self.expected = expected
        self.raw = raw


def parse_typed(type_tag: Any, raw: Any) -> Any:
    """The Python value of a `[type_tag, raw]` entry; lists are parsed element-wise.

    Raises `ValueParseError` (message: what was expected and what was found).
    """
    if not isinstance(type_tag, str) or type_tag not in PARSERS:
        raise ValueParseError(f"a type tag among {sorted(PARSERS)}", type_tag)
    parse = PARSERS[type_tag]
    if isinstance(raw, list):
        try:
            # The fast path for the 75,850-entry split lists; only a failure pays for finding the bad item.
            return list(map(parse, raw))
        except (ValueError, TypeError, OverflowError):
            index = _first_bad_index(parse, raw)
            expected = f"a list of {type_tag} values ({EXPECTED[type_tag]}); item {index} is not"
            raise ValueParseError(expected, raw[index]) from None
    try:
        return parse(raw)
    except (ValueError, TypeError, OverflowError):
        raise ValueParseError(EXPECTED[type_tag], raw) from None


def _first_bad_index(parse: Callable[[Any], Any], raw: list) -> int:
    for index, item in enumerate(raw):
        try:
            parse(item)
        except (ValueError, TypeError, OverflowError):
            return index
    raise AssertionError("a list that failed to parse has no bad item")


def infer_type_tag(value: Any) -> str | None:
    """The type tag matching a Python value (lists by their first item), or None when no tag fits."""
    if isinstance(value, list):
        if not value:
            return None
        value = value[0]
    if value is None:
        return "none"
    for python_type, tag in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str")):
        if isinstance(value, python_type):
            return tag
    return None
