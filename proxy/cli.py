"""`ivs-proxy` commands: serve, routes, check-config, whoami, policy-check (and dev, token)."""

from __future__ import annotations

import argparse
import difflib
import functools
import gc
import os
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from proxy.startup import quick_imports

with quick_imports():  # ~80 ms less start-up: see proxy/startup.py
    import asyncio

    import botocore
    import structlog

    from proxy import __version__
    from proxy.app import build_proxy, check_config, credential_source_for
    from proxy.aws.credentials import LONG_LIVED_MESSAGE, utc_now, what_to_do
    from proxy.aws.regions import offered_regions
    from proxy.config import ProxyConfig, load_config
    from proxy.dev.devmode import add_dev_command, run_dev
    from proxy.errors import ConfigError
    from proxy.gateway.own_access import known_actions, own_operation
    from proxy.model.catalog import SERVICE_MOUNTS, Catalog
    from proxy.observe.logs import configure_logging
    from proxy.policy import PolicySet
    from proxy.serve.admin import AdminApp
    from proxy.serve.listener import (
        bind_listener,
        bound_port,
        drain_and_close,
        start_listener,
    )
    from proxy.serve.server import DataApp
    from proxy.serve.tls import server_context
    from proxy.tokens.command import add_token_command, run_token

if TYPE_CHECKING:
    from proxy.serve.workers import WorkerRole

EXIT_CONFIG = 2
EXIT_RUNTIME = 1
# What a shell reports for a command killed by SIGPIPE (`seq 100000 | head`): the reader
# stopped reading, which is not an error worth a message.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

EXAMPLES = {
    "ivs-proxy": """exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error (a listen address in use included)

examples:
  ivs-proxy serve --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9901
  ivs-proxy check-config config/sidecar.yaml
  ivs-proxy routes | grep ivschat
  ivs-proxy whoami
  ivs-proxy dev --profile my-sso-profile""",
    "serve": """examples:
  ivs-proxy serve                                  # loopback, region from AWS_REGION
  ivs-proxy serve --config config/sidecar.yaml --log-format console
  ivs-proxy serve --config config/gateway.yaml     # shared gateway (needs auth:)
  ivs-proxy serve --workers auto                   # one worker process per CPU (docs/operating.md: workers)
  AWS_ENDPOINT_URL=http://127.0.0.1:5000 ivs-proxy serve --region us-west-2""",
    "routes": """examples:
  ivs-proxy routes
  ivs-proxy routes --config config/sidecar.yaml""",
    "check-config": """exit code 0 when the file is valid, 2 (with the key and the reason) when not.

examples:
  ivs-proxy check-config config/reference.yaml""",
    "whoami": """examples:
  ivs-proxy whoami
  AWS_PROFILE=my-sso-profile ivs-proxy whoami --region us-west-2""",
    "policy-check": """exit code 0 when allowed, 1 when denied, 2 for a bad flag or config.

examples:
  ivs-proxy policy-check --config config/gateway.yaml --caller video-team \\
      --action ivs:PutMetadata --resource arn:aws:ivs:us-west-2:123456789012:channel/VideoMain001""",
}


