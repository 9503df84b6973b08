"""proxy.model.validate: operation inputs checked against the botocore models (and AWS reality)."""

from __future__ import annotations

import functools
import re

import botocore.loaders
import botocore.model
import botocore.validate
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proxy.errors import RequestInvalid
from proxy.model.arns import is_arn_shape, parse_arn
from proxy.model.validate import (
    InputValidator,
    ResourceRef,
    ValidatedInput,
    ValidationOptions,
    compile_input_validator,
)
from tests.unit.model.test_arns import REAL_ARNS

SERVICES = ("ivs", "ivs-realtime", "ivschat")
CHANNEL = REAL_ARNS["channel"]
STAGE = REAL_ARNS["stage"]
ROOM = REAL_ARNS["room"]
LAMBDA = REAL_ARNS["function"]


@functools.cache
def model(service: str) -> botocore.model.ServiceModel:
    loader = botocore.loaders.create_loader()
    return botocore.model.ServiceModel(loader.load_service_model(service, "service-2"), service)


@functools.cache
def validator(service: str, op: str, unknown_members: bool = False,
              unknown_enums: bool = False) -> InputValidator:
    shape = model(service).operation_model(op).input_shape
    return compile_input_validator(shape, ValidationOptions(unknown_members, unknown_enums))


def ok(service: str, op: str, document: object, **params: object) -> ValidatedInput:
    result = validator(service, op).validate(document, **params)  # type: ignore[arg-type]
    assert isinstance(result, ValidatedInput)
    return result


def refused(service: str, op: str, document: object, **params: object) -> str:
    with pytest.raises(RequestInvalid) as exc:
        validator(service, op).validate(document, **params)  # type: ignore[arg-type]
    assert exc.value.status == 400 and exc.value.error_type == "ValidationException"
    return exc.value.message


def paths(result: ValidatedInput) -> list[str]:
    return [ref.member_path for ref in result.resources]


# ---- realistic calls ----------------------------------------------------------------------


def test_create_channel() -> None:
    result = ok("ivs", "CreateChannel", {
        "name": "spring-town-hall", "latencyMode": "LOW", "type": "STANDARD",
        "authorized": True, "insecureIngest": False, "preset": "HIGHER_BANDWIDTH_DELIVERY",
        "recordingConfigurationArn": REAL_ARNS["recording-configuration"],
        "multitrackInputConfiguration": {"enabled": True, "policy": "ALLOW",
                                         "maximumResolution": "FULL_HD"},
        "containerFormat": "FRAGMENTED_MP4", "tags": {"team": "video", "cost-center": "4411"},
    })
    assert paths(result) == ["recordingConfigurationArn"]
    assert result.resources[0].arn.resource_type == "recording-configuration"
    assert ok("ivs", "CreateChannel", {}).resources == ()  # every member is optional


def test_update_channel_clears_a_recording_configuration_with_an_empty_string() -> None:
    # "" is how AWS detaches a recording configuration; it names no resource.
    result = ok("ivs", "UpdateChannel", {"arn": CHANNEL, "recordingConfigurationArn": "",
                                         "playbackRestrictionPolicyArn": "", "latencyMode": "NORMAL"})
    assert paths(result) == ["arn"] and str(result.resources[0].arn) == CHANNEL
    message = refused("ivs", "UpdateChannel", {"arn": ""})
    assert "`arn`" in message and "channel/<id>" in message


def test_batch_get_channel_takes_up_to_50_arns() -> None:
    arns = [f"arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGh{i:04d}" for i in range(51)]
    result = ok("ivs", "BatchGetChannel", {"arns": arns[:50]})
    assert paths(result) == [f"arns[{i}]" for i in range(50)]
    assert [str(ref.arn) for ref in result.resources] == arns[:50]
    message = refused("ivs", "BatchGetChannel", {"arns": arns})
    assert "`arns`" in message and "at most 50 items" in message and "51" in message
    assert refused("ivs", "BatchGetChannel", {"arns": []}) == "`arns` must be at least 1 item (got 0)"
    message = refused("ivs", "BatchGetChannel", {"arns": [CHANNEL, REAL_ARNS["stream-key"]]})
    assert message.startswith("`arns[1]` must be an ARN") and "stream-key/g1H2" in message


@pytest.mark.parametrize(("service", "arn"),
                         [("ivs", CHANNEL), ("ivs-realtime", STAGE), ("ivschat", ROOM)])
def test_tag_resource(service: str, arn: str) -> None:
    tags = {f"key-{i}": f"value {i}" for i in range(51)}
    result = ok(service, "TagResource", {"tags": dict(list(tags.items())[:50])},
                uri_params={"resourceArn": arn})
    assert paths(result) == ["resourceArn"] and str(result.resources[0].arn) == arn
    message = refused(service, "TagResource", {"tags": tags}, uri_params={"resourceArn": arn})
    assert "`tags`" in message and "at most 50 entries" in message
    for key in ("AWS:foo", "aws:bar", "Aws:CloudFormation:stack-name"):
        message = refused(service, "TagResource", {"tags": {key: "x"}}, uri_params={"resourceArn": arn})
        assert "reserved by AWS" in message and f"tags[{key!r}]" in message
    assert "missing required path parameter `resourceArn`" in refused(service, "TagResource", {"tags": {}})


