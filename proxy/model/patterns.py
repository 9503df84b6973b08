r"""Smithy patterns (ECMA-262 regular expressions) as Python searches.

Smithy gives patterns ECMA-262 syntax and search semantics: the pattern may be found
anywhere in the value, it is not anchored. Python's `re` reads most patterns the same;
`_translate` rewrites what it reads differently and refuses what it cannot express (the
caller skips those: AWS still checks them).

`\p{..}` (Unicode general categories) is the costly part: `re` has no such classes, and
spelling one out takes a scan of all of Unicode and a class of thousands of ranges, about
0.3 s. So a pattern that is one class, which is how the models use `\p` (ivs `TagKey`,
`TagValue`), becomes a set test on each character's `unicodedata.category`, run in C and
free to build. Any other pattern with `\p` (none in the models today) spells its classes
out at its first search, once: never at start-up.
`unicodedata` may be a Unicode version or two behind the JVM AWS runs: characters
assigned since then count as unassigned here. That is the only known inexactness.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
import warnings
from collections.abc import Callable

Search = Callable[[str], object]  # truthy when the pattern is found in the text


def always_found(text: str) -> bool:
    """The search of a pattern every string has (e.g. `[a-z]*`, found empty): no check."""
    return True


_ECMA_SPACE = ("\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f"
               "\\u3000\\ufeff")
_LONG_CATEGORY = {"Letter": "L", "Mark": "M", "Number": "N", "Punctuation": "P",
                  "Symbol": "S", "Separator": "Z", "Other": "C"}
_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No",
                         "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So",
                         "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn"})
# Anything that looks at text without consuming it: a pattern with none of these that is
# found in "" is found (empty) at the start of every string. Textual, so false alarms
# (an escaped `\^`) only cost the shortcut.
_ASSERTION = re.compile(r"[\^$]|\\[bB]|\(\?<?[=!]")
_PROPERTY = re.compile(r"(?<!\\)(?:\\\\)*\\[pP]")  # `\p` or `\P`, not `\\p`


@functools.cache  # the same patterns recur in every operation of a service
def compile_ecma_pattern(pattern: str) -> Search | None:
    """The search for a Smithy pattern; None if Python cannot express it (skip the check)."""
    if _PROPERTY.search(pattern) is None:
        compiled = _compile(_translate(pattern))
        if compiled is None:
            return None
        if compiled.search("") is not None and not _ASSERTION.search(pattern):
            return always_found
        return compiled.search
    shape = _ONE_CLASS.fullmatch(pattern)
    if shape is not None and _is_one_class(shape):
        return _class_search(shape)
    if _compile(_translate(pattern, _any_character)) is None:  # same syntax, no tables
        return None
    return lambda text: _spelled_out(pattern)(text)


@functools.cache
def _spelled_out(pattern: str) -> Search:
    """A `\\p` pattern with its classes spelled out; built at its first search."""
    compiled = _compile(_translate(pattern))
    return compiled.search if compiled is not None else always_found


def _compile(translated: str | None) -> re.Pattern[str] | None:
    if translated is None:
        return None
    try:
        with warnings.catch_warnings():  # FutureWarning on "--" in classes: same meaning
            warnings.simplefilter("ignore")
            return re.compile(translated, re.ASCII)
    except re.error:
        return None


# ---- one class: a test per character -----------------------------------------------------

# `[...]`, `\p{..}` or `\P{..}`, perhaps grouped, perhaps quantified, perhaps anchored.
_ONE_CLASS = re.compile(r"""
    (?P<start>\^?) (?P<open>\()?
    (?: \[ (?P<negated>\^?+) (?P<body>(?:\\.|[^\\\]])+) \] | \\(?P<p>[pP]) \{ (?P<name>\w+) \} )
    (?P<inner>[*+?]?) (?(open)\)) (?P<outer>[*+?]?) (?P<end>\$?)
