r"""Checks one operation's input against its botocore shape, and collects the ARNs it names.

`compile_input_validator` walks the shape tree ONCE (at start-up) and builds closures; a
request then only runs those closures: no botocore objects, no shape lookups by name.
Every message names the member path; values of sensitive shapes (and everything inside
a sensitive map or structure, keys included) are never quoted; other values are cut to
64 characters.

The model documents AWS; it is not AWS. Where we deviate from it, and why:
* ARN-typed strings (`arns.is_arn_shape`) are checked structurally by `arns.ArnRule`, not by
  the model regex, which hard-codes the `aws` partition and, for `ResourceArn` (all three
  models), allows ONE character of resource type, refusing every real ARN. The rule keeps
  what the patterns get right: service, resource type, a region and a numeric account;
  it asks the WHOLE value to be an ARN (the unanchored regexes would take "x arn:...")
  with an id free of whitespace. `^$|^arn...` patterns keep their empty case: "" is how
  AWS detaches e.g. a recording configuration. ivschat `LambdaArn` is `$|^arn:aws:lambda`,
  which under search semantics matches ANY string; we read it as meant, "" or a Lambda
  function ARN (the API reference says it must be one): stricter than the regex.
* Patterns use ECMA-262 search semantics (not anchored), as Smithy specifies, so the
  many `[a-zA-Z0-9-_]*` name patterns and ivs `TagValue` constrain nothing: AWS judges
  names. `\p{L}`-style classes are translated; a pattern Python cannot express is skipped.
* Integer and long members also keep to 32/64 bits, the range of their wire types.
* Timestamps take epoch numbers or ISO-8601 text, although the shapes say iso8601: AWS's
  JSON deserializers read both.
* JSON null for a structure member means "absent" (Smithy JSON protocols); in a list or
  map it is refused.
* Tag keys starting with `aws:` (any case) are refused in the `Tags` map and `TagKeyList`:
  AWS reserves the prefix; the model does not say so.
No limit the model lacks is added (AWS itself enforces e.g. 1 KB of PutMetadata, 1 KB of
participant attributes, even encoder widths); sensitivity follows the model's flags only
(ivschat `UserID` is sensitive, ivs-realtime `userId` is not: its docs say no PII there).
"""

from __future__ import annotations

import datetime
import difflib
import functools
import math
import re
import unicodedata
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import botocore.model

from proxy.arns import Arn, ArnRule, is_arn_shape
from proxy.errors import RequestInvalid


@dataclass(frozen=True)
class ValidationOptions:
    """How strict to be where the model may lag behind AWS (both off: refuse)."""

    allow_unknown_members: bool = False  # for when AWS adds fields before botocore knows them
    allow_unknown_enum_values: bool = False  # same, for enum values


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """An ARN named by the request, and where (e.g. "arns[2]", "resourceArn")."""

    member_path: str
    arn: Arn


@dataclass(frozen=True, slots=True)
class ValidatedInput:
    """What a valid request told us; today, the resources it names."""

    resources: tuple[ResourceRef, ...]  # every ARN-typed value in path, query and body, in order


# check(value, member_path, refs): raises RequestInvalid, appends ARNs found to refs.
Check = Callable[[object, str, list[ResourceRef]], None]
_T = TypeVar("_T")
_INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def _quote(value: object, sensitive: bool) -> str:
    """A short, safe rendering of a caller's value for a message."""
    if sensitive:
        return "(value hidden: sensitive member)"
    text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "array", str: "string", type(None): "null"}.get(
        type(value), type(value).__name__)


def _fail(message: str) -> RequestInvalid:
    return RequestInvalid(message)


def _type_error(path: str, expected: str, value: object, sensitive: bool) -> RequestInvalid:
    got = _json_type(value)
    shown = "" if sensitive or got in ("object", "array", "null") else f" {_quote(value, False)}"
    return _fail(f"`{path}` must be {expected}, got {got}{shown}")


