"""Who may do what: a subset of the IAM policy grammar, evaluated per caller.

A document per caller, in IAM's own words (`Statement`, `Sid`, `Effect`, `Action`,
`Resource`), so a team can paste what it already knows. Evaluation follows IAM: an
explicit `Deny` wins, otherwise every resource of the request must be allowed by some
`Allow`, otherwise the request is denied (default deny).

One condition key is understood, the one IAM itself uses for regions:
`aws:RequestedRegion` (the region the proxy chose for the call: the ARNs', the caller's
region prefix or credential scope, or the default), under `StringEquals`, `StringNotEquals`,
`StringLike` or `StringNotLike`. It restricts calls that name no ARN as well as those that
do, the way IAM's own region-restriction policies read:

    {"Effect": "Deny", "Action": "ivs:*", "Resource": "*",
     "Condition": {"StringNotEquals": {"aws:RequestedRegion": ["eu-west-1"]}}}

Deliberately unsupported, and refused at start-up rather than ignored: any other condition
key or operator, `NotAction`, `NotResource`, `Principal`, `NotPrincipal`. Ignoring a
condition on an `Allow` would silently widen it, so a document that has one does not load.

Matching: `Action` is case-insensitive, as in IAM; `Resource` is case-sensitive, and both
are anchored at both ends, `*` matching any run of characters (`/` and `:` included) and
`?` exactly one. So `channel/abc*` matches `channel/abcd` but never `channel/abd`.

The resources of a request are every ARN-typed member of its input (path, query and body;
each ARN of a batch), whatever service the ARN belongs to: a Lambda message-review
handler or a MediaTailor configuration named in a request must be allowed too, so one
team cannot attach another team's function to its room. Operations that name no ARN
(ListChannels, CreateChannel without ARNs) match only statements whose `Resource` is
exactly `"*"`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.errors import ConfigError, ProxyError

NO_RESOURCE = "*"
_VERSIONS = ("2012-10-17", "2008-10-17")
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "Resource", "Condition"}
_UNSUPPORTED = {"NotAction", "NotResource", "Principal", "NotPrincipal"}
REQUESTED_REGION = "aws:RequestedRegion"
#: operator -> (negated, wildcards)
_OPERATORS = {"StringEquals": (False, False), "StringNotEquals": (True, False),
              "StringLike": (False, True), "StringNotLike": (True, True)}
_SID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ACTION = re.compile(r"(?P<prefix>[a-z0-9-]+):(?P<name>[A-Za-z0-9*?]+)")
#: Printable ASCII without whitespace: what an ARN pattern may contain.
_RESOURCE = re.compile(r"\*|arn:[!-~]+")


class AccessDenied(ProxyError):
    status = 403
    error_type = "AccessDeniedException"
    reason = "access_denied"


def wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: `*` any run (separators included), `?` one character, anchored."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str  # the Sid, or "Statement[i]" when the document gave none
    allow: bool
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: tuple[RegionCondition, ...] = ()  # all must hold for the statement to apply

    @property
    def effect(self) -> str:
        return "Allow" if self.allow else "Deny"


@dataclass(frozen=True)
class PolicyDocument:
    """One caller's statements, parsed from config (`policy.callers.<name>`)."""

    statements: tuple[Statement, ...]

    @classmethod
    def from_config(cls, raw: Any, key: str) -> PolicyDocument:
        if not isinstance(raw, dict):
            raise ConfigError(key, "must be a policy document (a mapping with Statement)")
        unknown = set(raw) - {"Version", "Statement"}
        if unknown:
            raise ConfigError(f"{key}.{min(unknown)}", "unknown key; known keys: Statement, Version")
        if raw.get("Version", _VERSIONS[0]) not in _VERSIONS:
            raise ConfigError(f"{key}.Version", f"must be {_VERSIONS[0]}")
        body = raw.get("Statement")
        items = [body] if isinstance(body, dict) else body
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{key}.Statement", "must be a statement or a non-empty list of them")
        statements = tuple(_statement(item, i, f"{key}.Statement[{i}]") for i, item in enumerate(items))
        sids = [s.sid for s in statements]
        for sid in sids:
            if sids.count(sid) > 1:
                raise ConfigError(f"{key}.Statement", f"Sid {sid!r} is used twice")
        return cls(statements)


