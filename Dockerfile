# syntax=docker/dockerfile:1.7
#
# ivs-proxy container image.
#
#   docker build -t ivs-proxy:0.1.0 .
#
# Its built-in config is a sidecar's (below): the data port on loopback, for the app that
# shares its network namespace (a Kubernetes pod: deploy/kubernetes/sidecar; a laptop with
# host networking: deploy/compose). A gateway mounts its own config (mode: gateway, auth:
# deploy/kubernetes/gateway); the redis extra (redis.url) and the fast extra (uvloop: ~19 %
# fewer instructions per request, benchmarks/results.md) are installed.
#
# VERSION (the image label) must equal proxy/__init__.py's __version__, which is the wheel's
# and `ivs-proxy --version`'s: tests/unit/test_deploy.py checks it.
#
# Give `docker stop` at least 30 s (-t 30): a stopping proxy drains for up to 25 s
# (proxy/defaults.py). tests/e2e/test_image_install.py replays the build and the default
# command without a Docker engine; tests/unit/test_deploy.py lints this file with hadolint
# and runs `ivs-proxy check-config` on the built-in config.

ARG PYTHON_VERSION=3.11.14
ARG DEBIAN_RELEASE=bookworm

# -- build: wheels for ivs-proxy and every dependency ------------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# The dependencies first, exactly as requirements/runtime.txt pins them (`make lock`), each
# file checked against its hash: a build next month installs what the tests ran with, and
# this layer is rebuilt only when the pins change. With the fast extra (uvloop) and the
# redis extra: gateway replicas share rate limits and the replay window through Redis
# (redis.url). pip's download cache
# lives in a BuildKit cache mount: fast rebuilds, never in a layer.
COPY requirements/runtime.txt ./requirements/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --require-hashes --wheel-dir /wheels -r requirements/runtime.txt
# Then ivs-proxy itself.
COPY pyproject.toml README.md LICENSE ./
COPY proxy ./proxy
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# -- runtime: the wheels installed, nothing else added ----------------------------------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ivs-proxy" \
      org.opencontainers.image.description="Request-signing proxy for the Amazon IVS APIs (ivs, ivs-realtime, ivschat)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="docs/deploy.md"

# No .pyc written at run time (the root filesystem is read-only; pip compiled them at
# install), logs unbuffered, and a HOME that need not exist: botocore reads ~/.aws there
# when one is mounted (deploy/compose) and never needs to write it.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/ivs-proxy \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The wheels are bind-mounted from the build stage, so they never land in a layer; with no
# index, pip can install nothing but them: ivs-proxy and the pinned dependencies.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "ivs-proxy[redis,fast]==${VERSION}"

# A sidecar's config. `serve` refuses a non-loopback data listener in sidecar mode without
# caller authentication, so the data port is on loopback: a Kubernetes sidecar shares the
# pod's network namespace with its app, and a laptop container runs with host networking
# (deploy/compose). The admin port (/healthz, /readyz, /metrics; no IVS access) binds every
# interface, because kubelet probes and Prometheus connect to the pod IP. A gateway mounts
# its own config over this file (deploy/kubernetes/gateway).
COPY --chmod=0444 <<EOF /etc/ivs-proxy/config.yaml
listen: "127.0.0.1:8080"
admin_listen: "0.0.0.0:9901"
EOF

USER 10001:10001
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9901/healthz', timeout=2)"]
ENTRYPOINT ["ivs-proxy"]
CMD ["serve", "--config", "/etc/ivs-proxy/config.yaml"]