def test_tag_keys_must_have_an_allowed_character_in_ivs() -> None:
    # ivs TagKey: ([\p{L}\p{Z}\p{N}_.:/=+\-@]+), searched, not anchored.
    ok("ivs", "TagResource", {"tags": {"Umgebung-ü": "Prüfung", "環境": "本番", "a b": ""}},
       uri_params={"resourceArn": CHANNEL})
    message = refused("ivs", "TagResource", {"tags": {"!!!": "x"}}, uri_params={"resourceArn": CHANNEL})
    assert message.startswith("invalid key: `tags['!!!']` must match the pattern")


def test_untag_resource_uses_the_query_string() -> None:
    result = ok("ivs", "UntagResource", {}, uri_params={"resourceArn": CHANNEL},
                query_params={"tagKeys": ["team", "cost-center"]})
    assert paths(result) == ["resourceArn"]
    message = refused("ivs", "UntagResource", {}, uri_params={"resourceArn": CHANNEL},
                      query_params={"tagKeys": ["team", "aws:createdBy"]})
    assert "`tagKeys[1]`" in message and "reserved by AWS" in message
    message = refused("ivs", "UntagResource", {}, uri_params={"resourceArn": CHANNEL},
                      query_params={"tagKeys": ["team"], "tagkeys": ["x"]})
    assert "unknown query parameter `tagkeys`" in message and "`tagKeys`" in message
    assert "missing required query parameter `tagKeys`" in refused(
        "ivs", "UntagResource", {}, uri_params={"resourceArn": CHANNEL})
    message = refused("ivs", "UntagResource", {}, uri_params={"resourceArn": CHANNEL},
                      query_params={"tagKeys": [f"k{i}" for i in range(51)]})
    assert "`tagKeys` must be at most 50 items" in message


def test_resource_arn_is_checked_structurally_not_by_the_broken_model_regex() -> None:
    pattern = model("ivs").shape_for("ResourceArn").metadata["pattern"]
    assert re.search(pattern, CHANNEL) is None  # the model regex refuses a real ARN...
    ok("ivs", "ListTagsForResource", {}, uri_params={"resourceArn": CHANNEL})  # ...we do not
    ok("ivs", "ListTagsForResource", {},
       uri_params={"resourceArn": "arn:aws-cn:ivs:cn-north-1:123456789012:channel/AbCdEfGhIjKl"})
    message = refused("ivs", "ListTagsForResource", {}, uri_params={"resourceArn": ROOM})
    assert message.startswith("`resourceArn` must be an ARN of the form arn:<partition>:ivs:")


def test_put_metadata() -> None:
    metadata = '{"question": "Who scores next?", "answers": ["Home", "Away"]}'
    assert paths(ok("ivs", "PutMetadata", {"channelArn": CHANNEL, "metadata": metadata})) == ["channelArn"]
    assert "missing required member `metadata`" in refused("ivs", "PutMetadata", {"channelArn": CHANNEL})


def test_insert_ad_break_timestamps() -> None:
    for when in ("2025-06-01T18:30:00Z", "2025-06-01T18:30:00.250+02:00", 1748802600, 1748802600.5):
        ok("ivs", "InsertAdBreak", {"channelArn": CHANNEL, "durationSeconds": 30, "targetStartAt": when})
    for bad in ("next tuesday", True, {"at": 1}):
        message = refused("ivs", "InsertAdBreak",
                          {"channelArn": CHANNEL, "durationSeconds": 30, "targetStartAt": bad})
        assert message.startswith("`targetStartAt` must be a timestamp")
    message = refused("ivs", "InsertAdBreak", {"channelArn": CHANNEL, "durationSeconds": 301})
    assert message == "`durationSeconds` must be at most 300 (got 301)"


def test_create_participant_token() -> None:
    result = ok("ivs-realtime", "CreateParticipantToken", {
        "stageArn": STAGE, "duration": 720, "userId": "host-alice",
        "attributes": {"displayName": "Alice", "role": "host"}, "capabilities": ["PUBLISH", "SUBSCRIBE"],
    })
    assert paths(result) == ["stageArn"]
    message = refused("ivs-realtime", "CreateParticipantToken", {"stageArn": STAGE, "capabilities": ["publish"]})
    assert "`capabilities[0]` must be one of 'PUBLISH', 'SUBSCRIBE'" in message
    assert "did you mean 'PUBLISH'?" in message
    assert "at most 20160" in refused("ivs-realtime", "CreateParticipantToken",
                                      {"stageArn": STAGE, "duration": 20161})


def test_create_stage() -> None:
    storage = REAL_ARNS["storage-configuration"]
    result = ok("ivs-realtime", "CreateStage", {
        "name": "weekly-standup",
        "participantTokenConfigurations": [
            {"duration": 60, "userId": "host", "capabilities": ["PUBLISH", "SUBSCRIBE"],
             "attributes": {"role": "host"}},
            {"userId": "viewer-1", "capabilities": ["SUBSCRIBE"]},
        ],
        "autoParticipantRecordingConfiguration": {
            "storageConfigurationArn": storage, "mediaTypes": ["AUDIO_VIDEO"],
            "thumbnailConfiguration": {"targetIntervalSeconds": 30, "storage": ["SEQUENTIAL", "LATEST"],
                                       "recordingMode": "INTERVAL"},
            "recordingReconnectWindowSeconds": 60, "hlsConfiguration": {"targetSegmentDurationSeconds": 6},
        },
        "tags": {"team": "eng"},
    })
    assert paths(result) == ["autoParticipantRecordingConfiguration.storageConfigurationArn"]
    message = refused("ivs-realtime", "CreateStage", {"autoParticipantRecordingConfiguration": {}})
    assert message == ("missing required member "
                       "`autoParticipantRecordingConfiguration.storageConfigurationArn` in CreateStage input")


