"""`ivs-proxy dev`: the proxy on a developer's machine, signing with their own AWS profile.

Loopback listeners only, console logs, any profile botocore understands (SSO included).
A profile that cannot give credentials stops start-up with what to do about it (for an
expired SSO session: `aws sso login --profile NAME`), not a stack trace. With
`--serve-credentials` it also runs the credential endpoint of `proxy.dev.broker`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import botocore.exceptions
import botocore.session
import structlog

from proxy import __version__
from proxy.app import build_proxy, check_config, credential_chain_session, credential_source_for
from proxy.aws.credential_sources import IAM_PREFIXES
from proxy.aws.credentials import (
    LONG_LIVED_MESSAGE,
    CredentialSnapshot,
    CredentialSource,
    CredentialStore,
    what_to_do,
)
from proxy.aws.regions import default_region
from proxy.config import LimitsConfig, ProxyConfig, load_config
from proxy.dev.broker import (
    Broker,
    create_broker_app,
    loopback_address,
    narrowed_role_source,
    new_token,
    url_host,
)
from proxy.errors import ConfigError
from proxy.observe.logs import configure_logging
from proxy.serve.listener import PortRunner, ServedApp, bind_listener, start_listener

log = structlog.get_logger("ivs_proxy.dev")

DEFAULT_CREDENTIALS_LISTEN = "127.0.0.1:9911"

EXAMPLES = """\
examples:
  # sign with an SSO profile (run `aws sso login --profile my-dev` first)
  ivs-proxy dev --profile my-dev
  aws ivs list-channels --no-sign-request --endpoint-url http://127.0.0.1:8080

  # profile with access keys: assume a role with them, sign with the role
  ivs-proxy dev --profile my-keys --role-arn arn:aws:iam::123456789012:role/ivs-dev

  # also hand SDKs on this machine short-lived credentials of that role, narrowed to
  # the IVS actions; paste the two printed `export` lines into the app's shell
  ivs-proxy dev --profile my-dev --role-arn arn:aws:iam::123456789012:role/ivs-dev \\
      --serve-credentials

