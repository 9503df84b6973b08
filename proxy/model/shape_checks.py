"""What each botocore shape accepts, compiled into closures: one per shape, per operation.

`ShapeCompiler` walks a shape tree ONCE (at start-up); a request then only runs the
closures: no botocore objects, no shape lookups by name. Every message names the member
path; values of sensitive shapes (and everything inside a sensitive map or structure,
keys included) are never quoted (`proxy.model.input_errors`).

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
  names. `proxy.model.patterns` reads them in Python; one it cannot express is skipped.
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
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import botocore.model

from proxy.errors import RequestInvalid
from proxy.frozen import fast_frozen_init
from proxy.model.arns import Arn, ArnRule, is_arn_shape
from proxy.model.input_errors import bound_error, enum_error, quote, type_error, unknown_member
from proxy.model.patterns import always_found, compile_ecma_pattern


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ResourceRef:
    """An ARN named by the request, and where (e.g. "arns[2]", "resourceArn")."""

    member_path: str
    arn: Arn


# check(value, member_path, refs): raises RequestInvalid, appends ARNs found to refs.
Check = Callable[[object, str, list[ResourceRef]], None]
_INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


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
        """The refusal for `n` out of bounds; `show` False hides it (a sensitive value)."""
        return bound_error(path, n, self.lo, self.hi, self.unit, show)


# Per ARN-typed member of an operation (104 in the three models): at most ~100 KB each.
_ARN_CACHE_SIZE = 128
# Per patterned string member: values up to 128 characters, 128 of them (~30 KB at most).
_PASSED_CACHE_SIZE = 128
_PASSED_MAX_CHARS = 128


def _accept(value: object, path: str, refs: list[ResourceRef]) -> None:
    """Document types (and any type botocore adds later): anything goes; AWS judges."""


def _scalar(type_name: str, meta: Mapping[str, object], sensitive: bool) -> Check:
    # Integers also keep to their wire type's own range, for shapes without a max.
    limits = _Limits(meta, "", *_INT_RANGE.get(type_name, (-math.inf, math.inf)))
    lo, hi = limits.lo, limits.hi

    def check_int(v: object, p: str, r: list[ResourceRef]) -> None:
        if not isinstance(v, int) or isinstance(v, bool):  # 1.0 and True are not integers
            raise type_error(p, "an integer", v, sensitive)
        if not lo <= v <= hi:
            raise limits.error(p, v, not sensitive)

    def check_float(v: object, p: str, r: list[ResourceRef]) -> None:
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise type_error(p, "a number", v, sensitive)
        if not lo <= v <= hi:
            raise limits.error(p, v, not sensitive)

    def check_bool(v: object, p: str, r: list[ResourceRef]) -> None:
        if not isinstance(v, bool):  # 0/1 are not booleans in JSON
            raise type_error(p, "a boolean", v, sensitive)

    def check_timestamp(v: object, p: str, r: list[ResourceRef]) -> None:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return
        if isinstance(v, str):
            try:
                datetime.datetime.fromisoformat(v)
                return
            except ValueError:
                pass
        raise type_error(p, "a timestamp (epoch seconds or ISO-8601 text)", v, sensitive)

    def check_blob(v: object, p: str, r: list[ResourceRef]) -> None:
        if not isinstance(v, str):
            raise type_error(p, "a base64 string", v, sensitive)

    checks: dict[str, Check] = {"integer": check_int, "long": check_int, "float": check_float,
                                "double": check_float, "boolean": check_bool,
                                "timestamp": check_timestamp, "blob": check_blob}
    return checks.get(type_name, _accept)


class ShapeCompiler:
    """Turns one operation's input shape tree into closures (one instance per operation).

    `allow_unknown_members` / `allow_unknown_enum_values`: accept what the model does not
    know yet (AWS may be ahead of botocore) instead of refusing it.
    """

    def __init__(self, op: str, allow_unknown_members: bool = False,
                 allow_unknown_enum_values: bool = False) -> None:
        self.op = op
        self.allow_unknown_members = allow_unknown_members
        self.allow_unknown_enum_values = allow_unknown_enum_values
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
        allow_unknown = self.allow_unknown_members
        unknown = functools.partial(unknown_member, self.op, tuple(members), elsewhere)

        def check(v: object, p: str, r: list[ResourceRef]) -> None:
            if not isinstance(v, dict):
                raise type_error(p, "an object", v, sensitive)
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
                    raise RequestInvalid(
                        f"missing required member `{p + '.' if p else ''}{n}` in {self.op} input")
            if union is not None and sum(v.get(n) is not None for n in union) != 1:
                listed = ", ".join(f"`{n}`" for n in union)
                raise RequestInvalid(f"`{p}` must set exactly one of {listed}")
        return check

    def list_(self, shape: botocore.model.ListShape, sensitive: bool) -> Check:
        member = self.node(shape.member, sensitive, tag_key=shape.name == "TagKeyList")
        limits = _Limits(shape.metadata, " items")
        lo, hi = limits.lo, limits.hi

        def check(v: object, p: str, r: list[ResourceRef]) -> None:
            if not isinstance(v, list):
                raise type_error(p, "an array", v, sensitive)
            if not lo <= len(v) <= hi:
                raise limits.error(p, len(v))
            for i, item in enumerate(v):
                member(item, f"{p}[{i}]", r)
        return check

    def map_(self, shape: botocore.model.MapShape, sensitive: bool) -> Check:
        # The service's tag map: its keys get the reserved-prefix check too.
        tags = shape.name == "Tags" and shape.key.name == "TagKey"
        key_check = self.node(shape.key, sensitive, tags)
        value_check = self.node(shape.value, sensitive)
        limits = _Limits(shape.metadata, " entries")
        lo, hi = limits.lo, limits.hi

        def check(v: object, p: str, r: list[ResourceRef]) -> None:
            if not isinstance(v, dict):
                raise type_error(p, "an object", v, sensitive)
            if not lo <= len(v) <= hi:
                raise limits.error(p, len(v))
            for k, item in v.items():
                entry = f"{p}[(key hidden)]" if sensitive else f"{p}[{quote(k, False)}]"
                try:
                    key_check(k, entry, r)
                except RequestInvalid as exc:
                    raise RequestInvalid(f"invalid key: {exc.message}") from None
                value_check(item, entry, r)
        return check

    def string(self, shape: botocore.model.Shape, sensitive: bool, tag_key: bool) -> Check:
        meta = shape.metadata
        pattern, limits = meta.get("pattern"), _Limits(meta, " characters long")
        lo, hi = limits.lo, limits.hi
        enum = frozenset(shape.enum) if shape.enum else None  # type: ignore[attr-defined]
        enum = None if self.allow_unknown_enum_values else enum
        # None when Python's `re` cannot express the pattern (skipped), or when every
        # string has it, e.g. `[a-zA-Z0-9-_]*` (nothing to check).
        search = compile_ecma_pattern(pattern) if pattern else None
        search = None if search is always_found else search
        # Short values that passed the pattern: enum values, tag keys and values, names
        # recur request after request, and every check here depends on the value alone.
        # Bounded like the ARN cache; sensitive values are never kept.
        passed: dict[str, None] | None = {} if search is not None and not sensitive else None

        def check(v: object, p: str, r: list[ResourceRef]) -> None:
            if passed is not None and v.__class__ is str and v in passed:
                return
            if not isinstance(v, str):
                raise type_error(p, "a string", v, sensitive)
            if enum is not None and v not in enum:
                raise enum_error(p, v, enum, sensitive)
            if not lo <= len(v) <= hi:
                raise limits.error(p, len(v))
            if search is not None and not search(v):
                raise RequestInvalid(
                    f"`{p}` must match the pattern `{pattern}`; got {quote(v, sensitive)}")
            if tag_key and v[:4].lower() == "aws:":
                raise RequestInvalid(f"`{p}`: tag keys starting with 'aws:' (in any case) are "
                                     f"reserved by AWS; got {quote(v, sensitive)}")
            if passed is not None and len(v) <= _PASSED_MAX_CHARS:
                if len(passed) >= _PASSED_CACHE_SIZE:
                    _evict_oldest(passed)
                passed[v] = None
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
                raise type_error(p, "an ARN string", v, sensitive)
            arn = seen.get(v)
            if arn is None:
                if not v and allow_empty:
                    return
                m = match(v)
                if m is None:
                    raise RequestInvalid(f"`{p}` must be an ARN of the form {expected}; "
                                         f"got {quote(v, sensitive)}")
                if len(v) > hi:
                    raise limits.error(p, len(v))
                problem = rule.id_problem(m[5])
                if problem is not None:
                    raise RequestInvalid(f"`{p}` names no real resource: {problem}; "
                                         f"got {quote(v, sensitive)}")
                if len(seen) >= _ARN_CACHE_SIZE:
                    _evict_oldest(seen)
                arn = seen[v] = Arn(*m.groups())
            r.append(ResourceRef(p, arn))
        return check


def _evict_oldest(cache: dict[str, Any]) -> None:
    try:
        del cache[next(iter(cache))]  # dicts keep insertion order: the first is the oldest
    except (KeyError, RuntimeError, StopIteration):  # another thread changed it meanwhile
        pass
