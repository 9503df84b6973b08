"""Signing cost: proxy.aws.signing.SigV4Signer.sign vs botocore's SigV4Auth, µs per signature.

Run pinned to the proxy's core (run.py does that) while nothing else runs there. The
request is the benchmark's PutMetadata as the proxy signs it (wire path, content-type,
session token). Prints one JSON object.
"""

from __future__ import annotations

import datetime
import json
import statistics
import timeit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from payloads import PUT_METADATA
from proxyproc import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN

from proxy.aws.signing import FrozenCredentials, SigV4Signer

HOST = "ivs.us-west-2.amazonaws.com"


def best_of(fn, number: int, repeat: int = 7) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(median, min) µs per call over `repeat` batches of `number` calls."""
    times = [t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=repeat)]
    return statistics.median(times), min(times)


def main() -> None:
    signer = SigV4Signer()
    creds = FrozenCredentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    now = datetime.datetime.now(datetime.UTC)
    body = PUT_METADATA.body

    def proxy_sign() -> None:
        signer.sign(method="POST", host=HOST, path="/PutMetadata", query="",
                    headers={"content-type": "application/json"}, body=body, service="ivs",
                    region="us-west-2", credentials=creds, now=now)

    tick = [0]
    base = now.timestamp()

    def proxy_sign_new_second() -> None:
        # Worst case for the date cache: every call in a new second (same day, same key).
        tick[0] += 1
        signer.sign(method="POST", host=HOST, path="/PutMetadata", query="",
                    headers={"content-type": "application/json"}, body=body, service="ivs",
                    region="us-west-2",
                    credentials=creds, now=datetime.datetime.fromtimestamp(base + tick[0] % 3600, datetime.UTC))

    botocore_auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN), "ivs", "us-west-2")

    def botocore_sign() -> None:
        request = AWSRequest(method="POST", url=f"https://{HOST}/PutMetadata", data=body,
                             headers={"Content-Type": "application/json"})
        botocore_auth.add_auth(request)

    proxy_sign()
    botocore_sign()
    results = {
        "proxy_us": best_of(proxy_sign, 20000),
        "proxy_new_second_us": best_of(proxy_sign_new_second, 20000),
        "botocore_us": best_of(botocore_sign, 2000),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
