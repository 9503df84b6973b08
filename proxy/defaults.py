"""Ports, probe paths and shutdown timings that the deployment files must agree with.

The Dockerfile, `deploy/kubernetes/` and `deploy/compose/` repeat these numbers because
YAML cannot import Python; `tests/unit/test_deploy.py` reads those files and compares
them with this module, so a change here that the manifests do not follow fails the suite.
The ports are not repeated here: they are the config defaults (`ProxyConfig`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from proxy.config import ProxyConfig, parse_host_port

DATA_PORT = parse_host_port(ProxyConfig().listen)[1]
ADMIN_PORT = parse_host_port(ProxyConfig().admin_listen, "admin_listen")[1]

#: Admin listener routes (`proxy/serve/server.py`).
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
METRICS_PATH = "/metrics"

# Graceful drain, on SIGTERM (proxy/serve/drain.py, docs/resilience.md): /readyz turns 503 and the
# data listener keeps accepting for DRAIN_DELAY_SECONDS, long enough for endpoint
# controllers, kube-proxy and load balancers to stop sending; then requests in flight get
# up to DRAIN_TIMEOUT_SECONDS (no less than upstream.total_timeout_seconds, so that a request
# accepted during the delay ends on its own: IVS answers in well under a second); then the
# process exits 0. They are the `shutdown:` config defaults, rounded up to whole seconds.
_SHUTDOWN = ProxyConfig().shutdown
DRAIN_DELAY_SECONDS = math.ceil(_SHUTDOWN.drain_delay_seconds)
DRAIN_TIMEOUT_SECONDS = math.ceil(_SHUTDOWN.drain_timeout_seconds)
#: Left after the drain for closing the upstream pool and flushing logs.
SHUTDOWN_MARGIN_SECONDS = 5
#: The least time a platform must wait between SIGTERM and SIGKILL so a drain completes:
#: Kubernetes' terminationGracePeriodSeconds, compose's stop_grace_period, `docker stop -t`.
MIN_TERMINATION_GRACE_SECONDS = DRAIN_DELAY_SECONDS + DRAIN_TIMEOUT_SECONDS + SHUTDOWN_MARGIN_SECONDS


@dataclass(frozen=True)
class Probe:
    """An HTTP probe against the admin listener, in Kubernetes' terms."""

    path: str
    period_seconds: int
    timeout_seconds: int
    failure_threshold: int

    @property
    def gives_up_after_seconds(self) -> int:
        return self.period_seconds * self.failure_threshold


#: Sidecar only: the app's containers start once this passes, so the app never sees a
#: proxy without credentials at start-up; 60 s covers a slow first STS call and retries.
STARTUP_PROBE = Probe(READINESS_PATH, period_seconds=1, timeout_seconds=1, failure_threshold=60)
#: Restart only a process that stopped answering at all (not one waiting for credentials:
#: /healthz does not depend on them, so an AWS outage never restarts every proxy).
LIVENESS_PROBE = Probe(LIVENESS_PATH, period_seconds=10, timeout_seconds=2, failure_threshold=3)
#: Must notice the drain's 503 within the drain delay (see test_deploy).
READINESS_PROBE = Probe(READINESS_PATH, period_seconds=2, timeout_seconds=1, failure_threshold=2)
