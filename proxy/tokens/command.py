"""`ivs-proxy token playback|participant`: mint one token with a config's keys, for operators.

It runs as the operator, not as a caller: the config's keys and the proxy's credentials
(KMS Sign, GetStage, GetChannel), IVS's rules, no policy and no per-caller caps. The token
goes to stdout as the same JSON a gateway answers with, and nowhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from proxy.app import allowed_regions, check_config, credential_source_for, sdk_ca_bundle
from proxy.aws.credentials import CredentialStore
from proxy.aws.endpoints import EndpointTable
from proxy.config import ProxyConfig, load_config
from proxy.errors import ConfigError, ProxyError
from proxy.gateway.identity import Caller
from proxy.gateway.own_access import OwnAccess
from proxy.observe.logs import configure_logging
from proxy.observe.metrics import Metrics
from proxy.tokens.service import build_token_service

OPERATOR = Caller("operator", "cli")

EXAMPLES = """exit codes: 0 minted (JSON on stdout), 1 refused or failed, 2 bad flag or config

examples:
  ivs-proxy token playback --config gateway.yaml \\
      --channel-arn arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl --viewer-id viewer-42
  ivs-proxy token participant --config gateway.yaml \\
      --stage-arn arn:aws:ivs:us-west-2:123456789012:stage/abcdABCDefgh --user-id alice --capability SUBSCRIBE"""


def add_token_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    token = commands.add_parser("token", help="mint one playback or participant token with the config's keys",
                                description=__doc__.splitlines()[0] if __doc__ else None, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = token.add_subparsers(dest="kind", required=True)
    playback = kinds.add_parser("playback", help="a playback token for a private channel", epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    playback.add_argument("--channel-arn", required=True)
    playback.add_argument("--lifetime-seconds", type=int)
    playback.add_argument("--allowed-origin", action="append", default=[], help="repeat for several origins")
    playback.add_argument("--strict-origin-enforcement", action="store_true")
    playback.add_argument("--single-use", action="store_true")
    playback.add_argument("--viewer-id")
    playback.add_argument("--viewer-session-version", type=int)
    playback.add_argument("--maximum-resolution", choices=("SD", "HD", "FULL_HD"))
    participant = kinds.add_parser("participant", help="a self-signed participant token for a stage",
                                   epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    participant.add_argument("--stage-arn", required=True)
    participant.add_argument("--duration-minutes", type=int)
    participant.add_argument("--user-id")
    participant.add_argument("--capability", action="append", choices=("PUBLISH", "SUBSCRIBE"),
                             help="repeat for both (default: both)")
    participant.add_argument("--attribute", action="append", default=[], metavar="KEY=VALUE")
    for kind in (playback, participant):
        kind.add_argument("--config", required=True, help="YAML config file with tokens.keys")


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON a caller would send a gateway, from the flags."""
    if args.kind == "playback":
        body: dict[str, Any] = {
            "channelArn": args.channel_arn, "lifetimeSeconds": args.lifetime_seconds,
            "allowedOrigins": args.allowed_origin or None, "viewerId": args.viewer_id,
            "viewerSessionVersion": args.viewer_session_version, "maximumResolution": args.maximum_resolution,
            "strictOriginEnforcement": args.strict_origin_enforcement or None, "singleUse": args.single_use or None,
        }
    else:
        attributes = dict(pair.partition("=")[::2] for pair in args.attribute)
        body = {"stageArn": args.stage_arn, "durationMinutes": args.duration_minutes, "userId": args.user_id,
                "capabilities": args.capability, "attributes": attributes or None}
    return {key: value for key, value in body.items() if value is not None}


def run_token(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    config = load_config(args.config)
    if not config.tokens.keys:
        raise ConfigError("tokens.keys", "the config names no token-signing keys")
    check_config(config, env)
    configure_logging("warning", "console", sys.stderr)
    try:
        answer = asyncio.run(_mint(config, env, args.kind, request_body(args)))
    except ProxyError as error:
        print(f"ivs-proxy: {error.message}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


async def _mint(config: ProxyConfig, env: Mapping[str, str], kind: str, body: dict[str, Any]) -> dict[str, Any]:
    # Here, not with the module: `ivs-proxy serve` imports this one for its argument parser.
    from proxy.tokens.claims import parse_participant, parse_playback

    profile = config.credentials.profile or env.get("AWS_PROFILE")
    source, identify = credential_source_for(config, env)
    credentials = CredentialStore(source, allow_long_lived=config.credentials.allow_long_lived_credentials,
                                  identify=identify)
    endpoints = EndpointTable.build(config.services, allowed_regions(config), env, profile)
    service = build_token_service(config, env, endpoints=endpoints, credentials=credentials, access=OwnAccess(),
                                  metrics=Metrics(), ca_bundle=sdk_ca_bundle(config, env, profile))
    await credentials.start()
    running = [context(None) for context in service.contexts]
    try:
        for context in running:
            await anext(context)  # the own upstream; KMS keys checked
        if kind == "playback":
            return await service.minter.playback(OPERATOR, parse_playback(body))
        return await service.minter.participant(OPERATOR, parse_participant(body))
    finally:
        for context in reversed(running):
            await context.aclose()
