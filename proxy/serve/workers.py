"""`workers: N`: one supervisor process and N worker processes sharing the data port.

One proxy is one event loop on one core. With `workers: N` the supervisor (`supervise`):

* reserves the data port: an SO_REUSEPORT socket bound (never listening) to `listen`, so
  that port 0 becomes one concrete port for every worker and the port stays ours while a
  worker restarts; the kernel spreads new connections over the workers' listeners;
* starts each worker as a fresh interpreter (`ivs-proxy serve ... --worker-index I`, not a
  fork of a process that already has a loop and threads), in its own process group
  (a terminal's Ctrl-C reaches the supervisor only, which forwards it once), with the
  same stdout and stderr, and PROMETHEUS_MULTIPROC_DIR set to a private temp dir;
* alone serves `admin_listen`: /healthz (the supervisor's loop), /readyz (503 while
  stopping, else 200 only when every worker's own /readyz is), /metrics (every worker's
  metrics summed, `proxy/observe/metrics.py`), /quitquitquit (loopback callers);
* restarts a worker that exits, after a backoff that doubles while restarts come quickly;
  a worker that exits with the configuration error code (2), or any worker exit before
  every worker has listened once, stops the pool with that exit code instead: such
  failures come back on every attempt;
* on SIGTERM (SIGINT, /quitquitquit: no drain delay) answers /readyz 503 at once, forwards
  the signal (each worker drains as a single process does, `proxy/serve/drain.py`), waits for
  the drain, SIGKILLs whatever is left, and exits 0.

A worker (`WorkerRole`) is the ordinary proxy, plus: its data listener sets SO_REUSEPORT,
its admin listener is on an ephemeral loopback port that it reports to the supervisor on a
pipe (for readiness), it copies its function-backed gauges into its metrics files every
second, and it stops when the supervisor is gone. Each worker fetches its own credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client.multiprocess import mark_process_dead

from proxy.config import ProxyConfig, check_exposure, parse_host_port
from proxy.defaults import SHUTDOWN_MARGIN_SECONDS
from proxy.errors import ConfigError
from proxy.observe.logs import ACCESS_LOG
from proxy.observe.metrics import Metrics, SupervisorMetrics
from proxy.serve.admin import RoutedApp, is_loopback_address, json_answer, loop_lag, metrics_answer
from proxy.serve.http_server import Answer, HttpRequest
from proxy.serve.listener import CUT_OFF_GRACE_SECONDS, bind_listener, start_listener

if TYPE_CHECKING:
    import aiohttp

log = structlog.get_logger("ivs_proxy")

EXIT_CONFIG = 2  # the CLI's exit code for a configuration error
#: The first restart waits this long; each quick restart after it twice as long, up to the cap.
RESTART_BACKOFF_SECONDS = 0.5
MAX_RESTART_BACKOFF_SECONDS = 30.0
#: A worker that ran this long before exiting restarts after the shortest backoff again.
STABLE_RUN_SECONDS = 60.0
#: Kubelet gives a probe 1 s; the supervisor's fan-out to its workers must fit well inside.
WORKER_PROBE_TIMEOUT_SECONDS = 0.5
#: Function-backed gauges reach the supervisor's scrape this stale at most.
SAMPLE_SECONDS = 1.0
#: After the drain: a worker's cut-off grace and its closing; less than defaults'
#: SHUTDOWN_MARGIN_SECONDS, so the supervisor exits before the platform's SIGKILL.
STRAGGLER_SECONDS = CUT_OFF_GRACE_SECONDS + 2.0
assert STRAGGLER_SECONDS < SHUTDOWN_MARGIN_SECONDS

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
#: How a worker starts: `ivs-proxy` itself, except that a SIGINT that comes before the event
#: loop's handler exists (a pool stopping while this worker still imports) ends it quietly
#: instead of with a KeyboardInterrupt traceback.
WORKER_ENTRY = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                "from proxy.cli import main; sys.exit(main())")


# --- how many ------------------------------------------------------------------------------


def cpu_budget(root: Path = Path("/")) -> int:
    """The CPUs this process may use: its affinity, lowered by a cgroup v2 `cpu.max` quota
    (the process's cgroup or any ancestor's; a 1.5-CPU quota counts as 1). `root` is for tests."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def cgroup_cpu_quota(root: Path = Path("/")) -> float | None:
    """The tightest cgroup v2 `cpu.max` (quota / period, in CPUs) from this process's cgroup
    up to the hierarchy's root; None when there is none (no limit, cgroup v1, not Linux)."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    unified = next((line[3:] for line in lines if line.startswith("0::")), None)
    if unified is None:
        return None
    mount = root / "sys/fs/cgroup"
    group = Path(unified.strip() or "/")
    quotas = []
    for directory in (group, *group.parents):
        try:
            limit, period = (mount / directory.relative_to("/") / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if limit != "max" and float(period) > 0:
            quotas.append(float(limit) / float(period))
    return min(quotas, default=None)


def resolve_workers(setting: int | str) -> int:
    """`workers:` as a count: "auto" is `cpu_budget()`."""
    return cpu_budget() if setting == "auto" else int(setting)


# --- the worker's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerRole:
    """What a worker is told on its command line (hidden flags of `serve`)."""

    index: int
    status_fd: int  # write end of a pipe: the admin port, once listening
    supervisor_pid: int

    def enter(self) -> None:
        """Before anything else: die with the supervisor; tag every log line with the index."""
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != self.supervisor_pid:  # gone before the line above took effect
            sys.exit(0)
        # Bound before the event loop exists, so every task's context inherits it; the
        # access line has its own writer (proxy/observe/logs.py), which adds it as a fixed field.
        structlog.contextvars.bind_contextvars(worker=self.index)
        ACCESS_LOG.bind_process(worker=self.index)

    def report_listening(self, admin_port: int) -> None:
        try:
            os.write(self.status_fd, f"{admin_port}\n".encode())
        except OSError:
            pass  # the supervisor is gone; upkeep() notices and stops this worker
        finally:
            with contextlib.suppress(OSError):
                os.close(self.status_fd)

    def upkeep(self, metrics: Metrics, stop: Callable[[str], None]):  # type: ignore[no-untyped-def]
        """A data-app cleanup context: keeps the function-backed gauges in the metrics files,
        and stops the worker (a drain, as SIGTERM) if its supervisor is gone without PDEATHSIG."""

        async def upkeep(_: object) -> AsyncIterator[None]:
            async def every_second() -> None:
                while True:
                    metrics.sample()
                    if os.getppid() != self.supervisor_pid:
                        stop("supervisor_gone")
                        return
                    await asyncio.sleep(SAMPLE_SECONDS)

            task = asyncio.create_task(every_second(), name="worker-upkeep")
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        return upkeep


# --- the supervisor --------------------------------------------------------------------------


def supervise(config: ProxyConfig, count: int, config_file: str | None) -> int:
    """Run `count` workers until a stop request; the process's exit code."""
    check_exposure(config)
    if config.redis.url is None and (config.auth.sigv4.keys or config.rate_limits.rules
                                     or config.rate_limits.defaults != "none"):
        log.warning("workers_without_shared_state", workers=count,
                    detail="rate limits and the SigV4 replay window are per worker; set redis.url to share them")
    try:
        run_dir = Path(tempfile.mkdtemp(prefix="ivs-proxy-workers-"))
    except OSError as exc:
        raise ConfigError("workers", f"needs a writable temporary directory (TMPDIR) for its metrics: "
                                     f"{exc.strerror}") from None
    try:
        snapshot = None
        if config_file is not None:
            # Every worker, restarted ones included, runs the file as it was at start-up,
            # even if the file (a mounted ConfigMap) changes while the pool runs.
            snapshot = run_dir / "config.yaml"
            shutil.copyfile(config_file, snapshot)
        reservation, listen = reserve_port(config.listen)
        with reservation, asyncio.Runner() as runner:
            return runner.run(Supervisor(config, count, run_dir, listen, snapshot).run())
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def reserve_port(address: str) -> tuple[socket.socket, str]:
    """Bind (not listen) an SO_REUSEPORT socket to `address`: the workers' listeners join it
    on the same port; it takes no connections itself. Returns it and the concrete address."""
    host, _ = parse_host_port(address)
    sock, *others = bind_listener(address, "listen", reuse_port=True)
    for other in others:  # the workers listen on the first address HOST resolves to
        other.close()
    bound = sock.getsockname()[1]
    return sock, f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"