@dataclass(frozen=True, slots=True)
class RegionCondition:
    """`{"<operator>": {"aws:RequestedRegion": [values]}}`: one operator, any of its values."""

    operator: str
    values: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...] = ()  # StringLike/StringNotLike: compiled once, at load

    @classmethod
    def parse(cls, operator: str, values: tuple[str, ...]) -> RegionCondition:
        wildcards = _OPERATORS[operator][1]
        return cls(operator, values, tuple(wildcard(v, ignore_case=False) for v in values) if wildcards else ())

    def holds(self, region: str | None) -> bool:
        negated = _OPERATORS[self.operator][0]
        if region is None:  # IAM: a missing key fails a positive operator, passes a negated one
            return negated
        if self.patterns:
            matched = any(p.fullmatch(region) for p in self.patterns)
        else:
            matched = region in self.values
        return matched != negated


def _conditions(raw: Any, key: str) -> tuple[RegionCondition, ...]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(key, f"must map an operator to {{{REQUESTED_REGION!r}: [regions]}}")
    found = []
    for operator, keys in raw.items():
        if operator not in _OPERATORS:
            raise ConfigError(f"{key}.{operator}", "is not supported by ivs-proxy (ignoring it would change what "
                              f"the statement allows); supported: {', '.join(_OPERATORS)}")
        if not isinstance(keys, dict) or not keys:
            raise ConfigError(f"{key}.{operator}", f"must map {REQUESTED_REGION} to regions")
        for name, values in keys.items():
            if not isinstance(name, str) or name.lower() != REQUESTED_REGION.lower():
                raise ConfigError(f"{key}.{operator}.{name}", "is not supported by ivs-proxy (ignoring it would "
                                  f"change what the statement allows); supported: {REQUESTED_REGION}")
            found.append(RegionCondition.parse(operator, _strings(values, f"{key}.{operator}.{name}")))
    return tuple(found)


def _statement(raw: Any, index: int, key: str) -> Statement:
    if not isinstance(raw, dict):
        raise ConfigError(key, "must be a mapping with Effect, Action and Resource")
    for name in raw:
        if name in _UNSUPPORTED:
            raise ConfigError(f"{key}.{name}", "is not supported by ivs-proxy (ignoring it would change "
                              "what the statement allows); use Effect, Action, Resource and Sid")
        if name not in _STATEMENT_KEYS:
            raise ConfigError(f"{key}.{name}", f"unknown key; known keys: {', '.join(sorted(_STATEMENT_KEYS))}")
    for required in ("Effect", "Action", "Resource"):
        if required not in raw:
            raise ConfigError(f"{key}.{required}", "is required")
    sid = raw.get("Sid")
    if sid is not None and not (isinstance(sid, str) and _SID.fullmatch(sid)):
        raise ConfigError(f"{key}.Sid", "must be 1-128 of [A-Za-z0-9_-]")
    if raw["Effect"] not in ("Allow", "Deny"):
        raise ConfigError(f"{key}.Effect", "must be Allow or Deny")
    actions = _strings(raw["Action"], f"{key}.Action")
    for i, action in enumerate(actions):
        if action != "*" and not _ACTION.fullmatch(action):
            raise ConfigError(f"{key}.Action[{i}]", f"{action!r} is not service:Operation (e.g. ivs:GetChannel, ivs:Get*)")
    resources = _strings(raw["Resource"], f"{key}.Resource")
    for i, resource in enumerate(resources):
        if not _RESOURCE.fullmatch(resource):
            raise ConfigError(f"{key}.Resource[{i}]", f"{resource!r} is not \"*\" or an ARN pattern (arn:...)")
    conditions = _conditions(raw["Condition"], f"{key}.Condition") if "Condition" in raw else ()
    return Statement(sid or f"Statement[{index}]", raw["Effect"] == "Allow", actions, resources, conditions)


