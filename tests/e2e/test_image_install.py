"""The container image's build and start, replayed without a Docker engine.

Every step is read from the Dockerfile and run as written, with the image's absolute paths
mapped under a temporary directory (`/wheels` -> `<root>/wheels`):

* build stage: its COPY sources copied into its WORKDIR, its RUN (`pip wheel`) run there;
* final stage: a fresh, empty virtualenv stands in for the base image's Python, and its
  RUN (`pip install` with no index, from the build stage's wheels) runs with no pip
  configuration but the Dockerfile's ENV, so a wheel missing from the build stage fails
  here as it would in `docker build`; its COPY heredoc is written;
* then the installed `ivs-proxy check-config` accepts the built-in config (exposure rule
  included), the redis extra imports, and ENTRYPOINT + CMD start with the image's ENV (a
  HOME that does not exist, no AWS credentials), the HEALTHCHECK command runs against it,
  SIGTERM stops it with exit 0, and nothing was written into the installed files or the
  image root (read-only root filesystem).

Only the listen addresses differ from the image (tests bind 127.0.0.1 and free ports), and
`--drain-delay 0` skips the drain's wait for load balancers: the drain itself still runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.defaults import ADMIN_PORT, DRAIN_TIMEOUT_SECONDS, LIVENESS_PATH, SHUTDOWN_MARGIN_SECONDS
from tests.support.dockerfile import Dockerfile, Instruction, Stage
from tests.support.net import free_port, wait_for_http

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = Dockerfile.read(REPO / "Dockerfile")


class Image:
    """The image's filesystem, mapped under `root`; its Python is a fresh virtualenv."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.venv = root / "venv"
        self.bin = self.venv / "bin"

    def path(self, image_path: str) -> Path:
        assert image_path.startswith("/"), image_path
        return self.root / image_path.lstrip("/")

    def map_word(self, word: str) -> str:
        """An argument naming an absolute image path (alone or as `--opt=/path`), mapped."""
        if word.startswith("/"):
            return str(self.path(word))
        name, sep, value = word.partition("=")
        if sep and name.startswith("--") and value.startswith("/"):
            return f"{name}={self.path(value)}"
        return word

    def run_step(self, stage: Stage, instruction: Instruction, pip: list[str], env: dict[str, str], cwd: Path) -> None:
        words = [DOCKERFILE.expand(w, stage) for w in instruction.words()]
        assert not {"&&", "||", ";", "|"} & set(words), f"replay runs simple commands only: {instruction}"
        assert words[0] == "pip", f"replay knows pip steps only: {instruction}"
        command = pip + [self.map_word(w) for w in words[1:]]
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False)
        assert result.returncode == 0, f"{instruction.args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def build_stage(image: Image) -> None:
    stage = DOCKERFILE.stages[0]
    workdir = image.path(stage.one("WORKDIR").args)
    workdir.mkdir(parents=True)
    for copy in stage.all("COPY"):
        *sources, target = copy.words()
        destination = workdir / target
        for source in sources:
            origin = REPO / source
            if origin.is_dir():
                shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, destination / origin.name)
    # The build image's pip, with this machine's package index settings.
    env = {**os.environ, **stage.env()}
    for run in stage.all("RUN"):
        image.run_step(stage, run, [sys.executable, "-m", "pip"], env, workdir)


def final_stage(image: Image) -> None:
    stage = DOCKERFILE.final
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(image.venv)], check=True, timeout=60)
    # No pip configuration at all but the image's ENV: only the wheels the build stage made.
    env = {"PATH": f"{image.bin}:/usr/bin:/bin", "PIP_CONFIG_FILE": os.devnull, **stage.env()}
    env["HOME"] = str(image.path(env["HOME"]))
    for run in stage.all("RUN"):
        mount = run.flags().get("mount", "")
        assert "from=build" in mount and "target=/wheels" in mount, run
        image.run_step(stage, run, [sys.executable, "-m", "pip", "--python", str(image.bin / "python")], env, image.root)
    for copy in stage.all("COPY"):
        assert copy.heredoc is not None, f"the final stage copies nothing but its config: {copy}"
        (target,) = copy.words()
        image.path(target).parent.mkdir(parents=True)
        image.path(target).write_text(copy.heredoc)
        image.path(target).chmod(int(copy.flags()["chmod"], 8))