def start_composition_document() -> dict:
    encoder = REAL_ARNS["encoder-configuration"]
    return {
        "stageArn": STAGE,
        "idempotencyToken": "0f5b9a4e-5d8a-4c0b-9b1e-2f4d6a8c0e12",
        "layout": {"grid": {"featuredParticipantAttribute": "isFeatured", "omitStoppedVideo": True,
                            "videoAspectRatio": "VIDEO", "videoFillMode": "COVER", "gridGap": 2}},
        "destinations": [
            {"name": "broadcast", "channel": {"channelArn": CHANNEL, "encoderConfigurationArn": encoder}},
            {"name": "archive", "s3": {
                "storageConfigurationArn": REAL_ARNS["storage-configuration"],
                "encoderConfigurationArns": [encoder],
                "recordingConfiguration": {"format": "HLS", "hlsConfiguration": {"targetSegmentDurationSeconds": 6}},
                "thumbnailConfigurations": [{"targetIntervalSeconds": 60, "storage": ["LATEST"]}],
            }},
        ],
        "tags": {"event": "town-hall"},
    }


def test_start_composition_collects_nested_arns_in_order() -> None:
    result = ok("ivs-realtime", "StartComposition", start_composition_document())
    assert paths(result) == [
        "stageArn",
        "destinations[0].channel.channelArn",
        "destinations[0].channel.encoderConfigurationArn",
        "destinations[1].s3.storageConfigurationArn",
        "destinations[1].s3.encoderConfigurationArns[0]",
    ]
    assert [r.arn.resource_type for r in result.resources] == [
        "stage", "channel", "encoder-configuration", "storage-configuration", "encoder-configuration"]


def test_start_composition_nested_errors_name_the_path() -> None:
    doc = start_composition_document()
    doc["destinations"][1]["s3"]["bogus"] = 1
    message = refused("ivs-realtime", "StartComposition", doc)
    assert message.startswith("unknown member `destinations[1].s3.bogus` in StartComposition input;")
    assert "valid members of `destinations[1].s3`: `storageConfigurationArn`" in message
    doc = start_composition_document()
    doc["destinations"][0]["channel"]["ChannelArn"] = doc["destinations"][0]["channel"].pop("channelArn")
    message = refused("ivs-realtime", "StartComposition", doc)
    assert "did you mean `destinations[0].channel.channelArn`?" in message
    doc = start_composition_document()
    doc["destinations"][1]["s3"]["thumbnailConfigurations"][0]["storage"] = ["LATEST", "latest"]
    message = refused("ivs-realtime", "StartComposition", doc)
    assert message.startswith("`destinations[1].s3.thumbnailConfigurations[0].storage[1]` must be one of")
    doc = start_composition_document()
    doc["destinations"] = doc["destinations"] * 2
    assert "`destinations` must be at most 2 items (got 4)" in refused("ivs-realtime", "StartComposition", doc)


def test_create_room_with_a_lambda_review_handler() -> None:
    logging = REAL_ARNS["logging-configuration"]
    result = ok("ivschat", "CreateRoom", {
        "name": "support-chat", "maximumMessageRatePerSecond": 10, "maximumMessageLength": 500,
        "messageReviewHandler": {"uri": LAMBDA, "fallbackResult": "DENY"},
        "loggingConfigurationIdentifiers": [logging], "tags": {"product": "chat"},
    })
    assert paths(result) == ["messageReviewHandler.uri", "loggingConfigurationIdentifiers[0]"]
    assert result.resources[0].arn.service == "lambda"
    # "" removes the handler (UpdateRoom); anything else must be a Lambda function ARN.
    ok("ivschat", "UpdateRoom", {"identifier": ROOM, "messageReviewHandler": {"uri": ""}})
    message = refused("ivschat", "CreateRoom", {"messageReviewHandler": {"uri": "https://example.com/hook"}})
    assert message.startswith("`messageReviewHandler.uri` must be an ARN of the form "
                              "arn:<partition>:lambda:<region>:<account>:function:<id>")


def test_send_event() -> None:
    result = ok("ivschat", "SendEvent", {"roomIdentifier": ROOM, "eventName": "app:DELETE_BY_USER",
                                         "attributes": {"userId": "user-42", "reason": "spam"}})
    assert paths(result) == ["roomIdentifier"] and result.resources[0].arn.service == "ivschat"
    message = refused("ivschat", "SendEvent", {"roomIdentifier": ROOM, "eventName": "x",
                                               "attributes": {"count": 3}})
    assert message == "`attributes['count']` must be a string, got number 3"
    message = refused("ivschat", "SendEvent", {"roomIdentifier": "g1H2I3j4k5L6", "eventName": "x"})
    assert message.startswith("`roomIdentifier` must be an ARN of the form "
                              "arn:<partition>:ivschat:<region>:<account>:room/<id>")


def test_logging_configuration_destination_is_a_union() -> None:
    ok("ivschat", "CreateLoggingConfiguration",
       {"destinationConfiguration": {"cloudWatchLogs": {"logGroupName": "/aws/ivschat/support"}}})
    for destination in ({}, {"s3": {"bucketName": "chat-logs"}, "firehose": {"deliveryStreamName": "chat"}}):
        message = refused("ivschat", "CreateLoggingConfiguration", {"destinationConfiguration": destination})
        assert message == ("`destinationConfiguration` must set exactly one of "
                           "`s3`, `cloudWatchLogs`, `firehose`")
    # null counts as absent, so this sets exactly one member.
    ok("ivschat", "CreateLoggingConfiguration",
       {"destinationConfiguration": {"s3": {"bucketName": "chat-logs"}, "firehose": None}})


