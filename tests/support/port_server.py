"""A port of the proxy's own (data, admin, dev broker) in a test, served as `serve` serves
it (proxy/serve/listener.py), behind aiohttp's test client: `aiohttp_client(proxy.data_app)`
and `aiohttp_server(proxy.admin_app)` work as they did when these were aiohttp
applications (tests/conftest.py)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import BaseTestServer
from yarl import URL

from proxy.config import LimitsConfig
from proxy.serve.listener import PortRunner, ServedApp, bind_listener, start_listener


class PortTestServer(BaseTestServer):
    """A real listener on 127.0.0.1 and a free port, with the app's contexts entered."""

    def __init__(self, app: ServedApp, *, limits: LimitsConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.limits = limits or LimitsConfig()
        self.data_runner: PortRunner | None = None

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        if self.data_runner is not None:
            return
        ssl_context = kwargs.pop("ssl", None)
        sockets = bind_listener(f"{self.host}:{self.port or 0}")
        runner = await start_listener(self.app, sockets, self.limits, ssl_context=ssl_context)
        assert isinstance(runner, PortRunner)
        self.data_runner = runner
        self.port = runner.addresses[0][1]
        self.scheme = self.scheme or ("https" if ssl_context else "http")
        self._root = URL(f"{self.scheme}://{self.host}:{self.port}")

    async def _make_runner(self, **kwargs: Any) -> Any:  # BaseTestServer's; not used
        raise NotImplementedError

    @property
    def started(self) -> bool:
        return self.data_runner is not None

    async def close(self) -> None:
        if self.data_runner is not None and not self._closed:
            await self.data_runner.cleanup()
            self._root = None
            self._closed = True


