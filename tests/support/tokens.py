"""Token-signing keys for tests, and the JOSE library (PyJWT) that checks what the proxy mints:
the proxy never verifies its own tokens, so a bug in its JWS code cannot hide there."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ACCOUNT = "123456789012"
REGION = "us-west-2"
PLAYBACK_KEY_ARN = f"arn:aws:ivs:{REGION}:{ACCOUNT}:playback-key/AbCdEf012345"
PUBLIC_KEY_ARN = f"arn:aws:ivs:{REGION}:{ACCOUNT}:public-key/f99cde61-c2b0-4df3-8941-ca7d38acca1a"
EVENTS_URL = "wss://global.events.live-video.net"
WHIP_URL = "https://9x0y8z7s6t5u.global-bm.whip.live-video.net"
PLAYBACK_URL = "https://b37c565f6d79.us-west-2.playback.live-video.net/api/video/v1/us-west-2.123456789012.channel.x.m3u8"


@dataclass(frozen=True)
class KeyFiles:
    private: Path
    public: Path

    @property
    def public_pem(self) -> bytes:
        return self.public.read_bytes()


def key_files(directory: Path, name: str = "key", curve: ec.EllipticCurve | None = None) -> KeyFiles:
    """A fresh key pair as `openssl ecparam -name secp384r1 -genkey` and `openssl ec -pubout` write it."""
    key = ec.generate_private_key(curve or ec.SECP384R1())
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return KeyFiles(private, public)


def verified(token: str, public_pem: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of `token` once PyJWT checked its ES384 signature and its expiry."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, public_pem, algorithms=["ES384"], options={"require": ["exp"]})
    return header, claims


def stage_answer(arn: str) -> bytes:
    return json.dumps({"stage": {"arn": arn, "name": "s", "endpoints": {
        "events": EVENTS_URL, "whip": WHIP_URL, "rtmp": "rtmp://x/app/", "rtmps": "rtmps://x:443/app/"}}}).encode()


def channel_answer(arn: str) -> bytes:
    return json.dumps({"channel": {"arn": arn, "authorized": True, "playbackUrl": PLAYBACK_URL}}).encode()


class IvsLookups:
    """A signature-checking upstream answering GetStage, GetChannel and GetPublicKey (moto
    has no ivs-realtime), by path; anything else is a 404 as IVS would answer an unknown
    stage. `public_keys`: public key ARN -> the PEM "imported" for it."""

    def __init__(self, secret_key: str) -> None:
        from tests.support.recording_upstream import RecordingUpstream

        self.recording = RecordingUpstream(secret_key=secret_key)
        self.missing: set[str] = set()
        self.public_keys: dict[str, bytes] = {}

    def app(self):  # type: ignore[no-untyped-def]
        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            received = await self.recording.record(request)
            try:
                arn = json.loads(received.body).get("arn", "")
            except ValueError:  # not an IVS call (the proxy's STS identity lookup at start-up)
                arn = ""
            answer = {"/GetStage": stage_answer, "/GetChannel": channel_answer,
                      "/GetPublicKey": self._public_key_answer}.get(request.path)
            if answer is None or arn in self.missing or (request.path == "/GetPublicKey" and
                                                         arn not in self.public_keys):
                return web.json_response({"message": "not found"}, status=404,
                                         headers={"x-amzn-ErrorType": "ResourceNotFoundException"})
            return web.Response(body=answer(arn), content_type="application/json")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    def _public_key_answer(self, arn: str) -> bytes:
        return json.dumps({"publicKey": {"arn": arn, "publicKeyMaterial": self.public_keys[arn].decode()}}).encode()

    def calls(self, path: str) -> int:
        return sum(1 for r in self.recording.received if r.raw_path == path and r.signature_valid)