# ---- every resource type --------------------------------------------------------------------

ARN_MEMBERS = [  # (service, operation, member) that takes one ARN of this resource type
    ("channel", "ivs", "GetChannel", "arn"),
    ("stream-key", "ivs", "GetStreamKey", "arn"),
    ("playback-key", "ivs", "GetPlaybackKeyPair", "arn"),
    ("recording-configuration", "ivs", "GetRecordingConfiguration", "arn"),
    ("playback-restriction-policy", "ivs", "GetPlaybackRestrictionPolicy", "arn"),
    ("ad-configuration", "ivs", "GetAdConfiguration", "arn"),
    ("failover-slate-configuration", "ivs", "GetFailoverSlateConfiguration", "arn"),
    ("stage", "ivs-realtime", "GetStage", "arn"),
    ("composition", "ivs-realtime", "GetComposition", "arn"),
    ("encoder-configuration", "ivs-realtime", "GetEncoderConfiguration", "arn"),
    ("storage-configuration", "ivs-realtime", "GetStorageConfiguration", "arn"),
    ("ingest-configuration", "ivs-realtime", "GetIngestConfiguration", "arn"),
    ("public-key", "ivs-realtime", "GetPublicKey", "arn"),
    ("room", "ivschat", "GetRoom", "identifier"),
    ("logging-configuration", "ivschat", "GetLoggingConfiguration", "identifier"),
]


@pytest.mark.parametrize(("rtype", "service", "op", "member"), ARN_MEMBERS)
def test_real_arn_of_every_resource_type(rtype: str, service: str, op: str, member: str) -> None:
    arn = REAL_ARNS[rtype]
    assert paths(ok(service, op, {member: arn})) == [member]
    # ... and the same ARN through the tagging API of its service.
    ok(service, "ListTagsForResource", {}, uri_params={"resourceArn": arn})
    other = REAL_ARNS["stage" if rtype != "stage" else "channel"]
    for garbage in ("", "AbCdEfGhIjKl", arn.replace(":123456789012:", "::"), arn + " ", other,
                    arn.replace("arn:aws:", "arn:aws-moon:"), 42, None, [arn]):
        if garbage is None:
            assert f"missing required member `{member}`" in refused(service, op, {member: garbage})
            continue
        message = refused(service, op, {member: garbage})
        assert message.startswith(f"`{member}` must be a"), message


def test_an_arn_longer_than_the_model_allows_is_refused() -> None:
    long_arn = CHANNEL[:-12] + "A" * 100
    assert "`arn` must be at most 128 characters long (got 143)" in refused("ivs", "GetChannel", {"arn": long_arn})


# Every ARN-typed shape of the three models, and the resource type a real value has.
ARN_SHAPES: dict[str, dict[str, str]] = {
    "ivs": {
        "AdConfigurationArn": "ad-configuration", "ChannelAdConfigurationArn": "ad-configuration",
        "ChannelArn": "channel", "ChannelFailoverSlateConfigurationArn": "failover-slate-configuration",
        "ChannelPlaybackRestrictionPolicyArn": "playback-restriction-policy",
        "ChannelRecordingConfigurationArn": "recording-configuration",
        "FailoverSlateConfigurationArn": "failover-slate-configuration",
        "MediaTailorPlaybackConfigurationArn": "playbackConfiguration", "PlaybackKeyPairArn": "playback-key",
        "PlaybackRestrictionPolicyArn": "playback-restriction-policy",
        "RecordingConfigurationArn": "recording-configuration", "ResourceArn": "channel",
        "StreamKeyArn": "stream-key",
    },
    "ivs-realtime": {
        "AutoParticipantRecordingStorageConfigurationArn": "storage-configuration", "ChannelArn": "channel",
        "CompositionArn": "composition", "EncoderConfigurationArn": "encoder-configuration",
        "IngestConfigurationArn": "ingest-configuration", "IngestConfigurationStageArn": "stage",
        "PublicKeyArn": "public-key", "ResourceArn": "stage", "StageArn": "stage",
        "StorageConfigurationArn": "storage-configuration",
    },
    "ivschat": {
        "LambdaArn": "function", "LoggingConfigurationArn": "logging-configuration",
        "LoggingConfigurationIdentifier": "logging-configuration", "ResourceArn": "room",
        "RoomArn": "room", "RoomIdentifier": "room",
    },
}


@pytest.mark.parametrize("service", SERVICES)
def test_arn_shapes_are_exactly_the_listed_ones(service: str) -> None:
    m = model(service)
    found = {name for name in m.shape_names if is_arn_shape(m.shape_for(name))}
    assert found == set(ARN_SHAPES[service])


# ---- unknown members, options -------------------------------------------------------------


def test_case_mismatch_suggests_the_member() -> None:
    message = refused("ivs", "CreateChannel", {"Name": "x"})
    assert message == "unknown member `Name` in CreateChannel input; did you mean `name`?"
    message = refused("ivs", "CreateChannel", {"bogus": 1})
    assert message.startswith("unknown member `bogus` in CreateChannel input; valid members: `name`, ")
    assert message.endswith(", ...")  # 13 members: the list stops at 10
    message = refused("ivs", "TagResource", {"tags": {}, "resourceArn": CHANNEL},
                      uri_params={"resourceArn": CHANNEL})
    assert "`resourceArn` is a path parameter, not a body member" in message
    assert "takes no members" in refused("ivs", "ListTagsForResource", {"x": 1},
                                         uri_params={"resourceArn": CHANNEL})


