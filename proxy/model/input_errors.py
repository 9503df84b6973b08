"""The wording of refusals of a request's input: what the caller reads, and what it may not.

Values of sensitive members are never quoted (the caller's own secret must not reach our
logs through a message); other values are cut to 64 characters. Suggestions ("did you
mean ...?") only name what the model has, never the caller's value.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from proxy.errors import RequestInvalid

_SINGULAR = {" items": " item", " entries": " entry", " characters long": " character long"}


def quote(value: object, sensitive: bool) -> str:
    """A short, safe rendering of a caller's value for a message."""
    if sensitive:
        return "(value hidden: sensitive member)"
    return short(repr(value))


def short(text: str) -> str:
    """`text` cut to 64 characters: a caller's name must not make a message huge."""
    return text if len(text) <= 64 else text[:61] + "..."


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "array", str: "string", type(None): "null"}.get(
        type(value), type(value).__name__)


def type_error(path: str, expected: str, value: object, sensitive: bool) -> RequestInvalid:
    """'`name` must be a string, got number 3'; containers and hidden values are not shown."""
    got = _json_type(value)
    shown = "" if sensitive or got in ("object", "array", "null") else f" {quote(value, False)}"
    return RequestInvalid(f"`{path}` must be {expected}, got {got}{shown}")


def bound_error(path: str, n: float, lo: float, hi: float, unit: str,
                show: bool = True) -> RequestInvalid:
    """'`arns` must be at most 50 items (got 51)'; `show` False hides `n` (a sensitive value)."""
    got = f" (got {n})" if show else ""
    word, bound = ("least", lo) if not lo <= n else ("most", hi)
    unit = unit if bound != 1 else _SINGULAR.get(unit, unit)
    return RequestInvalid(f"`{path}` must be at {word} {bound}{unit}{got}")


def enum_error(path: str, value: str, allowed: frozenset[str], sensitive: bool) -> RequestInvalid:
    """Lists the allowed values; suggests one that differs from `value` only in case."""
    hint = [a for a in sorted(allowed) if a.lower() == value.lower()]
    tail = f"; did you mean {hint[0]!r}?" if hint and not sensitive else ""
    listed = ", ".join(repr(a) for a in sorted(allowed))
    return RequestInvalid(f"`{path}` must be one of {listed}; got {quote(value, sensitive)}{tail}")


def unknown_member(op: str, names: tuple[str, ...], elsewhere: Mapping[str, str],
                   key: str, path: str) -> RequestInvalid:
    """'unknown member `Name` in CreateChannel input; did you mean `name`?' and friends.

    `names` are the members valid at `path`; `elsewhere` maps the operation's path and
    query members to "path parameter" or "query parameter".
    """
    prefix = f"{path}." if path else ""
    message = f"unknown member `{prefix}{short(key)}` in {op} input"
    close = [n for n in names if n.lower() == key.lower()]
    close = close or difflib.get_close_matches(key, names, n=1, cutoff=0.8)
    if close:
        return RequestInvalid(f"{message}; did you mean `{prefix}{close[0]}`?")
    if key in elsewhere:
        return RequestInvalid(f"{message}; `{key}` is a {elsewhere[key]}, not a body member")
    if not names:
        return RequestInvalid(f"{message}; it takes no members here")
    listed = ", ".join(f"`{n}`" for n in names[:10]) + (", ..." if len(names) > 10 else "")
    where = f" of `{path}`" if path else ""
    return RequestInvalid(f"{message}; valid members{where}: {listed}")
