"""Where the proxy's credentials come from: botocore's chain, or a role the proxy assumes.

Each source's `fetch()` blocks (STS, IMDS, SSO, container endpoints); `CredentialStore`
in `credentials.py` calls it off the event loop and owns the schedule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import botocore.credentials
import botocore.session
import structlog
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.httpsession import URLLib3Session
from botocore.utils import get_environ_proxies

from proxy.aws.credentials import (
    CredentialSnapshot,
    CredentialSource,
    SourceFailed,
    parse_expiry,
    utc_now,
)
from proxy.aws.endpoints import Endpoint, EndpointTable
from proxy.aws.regions import botocore_session
from proxy.aws.signing import FrozenCredentials, SigV4Signer
from proxy.config import CredentialsConfig
from proxy.startup import return_freed_memory

log = structlog.get_logger("ivs_proxy.credentials")

#: IAM action prefix per served service: the IVS real-time API uses `ivs:` too.
IAM_PREFIXES = {"ivs": "ivs", "ivs-realtime": "ivs", "ivschat": "ivschat"}


class BotocoreChainSource:
    """botocore's standard chain: env, profiles, SSO, role profiles, web identity, container, IMDS.

    The chain is resolved once (retried until it finds something); each `fetch()` then
    calls the winning provider's own refresh function. Why not `get_frozen_credentials()`:
    botocore refreshes only inside its own windows (15 min advisory, 10 min mandatory
    before expiry), so a refresh we schedule earlier, or for a lifetime of seconds, would
    return the same set. `_refresh_using` is the provider's fetch itself (STS AssumeRole,
    the container endpoint, IMDS, SSO), and we clear the fetchers' cache (ours: we pass it
    to the resolver) so that cached assume-role and SSO answers are fetched anew too.
    (Providers that load eagerly, such as container, IMDS and credential_process, thus
    fetch twice at start-up: once while the chain is resolved, once for the snapshot.)
    """

    def __init__(self, session: botocore.session.Session, *, region: str | None = None) -> None:
        self._session = session
        self._region = region
        self._cache: dict[str, Any] = {}
        self._resolved: botocore.credentials.Credentials | None = None

    @property
    def name(self) -> str:
        method = self._resolved.method if self._resolved else None
        return method or f"the default credential chain (profile {self._session.profile or 'default'})"

    def fetch(self) -> CredentialSnapshot:
        try:
            credentials = self._resolve()
            refresh = getattr(credentials, "_refresh_using", None)
            if refresh is None:  # static keys: nothing to refresh
                static = credentials.get_frozen_credentials()
                keys = FrozenCredentials(static.access_key, static.secret_key, static.token)
                return CredentialSnapshot(keys, None, self.name)
            self._cache.clear()
            data = refresh()
        except SourceFailed:
            raise
        except Exception as exc:  # noqa: BLE001 (botocore raises many types; all mean "failed")
            raise SourceFailed(self.name, exc) from None
        frozen_set = FrozenCredentials(data["access_key"], data["secret_key"], data.get("token"))
        return CredentialSnapshot(frozen_set, parse_expiry(data["expiry_time"]), self.name)

    def _resolve(self) -> botocore.credentials.Credentials:
        if self._resolved is None:
            resolver = botocore.credentials.create_credential_resolver(
                self._session, cache=self._cache, region_name=self._region
            )
            found = resolver.load_credentials()
            if found is None:
                raise SourceFailed(
                    self.name,
                    "found no credentials (looked at the environment, shared config and credentials "
                    "files, SSO, web identity, container credentials and instance metadata)",
                )  # what to do is said by whoever reports it: credentials.what_to_do
            self._resolved = found
        return self._resolved


@dataclass(frozen=True, slots=True)
class RoleToAssume:
    arn: str
    session_name: str
    external_id: str | None
    duration_seconds: int
    policy: str | None  # a JSON session policy that narrows the role, or None


class AssumeRoleSource:
    """ivs-proxy assumes `role` itself with whatever the standard chain finds (aws-vault style).

    The base credentials may be long-lived: only the role's session credentials are used to
    sign, and they always expire. botocore keeps refreshable base credentials fresh itself.
    """

    def __init__(self, session: botocore.session.Session, role: RoleToAssume, *, region: str | None = None) -> None:
        self._session = session
        self._role = role
        self._region = region
        self._client: Any = None

    @property
    def name(self) -> str:
        return f"ivs-proxy assume-role {self._role.arn}"

    def fetch(self) -> CredentialSnapshot:
        role = self._role
        params: dict[str, Any] = {
            "RoleArn": role.arn,
            "RoleSessionName": role.session_name,
            "DurationSeconds": role.duration_seconds,
        }
        if role.external_id:
            params["ExternalId"] = role.external_id
        if role.policy:
            params["Policy"] = role.policy
        try:
            response = self._sts().assume_role(**params)
        except Exception as exc:  # noqa: BLE001 (botocore raises many types; all mean "failed")
            raise SourceFailed(self.name, exc) from None
        issued = response["Credentials"]
        return CredentialSnapshot(
            FrozenCredentials(issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"]),
            parse_expiry(issued["Expiration"]),
            self.name,
            response.get("AssumedRoleUser", {}).get("Arn"),
        )

    def _sts(self) -> Any:
        if self._client is None:
            base = self._session.get_credentials()
            if base is None:
                raise LookupError("the default credential chain found no credentials to assume the role with")
            self._client = self._session.create_client("sts", region_name=self._region, config=_STS_CONFIG)
        return self._client


# Bounded: a slow STS must fail an attempt (and let the backoff retry) well inside the lead.
_STS_CONFIG = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 2})


class CallerIdentity:
    """STS GetCallerIdentity with the given credentials, at the endpoint the SDK would use
    (AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL, the profile's `services`, FIPS and dual-stack
    honoured, as for the IVS endpoints); None on any failure.

    Not a botocore client: creating one reads all of botocore's endpoint data, ~60 ms of
    CPU and ~8 MiB that a long-running proxy would keep, for one small call per new key.
    The call is botocore's own transport (proxies from the environment, the SDK's CA bundle,
    bounded timeouts, one attempt) carrying a request signed like every other. Unlike a
    client, `sts_regional_endpoints = legacy` (AWS_STS_REGIONAL_ENDPOINTS) is not honoured:
    the regional endpoint gives the same answer as the global one. With no region at all,
    us-east-1 (what the SDK's global endpoint signs for) is used.
    """

    def __init__(self, env: Mapping[str, str], profile: str | None, region: str | None) -> None:
        self._env = env
        self._profile = profile
        self._region = region or "us-east-1"

    def __call__(self, credentials: FrozenCredentials) -> str | None:
        try:
            endpoint = EndpointTable.build(("sts",), {"sts": (self._region,)}, self._env, self._profile).lookup(
                "sts", self._region)
            status, body = self._send(endpoint, credentials)
            if status != 200:
                log.debug("credentials_identity_unknown", error=f"HTTP {status}")
                return None
            arn = ElementTree.fromstring(body).find("./{*}GetCallerIdentityResult/{*}Arn")
            return arn.text if arn is not None and arn.text else None
        except Exception as exc:  # noqa: BLE001 (best effort by design)
            log.debug("credentials_identity_unknown", error=type(exc).__name__)
            return None
        finally:
            return_freed_memory()  # the lookup's TLS and HTTP state: ~1 MiB otherwise kept

    def _send(self, endpoint: Endpoint, credentials: FrozenCredentials) -> tuple[int, bytes]:
        path = endpoint.base_path + "/"
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        signed = SigV4Signer().sign(
            method="POST", host=endpoint.host, path=path, query="", headers=headers, body=_GET_CALLER_IDENTITY,
            service=endpoint.signing_name, region=endpoint.signing_region, credentials=credentials, now=utc_now(),
        )
        url = endpoint.url_for("/")
        # What a client would verify with: the profile's or AWS_CA_BUNDLE, else REQUESTS_CA_BUNDLE,
        # else botocore's default bundle.
        ca_bundle = botocore_session(self._env, self._profile).get_config_variable("ca_bundle")
        http = URLLib3Session(verify=ca_bundle or self._env.get("REQUESTS_CA_BUNDLE", True),
                              proxies=get_environ_proxies(url), timeout=(2, 3))
        try:
            request = AWSRequest("POST", url, headers={**headers, **dict(signed.items())}, data=_GET_CALLER_IDENTITY)
            response = http.send(request.prepare())
            return response.status_code, response.content
        finally:
            http.close()


#: The query-protocol body botocore sends for GetCallerIdentity (no parameters).
_GET_CALLER_IDENTITY = b"Action=GetCallerIdentity&Version=2011-06-15"


def served_services_policy(services: Iterable[str], own_actions: Iterable[str] = ()) -> str:
    """A session policy allowing only the IAM actions of the services this proxy serves,
    and `own_actions`, those of its own calls (kms:Sign for KMS-held token keys, the SQS
    calls of the IVS events queue)."""
    actions = sorted({f"{IAM_PREFIXES[s]}:*" for s in services} | set(own_actions))
    statement = {"Effect": "Allow", "Action": actions, "Resource": "*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, separators=(",", ":"))


def source_from_config(
    settings: CredentialsConfig,
    session: botocore.session.Session,
    *,
    region: str | None,
    services: Iterable[str],
    own_actions: Iterable[str] = (),
) -> CredentialSource:
    if settings.role_arn is None:
        return BotocoreChainSource(session, region=region)
    policy: str | None
    if settings.session_policy == "served-services":
        policy = served_services_policy(services, own_actions)
    elif settings.session_policy == "none":
        policy = None
    else:
        policy = settings.session_policy
    role = RoleToAssume(
        settings.role_arn, settings.role_session_name, settings.external_id, settings.duration_seconds, policy
    )
    return AssumeRoleSource(session, role, region=region)
