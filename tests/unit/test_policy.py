"""Policy evaluation: IAM's grammar subset, explicit deny, default deny, wildcards, batches."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.errors import ConfigError
from proxy.model.catalog import Catalog
from proxy.policy import PolicyDocument, PolicySet

KNOWN = {op.iam_action for op in Catalog.load().operations}
A = "arn:aws:ivs:us-west-2:123456789012"


def policy_set(**callers: Any) -> PolicySet:
    return PolicySet({name: PolicyDocument.from_config(doc, f"policy.callers.{name}") for name, doc in callers.items()},
                     KNOWN)


def statements(*items: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(items)}


def allow(action: Any, resource: Any, sid: str | None = None) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **({"Sid": sid} if sid else {})}


def deny(action: Any, resource: Any, sid: str | None = None) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **({"Sid": sid} if sid else {})}


TEAM = policy_set(
    team=statements(
        allow("ivs:PutMetadata", [f"{A}:channel/abc*", f"{A}:channel/x?z"], "Publish"),
        allow(["ivs:Get*", "ivs:List*"], "*", "Read"),
        allow("ivs:BatchGetChannel", f"{A}:channel/*", "Batch"),
        deny("ivs:*", f"{A}:channel/secret*", "NoSecrets"),
        allow("ivschat:*", "arn:aws:ivschat:*:123456789012:room/*", "Chat"),
        allow("ivschat:CreateRoom", "*", "CreateRooms"),
    ),
)


@pytest.mark.parametrize(
    ("action", "resources", "allowed", "reason", "deciding"),
    [
        # allow, and the statement that allowed
        ("ivs:PutMetadata", [f"{A}:channel/abc"], True, "allowed", ("Publish",)),
        ("ivs:PutMetadata", [f"{A}:channel/abcdef"], True, "allowed", ("Publish",)),
        # a pattern never matches by prefix: abc* is not abd, and it is anchored at the end too
        ("ivs:PutMetadata", [f"{A}:channel/abd"], False, "no_allow", ()),
        ("ivs:PutMetadata", [f"{A}:channel/ab"], False, "no_allow", ()),
        (
            "ivs:PutMetadata",
            ["arn:aws:ivs:us-west-2:123456789012:channel/abc/../other"],  # '*' spans '/', as in IAM
            True, "allowed", ("Publish",),
        ),
        # '?' is exactly one character
        ("ivs:PutMetadata", [f"{A}:channel/xyz"], True, "allowed", ("Publish",)),
        ("ivs:PutMetadata", [f"{A}:channel/xz"], False, "no_allow", ()),
        ("ivs:PutMetadata", [f"{A}:channel/xyyz"], False, "no_allow", ()),
        # ARNs are case-sensitive; actions are not
        ("ivs:PutMetadata", [f"{A}:channel/ABC"], False, "no_allow", ()),
        ("IVS:putmetadata", [f"{A}:channel/abc"], True, "allowed", ("Publish",)),
        # another account, another region: not ours
        ("ivs:PutMetadata", ["arn:aws:ivs:us-west-2:999999999999:channel/abc"], False, "no_allow", ()),
        ("ivs:PutMetadata", ["arn:aws:ivs:eu-west-1:123456789012:channel/abc"], False, "no_allow", ()),
        # the wildcard region in a pattern does cover another region
        ("ivschat:GetRoom", ["arn:aws:ivschat:eu-west-1:123456789012:room/r1"], True, "allowed", ("Chat",)),
        ("ivschat:GetRoom", ["arn:aws:ivschat:eu-west-1:999999999999:room/r1"], False, "no_allow", ()),
        # explicit deny wins over any allow
        ("ivs:GetChannel", [f"{A}:channel/secret-1"], False, "explicit_deny", ("NoSecrets",)),
        ("ivs:GetChannel", [f"{A}:channel/public-1"], True, "allowed", ("Read",)),
        # an action no statement names: default deny
        ("ivs:DeleteChannel", [f"{A}:channel/abc"], False, "no_allow", ()),
        ("ivs:StopStream", [f"{A}:channel/abc"], False, "no_allow", ()),
        # calls naming no ARN match only Resource "*"
        ("ivs:ListChannels", [], True, "allowed", ("Read",)),
        ("ivs:CreateChannel", [], False, "no_allow", ()),
        ("ivschat:CreateRoom", [], True, "allowed", ("CreateRooms",)),
        ("ivs:BatchGetChannel", [], False, "no_allow", ()),  # channel/* is not "*"
        # batches: every ARN must be allowed, one denied refuses all
        ("ivs:BatchGetChannel", [f"{A}:channel/a", f"{A}:channel/b"], True, "allowed", ("Batch",)),
        ("ivs:BatchGetChannel", [f"{A}:channel/a", f"{A}:channel/secret-2", f"{A}:channel/b"], False,
         "explicit_deny", ("NoSecrets",)),
        ("ivs:PutMetadata", [f"{A}:channel/abc", f"{A}:channel/abd"], False, "no_allow", ()),
        # Resource "*" covers every ARN, as in IAM (Lambda ARNs included)
        ("ivschat:CreateRoom", ["arn:aws:lambda:us-west-2:123456789012:function:any"], True, "allowed",
         ("CreateRooms",)),
    ],
)
def test_decisions(action: str, resources: list[str], allowed: bool, reason: str, deciding: tuple[str, ...]) -> None:
    decision = TEAM.evaluate("team", action, resources)
    assert (decision.allowed, decision.reason) == (allowed, reason)
    assert decision.statements == deciding


def test_batch_denial_names_the_refused_resource_not_the_statement() -> None:
    decision = TEAM.evaluate("team", "ivs:BatchGetChannel", [f"{A}:channel/a", f"{A}:channel/secret-2"])
    message = decision.message()
    assert "'team'" in message and "ivs:BatchGetChannel" in message and f"{A}:channel/secret-2" in message
    assert "explicit deny" in message and "NoSecrets" not in message
    assert [v.allowed for v in decision.verdicts] == [True, False]


def test_lambda_and_other_service_arns_in_a_request_are_authorised_too() -> None:
    """A team may attach only its own review handlers: CreateRoom is not granted on "*",
    so a room without a handler (no ARN) is refused as well."""
    chat = policy_set(chat=statements(
        allow(["ivschat:CreateRoom", "ivschat:UpdateRoom"], "arn:aws:lambda:us-west-2:123456789012:function:chat-*"),
        allow("ivschat:UpdateRoom", "arn:aws:ivschat:us-west-2:123456789012:room/*"),
    ))
    own = "arn:aws:lambda:us-west-2:123456789012:function:chat-review"
    other = "arn:aws:lambda:us-west-2:123456789012:function:video-review"
    room = "arn:aws:ivschat:us-west-2:123456789012:room/r1"
    assert chat.evaluate("chat", "ivschat:CreateRoom", [own]).allowed
    assert not chat.evaluate("chat", "ivschat:CreateRoom", [other]).allowed
    assert not chat.evaluate("chat", "ivschat:CreateRoom", []).allowed
    assert chat.evaluate("chat", "ivschat:UpdateRoom", [room, own]).allowed
    denied = chat.evaluate("chat", "ivschat:UpdateRoom", [room, other])
    assert not denied.allowed and denied.refused_resource == other


def test_unknown_caller_and_empty_policy_are_denied() -> None:
    assert TEAM.evaluate("stranger", "ivs:ListChannels", []).reason == "no_policy"
    assert not TEAM.evaluate("stranger", "ivs:ListChannels", []).allowed


def test_star_action_and_star_resource_allow_everything_but_a_deny() -> None:
    admin = policy_set(admin=statements(allow("*", "*"), deny("ivs:DeleteChannel", "*", "NoDeletes")))
    assert admin.evaluate("admin", "ivs:GetChannel", [f"{A}:channel/a"]).allowed
    assert admin.evaluate("admin", "ivschat:SendEvent", ["arn:aws:ivschat:us-west-2:1:room/r"]).allowed
    assert not admin.evaluate("admin", "ivs:DeleteChannel", [f"{A}:channel/a"]).allowed


def test_repeated_arns_are_evaluated_once() -> None:
    decision = TEAM.evaluate("team", "ivs:BatchGetChannel", [f"{A}:channel/a", f"{A}:channel/a"])
    assert decision.resources == (f"{A}:channel/a",)


def test_realtime_actions_use_the_ivs_prefix_as_in_iam() -> None:
    stage = policy_set(rt=statements(allow("ivs:CreateParticipantToken", "arn:aws:ivs:*:*:stage/*")))
    assert stage.evaluate("rt", "ivs:CreateParticipantToken", ["arn:aws:ivs:us-west-2:1:stage/s"]).allowed


def test_a_single_statement_mapping_is_accepted_as_in_iam() -> None:
    single = policy_set(one={"Statement": allow("ivs:GetChannel", "*")})
    assert single.evaluate("one", "ivs:GetChannel", [f"{A}:channel/a"]).allowed


@pytest.mark.parametrize(
    ("document", "key", "reason"),
    [
        (statements({**allow("ivs:GetChannel", "*"), "Condition": {"Bool": {"aws:SecureTransport": "true"}}}),
         "Statement[0].Condition.Bool", "not supported"),
        (statements({**allow("ivs:GetChannel", "*"), "Condition": {"StringEquals": {"aws:SourceIp": "10.0.0.1"}}}),
         "Statement[0].Condition.StringEquals.aws:SourceIp", "supported: aws:RequestedRegion"),
        (statements({**allow("ivs:GetChannel", "*"), "Condition": {"StringEquals": {"aws:RequestedRegion": []}}}),
         "Statement[0].Condition.StringEquals.aws:RequestedRegion", "non-empty"),
        (statements({**allow("ivs:GetChannel", "*"), "Condition": {}}), "Statement[0].Condition", "must map"),
        (statements({"Effect": "Allow", "NotAction": "ivs:DeleteChannel", "Resource": "*"}),
         "Statement[0].NotAction", "not supported"),
        (statements({**allow("ivs:GetChannel", "*"), "NotResource": "*"}), "Statement[0].NotResource", "not supported"),
        (statements({**allow("ivs:GetChannel", "*"), "Principal": "*"}), "Statement[0].Principal", "not supported"),
        (statements({**allow("ivs:GetChannel", "*"), "Actions": "x"}), "Statement[0].Actions", "unknown key"),
        (statements({"Effect": "allow", "Action": "ivs:GetChannel", "Resource": "*"}), "Statement[0].Effect",
         "Allow or Deny"),
        (statements({"Effect": "Allow", "Resource": "*"}), "Statement[0].Action", "required"),
        (statements(allow("ivs:GetChannel", [])), "Statement[0].Resource", "non-empty"),
        (statements(allow("GetChannel", "*")), "Statement[0].Action[0]", "service:Operation"),
        (statements(allow("ivs:GetChannel", "channel/*")), "Statement[0].Resource[0]", "ARN pattern"),
        (statements(allow("ivs:GetChannel", "*", "Same"), allow("ivs:GetStream", "*", "Same")), "Statement",
         "used twice"),
        ({"Version": "2099-01-01", "Statement": [allow("ivs:GetChannel", "*")]}, "Version", "2012-10-17"),
        ({"Statement": []}, "Statement", "non-empty"),
        ({"Statment": []}, "Statment", "unknown key"),
    ],
)
def test_documents_that_do_not_load_name_the_key(document: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        PolicyDocument.from_config(document, "policy.callers.team")
    assert error.value.key == f"policy.callers.team.{key}"
    assert reason in error.value.reason


@pytest.mark.parametrize(
    ("action", "reason"),
    [
        ("s3:GetObject", "unknown service prefix 's3'"),
        ("ivs:GetChanel", "did you mean ivs:GetChannel?"),
        ("ivschat:Frobnicate*", "matches no operation"),
    ],
)
def test_actions_must_name_served_operations(action: str, reason: str) -> None:
    with pytest.raises(ConfigError) as error:
        policy_set(team=statements(allow(action, "*")))
    assert error.value.key == "policy.callers.team.Statement[0].Action[0]"
    assert reason in error.value.reason


def region_condition(operator: str, *regions: str) -> dict[str, Any]:
    return {"Condition": {operator: {"aws:RequestedRegion": list(regions)}}}


EU_ONLY = policy_set(
    eu=statements(
        allow("ivs:*", "*", "Everything"),
        {**deny("ivs:*", "*", "OutsideEurope"), **region_condition("StringNotLike", "eu-*")},
    ),
    west=statements({**allow(["ivs:CreateChannel", "ivs:ListChannels"], "*", "West"),
                     **region_condition("StringEquals", "us-west-2", "eu-west-1")}),
)


@pytest.mark.parametrize(
    ("caller", "action", "resources", "region", "allowed", "reason"),
    [
        # calls that name no ARN are restricted by the region they go to
        ("eu", "ivs:CreateChannel", [], "eu-west-1", True, "allowed"),
        ("eu", "ivs:CreateChannel", [], "us-west-2", False, "explicit_deny"),
        ("west", "ivs:ListChannels", [], "eu-west-1", True, "allowed"),
        ("west", "ivs:ListChannels", [], "ap-northeast-1", False, "no_allow"),
        # and so are calls that do (the region is the ARN's)
        ("eu", "ivs:GetChannel", ["arn:aws:ivs:us-east-1:123456789012:channel/a"], "us-east-1", False, "explicit_deny"),
        ("eu", "ivs:GetChannel", ["arn:aws:ivs:eu-central-1:123456789012:channel/a"], "eu-central-1", True, "allowed"),
        # no region known (IAM: a missing key fails StringEquals/StringLike, passes the Not forms)
        ("west", "ivs:ListChannels", [], None, False, "no_allow"),
        ("eu", "ivs:ListChannels", [], None, False, "explicit_deny"),
    ],
)
def test_region_conditions(caller: str, action: str, resources: list[str], region: str | None, allowed: bool,
                           reason: str) -> None:
    decision = EU_ONLY.evaluate(caller, action, resources, region)
    assert (decision.allowed, decision.reason, decision.region) == (allowed, reason, region)


def test_a_region_denial_says_where() -> None:
    decision = EU_ONLY.evaluate("eu", "ivs:CreateChannel", [], "us-west-2")
    assert decision.message() == (
        "caller 'eu' is not allowed to perform ivs:CreateChannel on * in us-west-2 with an explicit deny in its policy"
    )


def test_condition_keys_are_case_insensitive_and_values_are_not() -> None:
    mixed = policy_set(m=statements({**allow("ivs:ListChannels", "*"), "Condition": {"StringEquals": {
        "AWS:requestedregion": ["eu-west-1"]}}}))
    assert mixed.evaluate("m", "ivs:ListChannels", [], "eu-west-1").allowed
    assert not mixed.evaluate("m", "ivs:ListChannels", [], "EU-WEST-1").allowed
