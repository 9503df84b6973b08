"""A description of the machine and the software under test, for results.md."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import ssl
import sys
from pathlib import Path


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key and key not in info:
                info[key] = value.strip()
    except OSError:
        pass
    return info


def _meminfo_total_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git() -> str:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=False, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "proxy"], cwd=root, check=False, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' + uncommitted changes in proxy/' if dirty else ''}" if head else "unknown"


def describe() -> dict[str, object]:
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    os_release = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_release = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {
        "cpu_model": cpu.get("model name", platform.processor() or "?"),
        "cpu_mhz": cpu.get("cpu MHz", "?"),
        "cpus": os.cpu_count(),
        "cpu_flags_of_note": " ".join(sorted(flags & {"aes", "avx2", "avx512f", "sha_ni", "hypervisor"})),
        "memory_gib": round(_meminfo_total_gib(), 1),
        "kernel": " ".join(platform.uname()[:3]) + " " + platform.machine(),
        "os": os_release,
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "aiohttp": _version("aiohttp"),
        "botocore": _version("botocore"),
        "structlog": _version("structlog"),
        "uvloop": _version("uvloop"),
        "ivs-proxy": _version("ivs-proxy"),
        "git": _git(),
    }