exit codes: 0 stopped with Ctrl-C, 2 bad flag or config, 1 no credentials or port taken
"""


def add_dev_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dev = commands.add_parser(
        "dev",
        help="run the proxy on this machine with your AWS profile (loopback only)",
        description="Run ivs-proxy on this machine: loopback listeners only, console logs, "
        "signing with your AWS profile (SSO profiles included).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dev.add_argument("--profile", help="AWS profile to sign with (default: AWS_PROFILE, else the default chain)")
    dev.add_argument("--role-arn", help="assume this role with the profile's credentials and sign with it")
    dev.add_argument("--config", help="YAML config file (see config/reference.yaml)")
    dev.add_argument("--listen", help="data listener, loopback only (default 127.0.0.1:8080)")
    dev.add_argument("--admin-listen", help="admin listener, loopback only (default 127.0.0.1:9901)")
    dev.add_argument("--region", help="default AWS region (else AWS_REGION, AWS_DEFAULT_REGION, profile)")
    dev.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    dev.add_argument(
        "--serve-credentials",
        action="store_true",
        help="also serve short-lived credentials of --role-arn, narrowed to the IVS actions, "
        "to SDKs on this machine (the container credentials contract)",
    )
    dev.add_argument(
        "--token-key", action="append", default=[], metavar="ARN=PRIVATE_KEY_FILE",
        help="mint tokens with this local P-384 key for the IVS playback-key or public-key ARN "
        "(repeat for both kinds; replaces tokens.keys of --config; docs/tokens.md)",
    )
    dev.add_argument(
        "--credentials-listen",
        default=DEFAULT_CREDENTIALS_LISTEN,
        help=f"credential endpoint, loopback only (default {DEFAULT_CREDENTIALS_LISTEN})",
    )


@dataclass(frozen=True)
class DevPlan:
    config: ProxyConfig
    profile: str | None
    listen: tuple[str, int]
    admin_listen: tuple[str, int]
    credentials_listen: tuple[str, int] | None  # None: no credential endpoint

    @property
    def profile_name(self) -> str:
        return self.profile or "default"


def plan(args: argparse.Namespace, env: Mapping[str, str]) -> DevPlan:
    """Flags and config checked and combined; ConfigError (exit 2) for anything wrong."""
    overrides: dict[str, Any] = {
        "listen": args.listen,
        "admin_listen": args.admin_listen,
        "region": args.region,
        "log.level": args.log_level,
        "log.format": "console",
        "credentials.profile": args.profile,
        "credentials.role_arn": args.role_arn,
    }
    for i, pair in enumerate(getattr(args, "token_key", [])):
        arn, sep, path = pair.partition("=")
        if not sep or not path:
            raise ConfigError(f"--token-key[{i}]", "must be ARN=PRIVATE_KEY_FILE")
        overrides.setdefault("tokens.keys", []).append({"arn": arn, "private_key_file": path})
    config = load_config(args.config, overrides)
    if config.tokens.keys:  # the dev proxy is the developer's own: keys given mean "mint"
        config = dataclasses.replace(config, tokens=dataclasses.replace(config.tokens, sidecar_minting=True))
    profile = config.credentials.profile or env.get("AWS_PROFILE")
    if profile is not None:
        try:
            botocore.session.Session(profile=profile).get_scoped_config()
        except botocore.exceptions.ProfileNotFound:
            raise ConfigError("--profile", f"no profile named {profile!r} in the AWS config files") from None
    credentials_listen = None
    if args.serve_credentials:
        credentials_listen = loopback_address(args.credentials_listen, "--credentials-listen")
        if config.credentials.role_arn is None:
            raise ConfigError(
                "--role-arn",
                "--serve-credentials hands out credentials of a role, narrowed to the IVS actions; "
                "name one your profile may assume (--role-arn, or credentials.role_arn in --config). "
                "It never hands out the profile's own credentials.",
            )
    return DevPlan(
        config,
        profile,
        loopback_address(config.listen, "listen"),
        loopback_address(config.admin_listen, "admin_listen"),
        credentials_listen,
    )


def run_dev(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    dev = plan(args, env)
    check_config(dev.config, env)  # as serve does, before any credentials are fetched
    # The ports next, as serve does: a taken one is reported before an SSO login is asked for.
    sockets = _bind_all(dev)
    try:
        proxy_source, broker_source = _sources(dev, env)
        signing = _first_fetch(proxy_source, dev.profile_name)
        served = _first_fetch(broker_source, dev.profile_name) if broker_source is not None else None
        for failure in (signing, served):
            if isinstance(failure, str):
                print(f"ivs-proxy dev: {failure}", file=sys.stderr)
                return 1
        assert not isinstance(signing, str) and not isinstance(served, str)
        if signing.expires_at is None and not dev.config.credentials.allow_long_lived_credentials:
            hint = f". With ivs-proxy dev: --role-arn ARN (a role profile {dev.profile_name} may assume)"
            raise ConfigError("credentials", LONG_LIVED_MESSAGE.format(source=signing.source) + hint)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    configure_logging(dev.config.log.level, dev.config.log.format)
    apps, broker = _apps(dev, env, broker_source, sockets)

    def banner() -> None:
        listen, admin_listen = (sock.getsockname()[:2] for sock in sockets[:2])
        print(startup_banner(dev, listen, admin_listen, signing, served, broker), flush=True)

    asyncio.run(_serve(list(zip(apps, sockets, strict=True)), dev.config.limits, banner))
    return 0


def _sources(dev: DevPlan, env: Mapping[str, str]) -> tuple[CredentialSource, CredentialSource | None]:
    """What the proxy signs with, and (with --serve-credentials) what the endpoint serves."""
    config = dev.config
    proxy_source, _ = credential_source_for(config, env)
    if dev.credentials_listen is None:
        return proxy_source, None
    assert config.credentials.role_arn is not None  # plan() saw to it
    broker_source = narrowed_role_source(
        credential_chain_session(dev.profile),
        config.credentials.role_arn,
        config.services,
        region=default_region(config.region, env, dev.profile),
        external_id=config.credentials.external_id,
    )
    return proxy_source, broker_source


def _bind_all(dev: DevPlan) -> list[socket.socket]:
    wanted = [(dev.listen, "listen"), (dev.admin_listen, "admin_listen")]
    if dev.credentials_listen is not None:
        wanted.append((dev.credentials_listen, "--credentials-listen"))
    sockets: list[socket.socket] = []
    try:
        for address, key in wanted:
            sockets.append(_bind(address, key))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _apps(
    dev: DevPlan, env: Mapping[str, str], broker_source: CredentialSource | None, sockets: Sequence[socket.socket]
) -> tuple[list[ServedApp], Broker | None]:
    proxy = build_proxy(dev.config, env)
    apps: list[ServedApp] = [proxy.data_app, proxy.admin_app]
    stores = [proxy.state.credentials]
    broker = None
    if broker_source is not None:
        broker = Broker(CredentialStore(broker_source, advice=what_to_do(dev.profile_name)), new_token(), *sockets[2].getsockname()[:2])
        apps.append(create_broker_app(broker))
        stores.append(broker.store)
    for store in stores:
        store.on_refresh.append(_login_hint(store, dev.profile_name))
    return apps, broker


def startup_banner(
    dev: DevPlan,
    listen: tuple[str, int],
    admin_listen: tuple[str, int],
    signing: CredentialSnapshot,
    served: CredentialSnapshot | None,
    broker: Broker | None,
) -> str:
    data = f"http://{url_host(*listen)}"
    lines = [
        f"ivs-proxy dev {__version__}: profile {dev.profile_name}, signing with {signing.source}",
        f"  IVS endpoint  {data}  (ivs-realtime: {data}/ivs-realtime, ivschat: {data}/ivschat)",
        f"  ready         http://{url_host(*admin_listen)}/readyz",
        f"  try           aws ivs list-channels --no-sign-request --endpoint-url {data}",
    ]
    if broker is not None and served is not None:
        actions = ", ".join(sorted({IAM_PREFIXES[s] + ":*" for s in dev.config.services}))
        lines += [
            "",
            f"Credentials for SDKs on this machine: {served.identity or served.source},",
            f"narrowed to {actions}, renewed before they expire.",
            "Paste into the shell that runs your app (the token is not shown again; SDKs use these",
            "only when no AWS_PROFILE or access keys are set there):",
            "",
            broker.export_lines(),
        ]
    return "\n".join(lines)


# -- credentials: the first fetch, and what to tell the developer when it fails -----------

_SSO_ERRORS = (botocore.exceptions.SSOError, botocore.exceptions.TokenRetrievalError)
_SSO_NAMES = ("SSOTokenLoadError", "UnauthorizedSSOTokenError", "TokenRetrievalError", "SSOError")
_LOGIN_NAMES = ("LoginRefreshRequired", "LoginTokenLoadError")


def _first_fetch(source: CredentialSource, profile: str) -> CredentialSnapshot | str:
    """The source's first answer, or a message saying what to do (never a traceback)."""
    try:
        return source.fetch()
    except Exception as exc:  # noqa: BLE001 - every provider failure becomes a message for a person
        return explain_failure(exc, profile)