class _Limits:
    """A model's min/max, checked per request as one chained comparison.

    `lo <= n <= hi` (not `n < lo or ...`) so NaN fails too; a missing bound is infinite.
    """

    __slots__ = ("hi", "lo", "unit")

    def __init__(self, meta: Mapping[str, object], unit: str,
                 floor: float = -math.inf, ceiling: float = math.inf) -> None:
        lo, hi = meta.get("min"), meta.get("max")
        self.lo = max(floor, lo) if isinstance(lo, int | float) else floor
        self.hi = min(ceiling, hi) if isinstance(hi, int | float) else ceiling
        self.unit = unit

    def error(self, path: str, n: float, show: bool = True) -> RequestInvalid:
        """The message for `n` out of bounds; `show` False hides it (a sensitive value)."""
        got = f" (got {n})" if show else ""
        word, bound = ("least", self.lo) if not self.lo <= n else ("most", self.hi)
        unit = self.unit if bound != 1 else _SINGULAR.get(self.unit, self.unit)
        return _fail(f"`{path}` must be at {word} {bound}{unit}{got}")


# Per ARN-typed member of an operation (104 in the three models): at most ~100 KB each.
_ARN_CACHE_SIZE = 128

_SINGULAR = {" items": " item", " entries": " entry", " characters long": " character long"}


# ---- ECMA-262 patterns in Python's `re` -------------------------------------------------

_ECMA_SPACE = "\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"
_LONG_CATEGORY = {"Letter": "L", "Mark": "M", "Number": "N", "Punctuation": "P",
                  "Symbol": "S", "Separator": "Z", "Other": "C"}


@functools.cache
def _category_runs() -> dict[str, str]:
    """Class bodies per 2-letter general category, from Python's unicodedata (one pass).

    unicodedata may be a Unicode version or two behind the JVM AWS runs: characters
    assigned since then count as unassigned here. That is the only known inexactness.
    """
    runs: dict[str, list[str]] = {}
    start, cat = 0, unicodedata.category("\0")
    for cp in range(1, 0x110001):
        c = unicodedata.category(chr(cp)) if cp < 0x110000 else ""
        if c != cat:
            runs.setdefault(cat, []).append(f"\\U{start:08x}-\\U{cp - 1:08x}")
            start, cat = cp, c
    return {k: "".join(v) for k, v in runs.items()}


@functools.cache
def _property_class(name: str) -> str | None:
    """The class body for `\\p{name}` (general categories only; scripts etc. -> None)."""
    name = _LONG_CATEGORY.get(name, name)
    if not 1 <= len(name) <= 2:
        return None
    body = "".join(v for k, v in _category_runs().items() if k.startswith(name))
    return body or None


def _translate(pattern: str) -> str | None:
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
                body = _property_class(m[1]) if m else None
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


@functools.cache  # the same pattern shapes recur in every operation of a service
def compile_ecma_pattern(pattern: str) -> re.Pattern[str] | None:
    """Compile a Smithy pattern for `search`; None if Python cannot express it (skipped)."""
    translated = _translate(pattern)
    if translated is None:
        return None
    try:
        with warnings.catch_warnings():  # FutureWarning on "--" in classes: same meaning
            warnings.simplefilter("ignore")
            return re.compile(translated, re.ASCII)
    except re.error:
        return None


# ---- messages -----------------------------------------------------------------------------


def _short(name: str) -> str:
    return name if len(name) <= 64 else name[:61] + "..."


def _enum_error(path: str, value: str, allowed: frozenset[str], sensitive: bool) -> RequestInvalid:
    hint = [a for a in sorted(allowed) if a.lower() == value.lower()]
    tail = f"; did you mean {hint[0]!r}?" if hint and not sensitive else ""
    listed = ", ".join(repr(a) for a in sorted(allowed))
    return _fail(f"`{path}` must be one of {listed}; got {_quote(value, sensitive)}{tail}")