def worker_command(config: ProxyConfig, listen: str, snapshot: Path | None, index: int, status_fd: int) -> list[str]:
    """`serve` as the supervisor was asked to run it: every setting a flag can carry, at its
    effective value (flags beat the file), on the reserved port, as worker `index`."""
    command = [
        sys.executable, "-c", WORKER_ENTRY, "serve",
        "--listen", listen,
        "--admin-listen", "127.0.0.1:0",  # for the supervisor's readiness probes only
        "--log-level", config.log.level,
        "--log-format", config.log.format,
        "--drain-delay", repr(config.shutdown.drain_delay_seconds),
        "--worker-index", str(index), "--worker-status-fd", str(status_fd),
        "--supervisor-pid", str(os.getpid()),
    ]
    if config.region is not None:
        command += ["--region", config.region]
    if snapshot is not None:
        command += ["--config", str(snapshot)]
    return command


@dataclass
class Slot:
    """One worker position: its current process, and how its restarts are going."""

    index: int
    process: asyncio.subprocess.Process | None = None
    admin_port: int | None = None
    quick_exits: int = 0
    listened: asyncio.Event = field(default_factory=asyncio.Event)  # at least once

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Supervisor:
    def __init__(self, config: ProxyConfig, count: int, run_dir: Path, listen: str, snapshot: Path | None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.listen = listen
        self.snapshot = snapshot
        self.slots = [Slot(i) for i in range(count)]
        self.metrics = SupervisorMetrics(str(run_dir), count)
        self.stopping = asyncio.Event()
        self.stop_signal = signal.SIGTERM
        self.exit_code = 0
        self._probe: aiohttp.ClientSession | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, "SIGTERM", signal.SIGTERM)
        loop.add_signal_handler(signal.SIGINT, self.request_stop, "SIGINT", signal.SIGINT)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        admin = await start_listener(self.admin_app(), bind_listener(self.config.admin_listen, "admin_listen"),
                                     self.config.limits)
        import aiohttp  # the supervisor's probe client only: a worker never loads it

        self._probe = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WORKER_PROBE_TIMEOUT_SECONDS))
        log.info("supervising", workers=len(self.slots), listen=self.listen, admin_listen=self.config.admin_listen,
                 metrics_dir=str(self.run_dir))
        tasks = [asyncio.create_task(self._keep_running(slot), name=f"worker-{slot.index}") for slot in self.slots]
        try:
            await self.stopping.wait()
            await self._wait_for_workers(tasks)
        finally:
            await self._probe.close()
            await admin.cleanup()
        log.info("stopped", exit_code=self.exit_code)
        return self.exit_code

    def request_stop(self, reason: str, how: signal.Signals) -> None:
        """The first request stops the pool; each one is forwarded (a second hurries the drain)."""
        first = not self.stopping.is_set()
        if first:
            self.stop_signal = how
            self.stopping.set()
        # Before logging: if stderr is gone (a closed pipe), the workers must still hear of it.
        for slot in self.slots:
            self._signal(slot, how)
        if first:
            log.info("stopping", reason=reason, workers=sum(slot.running for slot in self.slots))

    def _sighup(self) -> None:
        # Only a worker with files to re-read handles SIGHUP; to the others it is fatal.
        pem_keys = any(key.private_key_file for key in self.config.tokens.keys)
        if self.config.auth.bearer.tokens_file is None and not pem_keys:
            log.info("sighup_ignored", detail="no auth.bearer.tokens_file or tokens.keys private_key_file to reload")
            return
        for slot in self.slots:
            self._signal(slot, signal.SIGHUP)

    @staticmethod
    def _signal(slot: Slot, how: signal.Signals) -> None:
        if slot.running:
            assert slot.process is not None
            with contextlib.suppress(ProcessLookupError):
                slot.process.send_signal(how)

    async def _wait_for_workers(self, tasks: list[asyncio.Task[None]]) -> None:
        shutdown = self.config.shutdown
        delay = 0.0 if self.stop_signal != signal.SIGTERM else shutdown.drain_delay_seconds
        _, late = await asyncio.wait(tasks, timeout=delay + shutdown.drain_timeout_seconds + STRAGGLER_SECONDS)
        if late:
            log.warning("workers_killed", workers=[slot.index for slot in self.slots if slot.running])
            for slot in self.slots:
                self._signal(slot, signal.SIGKILL)
            await asyncio.wait(late, timeout=STRAGGLER_SECONDS)

    # -- one slot ----------------------------------------------------------------------------

    async def _keep_running(self, slot: Slot) -> None:
        try:
            await self._restart_until_stopped(slot)
        except Exception:  # a slot nobody watches must not fail silently
            log.exception("supervisor_failed", worker=slot.index)
            self.exit_code = 1
            self.request_stop("supervisor_failed", signal.SIGINT)

    async def _restart_until_stopped(self, slot: Slot) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            code = await self._run_once(slot)
            if self.stopping.is_set():
                return
            if code == EXIT_CONFIG or not all(s.listened.is_set() for s in self.slots):
                # Deterministic (a refused config, a start-up failure): it would fail again.
                self.exit_code = EXIT_CONFIG if code == EXIT_CONFIG else 1
                self.request_stop("worker_failed", signal.SIGINT)
                return
            quick = time.monotonic() - started < STABLE_RUN_SECONDS
            slot.quick_exits = slot.quick_exits + 1 if quick else 0
            backoff = min(MAX_RESTART_BACKOFF_SECONDS, RESTART_BACKOFF_SECONDS * 2 ** max(0, slot.quick_exits - 1))
            log.warning("worker_restarting", worker=slot.index, in_seconds=backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            if self.stopping.is_set():
                return
            self.metrics.worker_restarts.inc()

    async def _run_once(self, slot: Slot) -> int:
        """Start the slot's worker and wait for it to exit; its exit code (1 if killed)."""
        status_read, status_write = os.pipe()
        try:
            slot.process = await asyncio.create_subprocess_exec(
                *worker_command(self.config, self.listen, self.snapshot, slot.index, status_write),
                env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.run_dir)},
                pass_fds=(status_write,),
                start_new_session=True,
            )
        except OSError as exc:  # out of processes or file descriptors: as if it had failed
            os.close(status_read)
            log.error("worker_not_started", worker=slot.index, error=exc.strerror)
            return 1
        finally:
            os.close(status_write)
        process = slot.process
        self._count_running()
        log.info("worker_started", worker=slot.index, pid=process.pid)
        if self.stopping.is_set():  # stopped while it was being spawned
            self._signal(slot, self.stop_signal)
        report = asyncio.create_task(self._read_admin_port(slot, status_read))
        code = await process.wait()
        report.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await report
        slot.admin_port = None
        mark_process_dead(process.pid, str(self.run_dir))  # its live gauges leave the sums
        self._count_running()
        fields: dict[str, Any] = {"exit_code": code} if code >= 0 else {"signal": signal.Signals(-code).name}
        if self.stopping.is_set():
            log.info("worker_stopped", worker=slot.index, pid=process.pid, **fields)
        else:
            log.error("worker_exited", worker=slot.index, pid=process.pid, **fields)
        return code if code >= 0 else 1

    async def _read_admin_port(self, slot: Slot, fd: int) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(fd, readable.set)
        try:
            await readable.wait()
            # One write of a few bytes is atomic on a pipe: all of it, or b"" if the worker exited.
            line = os.read(fd, 64)
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        if line.strip().isdigit():
            slot.admin_port = int(line)
            slot.listened.set()
            log.info("worker_listening", worker=slot.index)

    def _count_running(self) -> None:
        self.metrics.workers.set(sum(slot.running for slot in self.slots))

    # -- the admin listener ------------------------------------------------------------------

    def admin_app(self) -> RoutedApp:
        return RoutedApp({
            "/healthz": ("GET", self._healthz),
            "/readyz": ("GET", self._readyz),
            "/metrics": ("GET", self._metrics),
            "/quitquitquit": ("POST", self._quitquitquit),
        })

    async def _healthz(self, _: HttpRequest) -> Answer:
        # The supervisor's own loop: a dead worker is restarted here, not by the platform.
        return json_answer({"status": "ok", "loop_lag_ms": round(await loop_lag() * 1000, 3),
                            "workers": sum(slot.running for slot in self.slots)})

    async def _readyz(self, _: HttpRequest) -> Answer:
        if self.stopping.is_set():
            return json_answer({"ready": False, "reason": "draining"}, 503)
        workers = await asyncio.gather(*(self._worker_readiness(slot) for slot in self.slots))
        if all(worker["ready"] for worker in workers):
            return json_answer({"ready": True, "workers": workers})
        return json_answer({"ready": False, "reason": "workers_not_ready", "workers": workers}, 503)

    async def _worker_readiness(self, slot: Slot) -> dict[str, Any]:
        if not slot.running or slot.admin_port is None or self._probe is None:
            return {"worker": slot.index, "ready": False, "reason": "starting"}
        assert slot.process is not None
        answer: dict[str, Any] = {"worker": slot.index, "pid": slot.process.pid}
        from aiohttp import ClientError

        try:
            async with self._probe.get(f"http://127.0.0.1:{slot.admin_port}/readyz") as response:
                body = await response.json(content_type=None)
        except (ClientError, TimeoutError, ValueError):
            return {**answer, "ready": False, "reason": "unresponsive"}
        # The worker's own answer: a fixed reason token and its credentials' state, no secrets.
        return {**answer, **{k: v for k, v in body.items() if k in ("ready", "reason", "detail")}}

    async def _metrics(self, request: HttpRequest) -> Answer:
        return metrics_answer(request, self.metrics.registry)

    async def _quitquitquit(self, request: HttpRequest) -> Answer:
        if not is_loopback_address(request.peer_address()):  # as a single process: only from this pod/host
            return json_answer({"stopping": False, "reason": "only accepted from loopback"}, 403)
        self.request_stop("quitquitquit", signal.SIGINT)  # no drain delay, as a single process
        return json_answer({"stopping": True})