def test_allow_unknown_members_and_enum_values() -> None:
    doc = {"name": "x", "newFeature": {"on": True}, "type": "ULTRA_HD"}
    assert "unknown member `newFeature`" in refused("ivs", "CreateChannel", doc)
    lenient = validator("ivs", "CreateChannel", unknown_members=True, unknown_enums=True)
    assert lenient.validate(doc).resources == ()
    message = refused("ivs", "CreateChannel", {"type": "ULTRA_HD"})
    assert message.startswith("`type` must be one of 'ADVANCED_HD', 'ADVANCED_SD', 'BASIC', 'STANDARD'")
    # Lenient still checks what it knows.
    with pytest.raises(RequestInvalid, match="`type` must be a string"):
        lenient.validate({"type": 4})
    untag = validator("ivs", "UntagResource", unknown_members=True)
    untag.validate({}, uri_params={"resourceArn": CHANNEL}, query_params={"tagKeys": ["a"], "new": ["1"]})


# ---- types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("document", "expected"), [
    ({"authorized": 1}, "`authorized` must be a boolean, got number 1"),
    ({"authorized": "true"}, "`authorized` must be a boolean, got string 'true'"),
    ({"name": ["a"]}, "`name` must be a string, got array"),
    ({"tags": ["a"]}, "`tags` must be an object, got array"),
    ({"multitrackInputConfiguration": "on"}, "`multitrackInputConfiguration` must be an object, got string 'on'"),
])
def test_type_errors(document: dict, expected: str) -> None:
    assert refused("ivs", "CreateChannel", document) == expected


def test_numbers() -> None:
    for bad, got in ((5.0, "number 5.0"), (True, "boolean True"), ("5", "string '5'")):
        assert refused("ivs", "ListChannels", {"maxResults": bad}) == f"`maxResults` must be an integer, got {got}"
    assert refused("ivs", "ListChannels", {"maxResults": 0}) == "`maxResults` must be at least 1 (got 0)"
    ok("ivs", "ListChannels", {"maxResults": 100})
    video = {"width": 1280, "height": 720, "bitrate": 2_500_000}
    for framerate in (30, 29.97, 60):
        ok("ivs-realtime", "CreateEncoderConfiguration", {"video": video | {"framerate": framerate}})
    for framerate in (60.5, 0, float("nan"), True):
        message = refused("ivs-realtime", "CreateEncoderConfiguration", {"video": video | {"framerate": framerate}})
        assert message.startswith("`video.framerate` must be")
    # An integer shape with no max still keeps to 32 bits.
    pip = {"pip": {"pipOffset": 2**31}}
    doc = start_composition_document() | {"layout": pip}
    assert refused("ivs-realtime", "StartComposition", doc) == (
        "`layout.pip.pipOffset` must be at most 2147483647 (got 2147483648)")


def test_body_must_be_an_object_and_nulls() -> None:
    for body in ([], "x", 3, None, True):
        assert refused("ivs", "CreateChannel", body) == "request body must be a JSON object"
    assert "unknown member `Arn`" in refused("ivs", "GetChannel", {"arn": CHANNEL, "Arn": None})
    ok("ivs", "CreateChannel", {"name": None, "tags": None})  # null member: absent
    assert refused("ivs", "BatchGetChannel", {"arns": [CHANNEL, None]}).startswith(
        "`arns[1]` must be an ARN string, got null")
    assert refused("ivs", "CreateChannel", {"tags": {"a": None}}) == "`tags['a']` must be a string, got null"


def test_string_lengths_count_code_points() -> None:
    ok("ivs", "CreateChannel", {"tags": {"k": "é" * 256}})  # 256 code points, 512 UTF-8 bytes
    assert "at most 256 characters long (got 257)" in refused("ivs", "CreateChannel", {"tags": {"k": "é" * 257}})
    ok("ivs", "GetStreamSession", {"channelArn": CHANNEL, "streamId": "st-1A2b3C4d5E6f7G8h9I0jKlM"})
    assert "at least 26 characters long (got 25)" in refused(
        "ivs", "GetStreamSession", {"channelArn": CHANNEL, "streamId": "st-1A2b3C4d5E6f7G8h9I0jKl"})


def test_patterns_are_searched_not_anchored() -> None:
    # StageSessionId is "st-[a-zA-Z0-9]+", 16 long: found anywhere is enough, as in ECMA.
    ok("ivs-realtime", "GetStageSession", {"stageArn": STAGE, "sessionId": "xyst-AbCdEfGhIjK"})
    message = refused("ivs-realtime", "GetStageSession", {"stageArn": STAGE, "sessionId": "ss-AbCdEfGhIjKlM"})
    assert message == "`sessionId` must match the pattern `st-[a-zA-Z0-9]+`; got 'ss-AbCdEfGhIjKlM'"


def test_quoted_values_are_short() -> None:
    message = refused("ivs", "CreateChannel", {"type": "X" * 5000})
    assert len(message) < 200 and "XXX..." in message and "X" * 70 not in message
    message = refused("ivs", "CreateChannel", {"N" * 500: 1})
    assert len(message) < 400 and "N" * 70 not in message


# ---- sensitive members -----------------------------------------------------------------------

SECRET = "s3cr3t-Do-Not-Log-7Q"