def _unknown_member(op: str, names: tuple[str, ...], elsewhere: Mapping[str, str],
                    key: str, path: str) -> RequestInvalid:
    """'unknown member `Name` in CreateChannel input; did you mean `name`?' and friends."""
    prefix = f"{path}." if path else ""
    message = f"unknown member `{prefix}{_short(key)}` in {op} input"
    close = [n for n in names if n.lower() == key.lower()]
    close = close or difflib.get_close_matches(key, names, n=1, cutoff=0.8)
    if close:
        return _fail(f"{message}; did you mean `{prefix}{close[0]}`?")
    if key in elsewhere:
        return _fail(f"{message}; `{key}` is a {elsewhere[key]}, not a body member")
    if not names:
        return _fail(f"{message}; it takes no members here")
    listed = ", ".join(f"`{n}`" for n in names[:10]) + (", ..." if len(names) > 10 else "")
    where = f" of `{path}`" if path else ""
    return _fail(f"{message}; valid members{where}: {listed}")


# ---- compiling ----------------------------------------------------------------------------


def _accept(value: object, path: str, refs: list[ResourceRef]) -> None:
    """Document types (and any type botocore adds later): anything goes; AWS judges."""


def _scalar(type_name: str, meta: Mapping[str, object], sensitive: bool) -> Check:
    # Integers also keep to their wire type's own range, for shapes without a max.
    limits = _Limits(meta, "", *_INT_RANGE.get(type_name, (-math.inf, math.inf)))
    lo, hi = limits.lo, limits.hi

    def check_int(v: object, p: str, r: list[ResourceRef]) -> None:
        if not isinstance(v, int) or isinstance(v, bool):  # 1.0 and True are not integers
            raise _type_error(p, "an integer", v, sensitive)
        if not lo <= v <= hi:
            raise limits.error(p, v, not sensitive)

    def check_float(v: object, p: str, r: list[ResourceRef]) -> None:
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise _type_error(p, "a number", v, sensitive)
        if not lo <= v <= hi:
            raise limits.error(p, v, not sensitive)

    def check_bool(v: object, p: str, r: list[ResourceRef]) -> None:
        if not isinstance(v, bool):  # 0/1 are not booleans in JSON
            raise _type_error(p, "a boolean", v, sensitive)

    def check_timestamp(v: object, p: str, r: list[ResourceRef]) -> None:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return
        if isinstance(v, str):
            try:
                datetime.datetime.fromisoformat(v)
                return
            except ValueError:
                pass
        raise _type_error(p, "a timestamp (epoch seconds or ISO-8601 text)", v, sensitive)

    def check_blob(v: object, p: str, r: list[ResourceRef]) -> None:
        if not isinstance(v, str):
            raise _type_error(p, "a base64 string", v, sensitive)

    checks: dict[str, Check] = {"integer": check_int, "long": check_int, "float": check_float,
                                "double": check_float, "boolean": check_bool,
                                "timestamp": check_timestamp, "blob": check_blob}
    return checks.get(type_name, _accept)


