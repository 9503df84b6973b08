"""`make demo`: the proxy in front of a local, SigV4-verifying IVS upstream, and sample
calls of all three services through it.

The upstream is moto (IAM auth on) for the operations moto implements, and the demo's
stand-in (tests/support/standin.py) for every other one; both verify the proxy's signature
against the short-lived role credentials the proxy signs with. Nothing leaves the machine.

    make demo                      # then keeps serving until Ctrl-C
    make demo DEMO_ARGS=--once     # exits after the sample calls: 0 if each behaved as expected
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.session import get_session

from tests.support.moto import REGION, MotoServer
from tests.support.proxy_process import ProxyProcess
from tests.support.standin import MOTO_OPERATIONS, SERVICES, StandIn

#: Where each service is mounted on the proxy.
MOUNTS = {"ivs": "", "ivs-realtime": "/ivs-realtime", "ivschat": "/ivschat"}


@dataclass
class Samples:
    """Runs sample calls, one printed line each: outcome, service, call, who answered."""

    standin: StandIn
    failures: int = 0
    count: int = 0

    def call(self, service: str, title: str, call: Callable[[], Any], detail: Callable[[Any], str] = lambda _: "",
             refused: str | None = None) -> Any:
        """`refused`: the error code the call must end with (the sample shows a refusal)."""
        before = len(self.standin.answered)
        try:
            result, error = call(), None
        except ClientError as exc:
            result, error = None, exc
        code = error.response["Error"]["Code"] if error is not None else None
        good = code == refused
        note = str(error) if error is not None else detail(result)
        self._line(good, service, title, self._answered_by(before), note)
        return result

    def command(self, service: str, title: str, argv: list[str], check: Callable[[str], bool]) -> None:
        """A README command line (the AWS CLI, curl), run as a user would."""
        before = len(self.standin.answered)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
        good = done.returncode == 0 and check(done.stdout)
        note = "" if good else (done.stderr or done.stdout).strip().replace("\n", " ")[:200]
        self._line(good, service, title, self._answered_by(before), note)

    def _answered_by(self, before: int) -> str:
        """Who answered the requests since `before`: moto, the stand-in, or no upstream
        (the proxy refused the call itself)."""
        upstreams = sorted({answer.upstream for answer in self.standin.answered[before:]})
        return "+".join(upstreams) or "the proxy"

    def _line(self, good: bool, service: str, title: str, upstream: str, note: str) -> None:
        self.count += 1
        self.failures += not good
        print(f"  {'ok ' if good else 'BAD'} {service:<12} {title:<44} {upstream:<9} {note}".rstrip())


def unsigned_client(service: str, proxy_url: str):  # type: ignore[no-untyped-def]
    """An app's client: no credentials at all, pointed at the proxy."""
    return boto3.client(service, endpoint_url=proxy_url + MOUNTS[service], region_name=REGION,
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))


PLACEHOLDER = "arn:aws:{service}:us-west-2:123456789012:{kind}/AbCdEfGhIjKl"


def ivs_samples(samples: Samples, ivs: Any) -> str:
    """Channels on moto; stream keys, metadata, tags and key pairs on the stand-in."""
    call = samples.call
    created = call("ivs", "CreateChannel name=demo", lambda: ivs.create_channel(name="demo", latencyMode="LOW"),
                   lambda r: r["channel"]["arn"])
    arn = created["channel"]["arn"] if created else PLACEHOLDER.format(service="ivs", kind="channel")
    call("ivs", "GetChannel", lambda: ivs.get_channel(arn=arn), lambda r: f"latencyMode {r['channel']['latencyMode']}")
    call("ivs", "ListChannels", lambda: ivs.list_channels(), lambda r: f"{len(r['channels'])} channel(s)")
    call("ivs", "CreateStreamKey", lambda: ivs.create_stream_key(channelArn=arn), lambda r: r["streamKey"]["arn"])
    call("ivs", "ListStreamKeys", lambda: ivs.list_stream_keys(channelArn=arn),
         lambda r: f"{len(r['streamKeys'])} key(s)")
    call("ivs", "PutMetadata", lambda: ivs.put_metadata(channelArn=arn, metadata='{"score": "2-1"}'))
    call("ivs", "TagResource team=demo", lambda: ivs.tag_resource(resourceArn=arn, tags={"team": "demo"}))
    call("ivs", "ListTagsForResource", lambda: ivs.list_tags_for_resource(resourceArn=arn),
         lambda r: "tags " + ", ".join(r["tags"]))
    call("ivs", "ListPlaybackKeyPairs", lambda: ivs.list_playback_key_pairs(),
         lambda r: f"{len(r['keyPairs'])} pair(s)")
    if created:
        call("ivs", "DeleteChannel", lambda: ivs.delete_channel(arn=arn))
    return arn


