"""Amazon Resource Names: a structural parser, and the ARN checks the IVS models imply.

`parse_arn` answers "is this shaped like an ARN at all?" and splits it into its parts. It
knows nothing about IVS. `is_arn_shape` says which model shapes hold an ARN, and
`ArnRule` is what `validate.py` checks them against instead of the model's regex (see
`ArnRule.from_model` for why).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import botocore.loaders
import botocore.model


def _known_partitions() -> frozenset[str]:
    """The partition ids botocore knows (aws, aws-cn, aws-us-gov, aws-iso*, aws-eusc...).

    Read from botocore's own partitions data, so a partition AWS adds arrives with a
    botocore upgrade instead of a code change here.
    """
    data = botocore.loaders.create_loader().load_data("partitions")
    return frozenset(p["id"] for p in data["partitions"])


PARTITIONS: frozenset[str] = _known_partitions()

# arn:<partition>:<service>:<region>:<account>:<resource>. Region and account may be
# empty (IAM and S3 ARNs have none); the account may also be "aws" (AWS managed IAM
# policies). Control characters never occur in a real ARN.
_ARN = re.compile(
    r"arn:(?P<partition>[a-z0-9-]+):(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*)"
    r":(?P<account>[0-9]*|aws):(?P<resource>[^\x00-\x1f\x7f]+)",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class Arn:
    """A structurally valid ARN; `str(arn)` gives the original text back."""

    partition: str
    service: str
    region: str
    account: str
    resource: str

    @property
    def resource_type(self) -> str:
        """The part of `resource` before the first '/' or ':' ("channel", "function")."""
        return re.split(r"[/:]", self.resource, maxsplit=1)[0]

    def __str__(self) -> str:
        # Lossless: parse_arn splits on the first five ':' only.
        return f"arn:{self.partition}:{self.service}:{self.region}:{self.account}:{self.resource}"


def parse_arn(text: object) -> Arn | None:
    """Return the parts of `text` if it is shaped like an ARN of a known partition, else None."""
    if not isinstance(text, str):
        return None
    m = _ARN.fullmatch(text)
    if m is None or m["partition"] not in PARTITIONS:
        return None
    return Arn(m["partition"], m["service"], m["region"], m["account"], m["resource"])


# Reads the model's intent out of an ARN pattern such as
#   arn:aws:ivs:[a-z0-9-]+:[0-9]+:channel/[a-zA-Z0-9-]+
#   ^$|^arn:aws:ivs:[a-z0-9-]+:[0-9]+:recording-configuration/[a-zA-Z0-9-]+$
#   $|^arn:aws:lambda:[a-z0-9-]+:[0-9]{12}:function:.+.*
#   arn:aws:ivs:[a-z0-9-]+:[0-9]+:[a-z-]/[a-zA-Z0-9-]+      (ResourceArn: no fixed type)
_MODEL_ARN = re.compile(
    r"arn:[^:]*:(?P<service>[a-z0-9-]+):[^:]*:[^:]*:"
    r"(?:(?P<type>[A-Za-z][A-Za-z0-9-]*)|\[[^\]]*\][+*]?)(?P<sep>[/:])"
)


@dataclass(frozen=True, slots=True)
class ArnRule:
    """What an ARN-typed member accepts: an ARN of `service`, of `resource_type` if set."""

    service: str | None  # None: any service (a shape named ...Arn with no usable pattern)
    resource_type: str | None  # None: any type, e.g. ResourceArn of the tagging APIs
    separator: str | None  # '/' for IVS resources, ':' for lambda "function:name"
    allow_empty: bool  # "^$|^arn..." patterns: "" is how a caller clears the field
    matcher: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One regex for the whole check, built once: the per-request cost is one match.
        # Region and account as the models have them ([a-z0-9-]+, [0-9]+: those parts of
        # the patterns are right, and an ARN without them names no IVS resource). The id
        # is anything without whitespace or control characters.
        partitions = "|".join(sorted(map(re.escape, PARTITIONS), key=len, reverse=True))
        service = re.escape(self.service) if self.service else "[a-z0-9-]+"
        rtype = re.escape(self.resource_type) if self.resource_type else "[A-Za-z][A-Za-z0-9-]*"
        sep = re.escape(self.separator) if self.separator else "[/:]"
        matcher = re.compile(
            rf"arn:({partitions}):({service}):([a-z0-9-]+):([0-9]+):({rtype}{sep}[^\s\x00-\x1f\x7f]+)"
        )
        object.__setattr__(self, "matcher", matcher)

    @classmethod
    def for_shape(cls, shape: botocore.model.Shape) -> ArnRule:
        """The rule for an ARN-typed shape (see `is_arn_shape`)."""
        pattern = shape.metadata.get("pattern")
        return cls.from_model(pattern, bool(pattern and _EMPTY_FIRST.match(pattern)))

    @classmethod
    def from_model(cls, pattern: str | None, allow_empty: bool) -> ArnRule:
        """Build the rule from a model pattern (`allow_empty`: the pattern matches "").

        Why not the model regex itself: it hard-codes the `aws` partition, and the
        `ResourceArn` pattern of all three models has `[a-z-]/`, ONE character of resource
        type, so no real ARN (`...:channel/AbCd...`) matches it although AWS accepts them.
        """
        m = _MODEL_ARN.search(pattern or "")
        if m is None:
            return cls(None, None, None, allow_empty)
        return cls(m["service"], m["type"], m["sep"], allow_empty)

    def describe(self) -> str:
        """The expected form, for error messages."""
        service = self.service or "<service>"
        resource = f"{self.resource_type}{self.separator}<id>" if self.resource_type else "<type>/<id>"
        return f"arn:<partition>:{service}:<region>:<account>:{resource}"

    def check(self, text: str) -> Arn | None:
        """Return the parsed ARN if `text` satisfies the rule (length is checked elsewhere)."""
        m = self.matcher.fullmatch(text)
        if m is None or self.id_problem(m[5]) is not None:
            return None
        return Arn(*m.groups())

    def id_problem(self, resource: str) -> str | None:
        """Which rule the resource part of a matching ARN breaks, if it names nothing real.

        AWS refuses these ids; refusing them here saves the round trip and says why. A rule
        with a known service names a resource whose id is flat (IVS `channel/<id>`, lambda
        `function:<name>[:<qualifier>]`), so a further '/' is a path it cannot have; only a
        rule for any service (an IAM role's `role/<path>/<name>`) keeps slashes.
        """
        _, _, ident = resource.partition(self.separator) if self.separator else ("", "", resource)
        invisible = next((c for c in resource if unicodedata.category(c) in _INVISIBLE), None)
        if invisible is not None:
            return (f"an ARN holds no control or invisible characters "
                    f"(U+{ord(invisible):04X} {unicodedata.name(invisible, 'unnamed')})")
        if any(segment in (".", "..") for segment in re.split(r"[/:]", resource)):
            return "an ARN's resource has no '.' or '..' path segments"
        if "@" in resource:
            return "an ARN's resource holds no '@'"
        if self.service is not None and "/" in ident:
            return f"the id of a {self.service} {self.resource_type or 'resource'} has no '/' (no path)"
        return None


# Unicode categories no ARN ever holds: controls, formats (zero-width space and joiners,
# BOM, soft hyphen, bidi overrides), private use, surrogates, unassigned, line/paragraph seps.
_INVISIBLE = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp", "Zs"})

# "^$|^arn..." and ivschat's "$|^arn...": the pattern's first alternative is the empty string.
_EMPTY_FIRST = re.compile(r"\^?\$\|")
_ARN_IN_PATTERN = re.compile(r"(?<![A-Za-z0-9])arn:")


def is_arn_shape(shape: botocore.model.Shape) -> bool:
    """ARN-typed: a string shape whose pattern spells out an ARN, or one named ...Arn.

    The pattern test also catches the ivschat identifiers (RoomIdentifier,
    LoggingConfigurationIdentifier: ARN-only per the model); the name test is for a
    future ...Arn shape that arrives without a pattern. Decided once, at compile time.
    """
    if shape.type_name != "string" or shape.metadata.get("enum"):
        return False
    pattern = shape.metadata.get("pattern") or ""
    return bool(_ARN_IN_PATTERN.search(pattern)) or shape.name.endswith("Arn")