class _Compiler:
    """Turns one operation's input shape tree into closures (one instance per operation)."""

    def __init__(self, options: ValidationOptions, op: str) -> None:
        self.options, self.op = options, op
        self.cache: dict[tuple[str, bool, bool], Check] = {}

    def node(self, shape: botocore.model.Shape, sensitive: bool = False,
             tag_key: bool = False) -> Check:
        """The check for `shape`; sensitivity is inherited by everything inside."""
        sensitive = sensitive or bool(shape.metadata.get("sensitive"))
        key = (shape.name, sensitive, tag_key)
        if key not in self.cache:
            cell: list[Check] = []  # a recursive shape reaches itself through this trampoline
            self.cache[key] = lambda v, p, r: cell[0](v, p, r)
            cell.append(self._build(shape, sensitive, tag_key))
            self.cache[key] = cell[0]
        return self.cache[key]

    def _build(self, shape: botocore.model.Shape, sensitive: bool, tag_key: bool) -> Check:
        kind = shape.type_name
        if kind == "structure" and not shape.metadata.get("document"):
            return self.structure(shape, shape.members, sensitive, {})  # type: ignore[attr-defined]
        if kind == "list":
            return self.list_(shape, sensitive)  # type: ignore[arg-type]
        if kind == "map":
            return self.map_(shape, sensitive)  # type: ignore[arg-type]
        if kind == "string":
            if is_arn_shape(shape):
                return self.arn(shape, sensitive)
            return self.string(shape, sensitive, tag_key)
        return _scalar(kind, shape.metadata, sensitive) if kind != "structure" else _accept

    def structure(self, shape: botocore.model.Shape, members: Mapping[str, botocore.model.Shape],
                  sensitive: bool, elsewhere: Mapping[str, str]) -> Check:
        checks = {name: self.node(m, sensitive) for name, m in members.items()}
        required = tuple(n for n in shape.metadata.get("required", ()) if n in members)
        union = tuple(members) if shape.metadata.get("union") else None
        allow_unknown = self.options.allow_unknown_members
        unknown = functools.partial(_unknown_member, self.op, tuple(members), elsewhere)

        def check(v: object, p: str, r: list[ResourceRef]) -> None:
            if not isinstance(v, dict):
                raise _type_error(p, "an object", v, sensitive)
            for k, item in v.items():
                c = checks.get(k)
                if c is None:
                    if allow_unknown:
                        continue
                    raise unknown(str(k), p)
                if item is not None:  # JSON null for a member means "absent"
                    c(item, f"{p}.{k}" if p else k, r)
            for n in required:
                if v.get(n) is None:
                    raise _fail(f"missing required member `{p + '.' if p else ''}{n}` in {self.op} input")
            if union is not None and sum(v.get(n) is not None for n in union) != 1:
                listed = ", ".join(f"`{n}`" for n in union)
                raise _fail(f"`{p}` must set exactly one of {listed}")
        return check

    def list_(self, shape: botocore.model.ListShape, sensitive: bool) -> Check:
        member = self.node(shape.member, sensitive, tag_key=shape.name == "TagKeyList")
        limits = _Limits(shape.metadata, " items")
        lo, hi = limits.lo, limits.hi

        def check(v: object, p: str, r: list[ResourceRef]) -> None:
            if not isinstance(v, list):
                raise _type_error(p, "an array", v, sensitive)
            if not lo <= len(v) <= hi:
                raise limits.error(p, len(v))
            for i, item in enumerate(v):
                member(item, f"{p}[{i}]", r)
        return check

    def map_(self, shape: botocore.model.MapShape, sensitive: bool) -> Check:
        # The service's tag map: its keys get the reserved-prefix check too.
        tags = shape.name == "Tags" and shape.key.name == "TagKey"
        key_check, value_check = self.node(shape.key, sensitive, tags), self.node(shape.value, sensitive)
        limits = _Limits(shape.metadata, " entries")
        lo, hi = limits.lo, limits.hi

        def check(v: object, p: str, r: list[ResourceRef]) -> None:
            if not isinstance(v, dict):
                raise _type_error(p, "an object", v, sensitive)
            if not lo <= len(v) <= hi:
                raise limits.error(p, len(v))
            for k, item in v.items():
                entry = f"{p}[(key hidden)]" if sensitive else f"{p}[{_quote(k, False)}]"
                try:
                    key_check(k, entry, r)
                except RequestInvalid as exc:
                    raise _fail(f"invalid key: {exc.message}") from None
                value_check(item, entry, r)
        return check

    def string(self, shape: botocore.model.Shape, sensitive: bool, tag_key: bool) -> Check:
        meta = shape.metadata
        pattern, limits = meta.get("pattern"), _Limits(meta, " characters long")
        lo, hi = limits.lo, limits.hi
        enum = frozenset(shape.enum) if shape.enum else None  # type: ignore[attr-defined]
        enum = None if self.options.allow_unknown_enum_values else enum
        # None when Python's `re` cannot express the pattern: skipped (see _translate).
        regex = compile_ecma_pattern(pattern) if pattern else None

        def check(v: object, p: str, r: list[ResourceRef]) -> None:
            if not isinstance(v, str):
                raise _type_error(p, "a string", v, sensitive)
            if enum is not None and v not in enum:
                raise _enum_error(p, v, enum, sensitive)
            if not lo <= len(v) <= hi:
                raise limits.error(p, len(v))
            if regex is not None and regex.search(v) is None:
                raise _fail(f"`{p}` must match the pattern `{pattern}`; got {_quote(v, sensitive)}")
            if tag_key and v[:4].lower() == "aws:":
                raise _fail(f"`{p}`: tag keys starting with 'aws:' (in any case) are reserved by "
                            f"AWS; got {_quote(v, sensitive)}")
        return check

    def arn(self, shape: botocore.model.Shape, sensitive: bool) -> Check:
        rule = ArnRule.for_shape(shape)
        limits, expected = _Limits(shape.metadata, " characters long"), rule.describe()
        hi = limits.hi  # min is implied: an ARN is never empty
        allow_empty, match = rule.allow_empty, rule.matcher.fullmatch  # bound once: hot path
        expected += " (or \"\")" if allow_empty else ""
        # Valid ARN text -> its (immutable) Arn. The same channels and stages come back
        # request after request; a hit skips the regex and the Arn construction. Bounded,
        # oldest out first: a flood of distinct ARNs costs what no cache would.
        seen: dict[str, Arn] = {}

        def check(v: object, p: str, r: list[ResourceRef]) -> None:
            if not isinstance(v, str):
                raise _type_error(p, "an ARN string", v, sensitive)
            arn = seen.get(v)
            if arn is None:
                if not v and allow_empty:
                    return
                m = match(v)
                if m is None:
                    raise _fail(f"`{p}` must be an ARN of the form {expected}; got {_quote(v, sensitive)}")
                if len(v) > hi:
                    raise limits.error(p, len(v))
                if len(seen) >= _ARN_CACHE_SIZE:
                    _evict_oldest(seen)
                arn = seen[v] = Arn(*m.groups())
            r.append(ResourceRef(p, arn))
        return check