""", re.VERBOSE)
_CLASS_ITEM = re.compile(r"\\[pP](?:\{(\w+)\})?|\\.|.", re.DOTALL)
_REPEAT = {"": (1, 1), "?": (0, 1), "+": (1, math.inf), "*": (0, math.inf)}
_NOTHING = re.compile("(?!)")  # finds nothing anywhere


def _is_one_class(shape: re.Match[str]) -> bool:
    """Anchored at both ends or neither, one quantifier, and no range touching a `\\p`."""
    body = shape["body"] or ""
    return (bool(shape["start"]) == bool(shape["end"]) and not (shape["inner"] and shape["outer"])
            and "-\\p" not in body and re.search(r"\\p\{\w+\}-", body) is None)


def _class_search(shape: re.Match[str]) -> Search | None:
    """The search for a one-class pattern, or None if its class cannot be expressed."""
    parts = _class_parts(shape)
    if parts is None:
        return None
    categories, others, negated = parts
    some, every = _some_in(categories, others), _every_in(categories, others)
    lo, hi = _REPEAT[shape["inner"] or shape["outer"]]
    if not shape["start"]:  # found: one character of the class anywhere, or none if lo is 0
        if lo == 0:
            return always_found
        return (lambda text: not every(text)) if negated else some
    if negated:
        return lambda text: lo <= len(text) <= hi and not some(text)
    return lambda text: lo <= len(text) <= hi and every(text)


def _class_parts(
    shape: re.Match[str],
) -> tuple[frozenset[str], re.Pattern[str] | None, bool] | None:
    """(`\\p{..}` categories, a class of the other items, negated), or None if inexpressible."""
    if shape["p"]:
        categories = _categories(shape["name"])
        return (categories, None, shape["p"] == "P") if categories else None
    named: set[str] = set()
    rest = ""
    for item in _CLASS_ITEM.finditer(shape["body"]):
        if item[0][:2] in ("\\p", "\\P"):
            categories = _categories(item[1] or "")
            if item[0][1] == "P" or not categories:  # `[\\P{..}]` needs set subtraction
                return None
            named |= categories
        else:
            rest += item[0]
    if rest.startswith("^"):  # a literal here: the class's own `^` is already taken off
        rest = "\\" + rest
    others = _compile(_translate(f"[{rest}]")) if rest else None
    if rest and others is None:
        return None
    return frozenset(named), others, bool(shape["negated"])


def _some_in(categories: frozenset[str], others: re.Pattern[str] | None) -> Search:
    """Is some character of the text in the class (of `categories`, or matched by `others`)?

    All in C, stopping at the first member: one `re` class finds ASCII members (values
    are nearly always ASCII); `map` over `unicodedata.category` into a set test does the rest.
    """
    category, disjoint = unicodedata.category, categories.isdisjoint
    other = (others or _NOTHING).search
    members = "".join(f"\\x{i:02x}" for i in range(128)
                      if category(chr(i)) in categories or other(chr(i)) is not None)
    ascii_in = (re.compile(f"[{members}]") if members else _NOTHING).search

    def some(text: str) -> bool:
        return ascii_in(text) is not None or (not text.isascii() and (
            not disjoint(map(category, text)) or other(text) is not None))
    return some


def _every_in(categories: frozenset[str], others: re.Pattern[str] | None) -> Search:
    """Is every character of the text in the class (of `categories`, or matched by `others`)?

    In C as well: `others` takes its characters out, the rest must all be of a category.
    """
    superset, category = categories.issuperset, unicodedata.category
    strip = others.sub if others is not None else None

    def every(text: str) -> bool:
        return superset(map(category, text if strip is None else strip("", text)))
    return every


# ---- translation into `re` --------------------------------------------------------------


def _categories(name: str) -> frozenset[str]:
    """`\\p{name}`'s general categories ("L" or "Letter": Lu Ll Lt Lm Lo); empty if unknown.

    General categories only: scripts and other properties are not expressed.
    """
    name = _LONG_CATEGORY.get(name, name)
    if not 1 <= len(name) <= 2:
        return frozenset()
    return frozenset(c for c in _CATEGORIES if c.startswith(name))


@functools.cache
def _category_runs() -> dict[str, str]:
    """Class bodies per 2-letter general category, from Python's unicodedata (one pass)."""
    runs: dict[str, list[str]] = {}
    start, cat = 0, unicodedata.category("\0")
    for cp in range(1, 0x110001):
        c = unicodedata.category(chr(cp)) if cp < 0x110000 else ""
        if c != cat:
            runs.setdefault(cat, []).append(f"\\U{start:08x}-\\U{cp - 1:08x}")
            start, cat = cp, c
    return {k: "".join(v) for k, v in runs.items()}


def _property_class(name: str) -> str | None:
    """The class body for `\\p{name}`, spelled out; None if it is not a general category."""
    runs = _category_runs()
    return "".join(runs.get(c, "") for c in sorted(_categories(name))) or None


def _any_character(name: str) -> str | None:
    """A stand-in for `_property_class` of the same syntax, to check a pattern cheaply."""
    return "\\x00-\\U0010ffff" if _categories(name) else None


def _translate(pattern: str,
               property_class: Callable[[str], str | None] = _property_class) -> str | None:
    """ECMA-262 pattern -> equivalent Python pattern (compiled with re.ASCII), or None.

    Differences handled: `\\p{..}` general categories; ECMA `\\s` (Unicode), `.` (no line
    terminators) and `$` (true end, not before a final newline); `(?<name>`; `{,n}`.
    Compiling with re.ASCII gives ECMA's ASCII-only `\\d \\w \\b`. Anything else that
    reads differently (`\\P` in a class, `\\c`, `\\k`, `\\u{..}`, empty classes, variable
    lookbehind...) -> None: the pattern is skipped, AWS still checks it.
    """
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":
            e = pattern[i + 1: i + 2]
            if e in ("p", "P"):
                m = re.match(r"\{(\w+)\}", pattern[i + 2:])
                body = property_class(m[1]) if m else None
                if body is None or (in_class and e == "P"):
                    return None
                out.append(body if in_class else f"[{'^' if e == 'P' else ''}{body}]")
                i += 2 + m.end()  # type: ignore[union-attr]
                continue
            if e in ("s", "S"):
                if in_class and e == "S":
                    return None
                out.append(_ECMA_SPACE if in_class else f"[{'^' if e == 'S' else ''}{_ECMA_SPACE}]")
            elif e in ("", "c", "k", "A", "Z", "a", "N", "g") or pattern.startswith("\\u{", i):
                return None  # ECMA-only escapes, or letters Python reads differently
            else:
                out.append(pattern[i: i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
            out.append("\\" + c if c in "[&~|" else c)
        elif c == "[":
            in_class = True
            j = i + 2 if pattern.startswith("[^", i) else i + 1
            if pattern[j: j + 1] == "]":  # ECMA's empty classes [] and [^]
                return None
            out.append(pattern[i:j])
            i = j
            continue
        elif c == ".":
            out.append("[^\\n\\r\\u2028\\u2029]")
        elif c == "$":
            out.append("\\Z")
        elif c == "{" and pattern.startswith("{,", i):
            out.append("\\{")  # a literal in ECMA; Python 3.11 reads {,n} as a quantifier
        elif pattern.startswith("(?<", i) and pattern[i + 3: i + 4] not in ("=", "!"):
            out.append("(?P<")
            i += 3
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)