def _strings(raw: Any, key: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(key, "must be a string or a non-empty list of strings")
    return tuple(items)


@dataclass(frozen=True, slots=True)
class ResourceVerdict:
    """How one resource fared: the statement that denied it, or the one that allowed it."""

    resource: str
    allowed: bool
    statement: str | None  # None: no statement allows it (default deny)


@dataclass(frozen=True, slots=True)
class Decision:
    caller: str
    action: str
    resources: tuple[str, ...]  # as evaluated: the ARNs, or ("*",) for an operation naming none
    allowed: bool
    reason: str  # "allowed" | "explicit_deny" | "no_allow" | "no_policy"
    verdicts: tuple[ResourceVerdict, ...]
    region: str | None = None  # aws:RequestedRegion, as evaluated

    @property
    def statements(self) -> tuple[str, ...]:
        """The statements that decided, without repeats: every Allow used, or the Deny."""
        deciding = [v.statement for v in self.verdicts if v.statement and v.allowed == self.allowed]
        return tuple(dict.fromkeys(deciding))

    @property
    def refused_resource(self) -> str | None:
        return next((v.resource for v in self.verdicts if not v.allowed), None)

    def message(self) -> str:
        """The 403's message: caller, action and the first refused resource; never a Sid."""
        why = {
            "explicit_deny": "with an explicit deny in its policy",
            "no_policy": "because it has no policy",
        }.get(self.reason, "because no statement of its policy allows it")
        where = f" in {self.region}" if self.region else ""
        return f"caller {self.caller!r} is not allowed to perform {self.action} on {self.refused_resource}{where} {why}"


class _Compiled:
    __slots__ = ("actions", "conditions", "resources", "statement", "wildcard_resource")

    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self.actions = tuple(wildcard(a, ignore_case=True) for a in statement.actions)
        self.resources = tuple(wildcard(r, ignore_case=False) for r in statement.resources)
        self.wildcard_resource = NO_RESOURCE in statement.resources
        self.conditions = statement.conditions

    def covers(self, action: str, resource: str | None, region: str | None) -> bool:
        """resource None: the request names no ARN, which only `Resource: "*"` covers."""
        if not any(p.fullmatch(action) for p in self.actions):
            return False
        if not all(condition.holds(region) for condition in self.conditions):
            return False
        if resource is None:
            return self.wildcard_resource
        return any(p.fullmatch(resource) for p in self.resources)


class PolicySet:
    """Every caller's compiled policy; `evaluate` is the per-request call (pure, no I/O)."""

    def __init__(self, documents: Mapping[str, PolicyDocument], known_actions: Iterable[str]) -> None:
        known = sorted(set(known_actions))
        self._policies: dict[str, tuple[_Compiled, ...]] = {}
        for caller, document in documents.items():
            for i, statement in enumerate(document.statements):
                _check_actions(statement, known, f"policy.callers.{caller}.Statement[{i}].Action")
            self._policies[caller] = tuple(_Compiled(s) for s in document.statements)

    @property
    def callers(self) -> frozenset[str]:
        return frozenset(self._policies)

    def evaluate(self, caller: str, action: str, resources: Sequence[str], region: str | None = None) -> Decision:
        """Decide one request; `resources` are the ARNs it names (empty: none), `region` the
        region it goes to (`aws:RequestedRegion`)."""
        targets: tuple[str | None, ...] = tuple(dict.fromkeys(resources)) or (None,)
        shown = tuple(r or NO_RESOURCE for r in targets)
        compiled = self._policies.get(caller)
        if compiled is None:
            verdicts = tuple(ResourceVerdict(r, False, None) for r in shown)
            return Decision(caller, action, shown, False, "no_policy", verdicts, region)
        verdicts = tuple(_verdict(compiled, action, target, region) for target in targets)
        if all(v.allowed for v in verdicts):
            return Decision(caller, action, shown, True, "allowed", verdicts, region)
        denied = any(not v.allowed and v.statement for v in verdicts)
        return Decision(caller, action, shown, False, "explicit_deny" if denied else "no_allow", verdicts, region)


def _verdict(compiled: tuple[_Compiled, ...], action: str, target: str | None, region: str | None) -> ResourceVerdict:
    shown = target or NO_RESOURCE
    allowed_by: str | None = None
    for entry in compiled:
        if entry.covers(action, target, region):
            if not entry.statement.allow:
                return ResourceVerdict(shown, False, entry.statement.sid)  # explicit deny wins
            allowed_by = allowed_by or entry.statement.sid
    return ResourceVerdict(shown, allowed_by is not None, allowed_by)


def _check_actions(statement: Statement, known: list[str], key: str) -> None:
    """Every action pattern must name at least one served operation: a typo must not load."""
    prefixes = sorted({a.split(":", 1)[0] for a in known})
    for i, action in enumerate(statement.actions):
        if action == "*":
            continue
        prefix = action.split(":", 1)[0]
        if prefix not in prefixes:
            raise ConfigError(f"{key}[{i}]", f"unknown service prefix {prefix!r}; served: {', '.join(prefixes)}")
        pattern = wildcard(action, ignore_case=True)
        if not any(pattern.fullmatch(a) for a in known):
            near = difflib.get_close_matches(action, known, n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ConfigError(f"{key}[{i}]", f"{action!r} matches no operation of the served services{hint}")

