"""The audit log: one structured line per access decision, on a logger of its own.

Lines carry `logger: "ivs_proxy.audit"` (the access log's lines carry none), so a log
pipeline can route them on their own, and the request id bound by the access-log
middleware, so each decision can be joined with its request. A decision is either an
authentication failure (`event: "authentication"`, `decision: "deny"`) or a policy
decision (`event: "authorization"`, allow or deny, with the statements that decided).
Never logged: tokens, secrets, signatures, request bodies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from proxy.gateway.identity import Caller, Unauthenticated
    from proxy.observe.metrics import Metrics
    from proxy.policy import Decision

AUDIT_LOGGER = "ivs_proxy.audit"


class AuditLog:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    @staticmethod
    def _log() -> structlog.typing.FilteringBoundLogger:
        # Looked up per line, so a test's (or the CLI's) configure_logging applies.
        return structlog.get_logger(AUDIT_LOGGER).bind(logger=AUDIT_LOGGER)  # type: ignore[no-any-return]

    def authentication_failed(self, error: Unauthenticated, operation: str | None) -> None:
        self._metrics.authentication_failures.labels(error.method, error.why).inc()
        fields = {"access_key_id": error.key_id} if error.key_id else {}
        self._log().warning("authentication", decision="deny", method=error.method, reason=error.why,
                            action=operation, **fields)

    def authorization(self, decision: Decision, caller: Caller) -> None:
        verdict = "allow" if decision.allowed else "deny"
        self._metrics.authorization_decisions.labels(caller.name, verdict).inc()
        emit = self._log().info if decision.allowed else self._log().warning
        emit("authorization", decision=verdict, caller=caller.name, method=caller.method, action=decision.action,
             resources=list(decision.resources), region=decision.region, statements=list(decision.statements),
             reason=decision.reason)