def realtime_samples(samples: Samples, stages: Any) -> None:
    call = samples.call
    stage = call("ivs-realtime", "CreateStage name=demo", lambda: stages.create_stage(name="demo"),
                 lambda r: r["stage"]["arn"])
    arn = stage["stage"]["arn"] if stage else PLACEHOLDER.format(service="ivs", kind="stage")
    call("ivs-realtime", "CreateParticipantToken userId=alice",
         lambda: stages.create_participant_token(stageArn=arn, userId="alice", capabilities=["PUBLISH"]),
         lambda r: f"token expires {r['participantToken']['expirationTime']:%H:%M} UTC")
    call("ivs-realtime", "ListStages", lambda: stages.list_stages(), lambda r: f"{len(r['stages'])} stage(s)")
    call("ivs-realtime", "DeleteStage", lambda: stages.delete_stage(arn=arn))


def chat_samples(samples: Samples, chat: Any) -> None:
    call = samples.call
    room = call("ivschat", "CreateRoom name=demo", lambda: chat.create_room(name="demo"), lambda r: r["arn"])
    arn = room["arn"] if room else PLACEHOLDER.format(service="ivschat", kind="room")
    call("ivschat", "CreateChatToken userId=alice",
         lambda: chat.create_chat_token(roomIdentifier=arn, userId="alice", capabilities=["SEND_MESSAGE"]),
         lambda r: f"token expires {r['tokenExpirationTime']:%H:%M} UTC")
    call("ivschat", "ListRooms", lambda: chat.list_rooms(), lambda r: f"{len(r['rooms'])} room(s)")
    call("ivschat", "DeleteRoom", lambda: chat.delete_room(identifier=arn))


def refusal_samples(samples: Samples, ivs: Any, channel_arn: str) -> None:
    print("Refusals (each must be refused, with this message):")
    samples.call("ivs", "CreateChannel latencyMode=FAST", lambda: ivs.create_channel(name="bad", latencyMode="FAST"),
                 refused="ValidationException")
    samples.call("ivs", "BatchGetChannel (not in the role's policy)",
                 lambda: ivs.batch_get_channel(arns=[channel_arn]), refused="AccessDeniedException")


def sdk_samples(samples: Samples, proxy_url: str) -> None:
    ivs, stages, chat = (unsigned_client(service, proxy_url) for service in SERVICES)
    channel_arn = ivs_samples(samples, ivs)
    realtime_samples(samples, stages)
    chat_samples(samples, chat)
    refusal_samples(samples, ivs, channel_arn)


def readme_commands(proxy_url: str) -> list[tuple[str, str, list[str]]]:
    """The README's command-line examples, pointed at this proxy."""
    unsigned = ["--region", REGION, "--no-sign-request", "--endpoint-url"]
    tags = "/tags/arn%3Aaws%3Aivs%3Aus-west-2%3A123456789012%3Achannel%2FAbCdEfGhIjKl"
    json_post = ["-X", "POST", "-H", "Content-Type: application/json", "-d", "{}"]
    return [
        ("ivs", "aws ivs list-channels", ["aws", "ivs", "list-channels", *unsigned, proxy_url]),
        ("ivs-realtime", "aws ivs-realtime list-stages",
         ["aws", "ivs-realtime", "list-stages", *unsigned, proxy_url + "/ivs-realtime"]),
        ("ivs", "curl POST /ListChannels", ["curl", "-s", *json_post, proxy_url + "/ListChannels"]),
        ("ivs", "curl GET /tags/<channel ARN>", ["curl", "-s", proxy_url + tags]),
    ]


