"""Checks one operation's input against its botocore shape, and collects the ARNs it names.

`compile_input_validator` compiles an operation's input ONCE (at start-up): its body
through `shape_checks.ShapeCompiler` (what each shape accepts, and where we deviate from
the model, and why), its path and query parameters here. A request then only runs the
compiled checks (`InputValidator.validate`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import botocore.model

from proxy.errors import RequestInvalid
from proxy.frozen import fast_frozen_init
from proxy.model.input_errors import quote, short
from proxy.model.shape_checks import Check, ResourceRef, ShapeCompiler

__all__ = ["InputValidator", "ResourceRef", "ValidatedInput", "ValidationOptions",
           "compile_input_validator"]


@dataclass(frozen=True)
class ValidationOptions:
    """How strict to be where the model may lag behind AWS (both off: refuse)."""

    allow_unknown_members: bool = False  # for when AWS adds fields before botocore knows them
    allow_unknown_enum_values: bool = False  # same, for enum values


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ValidatedInput:
    """What a valid request told us; today, the resources it names."""

    resources: tuple[ResourceRef, ...]  # every ARN-typed value in path, query and body, in order


_T = TypeVar("_T")


def _from_text(type_name: str, kind: str) -> Callable[[str, str], object]:
    """Path and query values arrive as text: turn them into what the member's check expects."""
    def convert(text: str, path: str) -> object:
        try:
            if type_name in ("integer", "long"):
                return int(text)
            if type_name in ("float", "double"):
                return float(text)
        except ValueError:
            raise RequestInvalid(
                f"{kind} `{path}` must be a number; got {quote(text, False)}") from None
        if type_name == "boolean":
            if text not in ("true", "false"):
                raise RequestInvalid(
                    f"{kind} `{path}` must be true or false; got {quote(text, False)}")
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
            raise RequestInvalid("request body must be a JSON object")
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
                    raise RequestInvalid(f"unknown {kind} `{short(key)}` for {self.operation} "
                                         f"(valid: {valid})")
        found = []
        for p in params:
            value = given.get(p.key)
            if value is None or value == []:  # a repeated query key that never came
                if p.required:
                    raise RequestInvalid(
                        f"missing required {kind} `{p.key}` in {self.operation} input")
                continue
            found.append((p, value))
        return found


def _query_value(param: _Param, values: list[str]) -> object:
    if param.many:
        return [param.convert(text, param.name) for text in values]
    if len(values) != 1:
        raise RequestInvalid(
            f"query parameter `{param.key}` must be given once, not {len(values)} times")
    return param.convert(values[0], param.name)


_KIND = {"uri": "path parameter", "querystring": "query parameter"}


def compile_input_validator(
    shape: botocore.model.StructureShape | None, options: ValidationOptions
) -> InputValidator:
    """Build the validator for one operation's input shape (None: the op takes no input).

    Walks the shape tree once; call at start-up, then reuse for every request.
    """
    if shape is None:
        nothing = ShapeCompiler("this operation")
        body = nothing.structure(_NO_INPUT, {}, False, {})
        return InputValidator("this operation", body, (), (), False)
    op = re.sub(r"(Request|Input)$", "", shape.name)
    compiler = ShapeCompiler(op, options.allow_unknown_members,
                             options.allow_unknown_enum_values)
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
    inner = member.member if member.type_name == "list" else member  # type: ignore[attr-defined]
    return inner.type_name


_NO_INPUT = botocore.model.StructureShape("NoInput", {"type": "structure", "members": {}})