@pytest.mark.parametrize(("service", "op", "document"), [
    ("ivs", "PutMetadata", {"channelArn": CHANNEL, "metadata": 8675309}),
    ("ivs", "PutMetadata", {"channelArn": CHANNEL, "metadata": True}),
    ("ivschat", "CreateChatToken", {"roomIdentifier": ROOM, "userId": 8675309}),
    ("ivschat", "CreateChatToken", {"roomIdentifier": ROOM, "userId": SECRET * 7}),  # > 128
    ("ivschat", "CreateChatToken", {"roomIdentifier": ROOM, "userId": "u", "attributes": {SECRET: 8675309}}),
    ("ivschat", "CreateChatToken", {"roomIdentifier": ROOM, "userId": "u", "attributes": {"k": [SECRET]}}),
    ("ivschat", "CreateChatToken", {"roomIdentifier": ROOM, "userId": "u", "attributes": {8675309: "v"}}),
    ("ivschat", "DisconnectUser", {"roomIdentifier": ROOM, "userId": ""}),
])
def test_sensitive_values_never_appear_in_messages(service: str, op: str, document: dict) -> None:
    message = refused(service, op, document)
    assert SECRET not in message and "8675309" not in message and "True" not in message
    assert "`" in message  # still names the member


def test_sensitive_member_message_still_helps() -> None:
    message = refused("ivs", "PutMetadata", {"channelArn": CHANNEL, "metadata": 8675309})
    assert message == "`metadata` must be a string, got number"
    message = refused("ivschat", "CreateChatToken", {"roomIdentifier": ROOM, "userId": SECRET * 7})
    assert message == "`userId` must be at most 128 characters long (got 140)"


# ---- compiled once ----------------------------------------------------------------------------


