"""The deployment files agree with the code and with each other, and are valid.

Dockerfile (hadolint), deploy/kubernetes (kubernetes-validate, strict schemas of
KUBERNETES_VERSIONS), deploy/compose. Ports come from the config defaults and timings from
proxy/defaults.py: the files repeat those numbers, these tests read them back. Every config
shipped passes `ivs-proxy check-config` (exposure rule included), and the gateway is built
from its ConfigMap and Secret as `serve` builds it, and answers its example callers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import re
import secrets
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy import __version__
from proxy.app import build_proxy
from proxy.cli import _config as cli_config
from proxy.cli import _parser as cli_parser
from proxy.cli import main as cli_main
from proxy.config import ProxyConfig, check_exposure, is_loopback, load_config, parse_host_port
from proxy.defaults import (
    ADMIN_PORT,
    DATA_PORT,
    DRAIN_DELAY_SECONDS,
    DRAIN_TIMEOUT_SECONDS,
    LIVENESS_PATH,
    LIVENESS_PROBE,
    METRICS_PATH,
    MIN_TERMINATION_GRACE_SECONDS,
    READINESS_PATH,
    READINESS_PROBE,
    SHUTDOWN_MARGIN_SECONDS,
    STARTUP_PROBE,
    Probe,
)
from proxy.errors import ConfigError
from tests.support.dockerfile import Dockerfile
from tests.support.gateway import Team, sign
from tests.support.inprocess import StaticSource, proxy_for
from tests.support.kustomize import files_used, render, validate

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
#: 1.29: the first release with native sidecars (init containers with restartPolicy:
#: Always) on by default; 1.33: where they are GA.
KUBERNETES_VERSIONS = ("1.29", "1.33")
VARIANTS = ("sidecar/irsa", "sidecar/pod-identity", "gateway/irsa", "gateway/pod-identity")
DOCKERFILE = Dockerfile.read(REPO / "Dockerfile")
IMAGE = f"registry.example.com/ivs-proxy:{__version__}"

Obj = dict[str, Any]


def objects(variant: str) -> list[Obj]:
    return [obj for _, obj in render(KUBERNETES / variant)]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    (found,) = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return found


def pod_spec(workload: Obj) -> Obj:
    return workload["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def proxy_container(workload: Obj) -> Obj:
    spec = pod_spec(workload)
    (found,) = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "ivs-proxy"]
    return found


def probe(spec: Probe) -> Obj:
    return {
        "httpGet": {"path": spec.path, "port": "admin"},
        "periodSeconds": spec.period_seconds,
        "timeoutSeconds": spec.timeout_seconds,
        "failureThreshold": spec.failure_threshold,
    }


def mounted_config_text(objs: list[Obj], workload: Obj) -> str:
    """The proxy config file the workload's container reads (`--config PATH` from a ConfigMap)."""
    container = proxy_container(workload)
    path = Path(container["args"][container["args"].index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent]
    (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
    configmap = one(objs, "ConfigMap", volume["configMap"]["name"])
    return configmap["data"][path.name]  # type: ignore[no-any-return]


def mounted_config(objs: list[Obj], workload: Obj) -> ProxyConfig:
    container = proxy_container(workload)
    return command_config(container["args"], mounted_config_text(objs, workload))


def check_config(path: Path) -> tuple[int, str]:
    """`ivs-proxy check-config PATH` (its code, in this process): exit code and output."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        code = cli_main(["check-config", str(path)])
    return code, output.getvalue()


def command_config(command: list[str], config_text: str) -> ProxyConfig:
    """The config `ivs-proxy <command>` serves with, `--config` holding `config_text`: the
    file and the command's flags, checked as `serve` checks them (exposure included)."""
    args = list(command)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(config_text)
        args[args.index("--config") + 1] = str(path)
        config = cli_config(cli_parser().parse_args(args))
    check_exposure(config)
    return config


def drain_seconds(config: ProxyConfig) -> int:
    """SIGTERM to exit, at most, with this config's `shutdown:` (proxy/defaults.py's sum)."""
    shutdown = config.shutdown
    return math.ceil(shutdown.drain_delay_seconds) + math.ceil(shutdown.drain_timeout_seconds) + SHUTDOWN_MARGIN_SECONDS


def image_config_text() -> str:
    """The built-in config the image's default command names."""
    command = DOCKERFILE.final.one("CMD").exec_form()
    path = command[command.index("--config") + 1]
    (copy,) = [c for c in DOCKERFILE.final.all("COPY") if c.words() == [path]]
    assert copy.heredoc is not None
    return copy.heredoc


def embedded_configs() -> dict[str, str]:
    """Every proxy config this repository ships, by where it is: the Dockerfile's heredocs,
    every ConfigMap under deploy/ (each data key is a config file) and config/*.yaml."""
    found = {f"Dockerfile:{c.words()[-1]}": c.heredoc for s in DOCKERFILE.stages for c in s.all("COPY") if c.heredoc}
    for path in sorted((REPO / "deploy").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
                for key, text in doc["data"].items():
                    found[f"{path.relative_to(REPO)}:{key}"] = text
    for path in sorted((REPO / "config").glob("*.yaml")):
        found[str(path.relative_to(REPO))] = path.read_text()
    return found


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def user_and_group() -> tuple[int, int]:
    user, _, group = DOCKERFILE.final.one("USER").args.partition(":")
    return int(user), int(group)


# -- defaults ---------------------------------------------------------------------------


def test_defaults_are_consistent() -> None:
    assert (DATA_PORT, ADMIN_PORT) == (8080, 9901)
    assert MIN_TERMINATION_GRACE_SECONDS > DRAIN_DELAY_SECONDS + DRAIN_TIMEOUT_SECONDS
    assert drain_seconds(ProxyConfig()) == MIN_TERMINATION_GRACE_SECONDS  # one formula, the config's defaults
    # Readiness must see the drain's 503 before the drain delay ends.
    assert READINESS_PROBE.gives_up_after_seconds + READINESS_PROBE.timeout_seconds <= DRAIN_DELAY_SECONDS
    assert STARTUP_PROBE.path == READINESS_PATH and LIVENESS_PROBE.path == LIVENESS_PATH


def test_probe_paths_are_admin_routes() -> None:
    admin = proxy_for("http://127.0.0.1:9").admin_app
    paths = set(admin.routes)
    assert {LIVENESS_PATH, READINESS_PATH, METRICS_PATH} <= paths


# -- Dockerfile ---------------------------------------------------------------------------


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run(
        [str(hadolint), "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_slim_python_pinned_to_a_patch_release() -> None:
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    floor = re.fullmatch(r">=(\d+\.\d+)", requires)
    assert floor is not None
    bases = {DOCKERFILE.expand(stage.base, stage) for stage in DOCKERFILE.stages}
    (base,) = bases  # build and runtime on the same Python
    assert re.fullmatch(rf"python:{re.escape(floor[1])}\.\d+-slim-[a-z]+", base), base


def test_multi_stage_wheels_built_first_and_nothing_else_in_the_final_image() -> None:
    assert len(DOCKERFILE.stages) == 2 and DOCKERFILE.stages[0].name == "build"
    build_run = " ".join(r.args for r in DOCKERFILE.stage("build").all("RUN"))
    assert "pip wheel" in build_run and "--wheel-dir /wheels" in build_run
    final = DOCKERFILE.final
    (install,) = final.all("RUN")
    assert "from=build" in install.flags()["mount"]  # bind-mounted: the wheels are in no layer
    words = install.words()
    assert words[:2] == ["pip", "install"] and "--no-cache-dir" in words and "--no-index" in words
    assert "ivs-proxy[redis,fast]==${VERSION}" in words
    text = " ".join(i.args for i in final.instructions).lower()
    for forbidden in ("apt-get", "gcc", "build-essential", "--from=build"):
        assert forbidden not in text
    assert final.env()["PYTHONDONTWRITEBYTECODE"] == "1"


def test_the_image_has_the_redis_extra_for_gateways_with_redis_url_and_uvloop() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("redis") for r in extras["redis"])
    assert any(r.startswith("uvloop") for r in extras["fast"])  # ~19 % fewer instructions per request
    # The build stage makes the wheels of the pinned set, which has the extra's (checked
    # against pyproject.toml by tests/unit/test_packaging.py), then ivs-proxy's alone.
    dependencies, itself = DOCKERFILE.stage("build").all("RUN")
    assert dependencies.words()[:2] == ["pip", "wheel"] and "--require-hashes" in dependencies.words()
    assert dependencies.words()[-2:] == ["-r", "requirements/runtime.txt"]
    assert itself.words()[:2] == ["pip", "wheel"] and "--no-deps" in itself.words() and itself.words()[-1] == "."
    (install,) = DOCKERFILE.final.all("RUN")
    assert re.fullmatch(r"ivs-proxy\[redis,fast\]==\$\{VERSION\}", install.words()[-1])


def test_non_root_numeric_user() -> None:
    user, group = user_and_group()
    assert user >= 10000 and group >= 10000


def test_ports_healthcheck_entrypoint_and_default_command() -> None:
    final = DOCKERFILE.final
    assert {int(p) for p in final.one("EXPOSE").args.split()} == {DATA_PORT, ADMIN_PORT}
    healthcheck = " ".join(final.one("HEALTHCHECK").exec_form())
    assert f"http://127.0.0.1:{ADMIN_PORT}{LIVENESS_PATH}" in healthcheck
    assert final.one("ENTRYPOINT").exec_form() == ["ivs-proxy"]
    command = final.one("CMD").exec_form()
    assert command[0] == "serve"


def test_the_default_command_serves_a_sidecar_config_that_serve_accepts() -> None:
    # Sidecar mode without authentication: `serve` refuses a non-loopback data listener
    # (command_config checks as it does). The data port on loopback, for the app sharing
    # the network namespace; the admin port on every interface, for kubelet probes.
    config = command_config(DOCKERFILE.final.one("CMD").exec_form(), image_config_text())
    assert config.mode == "sidecar" and not config.auth.configured
    assert parse_host_port(config.listen) == ("127.0.0.1", DATA_PORT)
    assert parse_host_port(config.admin_listen, "admin_listen") == ("0.0.0.0", ADMIN_PORT)


def test_oci_labels() -> None:
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', DOCKERFILE.final.one("LABEL").args))
    assert {"title", "description", "version", "revision", "licenses"} <= {k.rsplit(".", 1)[1] for k in labels}
    assert DOCKERFILE.expand(labels["org.opencontainers.image.version"], DOCKERFILE.final) == __version__
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.licenses"] == project["license"]
    assert all((REPO / name).is_file() for name in project["license-files"])


def test_one_version_for_the_wheel_the_cli_and_the_image() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    # The wheel's version is read from proxy/__init__.py, as --version prints it.
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "proxy.__version__"}
    label = dict(re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', DOCKERFILE.final.one("LABEL").args))
    assert DOCKERFILE.expand(label["org.opencontainers.image.version"], DOCKERFILE.final) == __version__
    result = subprocess.run([str(Path(sys.executable).with_name("ivs-proxy")), "--version"], capture_output=True,
                            text=True, timeout=60, check=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert result.stdout.split()[:2] == ["ivs-proxy", __version__]
    # The CHANGELOG's newest release is this version.
    releases = re.findall(r"^## \[(\d[^\]]*)\]", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert releases[0] == __version__


def test_dockerignore_admits_exactly_what_the_build_copies() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {source.rstrip("/") for copy in DOCKERFILE.stage("build").all("COPY") for source in copy.words()[:-1]}
    assert admitted == copied


# -- every shipped config ---------------------------------------------------------------


EMBEDDED_CONFIGS = embedded_configs()


def test_the_shipped_configs_are_all_found() -> None:
    where = set(EMBEDDED_CONFIGS)
    assert "Dockerfile:/etc/ivs-proxy/config.yaml" in where
    assert {"deploy/kubernetes/sidecar/base/configmap.yaml:config.yaml",
            "deploy/kubernetes/gateway/base/configmap.yaml:config.yaml"} <= where
    assert {"config/gateway.yaml", "config/reference.yaml", "config/sidecar.yaml"} <= where


@pytest.mark.parametrize("where", sorted(EMBEDDED_CONFIGS))
def test_every_shipped_config_passes_check_config(where: str, tmp_path: Path) -> None:
    # check-config reads only the config file (secret and certificate files are read by
    # `serve`), and checks what `serve` checks before it binds: keys, values, exposure.
    path = tmp_path / "config.yaml"
    path.write_text(EMBEDDED_CONFIGS[where])
    code, output = check_config(path)
    assert code == 0, f"{where}: {output}"


# -- Kubernetes ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_validates(variant: str, version: str) -> None:
    objs = objects(variant)
    assert objs
    for obj in objs:
        validate(obj, version)


def test_every_manifest_file_is_used_by_a_variant() -> None:
    used = set().union(*(files_used(KUBERNETES / v) for v in VARIANTS))
    assert set(KUBERNETES.rglob("*.yaml")) == used


@pytest.mark.parametrize("variant", VARIANTS)
def test_hardened_proxy_container_from_this_image(variant: str) -> None:
    user, group = user_and_group()
    for workload in [o for o in objects(variant) if o["kind"] in ("Deployment", "Job")]:
        container = proxy_container(workload)
        assert container["image"] == IMAGE
        assert container["args"] == DOCKERFILE.final.one("CMD").exec_form()
        assert container["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": user,
            "runAsGroup": group,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
        assert pod_spec(workload)["securityContext"]["fsGroup"] == group  # role token readable
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
        assert {p["name"]: p["containerPort"] for p in container["ports"]}["admin"] == ADMIN_PORT
        assert container["livenessProbe"] == probe(LIVENESS_PROBE)
        assert container["readinessProbe"] == probe(READINESS_PROBE)


@pytest.mark.parametrize("variant", VARIANTS)
def test_termination_grace_covers_the_drain_of_the_mounted_config(variant: str) -> None:
    objs = objects(variant)
    for workload in [o for o in objs if o["kind"] in ("Deployment", "Job")]:
        grace = pod_spec(workload)["terminationGracePeriodSeconds"]
        assert grace >= MIN_TERMINATION_GRACE_SECONDS
        # A config that lengthens shutdown.* needs a longer grace period with it.
        assert grace >= drain_seconds(mounted_config(objs, workload))
        # No preStop hook: the drain delay is the proxy's own wait for endpoints to catch
        # up, and a hook's time would come out of the same grace period.
        assert "lifecycle" not in proxy_container(workload)


@pytest.mark.parametrize("variant", ["sidecar/irsa", "sidecar/pod-identity"])
def test_sidecar_is_native_loopback_and_matches_the_defaults(variant: str) -> None:
    objs = objects(variant)
    workloads = [o for o in objs if o["kind"] in ("Deployment", "Job")]
    assert {w["kind"] for w in workloads} == {"Deployment", "Job"}
    assert proxy_container(workloads[0]) == proxy_container(workloads[1])  # one sidecar, two copies
    for workload in workloads:
        spec = pod_spec(workload)
        container = proxy_container(workload)
        assert container in spec["initContainers"] and container["restartPolicy"] == "Always"
        assert container["startupProbe"] == probe(STARTUP_PROBE)
        config = mounted_config(objs, workload)
        assert parse_host_port(config.listen) == ("127.0.0.1", DATA_PORT)
        assert parse_host_port(config.admin_listen, "admin_listen")[1] == ADMIN_PORT
        apps = [c["name"] for c in spec["containers"]]
        # The EKS webhook gives role credentials to the proxy only.
        assert workload["spec"]["template"]["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"] == ",".join(apps)
        for app in spec["containers"]:
            env = {e["name"]: e["value"] for e in app["env"]}
            assert env["AWS_ENDPOINT_URL_IVS"] == f"http://127.0.0.1:{DATA_PORT}"
            assert "securityContext" in app
        one(objs, "ServiceAccount", spec["serviceAccountName"])


@pytest.mark.parametrize("kind", ["sidecar", "gateway"])
def test_service_account_variants(kind: str) -> None:
    irsa = one(objects(f"{kind}/irsa"), "ServiceAccount")
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/.+", irsa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
    pod_identity = one(objects(f"{kind}/pod-identity"), "ServiceAccount")
    assert "annotations" not in pod_identity["metadata"]
    assert irsa["metadata"]["name"] == pod_identity["metadata"]["name"]


def test_gateway_is_highly_available_and_matches_the_defaults() -> None:
    objs = objects("gateway/irsa")
    deployment = one(objs, "Deployment")
    spec = pod_spec(deployment)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert matches(deployment["spec"]["selector"]["matchLabels"], labels)
    assert deployment["spec"]["replicas"] >= 2
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert anti["topologyKey"] == "kubernetes.io/hostname" and matches(anti["labelSelector"]["matchLabels"], labels)
    assert spec["terminationGracePeriodSeconds"] == MIN_TERMINATION_GRACE_SECONDS
    container = proxy_container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": DATA_PORT, "admin": ADMIN_PORT}
    config = mounted_config(objs, deployment)
    assert config.mode == "gateway" and config.auth.configured
    assert parse_host_port(config.listen) == ("0.0.0.0", DATA_PORT)
    assert parse_host_port(config.admin_listen, "admin_listen")[1] == ADMIN_PORT

    hpa = one(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ivs-proxy"}
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = one(objs, "PodDisruptionBudget")
    assert matches(pdb["spec"]["selector"]["matchLabels"], labels) and pdb["spec"]["maxUnavailable"] == 1

    service = one(objs, "Service")
    assert matches(service["spec"]["selector"], labels)
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    monitor = one(objs, "ServiceMonitor")
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == METRICS_PATH


def test_gateway_network_policy_admits_only_labelled_caller_namespaces() -> None:
    objs = objects("gateway/irsa")
    policy = one(objs, "NetworkPolicy")
    labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert matches(policy["spec"]["podSelector"]["matchLabels"], labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    by_port = {rule["ports"][0]["port"]: rule["from"] for rule in policy["spec"]["ingress"]}
    assert by_port["http"] == [{"namespaceSelector": {"matchLabels": {"ivs-proxy/caller": "true"}}}]
    assert set(by_port) == {"http", "admin"}
    for sources in by_port.values():  # namespaces chosen by label, never "from anywhere"
        assert sources and all(set(s) == {"namespaceSelector"} and s["namespaceSelector"]["matchLabels"] for s in sources)


def secret_files(config: ProxyConfig) -> list[str]:
    """Every file a config names that `serve` reads at start-up (or on SIGHUP)."""
    names = [config.auth.bearer.tokens_file, *(k.secret_file for k in config.auth.sigv4.keys),
             config.redis.password_file, config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file]
    return [name for name in names if name is not None]


def secret_volumes(objs: list[Obj], workload: Obj) -> dict[str, Obj]:
    """mountPath -> the Secret mounted there (from the rendered objects)."""
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    found = {}
    for mount in proxy_container(workload)["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret is not None:
            assert "items" not in secret, "keys are files under their own names"
            found[mount["mountPath"]] = one(objs, "Secret", secret["secretName"])
    return found


def gateway_with_files(text: str, files: dict[str, dict[str, str]], tmp: Path, upstream: str | None = None) -> Any:
    """Build the gateway as `serve` does, its Secret mounts (mountPath -> key -> content)
    written under `tmp` and the config pointed at them."""
    for n, (mount_path, keys) in enumerate(sorted(files.items())):
        directory = tmp / f"mount{n}"
        directory.mkdir()
        for key, content in keys.items():
            (directory / key).write_text(content)
        text = text.replace(f"{mount_path.rstrip('/')}/", f"{directory}/")
    path = tmp / "config.yaml"
    path.write_text(text)
    env = {"AWS_REGION": "us-west-2", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    if upstream is not None:
        env["AWS_ENDPOINT_URL"] = upstream
    return build_proxy(load_config(path), env, credential_source=StaticSource())


def test_gateway_config_names_only_files_of_its_mounted_secret() -> None:
    objs = objects("gateway/irsa")
    deployment = one(objs, "Deployment")
    config = mounted_config(objs, deployment)
    mounts = secret_volumes(objs, deployment)
    named = secret_files(config)
    assert named
    for name in named:
        path = Path(name)
        assert str(path.parent) in mounts, f"{name}: no Secret is mounted at {path.parent}"
        assert path.name in mounts[str(path.parent)]["stringData"], f"{name}: not a key of the Secret"
    # Every Secret key is a file the config names: no forgotten credentials.
    keys = {f"{mount}/{key}" for mount, secret in mounts.items() for key in secret["stringData"]}
    assert keys == set(named)
    assert {v.get("secret", {}).get("defaultMode") for v in pod_spec(deployment)["volumes"] if "secret" in v} == {0o440}


def test_gateway_secret_holds_placeholders_the_gateway_refuses_to_start_with(tmp_path: Path) -> None:
    objs = objects("gateway/irsa")
    deployment = one(objs, "Deployment")
    mounts = secret_volumes(objs, deployment)
    for secret in mounts.values():  # no material: empty, or comment lines only
        for value in secret["stringData"].values():
            assert all(line.startswith("#") for line in value.splitlines())
    placeholders = {mount: dict(secret["stringData"]) for mount, secret in mounts.items()}
    with pytest.raises(ConfigError) as refused:
        gateway_with_files(mounted_config_text(objs, deployment), placeholders, tmp_path)
    assert refused.value.key.startswith("auth.sigv4.keys")


def real_secret_files(objs: list[Obj], deployment: Obj) -> tuple[dict[str, dict[str, str]], Team, str]:
    """What secret.yaml tells the operator to create: video-team's internal key secret and
    the digest of chat-team's bearer token. Also video-team's key and chat-team's token."""
    (mount,) = secret_volumes(objs, deployment)
    video = Team("video-team", "GWVIDEOTEAM000000001", secrets.token_urlsafe(30), token="")
    chat_token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(chat_token.encode()).hexdigest()
    files = {mount: {"video-team": video.secret + "\n", "token-digests.yaml": f"chat-team: [{digest}]\n"}}
    return files, video, chat_token


def test_gateway_starts_with_real_secrets_and_every_caller_has_a_policy(tmp_path: Path) -> None:
    objs = objects("gateway/irsa")
    deployment = one(objs, "Deployment")
    config = mounted_config(objs, deployment)
    assert set(config.policy.callers) == {"video-team", "chat-team"}
    assert config.rate_limits.defaults == "ivs-quotas"
    assert config.redis.url is None  # optional, commented out
    files, _, _ = real_secret_files(objs, deployment)
    proxy = gateway_with_files(mounted_config_text(objs, deployment), files, tmp_path)  # as `serve`, before binding
    assert proxy.authenticator is not None
    assert proxy.authenticator.callers == set(config.policy.callers)


async def test_the_gateway_answers_its_example_callers_as_the_readme_says(  # type: ignore[no-untyped-def]
    tmp_path: Path, aiohttp_client, recording
) -> None:
    objs = objects("gateway/irsa")
    deployment = one(objs, "Deployment")
    files, video, chat_token = real_secret_files(objs, deployment)
    upstream, server = recording
    proxy = gateway_with_files(mounted_config_text(objs, deployment), files, tmp_path, str(server.make_url("")).rstrip("/"))
    client = await aiohttp_client(proxy.data_app)
    json_body = {"Content-Type": "application/json"}
    # docs/running-a-gateway.md, step 5: curl with chat-team's bearer token; and without.
    curl = {**json_body, "Accept": "*/*", "User-Agent": "curl/8.11.1", "Authorization": f"Bearer {chat_token}"}
    assert (await client.post("/ListChannels", data=b"{}", headers=curl)).status == 200
    assert (await client.post("/ListChannels", data=b"{}", headers=json_body)).status == 401
    # video-team, as an SDK with its internal key: PutMetadata on its channel, nothing else.
    arn = "arn:aws:ivs:us-west-2:123456789012:channel/VideoMain001"
    put = b'{"channelArn": "%s", "metadata": "slide=3"}' % arn.encode()
    signed = sign("POST", str(client.make_url("/PutMetadata")), put, video)
    assert (await client.post("/PutMetadata", data=put, headers=signed)).status == 200
    get = b'{"arn": "%s"}' % arn.encode()
    signed = sign("POST", str(client.make_url("/GetChannel")), get, video)
    assert (await client.post("/GetChannel", data=get, headers=signed)).status == 403
    assert [r.raw_path for r in upstream.received] == ["/ListChannels", "/PutMetadata"]
    assert all(r.signature_valid for r in upstream.received)  # re-signed with the gateway's own


# -- compose ------------------------------------------------------------------------------


def test_compose_for_local_development() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose" / "compose.yaml").read_text())
    (service,) = compose["services"].values()
    assert (REPO / "deploy" / "compose" / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == (
        REPO / "Dockerfile"
    )
    assert service["image"].endswith(f":{__version__}")
    (volume,) = service["volumes"]
    assert volume["source"] == "${HOME}/.aws" and volume["read_only"] is True
    assert volume["target"] == DOCKERFILE.final.env()["HOME"] + "/.aws"
    assert service["environment"]["AWS_PROFILE"].startswith("${AWS_PROFILE")
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    user, group = user_and_group()
    assert service["user"] == f"${{IVS_PROXY_USER:-{user}:{group}}}"
    command = DOCKERFILE.final.one("CMD").exec_form()
    assert service["command"][: len(command)] == command


def test_compose_serves_on_the_hosts_loopback_only() -> None:
    (service,) = yaml.safe_load((REPO / "deploy" / "compose" / "compose.yaml").read_text())["services"].values()
    # The image's data port is on the container's loopback, which no published port
    # reaches: the container shares the host's network, and publishes nothing.
    assert service["network_mode"] == "host" and "ports" not in service
    config = command_config(service["command"], image_config_text())  # as `serve` checks it
    assert parse_host_port(config.listen) == ("127.0.0.1", DATA_PORT)
    assert parse_host_port(config.admin_listen, "admin_listen") == ("127.0.0.1", ADMIN_PORT)
    for address in (config.listen, config.admin_listen):
        assert is_loopback(parse_host_port(address)[0])
    grace = int(service["stop_grace_period"].removesuffix("s"))
    assert grace >= drain_seconds(config) and grace >= MIN_TERMINATION_GRACE_SECONDS


# -- docs ---------------------------------------------------------------------------------


def test_deploy_docs_have_the_three_paths() -> None:
    # That the files they name exist: tests/unit/test_docs.py, for every doc.
    text = "".join((REPO / "docs" / name).read_text() for name in ("sidecar.md", "running-a-gateway.md", "laptop.md"))
    for heading in ("## Run it as a sidecar", "## Run it as a gateway", "## Use it on your laptop"):
        assert heading in text
