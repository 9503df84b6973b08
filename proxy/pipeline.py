"""The request path: one ordered list of small stages, then the upstream call.

    stages = (MatchOperation, CheckHeaders, ValidateInput, ChooseEndpoint, Sign)

With callers to tell apart (gateway mode; the stages are in `gateway/stages.py`) the
path grows to

    head:      Authenticate, MatchOperation, CheckHeaders
    body:      VerifyCallerSignature, ValidateInput, ChooseEndpoint, Sign
    admission: RejectReplays, Authorize, RateLimit      (async: may consult Redis)

Each stage reads and fills in an `Exchange`; any stage may refuse the request by raising a
`ProxyError`, and then nothing is forwarded. Everything a stage needs that depends only on
the operation (routes, validators, endpoints) was built at start-up; per request the stages
do dictionary lookups and checks, never botocore client work.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.aws.credentials import Clock, CredentialStore
from proxy.aws.endpoints import Endpoint, EndpointTable
from proxy.aws.regions import RegionChooser, is_plausible_region
from proxy.aws.retries import Retrier
from proxy.aws.signing import SigV4Signer
from proxy.aws.upstream import Upstream, UpstreamResponse
from proxy.errors import ProxyError, RequestInvalid
from proxy.frozen import fast_frozen_init
from proxy.gateway.identity import Caller
from proxy.gateway.sigv4_callers import PendingSignature
from proxy.model.catalog import Catalog, Operation, RouteMatch, render_query
from proxy.model.headers import HeaderPolicy
from proxy.model.validate import (
    InputValidator,
    ValidatedInput,
    ValidationOptions,
    compile_input_validator,
)

#: IVS services whose ARNs decide where a request goes. ARNs of other services (a Lambda
#: review handler, a MediaTailor configuration) do not route the call.
ROUTING_ARN_SERVICES = frozenset({"ivs", "ivschat"})


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class IncomingRequest:
    method: str
    path: str  # raw, still percent-encoded
    query: str  # raw, without '?'
    headers: Sequence[tuple[str, str]]
    has_body: bool
    body: bytes = b""

    def with_body(self, body: bytes) -> IncomingRequest:
        # dataclasses.replace() costs a few µs per request in field introspection; a new
        # field must be added here too (tests/unit/test_pipeline.py checks every field).
        return IncomingRequest(self.method, self.path, self.query, self.headers, self.has_body, body)


@dataclass(slots=True)
class Exchange:
    """What the stages learn about one request, in the order they learn it."""

    request: IncomingRequest
    route: RouteMatch | None = None
    forward_headers: dict[str, str] = field(default_factory=dict)
    document: Any = None
    validated: ValidatedInput | None = None
    region: str = ""
    endpoint: Endpoint | None = None
    wire_path: str = ""
    wire_query: str = ""
    signing_seconds: float = 0.0
    upstream_seconds: float = 0.0
    upstream_status: int = 0
    amzn_request_id: str | None = None
    caller: Caller | None = None  # set by Authenticate
    caller_signature: PendingSignature | None = None  # SDK-native callers, until verified
    scope_region: str | None = None  # the region of a caller signature's scope (verified or stripped)
    path_region: str | None = None  # the region of a region path prefix (/eu-west-1/ivs-realtime/...)
    admitted: bool = False  # the admission stages ran (once, whatever sends it)
    attempts: int = 0  # upstream attempts made
    retried: list[str] = field(default_factory=list)  # why each retry was made (retries.py)

    @property
    def operation(self) -> Operation:
        assert self.route is not None, "MatchOperation runs first"
        return self.route.operation


Stage = Callable[[Exchange], None]
AdmissionStage = Callable[[Exchange], Awaitable[None]]


class MatchOperation:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def __call__(self, exchange: Exchange) -> None:
        request = exchange.request
        exchange.path_region, path = split_region_prefix(request.path)
        exchange.route = self._catalog.match(request.method, path, request.query)


def split_region_prefix(raw_path: str) -> tuple[str | None, str]:
    """(region, the path below it) for `/eu-west-1/ivs-realtime/CreateStage`; (None, raw_path)
    when the first segment is not shaped like a region.

    Unambiguous because no mount and no operation path of a served model starts with a
    region-shaped segment (tests/unit/test_pipeline.py checks every one).
    """
    first, sep, rest = raw_path[1:].partition("/")
    if not is_plausible_region(first):
        return None, raw_path
    return first, "/" + rest if sep else "/"


class CheckHeaders:
    def __init__(self, policy: HeaderPolicy) -> None:
        self._policy = policy

    def __call__(self, exchange: Exchange) -> None:
        request = exchange.request
        exchange.forward_headers = self._policy.check(request.headers, has_body=request.has_body)
        stripped_region = self._policy.stripped_scope_region(request.headers)
        if stripped_region is not None:
            exchange.scope_region = stripped_region
        route = exchange.route
        if route is not None and route.query_params:
            query_params = self._policy.check_query(route.query_params)
            if query_params is not route.query_params:
                exchange.route = RouteMatch(route.operation, route.uri_params, query_params)


class ValidateInput:
    """Each operation's validator is compiled at its first request, not at start-up: all
    ~100 of them cost ~20 ms and ~1 MiB there, and a sidecar calls a handful; the first
    call of an operation pays its own (~0.2 ms). Compiling reads only botocore's model,
    so it cannot fail on anything a config or a request says."""

    def __init__(self, catalog: Catalog, options: ValidationOptions) -> None:
        self._options = options
        self._validators: dict[Operation, InputValidator] = {}

    def __call__(self, exchange: Exchange) -> None:
        route = exchange.route
        assert route is not None
        exchange.document = parse_json_body(exchange.request.body)
        validator = self._validators.get(route.operation)
        if validator is None:
            validator = self._validators[route.operation] = _compiled(route.operation, self._options)
        exchange.validated = validator.validate(
            exchange.document, uri_params=route.uri_params, query_params=route.query_params
        )


@functools.lru_cache(maxsize=1024)
def _compiled(operation: Operation, options: ValidationOptions) -> InputValidator:
    # Validators are immutable; proxies built from the same catalog share them.
    return compile_input_validator(operation.model.input_shape, options)


class ChooseEndpoint:
    def __init__(self, chooser: RegionChooser, endpoints: EndpointTable) -> None:
        self._chooser = chooser
        self._endpoints = endpoints
        self._fixed_paths: dict[Operation, str] = {}

    def __call__(self, exchange: Exchange) -> None:
        route, validated = exchange.route, exchange.validated
        assert route is not None and validated is not None
        operation = route.operation
        service = operation.service.name
        arn_regions = [
            (ref.member_path, ref.arn.region)
            for ref in validated.resources
            if ref.arn.service in ROUTING_ARN_SERVICES and ref.arn.region
        ] if validated.resources else ()
        requested = []
        if exchange.path_region:
            requested.append(("the region path prefix", exchange.path_region))
        if exchange.scope_region:  # an SDK-native caller chose the region by signing for it
            requested.append(("the credential scope", exchange.scope_region))
        exchange.region = self._chooser.choose(service, arn_regions, requested)
        endpoint = exchange.endpoint = self._endpoints.lookup(service, exchange.region)
        if operation.uri_members:
            path = operation.render_path(route.uri_params)
        else:
            # Most operations have a fixed path: rendered once, not per request.
            path = self._fixed_paths.get(operation) or self._fixed_paths.setdefault(
                operation, operation.render_path({}))
        exchange.wire_path = endpoint.base_path + path
        exchange.wire_query = render_query(route.query_params) if route.query_params else ""


class Sign:
    """Adds SigV4 headers; refuses (503) rather than forward unsigned. Runs again before
    every retry (`per_attempt`): each attempt carries a fresh date and the credentials
    current at that moment."""

    per_attempt = True

    def __init__(self, credentials: CredentialStore, clock: Clock, signer: SigV4Signer | None = None) -> None:
        self._credentials = credentials
        self._clock = clock
        self._signer = signer or SigV4Signer()

    def __call__(self, exchange: Exchange) -> None:
        endpoint = exchange.endpoint
        assert endpoint is not None
        credentials = self._credentials.current()
        started = time.perf_counter()
        headers = exchange.forward_headers
        headers["host"] = endpoint.host
        signed_extra = {"content-type": headers["content-type"]} if "content-type" in headers else {}
        signed = self._signer.sign(
            method=exchange.request.method,
            host=endpoint.host,
            path=exchange.wire_path,
            query=exchange.wire_query,
            headers=signed_extra,
            body=exchange.request.body,
            service=endpoint.signing_name,
            region=endpoint.signing_region or exchange.region,
            credentials=credentials,
            now=self._clock(),
        )
        headers.pop("X-Amz-Security-Token", None)  # a previous attempt's, if the new keys have none
        headers.update(signed.items())
        exchange.signing_seconds += time.perf_counter() - started


class Pipeline:
    """Head stages run before the body is read (a refusal costs no body bytes); body
    stages after it; admission stages (which may wait on shared state) just before the
    request is sent."""

    def __init__(self, head_stages: Sequence[Stage], body_stages: Sequence[Stage], upstream: Upstream,
                 admission_stages: Sequence[AdmissionStage] = (), *, retrier: Retrier | None = None) -> None:
        self.head_stages = tuple(head_stages)
        self.body_stages = tuple(body_stages)
        self.admission_stages = tuple(admission_stages)
        # Body stages marked `per_attempt` (Sign) run again before each retry.
        self.attempt_stages = tuple(s for s in self.body_stages if getattr(s, "per_attempt", False))
        self._upstream = upstream
        self.retrier = retrier or Retrier()

    def check_head(self, exchange: Exchange) -> None:
        for stage in self.head_stages:
            stage(exchange)

    def prepare(self, exchange: Exchange, body: bytes) -> None:
        """Run the body stages; afterwards the exchange is ready to send. Whatever fails
        while a client's body is decoded or checked is the client's: a 400, never a 500."""
        exchange.request = exchange.request.with_body(body)
        for stage in self.body_stages:
            try:
                stage(exchange)
            except ProxyError:
                raise
            except (ValueError, TypeError, ArithmeticError, RecursionError, LookupError) as exc:
                # The exception's text may quote the body: only its type is named.
                raise RequestInvalid(f"the body could not be checked ({type(exc).__name__})") from None

    async def admit(self, exchange: Exchange) -> None:
        """Run the admission stages, once per exchange (a retry must not count twice).

        If one refuses, the stages that already passed may undo what they did (`undo`).
        """
        if exchange.admitted:
            return
        passed: list[AdmissionStage] = []
        try:
            for stage in self.admission_stages:
                await stage(exchange)
                passed.append(stage)
        except ProxyError:
            for stage in reversed(passed):
                undo = getattr(stage, "undo", None)
                if undo is not None:
                    await undo(exchange)
            raise
        exchange.admitted = True

    async def send(self, exchange: Exchange) -> UpstreamResponse:
        """Send, retrying where `retries.py` says it is safe; AWS's last answer, or the last
        UpstreamError."""
        await self.admit(exchange)
        endpoint = exchange.endpoint
        assert endpoint is not None
        target = exchange.wire_path + ("?" + exchange.wire_query if exchange.wire_query else "")
        url = f"{endpoint.scheme}://{endpoint.host}{target}"

        async def attempt(timeout: float) -> UpstreamResponse:
            if exchange.attempts:
                for stage in self.attempt_stages:
                    stage(exchange)
            exchange.attempts += 1
            started = time.perf_counter()
            try:
                return await self._upstream.send(
                    exchange.request.method, url, exchange.forward_headers, exchange.request.body, timeout=timeout,
                    output_headers=exchange.operation.output_headers,
                )
            finally:
                exchange.upstream_seconds += time.perf_counter() - started

        retrier = self.retrier
        return await retrier.run(
            attempt,
            repeatable=retrier.repeatable(exchange.operation, exchange.document),
            deadline=retrier.deadline(exchange.forward_headers.get("amz-sdk-request")),
            retried=exchange.retried,
        )


def parse_json_body(body: bytes) -> Mapping[str, Any]:
    """Parse strictly: UTF-8 only, no duplicate keys, no NaN, bounded depth."""
    if not body or (body[:1] != b"{" and not body.strip()):  # strip() copies the body
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestInvalid("the body is not UTF-8") from None
    if text.startswith("\ufeff"):
        # Some Windows editors add one; JSON text must not start with it (RFC 8259 8.1).
        raise RequestInvalid("the body starts with a UTF-8 byte order mark (EF BB BF); send the JSON without it")
    try:
        document = _decode(text)
    except json.JSONDecodeError as exc:
        raise RequestInvalid(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise RequestInvalid("the body nests too deeply") from None
    if not isinstance(document, dict):
        raise RequestInvalid("the body must be a JSON object")
    return document


def _decode(text: str) -> Any:
    # An object with nothing around it (what SDKs send) goes straight to the scanner:
    # JSONDecoder.decode() would only add two whitespace regexes and two frames. Anything
    # else, or trailing text, takes decode() itself, so every error reads as decode()'s.
    if text[:1] == "{":
        document, end = _SCAN(text, 0)
        if end == len(text):
            return document
    return _STRICT_JSON.decode(text)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers could pick different copies of a duplicated key; what we validate (and
    # later authorise) must be exactly what AWS will read, so duplicates are refused.
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        shown = duplicate if len(duplicate) <= 64 else duplicate[:61] + "..."
        raise RequestInvalid(f"the body repeats the member {shown!r}")
    return document


def _reject_constant(name: str) -> None:
    raise RequestInvalid(f"the body contains {name}, which is not JSON")


#: Python will not convert longer digit strings (sys.get_int_max_str_digits()); no IVS
#: member takes a number of even 20 digits, so the exact bound only has to stay below it.
MAX_INTEGER_DIGITS = 4000


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise RequestInvalid(f"the body has a number of {digits} digits ({text[:12]}...); "
                             f"at most {MAX_INTEGER_DIGITS} are taken")
    return int(text)


# Built once: json.loads() with hooks builds a new decoder (and its scanner) per call.
_STRICT_JSON = json.JSONDecoder(
    object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant, parse_int=_bounded_int
)
_SCAN = _STRICT_JSON.scan_once  # type: ignore[attr-defined]  # set in __init__, not in the stubs
