"""The deployment files agree with the code and with each other, and are valid.

Dockerfile (hadolint), deploy/kubernetes (kubernetes-validate, strict schemas of
KUBERNETES_VERSIONS), deploy/compose. Ports come from the config defaults and timings from
proxy/defaults.py: the files repeat those numbers, these tests read them back.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy import __version__
from proxy.config import ProxyConfig, load_config, parse_host_port
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
    STARTUP_PROBE,
    Probe,
)
from tests.support.dockerfile import Dockerfile
from tests.support.inprocess import proxy_for
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


def mounted_config(objs: list[Obj], workload: Obj) -> ProxyConfig:
    """The proxy config the workload's container reads (`--config PATH` from a ConfigMap)."""
    container = proxy_container(workload)
    path = Path(container["args"][container["args"].index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent]
    (volume,) = [v for v in pod_spec(workload)["volumes"] if v["name"] == mount["name"]]
    configmap = one(objs, "ConfigMap", volume["configMap"]["name"])
    return config_from_text(configmap["data"][path.name])


def config_from_text(text: str) -> ProxyConfig:
    """What `ivs-proxy check-config` checks: the text as a config file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text)
        return load_config(path)


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def user_and_group() -> tuple[int, int]:
    user, _, group = DOCKERFILE.final.one("USER").args.partition(":")
    return int(user), int(group)


# -- defaults ---------------------------------------------------------------------------


def test_defaults_are_consistent() -> None:
    assert (DATA_PORT, ADMIN_PORT) == (8080, 9901)
    assert MIN_TERMINATION_GRACE_SECONDS > DRAIN_DELAY_SECONDS + DRAIN_TIMEOUT_SECONDS
    # Readiness must see the drain's 503 before the drain delay ends.
    assert READINESS_PROBE.gives_up_after_seconds + READINESS_PROBE.timeout_seconds <= DRAIN_DELAY_SECONDS
    assert STARTUP_PROBE.path == READINESS_PATH and LIVENESS_PROBE.path == LIVENESS_PATH


def test_probe_paths_are_admin_routes() -> None:
    admin = proxy_for("http://127.0.0.1:9").admin_app
    paths = {resource.canonical for resource in admin.router.resources()}
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
    assert "ivs-proxy==${VERSION}" in words
    text = " ".join(i.args for i in final.instructions).lower()
    for forbidden in ("apt-get", "gcc", "build-essential", "--from=build"):
        assert forbidden not in text
    assert final.env()["PYTHONDONTWRITEBYTECODE"] == "1"


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
    config_path = command[command.index("--config") + 1]
    (copy,) = [c for c in final.all("COPY") if c.words() == [config_path]]
    assert copy.heredoc is not None
    config = config_from_text(copy.heredoc)
    assert parse_host_port(config.listen)[1] == DATA_PORT
    assert parse_host_port(config.admin_listen)[1] == ADMIN_PORT


def test_oci_labels() -> None:
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z]+)="([^"]*)"', DOCKERFILE.final.one("LABEL").args))
    assert {"title", "description", "version", "revision", "licenses"} <= {k.rsplit(".", 1)[1] for k in labels}
    assert DOCKERFILE.expand(labels["org.opencontainers.image.version"], DOCKERFILE.final) == __version__
    license_text = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert labels["org.opencontainers.image.licenses"] == license_text


def test_dockerignore_admits_exactly_what_the_build_copies() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert lines[0] == "*"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {source.rstrip("/") for copy in DOCKERFILE.stage("build").all("COPY") for source in copy.words()[:-1]}
    assert admitted == copied


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
        assert pod_spec(workload)["terminationGracePeriodSeconds"] >= MIN_TERMINATION_GRACE_SECONDS


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
    assert parse_host_port(config.listen)[1] == DATA_PORT
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


def test_gateway_config_and_secret() -> None:
    objs = objects("gateway/irsa")
    text = one(objs, "ConfigMap")["data"]["config.yaml"]
    config_from_text(text)  # what `ivs-proxy check-config` checks: today's keys only
    assert "# mode: gateway" in text and "# auth:" in text  # the gateway-mode block, commented out
    secret = one(objs, "Secret")
    volumes = {v["name"]: v for v in pod_spec(one(objs, "Deployment"))["volumes"]}
    assert any(v.get("secret", {}).get("secretName") == secret["metadata"]["name"] for v in volumes.values())
    for value in secret["stringData"].values():  # placeholders only: comments, no material
        assert all(line.startswith("#") for line in value.splitlines())


# -- compose ------------------------------------------------------------------------------


def test_compose_for_local_development() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose" / "compose.yaml").read_text())
    (service,) = compose["services"].values()
    assert (REPO / "deploy" / "compose" / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == (
        REPO / "Dockerfile"
    )
    assert service["image"].endswith(f":{__version__}")
    published = {}
    for mapping in service["ports"]:
        host, host_port, container_port = mapping.split(":")
        assert host == "127.0.0.1"
        published[int(container_port)] = int(host_port)
    assert set(published) == {DATA_PORT, ADMIN_PORT}
    (volume,) = service["volumes"]
    assert volume["source"] == "${HOME}/.aws" and volume["read_only"] is True
    assert volume["target"] == DOCKERFILE.final.env()["HOME"] + "/.aws"
    assert service["environment"]["AWS_PROFILE"].startswith("${AWS_PROFILE")
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    user, group = user_and_group()
    assert service["user"] == f"${{IVS_PROXY_USER:-{user}:{group}}}"
    assert int(service["stop_grace_period"].rstrip("s")) >= MIN_TERMINATION_GRACE_SECONDS
    command = DOCKERFILE.final.one("CMD").exec_form()
    assert service["command"][: len(command)] == command


# -- docs ---------------------------------------------------------------------------------


def test_deploy_docs_have_the_three_paths_and_name_real_files() -> None:
    text = (REPO / "README.md").read_text() + (REPO / "docs" / "deploy.md").read_text()
    for heading in ("## Run it as a sidecar", "## Run it as a gateway", "## Use it on your laptop"):
        assert heading in text
    for path in set(re.findall(r"(?<![\w/.-])((?:deploy|proxy|config)/[\w./-]*\w)", text)):
        assert (REPO / path).exists(), path
