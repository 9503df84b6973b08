"""`make demo`: a local SigV4-verifying IVS upstream (moto, IAM auth on), the proxy in front
of it with short-lived role credentials, and a few unsigned SDK calls through it.

    make demo                      # then keeps serving until Ctrl-C
    make demo DEMO_ARGS=--once     # exits after the sample calls, with their status
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from botocore.exceptions import ClientError

from tests.e2e.conftest import proxy_env, unsigned_client
from tests.support.moto import MotoServer
from tests.support.proxy_process import ProxyProcess


def sample_calls(proxy_url: str) -> bool:
    ivs = unsigned_client("ivs", proxy_url)
    ok = True

    def step(title: str, call, expect_error: str | None = None):  # type: ignore[no-untyped-def]
        nonlocal ok
        try:
            result = call()
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            good = expect_error is not None and code == expect_error
            ok &= good
            print(f"  {'ok ' if good else 'BAD'} {title}: {code}: {exc.response['Error'].get('Message', '')[:120]}")
            return None
        good = expect_error is None
        ok &= good
        print(f"  {'ok ' if good else 'BAD'} {title}")
        return result

    print("Sample calls through the proxy (the SDK sends them unsigned):")
    created = step("CreateChannel name=demo", lambda: ivs.create_channel(name="demo", latencyMode="LOW"))
    if created:
        arn = created["channel"]["arn"]
        print(f"      channel {arn}")
        step("GetChannel", lambda: ivs.get_channel(arn=arn))
        step("ListChannels", lambda: ivs.list_channels())
        step("DeleteChannel", lambda: ivs.delete_channel(arn=arn))
    step(
        "CreateChannel latencyMode=FAST (refused by the proxy: not in the model's enum)",
        lambda: ivs.create_channel(name="bad", latencyMode="FAST"),
        expect_error="ValidationException",
    )
    step(
        "BatchGetChannel (refused by the upstream: outside the role's IAM policy)",
        lambda: ivs.batch_get_channel(arns=["arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl"]),
        expect_error="403",
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--once", action="store_true", help="exit after the sample calls")
    args = parser.parse_args()

    moto = MotoServer()
    moto.start()
    print(f"Upstream: moto with IAM auth on at {moto.url} (checks signatures, tokens, policies)")
    credentials = moto.role_credentials(session_name="ivs-proxy-demo")
    proxy = ProxyProcess(proxy_env(moto, credentials), args=("--log-format", "console"), show_output=True)
    try:
        proxy.start()
        print(f"Proxy: {proxy.url} (admin {proxy.admin_url}), signing with an assumed role's session")
        ok = sample_calls(proxy.url)
        if args.once:
            print("demo:", "all sample calls behaved as expected" if ok else "SOME SAMPLE CALLS FAILED")
            return 0 if ok else 1
        print(f"\nServing until Ctrl-C. Try:\n  aws ivs list-channels --no-sign-request --endpoint-url {proxy.url}")
        print(f"  curl -s -X POST {proxy.url}/ListChannels -H 'Content-Type: application/json' -d '{{}}'")
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
        return 0
    finally:
        proxy.stop()
        moto.stop()


if __name__ == "__main__":
    sys.exit(main())
