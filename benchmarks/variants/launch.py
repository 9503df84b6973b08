"""Experimental launcher: `ivs-proxy` with proposed changes applied from outside.

    BENCH_PATCHES=uvloop,gcfreeze python benchmarks/variants/launch.py serve --listen ...

Used by benchmarks/compare.py (and run.py --variant) to measure a proposal before anyone
edits proxy/. Each patch mirrors one proposed code change; none of this is how users run
the proxy. Patches:

  uvloop     asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()) before serving
             (needs uvloop importable, e.g. PYTHONPATH from `pip install --target DIR uvloop`)
  no-uvloop  asyncio's own event loop even where uvloop is installed
  gcfreeze   gc.collect(); gc.freeze() once the app is built (start-up objects leave the
             collector's working set: fewer and shorter pauses)
  gcthreshold  gc.set_threshold(20000, 20, 100) once built: gen0 passes ~30x rarer
  gcstats    diagnostic only: counts GC passes and their time; printed to stderr at exit
  logcache   structlog cache_logger_on_first_use=True (configure_logging sets False)
  stub-handler   decomposition: the IVS request path answers 204 at once (the server and
                 DataApp.handle: request id, metrics, access line, drain bookkeeping)
  bare-server    decomposition: the data port's server (proxy/serve/http_server.py) with a
                 handler answering 204, without DataApp.handle (the server's own floor;
                 stub-handler minus this is what the access line, metrics and drain cost)
  lowlevel-bare  comparison: the data port as aiohttp's low-level web.Server answering 204
                 (no Application, router, middlewares): the design issue 14 offered first
  httptools-bare comparison: a minimal asyncio protocol on httptools answering 204, one task
                 per request: the floor of any server on that parser
  stub-upstream  decomposition: the full pipeline runs, the upstream call is replaced by a
                 canned answer (everything but the upstream round trip)
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time

PATCHES = {p for p in os.environ.get("BENCH_PATCHES", "").split(",") if p}


def _apply() -> None:
    import proxy.cli
    import proxy.observe.logs

    if "uvloop" in PATCHES:
        import asyncio

        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    if "no-uvloop" in PATCHES:
        # asyncio's own loop although uvloop is installed (what the image runs without [fast])
        proxy.cli.fast_event_loop_factory = lambda: None

    if "gcfreeze" in PATCHES:
        build = proxy.cli.build_proxy

        def build_and_freeze(*args, **kwargs):  # type: ignore[no-untyped-def]
            built = build(*args, **kwargs)
            gc.collect()
            gc.freeze()
            return built

        proxy.cli.build_proxy = build_and_freeze

    if "gcthreshold" in PATCHES:
        build_t = proxy.cli.build_proxy

        def build_and_tune(*args, **kwargs):  # type: ignore[no-untyped-def]
            built = build_t(*args, **kwargs)
            gc.set_threshold(20000, 20, 100)
            return built

        proxy.cli.build_proxy = build_and_tune

    if "logcache" in PATCHES:
        import structlog

        configure = proxy.observe.logs.configure_logging

        def configure_cached(*args, **kwargs):  # type: ignore[no-untyped-def]
            configure(*args, **kwargs)
            structlog.configure(cache_logger_on_first_use=True)

        proxy.cli.configure_logging = configure_cached

    if "stub-handler" in PATCHES:
        import proxy.serve.server
        from proxy.serve.http_server import Answer

        async def handle_stub(_):  # type: ignore[no-untyped-def]
            return Answer(204)

        proxy.serve.server.handle_proxy = handle_stub

    if "bare-server" in PATCHES:
        import proxy.serve.server
        from proxy.serve.http_server import Answer

        async def answer_204(self, _):  # type: ignore[no-untyped-def]
            return Answer(204)

        proxy.serve.server.DataApp.handle = answer_204  # type: ignore[method-assign]

    if "lowlevel-bare" in PATCHES:
        # decomposition: the data port as aiohttp's low-level web.Server answering 204 (no
        # Application, router or middlewares): what leaving the Application alone saves.
        from aiohttp import web

        import proxy.serve.listener
        from proxy.serve.http_server import run_contexts

        start = proxy.serve.listener.start_listener

        async def answer(_: web.BaseRequest) -> web.Response:
            return web.Response(status=204)

        async def start_lowlevel(app, sockets, limits, **kwargs):  # type: ignore[no-untyped-def]
            if not isinstance(app, proxy.serve.server.DataApp):
                return await start(app, sockets, limits, **kwargs)
            await run_contexts(app.cleanup_ctx, app, [])  # credentials, upstream
            runner = web.ServerRunner(web.Server(answer), access_log=None)
            await runner.setup()
            for sock in sockets:
                await web.SockSite(runner, sock).start()
            return runner

        import proxy.serve.server

        proxy.serve.listener.start_listener = start_lowlevel
        proxy.cli.start_listener = start_lowlevel  # type: ignore[attr-defined]

    if "httptools-bare" in PATCHES:
        # decomposition: the data port as a minimal asyncio protocol on httptools answering
        # 204, one task per request as an async handler needs: the floor of an own server.
        import asyncio

        import httptools
        from aiohttp import web

        import proxy.serve.listener
        import proxy.serve.server
        from proxy.serve.http_server import run_contexts

        start = proxy.serve.listener.start_listener

        class Bare(asyncio.Protocol):
            def connection_made(self, transport):  # type: ignore[no-untyped-def]
                self.transport = transport
                self.parser = httptools.HttpRequestParser(self)
                self.headers = []

            def on_header(self, name, value):  # type: ignore[no-untyped-def]
                self.headers.append((name, value))

            def on_url(self, url):  # type: ignore[no-untyped-def]
                self.url = url

            def on_body(self, body):  # type: ignore[no-untyped-def]
                self.body = body

            def on_message_complete(self):  # type: ignore[no-untyped-def]
                asyncio.get_running_loop().create_task(self.answer())

            async def answer(self):  # type: ignore[no-untyped-def]
                self.headers = []
                self.transport.write(b"HTTP/1.1 204 No Content\r\nx-amzn-RequestId: x\r\n\r\n")

            def data_received(self, data):  # type: ignore[no-untyped-def]
                self.parser.feed_data(data)

        class BareRunner:
            def __init__(self, server):  # type: ignore[no-untyped-def]
                self.server = server

        async def start_bare(app, sockets, limits, **kwargs):  # type: ignore[no-untyped-def]
            if not isinstance(app, proxy.serve.server.DataApp):
                return await start(app, sockets, limits, **kwargs)
            await run_contexts(app.cleanup_ctx, app, [])  # credentials, upstream
            loop = asyncio.get_running_loop()
            for sock in sockets:
                server = await loop.create_server(Bare, sock=sock)
            return BareRunner(server)

        proxy.serve.listener.start_listener = start_bare
        proxy.cli.start_listener = start_bare  # type: ignore[attr-defined]

    if "stub-upstream" in PATCHES:
        import proxy.pipeline
        from proxy.aws.upstream import UpstreamResponse

        canned = UpstreamResponse(204, {"x-amzn-RequestId": "8c5bd0b2-6f7e-4c1a-9d3e-2b7f0a1c9e44"}, b"")

        async def send_stub(self, exchange):  # type: ignore[no-untyped-def]
            return canned

        proxy.pipeline.Pipeline.send = send_stub

    if "gcstats" in PATCHES:
        stats = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
        started: list[float] = [0.0]

        def callback(phase: str, info: dict) -> None:  # type: ignore[type-arg]
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                entry = stats[info["generation"]]
                entry[0] += 1
                entry[1] += time.perf_counter() - started[0]

        gc.callbacks.append(callback)

        def report() -> None:
            for generation, (count, seconds) in stats.items():
                sys.stderr.write(f"BENCH_GC gen{generation} passes={count} total_ms={seconds * 1000:.1f} "
                                 f"mean_ms={seconds / count * 1000 if count else 0:.3f}\n")

        atexit.register(report)


if __name__ == "__main__":
    _apply()
    from proxy.cli import main

    sys.exit(main())
