"""The operation catalog: botocore's service models, indexed once for exact routing.

Every operation of every served model is routable; nothing is hand-listed. Matching is
exact and case-sensitive on method and on each path segment, because IVS itself is. A
near miss (wrong case, wrong service prefix, unencoded ARN) becomes a 404 whose message
says what the caller probably meant.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

import botocore.loaders
import botocore.model
from botocore.utils import percent_encode

from proxy.errors import MethodNotAllowed, RequestInvalid, UnknownOperation
from proxy.frozen import fast_frozen_init
from proxy.model.botocore_data import create_loader

#: The models this proxy serves, and where each is mounted. `ivs` is also served at `/`
#: because that is where an SDK pointed at the proxy without a path prefix sends it.
SERVICE_MOUNTS: Mapping[str, str] = {"ivs": "/ivs", "ivs-realtime": "/ivs-realtime", "ivschat": "/ivschat"}
ROOT_SERVICE = "ivs"


@dataclass(frozen=True, slots=True)
class Service:
    name: str  # botocore's name: "ivs-realtime"
    service_id: str  # "IVS RealTime"; names the AWS_ENDPOINT_URL_<ID> override
    signing_name: str  # "ivs" for ivs-realtime too
    model: botocore.model.ServiceModel = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True, eq=False)  # identity equality: each operation exists once
class Operation:
    service: Service
    name: str
    method: str
    path_template: str
    # One entry per path segment: the literal text, or None where a parameter goes.
    segments: tuple[str | None, ...]
    # Member name for each `{param}` segment, in order.
    uri_members: tuple[str, ...]
    # Query parameter name -> member name.
    query_members: Mapping[str, str]
    # Response headers the output shape binds members to (`"location": "header"`): they
    # must reach the caller, or the SDK has nothing to parse those members from.
    output_headers: tuple[str, ...]
    model: botocore.model.OperationModel = field(repr=False, compare=False)

    @property
    def iam_action(self) -> str:
        return f"{self.service.signing_name}:{self.name}"

    def render_path(self, uri_params: Mapping[str, str]) -> str:
        """The path as it goes on the wire, encoded the way botocore encodes it."""
        parts = []
        member_values = iter(uri_params[m] for m in self.uri_members)
        for literal in self.segments:
            parts.append(literal if literal is not None else percent_encode(next(member_values)))
        return "/" + "/".join(parts)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class RouteMatch:
    operation: Operation
    uri_params: Mapping[str, str]
    query_params: Mapping[str, list[str]]


def _segments(template: str) -> tuple[tuple[str | None, ...], tuple[str, ...]]:
    literals: list[str | None] = []
    params: list[str] = []
    for part in template.split("?", 1)[0].lstrip("/").split("/"):
        if part.startswith("{") and part.endswith("}"):
            literals.append(None)
            params.append(part[1:-1].rstrip("+"))
        else:
            literals.append(part)
    return tuple(literals), tuple(params)


def _build_operation(service: Service, name: str) -> Operation:
    model = service.model.operation_model(name)
    template = model.http["requestUri"]
    segments, uri_names = _segments(template)
    by_location_name: dict[str, str] = {}
    query: dict[str, str] = {}
    input_shape = model.input_shape
    members = input_shape.members if input_shape is not None else {}
    for member_name, member in members.items():
        location = member.serialization.get("location")
        wire_name = member.serialization.get("name", member_name)
        if location == "uri":
            by_location_name[wire_name] = member_name
        elif location == "querystring":
            query[wire_name] = member_name
    return Operation(
        service=service,
        name=name,
        method=model.http["method"],
        path_template=template,
        segments=segments,
        uri_members=tuple(by_location_name.get(p, p) for p in uri_names),
        query_members=query,
        output_headers=_output_headers(model.output_shape),
        model=model,
    )


def _output_headers(output_shape: botocore.model.Shape | None) -> tuple[str, ...]:
    if not isinstance(output_shape, botocore.model.StructureShape):
        return ()
    return tuple(
        member.serialization.get("name", member_name)
        for member_name, member in output_shape.members.items()
        if member.serialization.get("location") == "header"
    )


def load_service(name: str, loader: botocore.loaders.Loader | None = None) -> Service:
    loader = loader or create_loader()
    model = botocore.model.ServiceModel(loader.load_service_model(name, "service-2"), name)
    return Service(
        name=name,
        service_id=str(model.service_id),
        signing_name=model.signing_name or model.endpoint_prefix,
        model=model,
    )


class Catalog:
    """All operations of the served services, indexed by mount, segment count and method."""

    def __init__(self, services: Iterable[Service]) -> None:
        self.services: dict[str, Service] = {s.name: s for s in services}
        self.operations: list[Operation] = []
        # (service, segment count) -> [(segments, {method: operation})]
        self._routes: dict[tuple[str, int], list[tuple[tuple[str | None, ...], dict[str, Operation]]]] = {}
        # (service, exact path) -> {method: operation} for templates without parameters:
        # most IVS operations, found with one dict lookup instead of a scan.
        self._literal: dict[tuple[str, str], dict[str, Operation]] = {}
        for service in self.services.values():
            for op_name in service.model.operation_names:
                self._add(_build_operation(service, op_name))
        self._mounts = {SERVICE_MOUNTS[name].strip("/"): name for name in self.services}

    @classmethod
    def load(cls, service_names: Iterable[str] = tuple(SERVICE_MOUNTS)) -> Catalog:
        return _load_catalog(tuple(service_names))

    def _add(self, op: Operation) -> None:
        self.operations.append(op)
        bucket = self._routes.setdefault((op.service.name, len(op.segments)), [])
        by_method = next((methods for segments, methods in bucket if segments == op.segments), None)
        if by_method is None:
            by_method = {}
            bucket.append((op.segments, by_method))
        by_method[op.method] = op
        if None not in op.segments:
            self._literal[(op.service.name, op.path_template)] = by_method

    def service_for_path(self, raw_path: str) -> tuple[str, str]:
        """Split a raw request path into (service name, path below the mount)."""
        first, sep, rest = raw_path[1:].partition("/")
        service = self._mounts.get(first)
        if service is not None:
            return service, "/" + rest if sep else "/"
        if ROOT_SERVICE in self.services:
            return ROOT_SERVICE, raw_path
        raise UnknownOperation(f"no service is mounted at {_quote_for_message(raw_path)}")

    def match(self, method: str, raw_path: str, raw_query: str = "") -> RouteMatch:
        """Find the operation for a request; raw_path is still percent-encoded."""
        if not raw_path.startswith("/"):
            raise RequestInvalid("the request target must be a path starting with '/'")
        service, path = self.service_for_path(raw_path)
        params: list[str] | None = []
        allowed = self._literal.get((service, path), {})
        if not allowed:
            parts = path[1:].split("/")
            for segments, by_method in self._routes.get((service, len(parts)), ()):
                params = _match_segments(segments, parts)
                if params is not None:
                    allowed = by_method
                    break
        if not allowed:
            raise UnknownOperation(self._miss_message(service, path))
        op = allowed.get(method)
        if op is None:
            methods = ", ".join(sorted(allowed))
            raise MethodNotAllowed(
                f"{method} is not allowed on {path}; use {methods}", headers={"Allow": methods}
            )
        return RouteMatch(op, dict(zip(op.uri_members, params or ())), parse_query(raw_query))

    def _near_misses(self, path: str) -> list[tuple[str, str]]:
        """(service, template) of routes that match when case is ignored; misses only."""
        parts = [p.lower() for p in path[1:].split("/")]
        found = []
        for (service, count), routes in self._routes.items():
            if count != len(parts):
                continue
            for segments, by_method in routes:
                folded = tuple(s.lower() if s is not None else None for s in segments)
                if _match_segments(folded, parts) is not None:
                    found.append((service, next(iter(by_method.values())).path_template))
        return found

    def _miss_message(self, service: str, path: str) -> str:
        shown = _quote_for_message(path)
        mount = SERVICE_MOUNTS[service]
        candidates = self._near_misses(path)
        same_service = [t for s, t in candidates if s == service]
        if same_service:
            return f"no {service} operation at {shown}; paths are case-sensitive: did you mean {same_service[0]}?"
        if candidates:
            other, template = candidates[0]
            return f"no {service} operation at {shown}; did you mean {SERVICE_MOUNTS[other]}{template} ({other})?"
        if path.lower().startswith("/tags/arn"):
            return (
                f"no {service} operation at {shown}; the resource ARN in a /tags/ path must be "
                "percent-encoded (':' as %3A, '/' as %2F)"
            )
        return f"no {service} operation at {shown} (mounted at {mount}); see `ivs-proxy routes`"


@functools.cache
def _load_catalog(service_names: tuple[str, ...]) -> Catalog:
    # A catalog is immutable once built, so one per set of services serves every proxy
    # built in this process (tests and `--workers` build several). The loader goes with
    # its cache once the catalog is built: the models live on in the catalog alone, so
    # without the prose nothing here reads.
    loader = create_loader(documentation=False)
    return Catalog(load_service(name, loader) for name in service_names)


def _match_segments(segments: tuple[str | None, ...], parts: list[str]) -> list[str] | None:
    params: list[str] = []
    for literal, part in zip(segments, parts):
        if literal is None:
            if not part:
                return None
            try:
                params.append(unquote(part, errors="strict"))
            except UnicodeDecodeError:
                raise RequestInvalid("a path parameter is not valid percent-encoded UTF-8") from None
        elif literal != part:
            return None
    return params


def parse_query(raw_query: str) -> dict[str, list[str]]:
    """Decode a query string without form semantics: '+' stays '+', as AWS reads it."""
    params: dict[str, list[str]] = {}
    if not raw_query:
        return params
    for pair in raw_query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        try:
            params.setdefault(unquote(key, errors="strict"), []).append(unquote(value, errors="strict"))
        except UnicodeDecodeError:
            raise RequestInvalid("the query string is not valid percent-encoded UTF-8") from None
    return params


def render_query(query_params: Mapping[str, list[str]]) -> str:
    """The query as it goes on the wire, strictly encoded so what is signed is what is sent."""
    return "&".join(
        f"{percent_encode(key)}={percent_encode(value)}"
        for key, values in query_params.items()
        for value in values
    )


def _quote_for_message(path: str) -> str:
    # Paths are caller-controlled: keep them short and printable in messages.
    clipped = path if len(path) <= 80 else path[:77] + "..."
    return repr(clipped)
