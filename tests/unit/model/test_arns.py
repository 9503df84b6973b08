"""proxy.model.arns: the structural ARN parser and the per-shape ARN rules."""

from __future__ import annotations

import botocore.loaders
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.model.arns import PARTITIONS, Arn, ArnRule, parse_arn

# One real-shaped ARN of every resource type the three IVS APIs name, plus the foreign
# ARNs the models accept (a Lambda review handler, a MediaTailor playback configuration).
REAL_ARNS = {
    "channel": "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl",
    "stream-key": "arn:aws:ivs:us-west-2:123456789012:stream-key/g1H2I3j4k5L6",
    "playback-key": "arn:aws:ivs:us-west-2:123456789012:playback-key/f99cde61-c2b0-4df3-8941-ca7d38acca1a",
    "recording-configuration": "arn:aws:ivs:us-east-1:123456789012:recording-configuration/ABcdef34ghIJ",
    "playback-restriction-policy": "arn:aws:ivs:eu-west-1:123456789012:playback-restriction-policy/ABcdef34ghIJ",
    "ad-configuration": "arn:aws:ivs:us-west-2:123456789012:ad-configuration/ABcdef34ghIJ",
    "failover-slate-configuration": "arn:aws:ivs:us-west-2:123456789012:failover-slate-configuration/ABcdef34ghIJ",
    "stage": "arn:aws:ivs:us-east-1:123456789012:stage/abcdABCDefgh",
    "composition": "arn:aws:ivs:us-east-1:123456789012:composition/abcdABCDefgh",
    "encoder-configuration": "arn:aws:ivs:us-east-1:123456789012:encoder-configuration/ABabCDcdEFef",
    "storage-configuration": "arn:aws:ivs:us-east-1:123456789012:storage-configuration/ABabCDcdEFef",
    "ingest-configuration": "arn:aws:ivs:us-east-1:123456789012:ingest-configuration/AbCdEfGh1234",
    "public-key": "arn:aws:ivs:us-east-1:123456789012:public-key/abcdABC123xy",
    "room": "arn:aws:ivschat:us-west-2:123456789012:room/g1H2I3j4k5L6",
    "logging-configuration": "arn:aws:ivschat:us-west-2:123456789012:logging-configuration/ABcdef34ghIJ",
    "function": "arn:aws:lambda:us-west-2:123456789012:function:chat-message-review:live",
    "playbackConfiguration": "arn:aws:mediatailor:us-west-2:123456789012:playbackConfiguration/my-ads",
}


@pytest.mark.parametrize("resource_type", sorted(REAL_ARNS))
def test_real_arns_parse_and_round_trip(resource_type: str) -> None:
    text = REAL_ARNS[resource_type]
    arn = parse_arn(text)
    assert arn is not None
    assert arn.partition == "aws" and arn.account == "123456789012"
    assert arn.resource_type == resource_type
    assert str(arn) == text


def test_fields_are_split_at_the_first_five_colons_only() -> None:
    arn = parse_arn("arn:aws:lambda:us-west-2:123456789012:function:review:prod")
    assert arn == Arn("aws", "lambda", "us-west-2", "123456789012", "function:review:prod")
    assert arn.resource_type == "function"


@pytest.mark.parametrize(
    "text",
    [
        "arn:aws:iam::123456789012:role/ivs-recorder",  # no region
        "arn:aws:iam::aws:policy/AdministratorAccess",  # AWS-managed: account "aws"
        "arn:aws:s3:::my-ivs-recordings",  # neither region nor account
        "arn:aws-cn:ivs:cn-north-1:123456789012:channel/AbCdEfGhIjKl",
        "arn:aws-us-gov:ivs:us-gov-west-1:123456789012:channel/AbCdEfGhIjKl",
        "arn:aws-iso-b:ivs:us-isob-east-1:123456789012:channel/AbCdEfGhIjKl",
    ],
)
def test_other_well_formed_arns_parse(text: str) -> None:
    arn = parse_arn(text)
    assert arn is not None and str(arn) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "arn",
        "channel/AbCdEfGhIjKl",
        "arn:aws:ivs:us-west-2:123456789012",  # no resource part
        "arn:aws:ivs:us-west-2:123456789012:",  # empty resource
        "arn:aws-moon:ivs:us-west-2:123456789012:channel/AbCd",  # unknown partition
        "arn::ivs:us-west-2:123456789012:channel/AbCd",  # no partition
        "arn:aws::us-west-2:123456789012:channel/AbCd",  # no service
        "ARN:aws:ivs:us-west-2:123456789012:channel/AbCd",
        "arn:aws:ivs:us-west-2:1234-5678-9012:channel/AbCd",
        "arn:aws:ivs:us-west-2:123456789012:channel/Ab\nCd",  # control character
        " arn:aws:ivs:us-west-2:123456789012:channel/AbCd",
    ],
)
def test_malformed_text_is_not_an_arn(text: str) -> None:
    assert parse_arn(text) is None