def test_validating_touches_no_botocore_object(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = compile_input_validator(model("ivs-realtime").operation_model("StartComposition").input_shape,
                                       ValidationOptions())

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("botocore used per request")

    monkeypatch.setattr(botocore.model.Shape, "__init__", boom)
    monkeypatch.setattr(botocore.model.ShapeResolver, "get_shape_by_name", boom)
    result = compiled.validate(start_composition_document())
    assert len(result.resources) == 5 and isinstance(result.resources[0], ResourceRef)
    with pytest.raises(RequestInvalid):
        compiled.validate({"stageArn": STAGE, "destinations": [{"s3": {"Bogus": 1}}]})


def test_operation_without_input() -> None:
    nothing = compile_input_validator(None, ValidationOptions())
    assert nothing.validate({}).resources == ()
    with pytest.raises(RequestInvalid, match="unknown member `x`"):
        nothing.validate({"x": 1})
    with pytest.raises(RequestInvalid, match="unknown query parameter `x`"):
        nothing.validate({}, query_params={"x": ["1"]})


# ---- every operation: a realistic valid call passes ------------------------------------------
# botocore's ArgumentGenerator only gives the skeleton ('' for strings, 0 for numbers, every
# member of a union), which the models refuse; so values are made here, from the shape
# name where a realistic value matters, and checked against the model's own constraints.

PEM = ("-----BEGIN PUBLIC KEY-----\n"
       "MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEcNnjXFDvC7ls6Qm0mr4xbvHUvNPsrmvG\n"
       "Vh3wPBTyrKZEoGQjhWWPS6jQzR3BTn8JBzU4tNqLp8uKBMqvoEFEdxTChPH3LqJc\n"
       "-----END PUBLIC KEY-----\n")
REALISTIC = {
    "StreamMetadata": '{"question": "Who scores next?"}', "PlaybackPublicKeyMaterial": PEM,
    "PublicKeyMaterial": PEM, "S3DestinationBucketName": "my-ivs-recordings",
    "S3BucketName": "my-ivs-recordings", "BucketName": "my-chat-logs",
    "LogGroupName": "/aws/ivschat/support", "DeliveryStreamName": "chat-logs",
    "PlaybackRestrictionPolicyAllowedCountry": "US",
    "PlaybackRestrictionPolicyAllowedOrigin": "https://www.example.com", "ViewerId": "viewer-8f3a2c",
    "EventName": "app:DELETE_BY_USER", "Reason": "Spam", "UserID": "user-1234",
    "ParticipantTokenUserId": "host-alice", "UserId": "host-alice", "TagKey": "Environment",
    "TagValue": "production", "PaginationToken": "AQICAHhNZXh0VG9rZW4=",
    "CompositionClientToken": "0f5b9a4e-5d8a-4c0b-9b1e-2f4d6a8c0e12",
    "DisconnectParticipantReason": "Left the stage",
}
ALNUM = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def sample_string(service: str, shape: botocore.model.Shape) -> str:
    if shape.name in ARN_SHAPES[service]:
        return REAL_ARNS[ARN_SHAPES[service][shape.name]]  # real ARNs: the model regex is not the judge
    if shape.enum:
        return shape.enum[0]
    meta = shape.metadata
    value = REALISTIC.get(shape.name)
    if value is None:
        prefix = "st-" if meta.get("pattern", "").startswith("st-") else ""
        value = (prefix + ALNUM * 2)[: max(meta.get("min", 0), min(meta.get("max", 64), 12))]
    # The test data itself must satisfy the model: length, and the pattern where Python's
    # `re` reads it the same (no \p classes in these).
    assert meta.get("min", 0) <= len(value) <= meta.get("max", 10**6), shape.name
    if "pattern" in meta and "\\p" not in meta["pattern"]:
        assert re.search(meta["pattern"], value), (shape.name, value)
    return value


def sample(service: str, shape: botocore.model.Shape, full: bool, path: str, arns: list[str]) -> object:
    """A valid value for `shape`: required members only, or every member (`full`)."""
    meta, kind = shape.metadata, shape.type_name
    if kind == "structure":
        names = list(shape.members)
        if meta.get("union"):
            names = names[-1:] if full else names[:1]
        elif not full:
            names = [n for n in names if n in shape.required_members]
        return {n: sample(service, shape.members[n], full, f"{path}.{n}" if path else n, arns) for n in names}
    if kind == "list":
        count = min(max(meta.get("min", 0), 1), meta.get("max", 3))  # a required list has items
        return [sample(service, shape.member, full, f"{path}[{i}]", arns) for i in range(count)]
    if kind == "map":
        if not full and not meta.get("min"):
            return {}
        key = sample_string(service, shape.key)
        return {key: sample(service, shape.value, full, f"{path}[{key!r}]", arns)}
    if kind == "string":
        if shape.name in ARN_SHAPES[service]:
            arns.append(path)
        return sample_string(service, shape)
    if kind in ("integer", "long", "float", "double"):
        lo = meta.get("min", 1)
        hi = meta.get("max", lo + 10)
        value = (lo + hi) // 2 if full else lo
        return float(value) + 0.5 * (full and value < hi) if kind in ("float", "double") else value
    if kind == "boolean":
        return full
    assert kind == "timestamp", kind
    return "2025-06-01T18:30:00Z"


def sample_call(service: str, op: str, full: bool) -> tuple[dict, dict, dict, list[str]]:
    """(body, uri_params, query_params, expected ResourceRef paths) for one valid call."""
    shape = model(service).operation_model(op).input_shape
    body: dict = {}
    uri: dict = {}
    query: dict = {}
    found: dict[str | None, list[str]] = {"uri": [], "querystring": [], None: []}
    for name, member in shape.members.items():
        if not full and name not in shape.required_members:
            continue
        location = member.serialization.get("location")
        value = sample(service, member, full, name, found[location])
        if location == "uri":
            uri[name] = value
        elif location == "querystring":
            query[member.serialization.get("name", name)] = value if isinstance(value, list) else [str(value)]
        else:
            body[name] = value
    return body, uri, query, found["uri"] + found["querystring"] + found[None]


ALL_OPS = [(s, op) for s in SERVICES for op in model(s).operation_names]


@pytest.mark.parametrize(("service", "op"), ALL_OPS)
@pytest.mark.parametrize("full", [False, True], ids=["required", "every-member"])
def test_every_operation_accepts_a_realistic_call(service: str, op: str, full: bool) -> None:
    body, uri, query, arn_paths = sample_call(service, op, full)
    shape = model(service).operation_model(op).input_shape
    # Independent oracle: botocore's own client-side validation agrees the call is valid.
    report = botocore.validate.ParamValidator().validate(body | uri | query, shape)
    assert not report.has_errors(), report.generate_report()
    result = validator(service, op).validate(body, uri_params=uri, query_params=query)
    assert paths(result) == arn_paths
    assert not full or body or uri  # the full call really exercises the members


def test_every_operation_is_covered() -> None:
    assert len(ALL_OPS) == len({op for op in ALL_OPS}) >= 100


# ---- property: random input never crashes the validator --------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ARNISH = st.builds(
    "arn:{}:{}:{}:{}:{}{}{}".format,
    st.sampled_from(["aws", "aws-cn", "aws-us-gov", "bogus", ""]),
    st.sampled_from(["ivs", "ivschat", "lambda", "mediatailor", "s3"]),
    st.sampled_from(["us-west-2", ""]), st.sampled_from(["123456789012", "", "aws"]),
    st.sampled_from(sorted(REAL_ARNS)), st.sampled_from(["/", ":", ""]), st.text(ALNUM + " -", max_size=14),
)


@functools.cache
def shaped(service: str, shape_name: str) -> st.SearchStrategy:
    """Values that are often nearly right for the shape, so checks deep inside get reached."""
    shape = model(service).shape_for(shape_name)
    meta, kind = shape.metadata, shape.type_name
    if kind == "structure":
        members = {n: shaped(service, m.name) for n, m in shape.members.items()}  # no recursive shapes
        typed = st.fixed_dictionaries({}, optional=members)
    elif kind == "list":
        typed = st.lists(shaped(service, shape.member.name), max_size=min(meta.get("max", 4), 4) + 1)
    elif kind == "map":
        typed = st.dictionaries(strings(service, shape.key), shaped(service, shape.value.name), max_size=4)
    elif kind == "string":
        typed = strings(service, shape)
    elif kind in ("integer", "long"):
        typed = st.integers(meta.get("min", 0), meta.get("max", 100)) | st.integers(-(2**33), 2**33)
    elif kind in ("float", "double"):
        typed = st.floats(meta.get("min", 0), meta.get("max", 100)) | st.floats()
    else:
        typed = st.booleans() | st.sampled_from(["2025-06-01T18:30:00Z", "soon"]) if kind == "timestamp" \
            else st.booleans()
    return mostly(typed, JSON)


def strings(service: str, shape: botocore.model.Shape) -> st.SearchStrategy:
    valid = st.just(sample_string(service, shape))
    return mostly(valid, st.text(max_size=20) | ARNISH | st.sampled_from(shape.enum or ["aws:x", "AWS:y", ""]))