def runtime_env(image: Image) -> dict[str, str]:
    env = {**DOCKERFILE.final.env(), "PATH": f"{image.bin}:/usr/bin:/bin"}
    env["HOME"] = str(image.path(env["HOME"]))
    # What a container on a laptop has: no credentials. No instance metadata either, so
    # that nothing here reaches for an address off this machine.
    env.update(AWS_REGION="us-west-2", AWS_EC2_METADATA_DISABLED="true")
    return env


def entrypoint(image: Image, *args: str) -> list[str]:
    (program, *rest) = DOCKERFILE.final.one("ENTRYPOINT").exec_form()
    return [str(image.bin / program), *rest, *args]


def files(*roots: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for root in roots for p in root.rglob("*")}


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    image = Image(tmp_path_factory.mktemp("image"))
    build_stage(image)
    final_stage(image)
    return image


def test_the_installed_image_reports_its_version(image: Image) -> None:
    version = DOCKERFILE.stage_args(DOCKERFILE.final)["VERSION"]
    result = subprocess.run(
        entrypoint(image, "--version"), env=runtime_env(image), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"ivs-proxy {version} ")


def test_the_installed_check_config_accepts_the_built_in_config(image: Image) -> None:
    command = DOCKERFILE.final.one("CMD").exec_form()
    assert command == ["serve", "--config", command[2]]  # the file alone decides what serve checks
    result = subprocess.run(
        entrypoint(image, "check-config", image.map_word(command[2])),
        env=runtime_env(image), capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_image_has_the_redis_client_for_redis_url(image: Image) -> None:
    # What proxy/gateway/shared_state.py imports when redis.url is set.
    result = subprocess.run(
        [str(image.bin / "python"), "-c", "import redis.asyncio, redis.backoff, redis.retry"],
        env=runtime_env(image), capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_default_command_serves_passes_the_healthcheck_and_stops_on_sigterm(image: Image) -> None:
    port, admin_port = free_port(), free_port()
    command = [image.map_word(word) for word in DOCKERFILE.final.one("CMD").exec_form()]
    command += ["--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}", "--drain-delay", "0"]
    before = files(image.venv, image.path("/etc"))
    assert not image.path(DOCKERFILE.final.env()["HOME"]).exists()
    with (image.root / "output").open("w+") as output:
        process = subprocess.Popen(entrypoint(image, *command), env=runtime_env(image), stdout=output, stderr=output)
        try:
            wait_for_http(f"http://127.0.0.1:{admin_port}{LIVENESS_PATH}")
            check = DOCKERFILE.final.one("HEALTHCHECK").exec_form()
            probe = [str(image.bin / check[0])] + [
                w.replace(f":{ADMIN_PORT}/", f":{admin_port}/") for w in check[1:]
            ]
            healthcheck = subprocess.run(probe, env=runtime_env(image), capture_output=True, timeout=30, check=False)
            assert healthcheck.returncode == 0, healthcheck.stderr
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                # The drain without its delay: nothing in flight, so it ends at once.
                code = process.wait(timeout=DRAIN_TIMEOUT_SECONDS + SHUTDOWN_MARGIN_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
        output.seek(0)
        printed = output.read()
    assert code == 0, printed
    assert "Traceback" not in printed and '"stopped"' in printed  # the drain ran to its end
    assert files(image.venv, image.path("/etc")) == before  # wrote nothing: read-only root is fine
    assert not image.path(DOCKERFILE.final.env()["HOME"]).exists()