@pytest.mark.parametrize("value", [None, 42, b"arn:aws:ivs:us-west-2:1:channel/x", ["arn"]])
def test_non_strings_are_not_arns(value: object) -> None:
    assert parse_arn(value) is None


def test_partitions_come_from_botocore() -> None:
    data = botocore.loaders.create_loader().load_data("partitions")
    assert {p["id"] for p in data["partitions"]} == PARTITIONS
    assert {"aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f",
            "aws-eusc"} <= PARTITIONS


@given(
    partition=st.sampled_from(sorted(PARTITIONS)),
    service=st.from_regex(r"[a-z0-9-]{1,20}", fullmatch=True),
    region=st.from_regex(r"[a-z0-9-]{0,20}", fullmatch=True),
    account=st.from_regex(r"[0-9]{0,12}", fullmatch=True),
    resource=st.text(st.characters(blacklist_categories=("Cc",)), min_size=1, max_size=60),
)
def test_str_gives_the_original_text_back(partition: str, service: str, region: str,
                                          account: str, resource: str) -> None:
    text = f"arn:{partition}:{service}:{region}:{account}:{resource}"
    arn = parse_arn(text)
    assert arn is not None and str(arn) == text
    assert (arn.partition, arn.service, arn.region, arn.account) == (partition, service, region, account)


@given(st.text(max_size=80))
def test_parse_arn_never_raises(text: str) -> None:
    arn = parse_arn(text)
    assert arn is None or str(arn) == text


# ---- ArnRule ------------------------------------------------------------------------------

RESOURCE_ARN_PATTERN = "arn:aws:ivs:[a-z0-9-]+:[0-9]+:[a-z-]/[a-zA-Z0-9-]+"
CHANNEL_PATTERN = "arn:aws:ivs:[a-z0-9-]+:[0-9]+:channel/[a-zA-Z0-9-]+"
LAMBDA_PATTERN = "$|^arn:aws:lambda:[a-z0-9-]+:[0-9]{12}:function:.+.*"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (CHANNEL_PATTERN, ("ivs", "channel", "/")),
        ("^$|^arn:aws:ivs:[a-z0-9-]+:[0-9]+:recording-configuration/[a-zA-Z0-9-]+$",
         ("ivs", "recording-configuration", "/")),
        (RESOURCE_ARN_PATTERN, ("ivs", None, "/")),
        ("arn:aws:ivschat:[a-z0-9-]+:[0-9]+:[a-z-]/[a-zA-Z0-9-]+", ("ivschat", None, "/")),
        (LAMBDA_PATTERN, ("lambda", "function", ":")),
        ("arn:aws:mediatailor:[a-z0-9-]+:[0-9]+:playbackConfiguration/[a-zA-Z0-9-]+",
         ("mediatailor", "playbackConfiguration", "/")),
        (None, (None, None, None)),
    ],
)
def test_rule_reads_the_models_intent(pattern: str | None, expected: tuple) -> None:
    rule = ArnRule.from_model(pattern, allow_empty=False)
    assert (rule.service, rule.resource_type, rule.separator) == expected


@pytest.mark.parametrize("resource_type", sorted(t for t, a in REAL_ARNS.items() if ":ivs:" in a))
def test_resource_arn_rule_accepts_every_real_ivs_arn(resource_type: str) -> None:
    # The model's own ResourceArn regex refuses all of these ([a-z-] is one character).
    rule = ArnRule.from_model(RESOURCE_ARN_PATTERN, allow_empty=False)
    text = REAL_ARNS[resource_type]
    assert rule.check(text) == parse_arn(text)