def explain_failure(exc: BaseException, profile: str) -> str:
    names = {type(e).__name__ for e in _chain(exc)}
    text = str(exc)
    if any(isinstance(e, _SSO_ERRORS) for e in _chain(exc)) or any(n in text for n in _SSO_NAMES):
        return (
            f"the AWS SSO session of profile {profile} has expired or was never started.\n"
            f"Run:\n\n    aws sso login --profile {profile}\n\nthen start ivs-proxy dev again."
        )
    if names & set(_LOGIN_NAMES) or any(n in text for n in _LOGIN_NAMES):
        return (
            f"the AWS login session of profile {profile} has expired.\n"
            f"Run:\n\n    aws login --profile {profile}\n\nthen start ivs-proxy dev again."
        )
    return f"cannot get AWS credentials with profile {profile}: {text}"


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 10:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _login_hint(store: CredentialStore, profile: str) -> Callable[[str, float], None]:
    """After start-up, an SSO session can still run out (they last 8-12 h): say what to do."""

    def hint(outcome: str, _: float) -> None:
        error = store.status.last_error or ""
        if outcome == "failure" and any(n in error for n in _SSO_NAMES):
            log.error("sso_session_expired", fix=f"aws sso login --profile {profile}")

    return hint


# -- serving ------------------------------------------------------------------------------


def _bind(address: tuple[str, int], key: str) -> socket.socket:
    (sock,) = bind_listener(url_host(*address), key)  # a loopback IP: one socket
    return sock


async def _serve(sites: Sequence[tuple[ServedApp, socket.socket]], limits: LimitsConfig,
                 started: Callable[[], None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runners: list[PortRunner] = []
    try:
        for app, sock in sites:
            runners.append(await start_listener(app, [sock], limits))
        log.info("listening", addresses=[url_host(*sock.getsockname()[:2]) for _, sock in sites])
        started()
        await stop.wait()
        log.info("stopping")
    finally:
        for runner in reversed(runners):
            await runner.cleanup()

