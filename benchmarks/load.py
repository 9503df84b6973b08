"""Drives one closed-loop load point with wrk (when installed) or the bundled pyload.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from procs import pinned

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class LoadResult:
    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


class LoadGenerator:
    def __init__(self, cpu: int, force_fallback: bool = False) -> None:
        self.cpu = cpu
        self.wrk = None if force_fallback else shutil.which("wrk")
        self.kind = "wrk" if self.wrk else "pyload (python fallback)"
        self.version = "?"
        if self.wrk:
            out = subprocess.run([self.wrk, "-v"], check=False, capture_output=True, text=True)
            self.version = (out.stdout + out.stderr).split("\n")[0].strip()

    def run(self, url: str, body_file: Path, connections: int, duration: float) -> LoadResult:
        if self.wrk:
            command = [*pinned(self.cpu), self.wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s",
                       "--timeout", "5s", "-s", str(HERE / "wrk" / "post.lua"), url]
        else:
            command = [*pinned(self.cpu), sys.executable, str(HERE / "pyload.py"), url,
                       "--body-file", str(body_file), "--connections", str(connections), "--duration", str(duration)]
        env = {"BENCH_BODY_FILE": str(body_file), "PATH": "/usr/bin:/bin"}
        out = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=duration + 60)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
        if out.returncode != 0 or line is None:
            raise RuntimeError(f"load generator failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
        data = json.loads(line.removeprefix("BENCH_RESULT "))
        errors = sum(data["errors"].values())
        lat = data["latency_us"]
        return LoadResult(
            requests=data["requests"],
            duration_s=data["duration_us"] / 1e6,
            errors=errors,
            p50_ms=lat["p50"] / 1000,
            p90_ms=lat["p90"] / 1000,
            p99_ms=lat["p99"] / 1000,
            max_ms=lat["max"] / 1000,
            mean_ms=lat["mean"] / 1000,
        )