def _evict_oldest(cache: dict[str, Arn]) -> None:
    try:
        del cache[next(iter(cache))]  # dicts keep insertion order: the first is the oldest
    except (KeyError, RuntimeError, StopIteration):  # another thread changed it meanwhile
        pass


# ---- path and query parameters, and the validator itself ---------------------------------


def _from_text(type_name: str, kind: str) -> Callable[[str, str], object]:
    """Path and query values arrive as text: turn them into what the member's check expects."""
    def convert(text: str, path: str) -> object:
        try:
            if type_name in _INT_RANGE:
                return int(text)
            if type_name in ("float", "double"):
                return float(text)
        except ValueError:
            raise _fail(f"{kind} `{path}` must be a number; got {_quote(text, False)}") from None
        if type_name == "boolean":
            if text not in ("true", "false"):
                raise _fail(f"{kind} `{path}` must be true or false; got {_quote(text, False)}")
            return text == "true"
        return text
    return convert


@dataclass(frozen=True, slots=True)
class _Param:
    key: str  # uri_params are keyed by member name, query_params by query-string name
    name: str  # the member name, used in messages and ResourceRef paths
    required: bool
    many: bool  # a list member: the query key may repeat
    convert: Callable[[str, str], object]
    check: Check


class InputValidator:
    """The compiled checks for one operation's input; `validate` is the per-request call."""

    __slots__ = ("_allow_unknown", "_body", "_query", "_uri", "operation")

    def __init__(self, operation: str, body: Check, uri: tuple[_Param, ...],
                 query: tuple[_Param, ...], allow_unknown: bool) -> None:
        self.operation, self._body, self._uri, self._query = operation, body, uri, query
        self._allow_unknown = allow_unknown

    def validate(self, document: object, *, uri_params: Mapping[str, str] | None = None,
                 query_params: Mapping[str, list[str]] | None = None) -> ValidatedInput:
        """Check one request; `document` is the parsed JSON body ({} when the body is empty).

        `uri_params` are keyed by member name (percent-decoded), `query_params` by their
        query-string name. Raises RequestInvalid naming the member at fault. Returns the
        ARNs the request names: path, then query, then body in document order.
        """
        if not isinstance(document, dict):
            raise _fail("request body must be a JSON object")
        refs: list[ResourceRef] = []
        if uri_params or self._uri:
            for param, text in self._given(self._uri, uri_params or {}, "path parameter"):
                param.check(param.convert(text, param.name), param.name, refs)
        if query_params or self._query:
            for param, values in self._given(self._query, query_params or {}, "query parameter"):
                param.check(_query_value(param, values), param.name, refs)
        self._body(document, "", refs)
        return ValidatedInput(tuple(refs))

    def _given(self, params: tuple[_Param, ...], given: Mapping[str, _T],
               kind: str) -> list[tuple[_Param, _T]]:
        """The parameters the request gave, in model order; refuses missing and unknown ones."""
        if not self._allow_unknown:
            known = {p.key for p in params}
            for key in given:
                if key not in known:
                    valid = ", ".join(f"`{k}`" for k in sorted(known)) or "none"
                    raise _fail(f"unknown {kind} `{_short(key)}` for {self.operation} "
                                f"(valid: {valid})")
        found = []
        for p in params:
            value = given.get(p.key)
            if value is None or value == []:  # a repeated query key that never came
                if p.required:
                    raise _fail(f"missing required {kind} `{p.key}` in {self.operation} input")
                continue
            found.append((p, value))
        return found


