"""The data port's handlers for MintPlaybackToken and MintParticipantToken: JSON in, JSON out.

The route wrapper (proxy/serve/own_routes.py) has already read the body and established the
caller; errors are ProxyErrors, so a refusal has the rest-json shape of every other one.
The access line names the operation, the resource and the viewer or user id; never the token.
"""

from __future__ import annotations

from proxy.gateway.own_access import OwnOperation
from proxy.serve.http_server import AnyAnswer, HttpRequest
from proxy.serve.own_routes import OwnHandler, OwnRequest, json_object, json_response
from proxy.tokens.claims import parse_participant, parse_playback
from proxy.tokens.minting import PARTICIPANT, PLAYBACK, Minter


def token_routes(minter: Minter) -> list[tuple[OwnOperation, OwnHandler]]:
    """The own routes for the token kinds `minter` holds keys for."""

    async def playback(_: HttpRequest, own: OwnRequest) -> AnyAnswer:
        with minter.counting_refusals("playback"):
            request = parse_playback(json_object(own.body))
        own.call.region = request.channel_arn.split(":")[3]
        own.call.fields.update(resource=request.channel_arn, viewer_id=request.viewer_id)
        return json_response(await minter.playback(own.caller, request))

    async def participant(_: HttpRequest, own: OwnRequest) -> AnyAnswer:
        with minter.counting_refusals("participant"):
            request = parse_participant(json_object(own.body))
        own.call.region = request.stage_arn.split(":")[3]
        own.call.fields.update(resource=request.stage_arn, user_id=request.user_id)
        return json_response(await minter.participant(own.caller, request))

    kinds = minter.keys.kinds()
    routes: list[tuple[OwnOperation, OwnHandler]] = []
    if "playback" in kinds:
        routes.append((PLAYBACK, playback))
    if "participant" in kinds:
        routes.append((PARTICIPANT, participant))
    return routes
