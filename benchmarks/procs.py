"""Process helpers: ports, bounded waits, and /proc readings (CPU time, RSS)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Self

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

#: Scheduling priority for every benchmark process (proxy, upstream, load generator). The
#: machine may be shared: a negative nice value (root only) keeps other tenants' work from
#: stealing the pinned cores. 0 = leave the default. Set by run.py / compare.py (--nice).
NICE = 0


def pinned(cpu: int) -> list[str]:
    """Command prefix: pin to `cpu` (taskset) at priority NICE. exec chain keeps the pid."""
    prefix = ["taskset", "-c", str(cpu)]
    return (["nice", "-n", str(NICE)] + prefix) if NICE else prefix


class AutogroupPriority:
    """With kernel autogroups (sched_autogroup_enabled=1) every session is its own
    scheduling group, and nice values only rank processes *inside* a group: against other
    sessions' work on a shared machine, only the group's own nice counts. This raises the
    benchmark session's group to NICE for the run and restores it afterwards."""

    PATH = "/proc/self/autogroup"

    def __init__(self, nice: int) -> None:
        self.nice = nice
        self.previous: int | None = None

    def __enter__(self) -> Self:
        if not self.nice or not os.path.exists(self.PATH):
            return self
        try:
            with open(self.PATH) as f:
                self.previous = int(f.read().split("nice")[1])
            with open(self.PATH, "w") as f:
                f.write(str(self.nice))
        except (OSError, ValueError, IndexError):
            self.previous = None
        return self

    def __exit__(self, *_: object) -> None:
        if self.previous is not None:
            try:
                with open(self.PATH, "w") as f:
                    f.write(str(self.previous))
            except OSError:
                pass

    @property
    def applied(self) -> bool:
        return self.previous is not None


def default_nice() -> int:
    return -10 if os.geteuid() == 0 else 0


def core_busy_seconds() -> dict[int, float]:
    """Per core: non-idle time (user+nice+system+irq+softirq+steal) since boot, seconds."""
    busy: dict[int, float] = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *values = line.split()
                v = [int(x) for x in values]
                busy[int(name[3:])] = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLOCK_TICKS
    return busy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.01)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def http_get_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """One GET on a fresh connection; None if nothing answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def wait_for_status(port: int, path: str, status: int, timeout: float, process: subprocess.Popen | None = None,  # type: ignore[type-arg]
                    interval: float = 0.005) -> float:
    """Poll until GET path answers `status`; returns monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {path} answered {status}")
        if http_get_status(port, path) == status:
            return time.monotonic()
        time.sleep(interval)
    raise TimeoutError(f"127.0.0.1:{port}{path} did not answer {status} within {timeout}s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run_queue_wait_seconds(pid: int) -> float:
    """Time the process's threads spent runnable but waiting for a CPU (schedstat), summed."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
    except OSError:
        pass
    return total / 1e9


def memory_kib(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                values[name] = int(value.split()[0])
    return values


class RssSampler:
    """Samples VmRSS every `interval` seconds on a thread; `peak_kib` is the max seen.
    `read` gives the figures of `pid` (default: its own; run.py passes a whole-tree reader)."""

    def __init__(self, pid: int, interval: float = 0.05,
                 read: Callable[[int], dict[str, int]] = memory_kib) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._read = read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self.peak_kib = self._read(self.pid)["VmRSS"]
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.peak_kib = max(self.peak_kib, self._read(self.pid)["VmRSS"])
            except OSError:
                return


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:  # type: ignore[type-arg]
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