def _query_value(param: _Param, values: list[str]) -> object:
    if param.many:
        return [param.convert(text, param.name) for text in values]
    if len(values) != 1:
        raise _fail(f"query parameter `{param.key}` must be given once, not {len(values)} times")
    return param.convert(values[0], param.name)


_KIND = {"uri": "path parameter", "querystring": "query parameter"}


def compile_input_validator(
    shape: botocore.model.StructureShape | None, options: ValidationOptions
) -> InputValidator:
    """Build the validator for one operation's input shape (None: the op takes no input).

    Walks the shape tree once; call at start-up, then reuse for every request.
    """
    if shape is None:
        nothing = _Compiler(options, "this operation")
        body = nothing.structure(_NO_INPUT, {}, False, {})
        return InputValidator("this operation", body, (), (), False)
    op = re.sub(r"(Request|Input)$", "", shape.name)
    compiler = _Compiler(options, op)
    required = set(shape.required_members)
    members, elsewhere = {}, {}
    params: dict[str, list[_Param]] = {k: [] for k in _KIND.values()}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        if location is None:
            members[name] = member
            continue
        kind = _KIND.get(location, f"{location} value")
        elsewhere[name] = kind
        if location in _KIND:  # headers: none in the IVS models; AWS judges them
            key = name if location == "uri" else member.serialization.get("name", name)
            params[kind].append(_Param(
                key, name, name in required,
                member.type_name == "list", _from_text(_text_type(member), kind),
                compiler.node(member)))
    body = compiler.structure(shape, members, False, elsewhere)
    return InputValidator(op, body, tuple(params[_KIND["uri"]]),
                          tuple(params[_KIND["querystring"]]), options.allow_unknown_members)


def _text_type(member: botocore.model.Shape) -> str:
    return member.member.type_name if member.type_name == "list" else member.type_name  # type: ignore[attr-defined]


_NO_INPUT = botocore.model.StructureShape("NoInput", {"type": "structure", "members": {}})
