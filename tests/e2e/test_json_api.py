"""The proxy's own AWS calls (proxy/aws/json_api.py) against moto with IAM auth on: moto
verifies each signature and the role's policy, so a wrong signature or a missing permission
fails there, not in the test."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from proxy.aws.credentials import CredentialStore
from proxy.aws.endpoints import EndpointTable
from proxy.aws.json_api import AwsCallFailed, AwsJsonClient, JsonProtocol
from proxy.aws.signing import FrozenCredentials
from proxy.aws.upstream import Upstream
from proxy.config import UpstreamConfig
from tests.support.inprocess import StaticSource
from tests.support.moto import REGION, MotoServer, SessionCredentials


@pytest.fixture
async def clients(moto: MotoServer, role_credentials: SessionCredentials):  # type: ignore[no-untyped-def]
    endpoints = EndpointTable.build(("kms", "sqs"), {"kms": (REGION,), "sqs": (REGION,)},
                                    {"AWS_ENDPOINT_URL": moto.url})
    c = role_credentials
    store = CredentialStore(StaticSource(FrozenCredentials(c.access_key, c.secret_key, c.token)))
    await store.start()
    upstream = Upstream(UpstreamConfig())
    await upstream.start()
    yield AwsJsonClient("kms", endpoints, store, upstream), AwsJsonClient("sqs", endpoints, store, upstream)
    await upstream.close()


def test_protocol_comes_from_the_model() -> None:
    assert JsonProtocol.of("kms") == JsonProtocol("application/x-amz-json-1.1", "TrentService")
    assert JsonProtocol.of("sqs") == JsonProtocol("application/x-amz-json-1.0", "AmazonSQS")
    with pytest.raises(ValueError, match="JSON protocol"):
        JsonProtocol.of("ivs")  # rest-json, not JSON


async def test_kms_sign_verifies_with_the_public_key(moto: MotoServer, clients) -> None:  # type: ignore[no-untyped-def]
    kms, _ = clients
    admin = moto.client("kms", *moto.admin)
    key_id = admin.create_key(KeySpec="ECC_NIST_P384", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    # RAW (KMS hashes): moto does not implement MessageType=DIGEST.
    signed = await kms.call("Sign", {"KeyId": key_id, "Message": base64.b64encode(b"header.payload").decode(),
                                     "MessageType": "RAW", "SigningAlgorithm": "ECDSA_SHA_384"}, region=REGION)
    public = await kms.call("GetPublicKey", {"KeyId": key_id}, region=REGION)
    key = load_der_public_key(base64.b64decode(public["PublicKey"]))
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    key.verify(base64.b64decode(signed["Signature"]), b"header.payload", ec.ECDSA(hashes.SHA384()))


async def test_aws_errors_keep_their_code(clients) -> None:  # type: ignore[no-untyped-def]
    kms, sqs = clients
    with pytest.raises(AwsCallFailed) as failed:
        await kms.call("DescribeKey", {"KeyId": "00000000-0000-0000-0000-000000000000"}, region=REGION)
    assert (failed.value.status, failed.value.code) == (400, "NotFoundException")
    assert not failed.value.retryable
    # Not in the role's policy: moto's IAM check refuses it, and the code says so.
    with pytest.raises(AwsCallFailed) as denied:
        await sqs.call("CreateQueue", {"QueueName": "not-allowed"}, region=REGION)
    assert denied.value.status == 403 and "Denied" in denied.value.code


async def test_sqs_receive_and_delete(moto: MotoServer, clients) -> None:  # type: ignore[no-untyped-def]
    _, sqs = clients
    admin = moto.client("sqs", *moto.admin)
    url = admin.create_queue(QueueName="json-api-test")["QueueUrl"]
    admin.send_message(QueueUrl=url, MessageBody='{"detail-type": "IVS Stream State Change"}')
    received = await sqs.call("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1},
                              region=REGION, timeout=10)
    [message] = received["Messages"]
    assert message["Body"] == '{"detail-type": "IVS Stream State Change"}'
    await sqs.call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": message["ReceiptHandle"]}, region=REGION)
    assert admin.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"] == "0"