def command_samples(samples: Samples, proxy_url: str) -> None:
    aws = shutil.which("aws", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    print("The README's command lines (AWS CLI, curl):")
    for service, title, argv in readme_commands(proxy_url):
        program = aws if argv[0] == "aws" else shutil.which(argv[0])
        if program is None:
            print(f"  --  {service:<12} {argv[0]} is not installed: skipped")
            continue
        samples.command(service, title, [program, *argv[1:]], _json_without_error)


def _json_without_error(output: str) -> bool:
    try:
        answer = json.loads(output)
    except ValueError:
        return False
    return isinstance(answer, dict) and "message" not in answer


def describe_upstreams(moto: MotoServer, standin: StandIn) -> None:
    session = get_session()
    counts = {service: len(session.get_service_model(service).operation_names) for service in SERVICES}
    served_by_moto = sorted(MOTO_OPERATIONS["ivs"])
    others = ", ".join(f"{counts[s] - len(MOTO_OPERATIONS.get(s, ()))} {s}" for s in SERVICES)
    print("Upstream (local; nothing leaves this machine):")
    print(f"  moto        {moto.url}  IAM auth on: checks the signature, the session token and the role's IAM policy")
    print(f"              serves ivs {', '.join(served_by_moto)}")
    ports = ", ".join(f"{service} {url}" for service, url in standin.urls.items())
    print(f"  stand-in    {ports}")
    print( "              a local stand-in (tests/support/standin.py), not AWS and not moto:")
    print( "              checks the signature and session token the same way, answers every other operation")
    print(f"              ({others}) from botocore's output shapes, without state")


def main() -> int:
    parser = argparse.ArgumentParser(description="The proxy in front of a local IVS upstream, and sample calls.")
    parser.add_argument("--once", action="store_true", help="exit after the sample calls, with their status")
    args = parser.parse_args()

    moto = MotoServer()
    moto.start()
    credentials = moto.role_credentials(session_name="ivs-proxy-demo")
    standin = StandIn(moto.url, {credentials.access_key: (credentials.secret_key, credentials.token)})
    standin.start()
    log = Path(tempfile.mkdtemp(prefix="ivs-proxy-demo-")) / "proxy.log"
    env = {**credentials.env(), "AWS_REGION": REGION, **standin.endpoint_env()}
    proxy = ProxyProcess(env, output_path=log)
    try:
        describe_upstreams(moto, standin)
        proxy.start()
        print(f"Proxy: {proxy.url} (admin {proxy.admin_url}), signing with an assumed role's session")
        print(f"       its log (one JSON object a line): {log}")
        print("\nSample calls through the proxy (boto3, unsigned), each with who answered it:"
              " moto, the stand-in, or the proxy itself")
        samples = Samples(standin)
        sdk_samples(samples, proxy.url)
        command_samples(samples, proxy.url)
        ok = samples.failures == 0
        print("\ndemo:", f"all {samples.count} sample calls behaved as expected" if ok
              else f"{samples.failures} OF {samples.count} SAMPLE CALLS FAILED")
        if args.once:
            return 0 if ok else 1
        print("\nServing until Ctrl-C. Try:")
        for _, _, argv in readme_commands(proxy.url):
            print("  " + " ".join(a if " " not in a and "{" not in a else f"'{a}'" for a in argv))
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
        return 0
    except KeyboardInterrupt:  # Ctrl-C before the samples were done
        print("\ndemo: interrupted")
        return 130
    finally:
        if proxy.process is not None:
            proxy.stop()
        standin.stop()
        moto.stop()


if __name__ == "__main__":
    sys.exit(main())
