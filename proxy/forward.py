"""The shared upstream client: one keep-alive session, TLS verified like the SDKs do.

Bodies are passed through byte for byte in both directions: automatic decompression is
off, so a gzip answer from AWS reaches the caller still gzipped and still labelled so.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from proxy.config import UpstreamConfig
from proxy.errors import UpstreamTimeout, UpstreamUnreachable

#: Response headers worth returning to the caller; the rest are AWS-internal or hop-by-hop.
RETURNED_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "x-amzn-RequestId",
    "x-amzn-ErrorType",
    "x-amz-apigw-id",
    "x-amzn-Trace-Id",
    "Retry-After",
)

#: aiohttp adds these on its own unless told not to; the caller's values (or none) must win.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verify against the given bundle (resolved like an SDK does), else the system store."""
    return _context_for(ca_bundle or None)


@functools.lru_cache(maxsize=8)
def _context_for(cafile: str | None) -> ssl.SSLContext:
    # Loading a trust store costs tens of milliseconds; a context is safely shared.
    return ssl.create_default_context(cafile=cafile)


class Upstream:
    def __init__(self, config: UpstreamConfig, ca_bundle: str | None = None) -> None:
        self._config = config
        self._ca_bundle = ca_bundle or config.ca_bundle
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._config.max_connections,
            ssl=ssl_context(self._ca_bundle),
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self._config.connect_timeout_seconds,
                sock_read=self._config.read_timeout_seconds,
            ),
            # Cookies from AWS must not leak from one caller to the next.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> UpstreamResponse:
        assert self._session is not None, "Upstream.start() was not awaited"
        # encoded=True: yarl must not decode %2F or %3A, or the path sent differs from the
        # path that was signed.
        target = URL(url, encoded=True)
        try:
            async with self._session.request(
                method,
                target,
                headers=headers,
                data=body if body else None,
                skip_auto_headers=_NO_AUTO_HEADERS,
                allow_redirects=False,
            ) as response:
                payload = await response.read()
                return UpstreamResponse(response.status, _returned(response.headers), payload)
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            raise UpstreamTimeout("AWS did not answer in time", kind="timeout") from None
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError):
            raise UpstreamUnreachable("the TLS connection to AWS failed verification", kind="tls") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnreachable(f"could not connect to AWS ({type(exc).__name__})", kind="connect") from None
        except (aiohttp.ClientError, OSError) as exc:
            # The connection was up and broke: reset, closed early, or a malformed answer.
            raise UpstreamUnreachable(f"the connection to AWS failed ({type(exc).__name__})", kind="reset") from None


def _returned(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    return {name: headers[name] for name in RETURNED_HEADERS if name in headers}
