"""`ivs-proxy` commands: serve, routes, check-config, whoami, policy-check."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence

import botocore
import structlog
from aiohttp import web

from proxy import __version__
from proxy.app import build_proxy, credential_source_for
from proxy.catalog import SERVICE_MOUNTS, Catalog
from proxy.config import ProxyConfig, check_exposure, load_config, parse_host_port
from proxy.credentials import LONG_LIVED_MESSAGE, utc_now
from proxy.devmode import add_dev_command, run_dev
from proxy.errors import ConfigError
from proxy.logs import configure_logging
from proxy.policy import PolicySet
from proxy.tls import server_context

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivs-proxy", description="Signing proxy for the Amazon IVS APIs")
    parser.add_argument("--version", action="version", version=f"ivs-proxy {__version__} (botocore {botocore.__version__})")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="YAML config file (see config/reference.yaml)")
    serve.add_argument("--listen", help="data listener HOST:PORT (default 127.0.0.1:8080)")
    serve.add_argument("--admin-listen", help="admin listener HOST:PORT (default 127.0.0.1:9901)")
    serve.add_argument("--region", help="default AWS region (else AWS_REGION, AWS_DEFAULT_REGION, profile)")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--log-format", choices=("json", "console"))

    routes = commands.add_parser("routes", help="print every routable operation")
    routes.add_argument("--config", help="YAML config file")

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file")

    whoami = commands.add_parser("whoami", help="show which AWS credentials the proxy would sign with")
    whoami.add_argument("--config", help="YAML config file")
    whoami.add_argument("--region", help="default AWS region (used for STS)")

    explain = commands.add_parser("policy-check", help="explain the policy decision for one call")
    explain.add_argument("--config", required=True, help="YAML config file with policy.callers")
    explain.add_argument("--caller", required=True, help="caller name, as in policy.callers")
    explain.add_argument("--action", required=True, help="IAM action, e.g. ivs:GetChannel")
    explain.add_argument("--resource", action="append", default=[],
                         help="an ARN the call names (repeat for batches; none: the call names no ARN)")

    add_dev_command(commands)
    return parser


def _config(args: argparse.Namespace) -> ProxyConfig:
    overrides = {
        "listen": getattr(args, "listen", None),
        "admin_listen": getattr(args, "admin_listen", None),
        "region": getattr(args, "region", None),
        "log.level": getattr(args, "log_level", None),
        "log.format": getattr(args, "log_format", None),
    }
    return load_config(getattr(args, "config", None), overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(_config(args))
        if args.command == "routes":
            return print_routes(_config(args))
        if args.command == "whoami":
            return whoami(_config(args))
        if args.command == "dev":
            return run_dev(args)
        if args.command == "check-config":
            check_exposure(load_config(args.file))
            print(f"{args.file}: ok")
            return 0
        if args.command == "policy-check":
            return policy_check(load_config(args.config), args.caller, args.action, args.resource)
    except ConfigError as exc:
        print(f"ivs-proxy: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 1


def print_routes(config: ProxyConfig) -> int:
    catalog = Catalog.load(config.services)
    for op in sorted(catalog.operations, key=lambda o: (o.service.name, o.path_template, o.method)):
        mount = "" if op.service.name == "ivs" else SERVICE_MOUNTS[op.service.name]
        print(f"{op.service.name:<13} {op.method:<7} {mount}{op.path_template:<40} {op.name}")
    return 0


def whoami(config: ProxyConfig) -> int:
    """Fetch credentials once, as `serve` would, and say whose they are and until when."""
    source, identify = credential_source_for(config, os.environ)
    try:
        snapshot = source.fetch()
    except Exception as exc:  # noqa: BLE001 (any source failure: report it, exit 1)
        print(f"ivs-proxy: no usable AWS credentials: {exc}", file=sys.stderr)
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


def policy_check(config: ProxyConfig, caller: str, action: str, resources: list[str]) -> int:
    """Print the decision, resource by resource, and the statement behind each; 0 allow, 1 deny."""
    known = {op.iam_action for op in Catalog.load(config.services).operations}
    decision = PolicySet(config.policy.callers, known).evaluate(caller, action, resources)
    print(f"caller:   {caller}\naction:   {action}")
    for verdict in decision.verdicts:
        how = "no statement allows it" if verdict.statement is None else (
            f"{'allowed' if verdict.allowed else 'denied'} by statement {verdict.statement}")
        print(f"resource: {verdict.resource}: {'ALLOW' if verdict.allowed else 'DENY'} ({how})")
    print(f"decision: {'ALLOW' if decision.allowed else 'DENY'} ({decision.reason})")
    return 0 if decision.allowed else 1


def serve(config: ProxyConfig) -> int:
    configure_logging(config.log.level, config.log.format)
    proxy = build_proxy(config, os.environ)
    asyncio.run(_run(proxy.data_app, proxy.admin_app, config))
    return 0


async def _run(data_app: web.Application, admin_app: web.Application, config: ProxyConfig) -> None:
    log = structlog.get_logger("ivs_proxy")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runners = []
    for app, address in ((data_app, config.listen), (admin_app, config.admin_listen)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = parse_host_port(address)
        tls = server_context(config.tls) if app is data_app else None  # admin stays plain HTTP for probes
        await web.TCPSite(runner, host, port, ssl_context=tls).start()
        runners.append(runner)
    log.info("listening", listen=config.listen, admin_listen=config.admin_listen)
    await stop.wait()
    log.info("stopping")
    for runner in reversed(runners):
        await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