def _command(commands: argparse._SubParsersAction, name: str, summary: str) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    return commands.add_parser(
        name, help=summary, description=summary, epilog=EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivs-proxy", description="Signing proxy for the Amazon IVS APIs",
        epilog=EXAMPLES["ivs-proxy"], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ivs-proxy {__version__} (botocore {botocore.__version__})")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = _command(commands, "serve", "run the proxy")
    serve.add_argument("--config", help="YAML config file (see config/reference.yaml)")
    serve.add_argument("--listen", help="data listener HOST:PORT (default 127.0.0.1:8080)")
    serve.add_argument("--admin-listen", help="admin listener HOST:PORT (default 127.0.0.1:9901)")
    serve.add_argument("--region", help="default AWS region (else AWS_REGION, AWS_DEFAULT_REGION, profile)")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                       help="least severe log line written (default info; log.level)")
    serve.add_argument("--log-format", choices=("json", "console"),
                       help="json: one JSON object a line; console: for a terminal (default json; log.format)")
    serve.add_argument("--drain-delay", type=float, metavar="SECONDS",
                       help="on SIGTERM, keep accepting this long before draining (default 5; shutdown.drain_delay_seconds)")
    serve.add_argument("--workers", metavar="N|auto",
                       help="worker processes sharing the data port under one supervisor (default 1; workers)")
    # Set by the supervisor of `--workers N` on the processes it starts (proxy/serve/workers.py).
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker-status-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)

    routes = _command(commands, "routes", "print every routable operation")
    routes.add_argument("--config", help="YAML config file")

    check = _command(commands, "check-config", "validate a config file and exit")
    check.add_argument("file")

    whoami = _command(commands, "whoami", "show which AWS credentials the proxy would sign with")
    whoami.add_argument("--config", help="YAML config file")
    whoami.add_argument("--region", help="default AWS region (used for STS)")

    explain = _command(commands, "policy-check", "explain the policy decision for one call")
    explain.add_argument("--config", required=True, help="YAML config file with policy.callers")
    explain.add_argument("--caller", required=True, help="caller name, as in policy.callers")
    explain.add_argument("--action", required=True, help="IAM action, e.g. ivs:GetChannel")
    explain.add_argument("--resource", action="append", default=[],
                         help="an ARN the call names (repeat for batches; none: the call names no ARN)")
    explain.add_argument("--region", help="the region the call goes to (aws:RequestedRegion); default: the "
                         "region of the ARNs, else the config's region")

    add_dev_command(commands)
    add_token_command(commands)
    return parser