def mostly(usual: st.SearchStrategy, rare: st.SearchStrategy) -> st.SearchStrategy:
    """`usual` 9 times in 10: deep checks get reached, and most junk sits in one place."""
    return st.integers(0, 9).flatmap(lambda i: rare if i == 0 else usual)


def call_strategy(service: str, op: str) -> st.SearchStrategy:
    """(body, uri_params, query_params): mostly the operation's own members, sometimes junk."""
    shape = model(service).operation_model(op).input_shape
    body, uri, query = {}, {}, {}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        if location == "uri":
            uri[name] = strings(service, member)
        elif location == "querystring":
            query[member.serialization.get("name", name)] = st.lists(strings(service, member.member), max_size=3)
        else:
            body[name] = shaped(service, member.name)
    junk = st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)
    return st.tuples(
        st.fixed_dictionaries({}, optional=body),
        mostly(st.fixed_dictionaries(uri), st.fixed_dictionaries({}, optional=uri) | junk),
        mostly(st.fixed_dictionaries({}, optional=query), junk.map(lambda d: {k: [v] for k, v in d.items()})),
    )


@settings(max_examples=200, deadline=None)
@given(op=st.sampled_from(ALL_OPS), document=JSON, uri=st.dictionaries(st.text(max_size=12), st.text()),
       query=st.dictionaries(st.text(max_size=12), st.lists(st.text(), max_size=3)))
def test_random_json_gives_a_result_or_request_invalid(op: tuple[str, str], document: object,
                                                        uri: dict, query: dict) -> None:
    try:
        validator(*op).validate(document, uri_params=uri, query_params=query)
    except RequestInvalid as exc:
        assert exc.message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_shaped_random_input_gives_a_result_or_request_invalid(data: st.DataObject) -> None:
    service, op = data.draw(st.sampled_from(ALL_OPS), label="operation")
    body, uri, query = data.draw(call_strategy(service, op), label="call")
    try:
        result = validator(service, op).validate(body, uri_params=uri, query_params=query)
    except RequestInvalid as exc:
        assert exc.message and len(exc.message) < 1500
        event("refused")
        return
    assert isinstance(result, ValidatedInput)
    event("accepted, with ARNs" if result.resources else "accepted")
    for ref in result.resources:
        assert parse_arn(str(ref.arn)) == ref.arn and ref.member_path


def test_the_arn_cache_is_bounded_and_never_changes_an_answer() -> None:
    batch = compile_input_validator(model("ivs").operation_model("BatchGetChannel").input_shape,
                                    ValidationOptions())
    for round_ in range(2):  # the second round is answered from the cache, where it fits
        for start in range(0, 400, 50):
            arns = [f"arn:aws:ivs:us-west-2:123456789012:channel/AbCd{i:08d}" for i in range(start, start + 50)]
            assert [str(r.arn) for r in batch.validate({"arns": arns}).resources] == arns, round_
    cache = next(c.cell_contents for c in _closure_cells(batch) if isinstance(c.cell_contents, dict))
    assert 0 < len(cache) <= 128
    with pytest.raises(RequestInvalid):  # a valid channel ARN in the cache is still refused elsewhere
        validator("ivs", "GetStreamKey").validate({"arn": CHANNEL})


def _closure_cells(v: InputValidator) -> list:
    """The cells of the `arns` list member's ARN check (white-box: finds the cache)."""
    body = v._body
    checks = next(c.cell_contents for c in body.__closure__
                  if isinstance(c.cell_contents, dict) and "arns" in c.cell_contents)
    member = next(c.cell_contents for c in checks["arns"].__closure__ if callable(c.cell_contents)
                  and c.cell_contents.__name__ == "check")
    return list(member.__closure__)


@pytest.mark.parametrize(
    ("resource_id", "rule_named"),
    [("AbCd/../EfGh", "'..'"), ("AbCd/EfGh", "no '/'"), ("AbCd@EfGh", "'@'"),
     ("AbCd\u200bEfGh", "U+200B"), ("AbCd\x9bEfGh", "U+009B")],
)
def test_arns_naming_no_real_resource_are_refused_with_the_rule(resource_id: str, rule_named: str) -> None:
    bad = CHANNEL.rsplit("/", 1)[0] + "/" + resource_id
    for message in (refused("ivs", "GetChannel", {"arn": bad}),
                    refused("ivs", "ListTagsForResource", {}, uri_params={"resourceArn": bad})):
        assert "names no real resource" in message and rule_named in message
    assert "\u200b" not in refused("ivs", "GetChannel", {"arn": CHANNEL + "\u200b"})  # escaped, visible


def test_the_memo_of_passed_strings_never_changes_an_answer() -> None:
    # A patterned string member (ivs TagKey) remembers values that passed; a refusal is
    # never remembered, and the length bound still holds for what is remembered.
    for round_ in range(3):
        ok("ivs", "CreateChannel", {"tags": {"team": "video", f"k{round_ % 2}": "x"}})
        assert "must match the pattern" in refused("ivs", "CreateChannel", {"tags": {"!!!": "x"}}), round_
        assert "reserved by AWS" in refused("ivs", "CreateChannel", {"tags": {"aws:x": "v"}}), round_
    for i in range(300):  # more distinct values than the memo keeps: still all accepted
        ok("ivs", "CreateChannel", {"tags": {f"k{i}": f"v{i}"}})
    for _ in range(2):
        ok("ivs", "CreateChannel", {"tags": {"a" * 128: "x"}})
        assert "characters long" in refused("ivs", "CreateChannel", {"tags": {"a" * 129: "x"}})
