from __future__ import annotations

import dataclasses
import errno
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.parser import text_string_to_metric_families

from proxy.cli import _config as cli_config
from proxy.cli import _parser as cli_parser
from proxy.cli import main
from proxy.config import load_config
from proxy.errors import ConfigError
from proxy.observe.metrics import Metrics, SupervisorMetrics
from proxy.serve.workers import (
    WORKER_ENTRY,
    cpu_budget,
    reserve_port,
    resolve_workers,
    worker_command,
)

AFFINITY = len(os.sched_getaffinity(0))


def fake_root(tmp_path: Path, cgroup_line: str, limits: dict[str, str]) -> Path:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup_line + "\n")
    for group, cpu_max in limits.items():
        directory = tmp_path / "sys/fs/cgroup" / group.strip("/")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cpu.max").write_text(cpu_max + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("cgroup_line", "limits", "expected"),
    [
        ("0::/", {}, AFFINITY),  # no cpu.max anywhere
        ("0::/pod/app", {"/pod/app": "max 100000"}, AFFINITY),  # no quota
        ("0::/pod/app", {"/pod/app": "100000 100000"}, 1),
        ("0::/pod/app", {"/pod/app": "150000 100000"}, 1),  # 1.5 CPUs: one worker, not two
        ("0::/pod/app", {"/pod/app": "max 100000", "/pod": "50000 100000"}, 1),  # an ancestor's, at least 1
        ("0::/", {"/": "6400000 100000"}, AFFINITY),  # a quota above the affinity changes nothing
        ("4:memory:/x\n1:cpu:/", {}, AFFINITY),  # cgroup v1 only
    ],
)
def test_cpu_budget_is_the_affinity_lowered_by_a_cgroup_quota(
    tmp_path: Path, cgroup_line: str, limits: dict[str, str], expected: int
) -> None:
    assert cpu_budget(fake_root(tmp_path, cgroup_line, limits)) == expected


def test_auto_resolves_to_the_cpu_budget() -> None:
    assert resolve_workers("auto") == cpu_budget() >= 1
    assert resolve_workers(3) == 3


@pytest.mark.parametrize(("given", "expected"), [(None, 1), ("2", 2), ("auto", "auto"), ("Auto", "auto")])
def test_the_workers_flag_and_key(given: str | None, expected: int | str) -> None:
    assert load_config(None, {"workers": given}).workers == expected


@pytest.mark.parametrize("bad", ["0", "-1", "257", "two", 1.5, True])
def test_a_bad_workers_value_names_the_key(bad: object) -> None:
    with pytest.raises(ConfigError) as failed:
        load_config(None, {"workers": bad})
    assert failed.value.key == "workers"


def test_check_config_validates_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("workers: auto\n")
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("workers: 0\n")
    assert main(["check-config", str(bad)]) == 2
    assert "workers: must be a whole number" in capsys.readouterr().err


def test_a_worker_runs_the_supervisors_effective_config(tmp_path: Path) -> None:
    """Flags beat the file: the worker gets the effective values, on the reserved port."""
    snapshot = tmp_path / "config.yaml"
    snapshot.write_text("workers: 4\nlog:\n  level: debug\nshutdown:\n  drain_delay_seconds: 3\nregion: eu-west-1\n")
    supervisor = cli_config(cli_parser().parse_args(
        ["serve", "--config", str(snapshot), "--log-format", "console", "--drain-delay", "0.25", "--workers", "2"]
    ))
    command = worker_command(supervisor, "127.0.0.1:41234", snapshot, index=1, status_fd=7)
    assert command[:3] == [sys.executable, "-c", WORKER_ENTRY]
    args = cli_parser().parse_args(command[3:])
    assert (args.worker_index, args.worker_status_fd, args.supervisor_pid) == (1, 7, os.getpid())
    worker = cli_config(args)
    assert worker == dataclasses.replace(supervisor, listen="127.0.0.1:41234", admin_listen="127.0.0.1:0",
                                         workers=4)  # the file's value; a worker never supervises
    assert (worker.log.format, worker.shutdown.drain_delay_seconds, worker.region) == ("console", 0.25, "eu-west-1")


def test_the_reserved_port_is_shared_with_workers_and_with_no_one_else() -> None:
    reservation, address = reserve_port("127.0.0.1:0")
    with reservation:
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        with socket.socket() as worker:  # what a worker's listener does (aiohttp reuse_port)
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind((host, int(port)))
            worker.listen()
        with socket.socket() as stranger, pytest.raises(OSError) as taken:
            stranger.bind((host, int(port)))
        assert taken.value.errno == errno.EADDRINUSE


WORKER_METRICS = textwrap.dedent("""
    import sys
    from proxy.observe.metrics import Metrics
    expiry, quota, inflight = (float(v) for v in sys.argv[1:])
    metrics = Metrics()
    metrics.credentials_expiry.set_function(lambda: expiry)
    metrics.retry_quota.set_function(lambda: quota)
    metrics.inflight.inc(inflight)
    metrics.requests.labels("ivs", "ListChannels", "us-west-2", "200").inc()
    metrics.sample()
""")


def scrape(registry: CollectorRegistry) -> dict[str, float]:
    return {sample.name: sample.value for family in text_string_to_metric_families(generate_latest(registry).decode())
            for sample in family.samples}


def test_gauges_combine_across_workers_as_their_meaning_needs(tmp_path: Path) -> None:
    """Two real processes in multiprocess mode, summed by the supervisor's collector."""
    pids = []
    for values in (("2000000000", "500", "3"), ("1900000000", "120", "4")):
        worker = subprocess.Popen([sys.executable, "-c", WORKER_METRICS, *values],
                                  env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
        assert worker.wait(timeout=60) == 0
        pids.append(worker.pid)
    supervisor = SupervisorMetrics(str(tmp_path), configured=2)
    supervisor.worker_restarts.inc()
    got = scrape(supervisor.registry)
    assert got["ivs_proxy_credentials_expiry_timestamp_seconds"] == 1900000000  # the earliest
    assert got["ivs_proxy_retry_quota_tokens"] == 120  # the most depleted worker
    assert got["ivs_proxy_inflight_requests"] == 7  # summed
    assert got["ivs_proxy_build_info"] == 1  # one series
    assert got["ivs_proxy_requests_total"] == 2
    assert (got["ivs_proxy_workers_configured"], got["ivs_proxy_worker_restarts_total"]) == (2, 1)

    mark_process_dead(pids[0], str(tmp_path))  # a worker gone: its gauges leave, its counts stay
    got = scrape(supervisor.registry)
    assert got["ivs_proxy_requests_total"] == 2
    assert got["ivs_proxy_inflight_requests"] == 4


def test_a_single_process_reads_function_gauges_at_scrape_time() -> None:
    metrics = Metrics()
    quota = [500.0]
    metrics.retry_quota.set_function(lambda: quota[0])
    quota[0] = 42.0
    metrics.sample()  # harmless in a single process
    assert scrape(metrics.registry)["ivs_proxy_retry_quota_tokens"] == 42.0
