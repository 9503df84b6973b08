"""A real SigV4-verifying upstream: moto's server mode with IAM authentication on.

moto checks every request's signature, session token and IAM policy once the first
`INITIAL_NO_AUTH_ACTION_COUNT` requests (our bootstrap: an admin user and a role) are done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import boto3

from tests.support.net import free_port, wait_for_http

REGION = "us-west-2"
ACCOUNT = "123456789012"
#: The requests the bootstrap makes before authentication starts counting.
BOOTSTRAP_ACTIONS = 5
ROLE_ACTIONS = [
    "ivs:CreateChannel",
    "ivs:GetChannel",
    "ivs:ListChannels",
    "ivs:UpdateChannel",
    "ivs:DeleteChannel",
    # The proxy's own calls: KMS-held token signing keys, the SQS queue of IVS events.
    "kms:Sign",
    "kms:GetPublicKey",
    "kms:DescribeKey",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:DeleteMessageBatch",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueUrl",
    "sqs:GetQueueAttributes",
]


@dataclass(frozen=True)
class SessionCredentials:
    access_key: str
    secret_key: str
    token: str
    expiration: str  # ISO 8601

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_SESSION_TOKEN": self.token,
            "AWS_CREDENTIAL_EXPIRATION": self.expiration,
        }


class MotoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self.admin: tuple[str, str] | None = None
        self.role_arn = ""

    def start(self) -> None:
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(BOOTSTRAP_ACTIONS))
        for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(key, None)
        moto_bin = Path(sys.executable).with_name("moto_server")
        self._process = subprocess.Popen(
            [str(moto_bin), "-H", "127.0.0.1", "-p", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_http(f"{self.url}/moto-api/", expect_status=None)
        self._bootstrap()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def client(self, service: str, access_key: str, secret_key: str, token: str | None = None):  # type: ignore[no-untyped-def]
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=token,
        )

    def _bootstrap(self) -> None:
        # Exactly BOOTSTRAP_ACTIONS unauthenticated calls; everything after is verified.
        iam = self.client("iam", "AKIABOOTSTRAP0000000", "bootstrap")
        iam.create_user(UserName="admin")
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        iam.put_user_policy(
            UserName="admin",
            PolicyName="admin",
            PolicyDocument=_policy(["iam:*", "sts:*", "ivs:*", "kms:*", "sqs:*", "events:*"]),
        )
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/admin"}, "Action": "sts:AssumeRole"}],
        }
        role = iam.create_role(RoleName="ivs-proxy", AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName="ivs-proxy", PolicyName="ivs", PolicyDocument=_policy(ROLE_ACTIONS))
        self.admin = (key["AccessKeyId"], key["SecretAccessKey"])
        self.role_arn = role["Role"]["Arn"]

    def role_credentials(self, session_name: str = "ivs-proxy-test", duration: int = 3600) -> SessionCredentials:
        assert self.admin is not None
        sts = self.client("sts", *self.admin)
        creds = sts.assume_role(RoleArn=self.role_arn, RoleSessionName=session_name, DurationSeconds=duration)["Credentials"]
        return SessionCredentials(
            creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], creds["Expiration"].isoformat()
        )


def _policy(actions: list[str]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