@pytest.mark.parametrize(
    "text",
    [
        REAL_ARNS["stream-key"],  # right service, wrong resource type
        REAL_ARNS["room"],  # wrong service
        "arn:aws:ivs:us-west-2:123456789012:channel/",  # no id
        "arn:aws:ivs:us-west-2:123456789012:channel/Ab Cd",  # whitespace in the id
        "arn:aws:ivs::123456789012:channel/AbCdEfGhIjKl",  # no region
        "arn:aws:ivs:us-west-2::channel/AbCdEfGhIjKl",  # no account
        "arn:aws:ivs:us-west-2:123456789012:channel:AbCdEfGhIjKl",  # wrong separator
        "xarn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl",
    ],
)
def test_channel_rule_refuses(text: str) -> None:
    assert ArnRule.from_model(CHANNEL_PATTERN, allow_empty=False).check(text) is None


def test_channel_rule_accepts_any_known_partition() -> None:
    rule = ArnRule.from_model(CHANNEL_PATTERN, allow_empty=False)
    for partition in PARTITIONS:
        text = f"arn:{partition}:ivs:some-region-1:123456789012:channel/AbCdEfGhIjKl"
        arn = rule.check(text)
        assert arn is not None and arn == parse_arn(text)


def test_lambda_rule() -> None:
    rule = ArnRule.from_model(LAMBDA_PATTERN, allow_empty=True)
    assert rule.check(REAL_ARNS["function"]) is not None
    assert rule.check("arn:aws:lambda:us-west-2:123456789012:function:review") is not None
    assert rule.check("arn:aws:lambda:us-west-2:123456789012:layer:review:1") is None
    assert rule.check("https://example.com/review") is None
    assert "lambda" in rule.describe() and "function:<id>" in rule.describe()


CHANNEL_PREFIX = "arn:aws:ivs:us-west-2:123456789012:channel/"


@pytest.mark.parametrize(
    ("resource_id", "rule_named"),
    [
        ("..", "'..' path segments"),
        ("AbCd/../EfGh", "'..' path segments"),
        ("AbCd/EfGh", "has no '/'"),
        ("AbCd@EfGh", "no '@'"),
        ("AbCd\x9bEfGh", "U+009B"),  # a C1 control: the ASCII range check misses it
        ("AbCd\u200bEfGh", "U+200B ZERO WIDTH SPACE"),
        ("AbCd\u200dEfGh", "U+200D"),
        ("\ufeffAbCdEfGh", "U+FEFF"),
        ("AbCd\u00adEfGh", "U+00AD"),
        ("AbCd\u202eEfGh", "U+202E"),
        ("AbCd\ue000EfGh", "U+E000"),  # private use
    ],
)
def test_ids_that_can_never_be_real_are_refused_naming_the_rule(resource_id: str, rule_named: str) -> None:
    for pattern in (CHANNEL_PATTERN, RESOURCE_ARN_PATTERN):
        rule = ArnRule.from_model(pattern, allow_empty=False)
        text = CHANNEL_PREFIX + resource_id
        assert rule.matcher.fullmatch(text) is not None  # structurally an ARN: only the id is wrong
        assert rule.check(text) is None
        problem = rule.id_problem(text.split(":", 5)[5])
        assert problem is not None and rule_named in problem


def test_lambda_ids_refuse_paths_but_keep_their_qualifier() -> None:
    rule = ArnRule.from_model(LAMBDA_PATTERN, allow_empty=True)
    assert rule.id_problem("function:chat-message-review:live") is None
    assert "'..'" in (rule.id_problem("function:review/../x") or "")
    assert "has no '/'" in (rule.id_problem("function:review/x") or "")


def test_a_rule_for_any_service_keeps_iam_paths() -> None:
    rule = ArnRule.from_model(None, allow_empty=False)
    assert rule.check("arn:aws:iam:us-east-1:123456789012:role/service-role/ivs-recorder") is not None
    assert rule.check("arn:aws:iam:us-east-1:123456789012:role/service-role/../admin") is None


@pytest.mark.parametrize("resource_type", sorted(REAL_ARNS))
def test_real_arns_break_no_id_rule(resource_type: str) -> None:
    text = REAL_ARNS[resource_type]
    arn = parse_arn(text)
    assert arn is not None
    sep = "/" if "/" in arn.resource else ":"
    rule = ArnRule(arn.service, arn.resource_type, sep, allow_empty=False)
    assert rule.id_problem(arn.resource) is None and rule.check(text) == arn