def _config(args: argparse.Namespace) -> ProxyConfig:
    overrides = {
        "listen": getattr(args, "listen", None),
        "admin_listen": getattr(args, "admin_listen", None),
        "region": getattr(args, "region", None),
        "log.level": getattr(args, "log_level", None),
        "log.format": getattr(args, "log_format", None),
        "shutdown.drain_delay_seconds": getattr(args, "drain_delay", None),
        "workers": getattr(args, "workers", None),
    }
    return load_config(getattr(args, "config", None), overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(_config(args), config_file=args.config, worker=_worker_role(args))
        if args.command == "routes":
            return print_routes(_config(args))
        if args.command == "whoami":
            return whoami(_config(args))
        if args.command == "dev":
            return run_dev(args)
        if args.command == "token":
            return run_token(args)
        if args.command == "check-config":
            for key, why in check_config(load_config(args.file), os.environ).warnings:
                print(f"ivs-proxy: warning: {key}: {why}", file=sys.stderr)
            print(f"{args.file}: ok")
            return 0
        if args.command == "policy-check":
            config = load_config(args.config)
            check_config(config, os.environ)
            return policy_check(config, args.caller, args.action, args.resource, args.region)
    except ConfigError as exc:
        print(f"ivs-proxy: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:  # `ivs-proxy routes | head`
        # Python flushes stdout again at exit: point it at /dev/null so that flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # e.g. a file that cannot be read: say so, without a stack trace
        print(f"ivs-proxy: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_RUNTIME


def print_routes(config: ProxyConfig) -> int:
    catalog = Catalog.load(config.services)
    rows = [
        (op.service.name, op.method, ("" if op.service.name == "ivs" else SERVICE_MOUNTS[op.service.name]) + op.path_template, op.name)
        for op in sorted(catalog.operations, key=lambda o: (o.service.name, o.path_template, o.method))
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for service, method, path, name in rows:
        print(f"{service:<{widths[0]}}  {method:<{widths[1]}}  {path:<{widths[2]}}  {name}")
    return 0


def whoami(config: ProxyConfig) -> int:
    """Fetch credentials once, as `serve` would, and say whose they are and until when."""
    configure_logging(config.log.level, config.log.format)  # else structlog prints its debug lines
    source, identify = credential_source_for(config, os.environ)
    try:
        snapshot = source.fetch()
    except Exception as exc:  # noqa: BLE001 (any source failure: report it, exit 1)
        profile = config.credentials.profile or os.environ.get("AWS_PROFILE")
        print(f"ivs-proxy: no usable AWS credentials: {exc}; {what_to_do(profile)}", file=sys.stderr)
        return 1
    identity = snapshot.identity or identify(snapshot.credentials)
    if snapshot.expires_at is None:
        expires = "never (long-lived access keys)"
    else:
        left = int((snapshot.expires_at - utc_now()).total_seconds())
        expires = f"{snapshot.expires_at.isoformat()} (in {left // 60} min {left % 60} s)"
    print(f"source:   {snapshot.source}\nidentity: {identity or 'unknown'}\nexpires:  {expires}")
    if snapshot.expires_at is None and not config.credentials.allow_long_lived_credentials:
        raise ConfigError("credentials", LONG_LIVED_MESSAGE.format(source=snapshot.source))
    return 0


def policy_check(config: ProxyConfig, caller: str, action: str, resources: list[str],
                 region: str | None = None) -> int:
    """Print the decision, resource by resource, and the statement behind each; 0 allow, 1 deny."""
    known = known_actions(op.iam_action for op in Catalog.load(config.services).operations)
    if action.lower() not in {name.lower() for name in known}:
        raise ConfigError("--action", f"{action!r} is no IAM action of a served operation nor an ivs-proxy "
                          f"action{_near(action, known)}")
    # As the proxy chooses: the ARNs' region first (arn:aws:ivs:<region>:...), then the default.
    arn_regions = [parts[3] for parts in (r.split(":", 5) for r in resources) if len(parts) > 4 and parts[3]]
    region = region or next(iter(arn_regions), None) or config.region
    offered = frozenset().union(*offered_regions(config.services).values())
    if region is not None and region not in offered:
        raise ConfigError("--region", f"{region!r} is not a region botocore lists for the served services"
                          f"{_near(region, offered)}")
    if not (config.mode == "gateway" or config.policy.callers):  # as proxy/gateway/wiring.py enforces it
        print(f"caller:   {caller}\naction:   {action}")
        print("decision: ALLOW (sidecar mode without policy.callers: the proxy enforces no policy; "
              "the IAM policy of the role it signs with decides)")
        return 0
    if caller not in config.policy.callers:
        raise ConfigError("--caller", f"{caller!r} is not in policy.callers{_near(caller, config.policy.callers)}")
    decision = PolicySet(config.policy.callers, known).evaluate(caller, action, resources, region)
    print(f"caller:   {caller}\naction:   {action}")
    print(f"region:   {region} (aws:RequestedRegion)" if region else
          "region:   none (a condition on aws:RequestedRegion: StringEquals/StringLike fail, the Not forms hold)")
    for verdict in decision.verdicts:
        how = "no statement allows it" if verdict.statement is None else (
            f"{'allowed' if verdict.allowed else 'denied'} by statement {verdict.statement}")
        print(f"resource: {verdict.resource}: {'ALLOW' if verdict.allowed else 'DENY'} ({how})")
    print(f"decision: {'ALLOW' if decision.allowed else 'DENY'} ({decision.reason})")
    if decision.allowed and action.lower().startswith("ivs-proxy:mint"):
        print(f"caps:     {token_caps(config, caller)}")
    if action.lower() == own_operation("SubscribeEvents").action.lower():
        print("events:   the same decision, per ARN, filters each event: delivered when at least one ARN it names "
              "is allowed and none is denied (an event naming none: only Resource \"*\"); docs/events.md")
    return 0 if decision.allowed else 1


def token_caps(config: ProxyConfig, caller: str) -> str:
    """What tokens.callers adds to an allowed mint action (docs/tokens.md)."""
    caps = config.tokens.callers.get(caller)
    if caps is None:
        return f"none in tokens.callers for {caller!r}: IVS's own limits only"
    lifetime = f"at most {caps.max_lifetime_seconds} s" if caps.max_lifetime_seconds else "IVS's maximum"
    return (f"tokens.callers.{caller}: lifetime {lifetime}; participant capabilities "
            f"{', '.join(caps.capabilities) or 'none'}")


def _near(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def serve(config: ProxyConfig, *, config_file: str | None = None, worker: WorkerRole | None = None) -> int:
    if worker is not None:
        configure_logging(config.log.level, config.log.format)
        return _serve_as_worker(config, worker)
    # Before any worker starts: a refused config stops the supervisor, and warns once.
    warnings = check_config(config, os.environ).warnings
    configure_logging(config.log.level, config.log.format)
    log = structlog.get_logger("ivs_proxy")
    for key, why in warnings:
        log.warning("config_warning", key=key, detail=why)
    from proxy.serve.workers import resolve_workers, supervise

    workers = resolve_workers(config.workers)
    if workers > 1:
        return supervise(config, workers, config_file)
    proxy = build_proxy(config, os.environ)
    with asyncio.Runner(loop_factory=fast_event_loop_factory()) as runner:
        runner.run(_run(proxy.data_app, proxy.admin_app, config))
    return 0


def _worker_role(args: argparse.Namespace) -> WorkerRole | None:
    if args.worker_index is None:
        return None
    from proxy.serve.workers import WorkerRole

    return WorkerRole(args.worker_index, args.worker_status_fd, args.supervisor_pid)


def _serve_as_worker(config: ProxyConfig, worker: WorkerRole) -> int:
    """One of `--workers N`: the same proxy, sharing the data port (proxy/serve/workers.py)."""
    worker.enter()
    proxy = build_proxy(config, os.environ)
    drain = proxy.state.drain
    proxy.data_app.cleanup_ctx.append(worker.upkeep(proxy.state.metrics, drain.request_stop))
    with asyncio.Runner(loop_factory=fast_event_loop_factory()) as runner:
        runner.run(_run(proxy.data_app, proxy.admin_app, config, reuse_port=True,
                        on_listening=worker.report_listening))
    return 0


def fast_event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when installed (`pip install ivs-proxy[fast]`), else asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop  # type: ignore[no-any-return]


async def _run(data_app: DataApp, admin_app: AdminApp, config: ProxyConfig, *,
               reuse_port: bool = False, on_listening: Callable[[int], None] | None = None) -> None:
    """Serve until a stop request, then drain (proxy/serve/drain.py): SIGTERM drains fully; SIGINT
    and `POST /quitquitquit` skip the delay; a second request of any kind hurries it.
    A worker of `--workers N` shares the data port (`reuse_port`) and hears of the admin port."""
    log = structlog.get_logger("ivs_proxy")
    state = data_app.state
    drain = state.drain
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, drain.request_stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, functools.partial(drain.request_stop, "SIGINT", skip_delay=True))
    refused = state.metrics.rejected
    listen = functools.partial(start_listener, limits=config.limits, on_refused=lambda r: refused.labels(r).inc())
    # Both ports first: a taken one stops start-up at once, before the credential fetch.
    data_sockets = bind_listener(config.listen, "listen", reuse_port=reuse_port)
    try:
        admin_sockets = bind_listener(config.admin_listen, "admin_listen")
    except BaseException:
        for sock in data_sockets:
            sock.close()
        raise
    # Then the data app: its start-up refuses long-lived keys (exit 2) before anything listens.
    try:
        data = await listen(data_app, data_sockets, ssl_context=server_context(config.tls))
    except BaseException:
        for sock in admin_sockets:
            sock.close()
        raise
    try:
        admin = await listen(admin_app, admin_sockets)  # plain HTTP for probes
    except BaseException:
        await data.cleanup()
        raise
    log.info("listening", listen=config.listen, admin_listen=config.admin_listen)
    if on_listening is not None:
        on_listening(bound_port(admin))
    # Everything built so far (models, validators, endpoint data) lives as long as the
    # process: move it out of the collector's way so collections stay short.
    gc.collect()
    gc.freeze()
    try:
        await drain.stop_requested.wait()
        shutdown = config.shutdown
        await drain_and_close(state, data, delay=shutdown.drain_delay_seconds, timeout=shutdown.drain_timeout_seconds)
    finally:
        await admin.cleanup()
    log.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
