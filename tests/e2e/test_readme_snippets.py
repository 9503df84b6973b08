"""Every fenced block in README.md runs, against the proxy as `make demo` runs it (moto and
the demo's stand-in behind it), with the README's `http://127.0.0.1:8080` replaced by that
proxy's address and no AWS credentials anywhere in the environment:

- python: the venv's Python;
- js: node, with the AWS SDK v3 from tests/js (`make js-deps`);
- go: gofmt parses it and would not change it; then `go run`, when the Go toolchain can fetch aws-sdk-go-v2;
- sh: each command line, with the venv's `aws` on PATH; a curl answer must be JSON and no error;
- yaml: `ivs-proxy check-config` accepts it.

A block that is not meant to run says so on the line before its fence,
`<!-- not run: why -->`; each is listed as a skipped case with that reason. A block with
neither a language above nor that line fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.proxy_process import ProxyProcess

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOC_URL = "http://127.0.0.1:8080"
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
JS_MODULES = REPO / "tests" / "js" / "node_modules"
RUNNABLE = {"python", "js", "go", "sh", "yaml"}


@dataclass(frozen=True)
class Snippet:
    language: str
    code: str
    line: int  # of the opening fence
    not_run: str | None  # the marker's reason


def snippets(markdown: str) -> list[Snippet]:
    found, lines = [], markdown.splitlines()
    index = 0
    while index < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = NOT_RUN.fullmatch(previous.strip())
        found.append(Snippet(fence.group(1), "\n".join(lines[index + 1:end]) + "\n", index + 1,
                             marker.group(1) if marker else None))
        index = end + 1
    return found


SNIPPETS = snippets(README.read_text())


def test_the_snippet_finder_sees_every_fence_and_marker() -> None:
    found = snippets("<!-- not run: a tree -->\n```\nx/\n```\n\n```sh\necho\n```\n")
    assert found == [Snippet("", "x/\n", 2, "a tree"), Snippet("sh", "echo\n", 6, None)]
    languages = {snippet.language for snippet in SNIPPETS if snippet.not_run is None}
    assert {"python", "js", "go", "sh"} <= languages


def clean_env() -> dict[str, str]:
    """This machine's environment without any AWS configuration: the snippets are unsigned."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return env


def run(command: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)


def shell_lines(code: str) -> list[str]:
    joined = code.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run_python(code: str, workdir: Path) -> None:
    (workdir / "snippet.py").write_text(code)
    done = run([sys.executable, "snippet.py"], workdir)
    assert done.returncode == 0, done.stderr


def run_js(code: str, workdir: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not JS_MODULES.is_dir():
        pytest.skip("tests/js/node_modules is missing: run `make js-deps`")
    (workdir / "node_modules").symlink_to(JS_MODULES)
    (workdir / "snippet.mjs").write_text(code)
    done = run(["node", "snippet.mjs"], workdir)
    assert done.returncode == 0, done.stderr


def run_go(code: str, workdir: Path) -> None:
    go = shutil.which("go")
    if go is None:
        pytest.skip("the Go toolchain is not installed")
    (workdir / "main.go").write_text(code)
    parsed = run([str(Path(go).with_name("gofmt")), "-e", "-l", "main.go"], workdir)
    assert (parsed.returncode, parsed.stdout) == (0, ""), parsed.stderr  # parsed, and formatted as gofmt would
    run([go, "mod", "init", "readme-snippet"], workdir)
    fetched = run([go, "mod", "tidy"], workdir, timeout=300)
    if fetched.returncode != 0:
        why = fetched.stderr.strip().splitlines()[-1][-200:] if fetched.stderr.strip() else "no output"
        pytest.skip(f"gofmt parsed the Go snippet, but `go mod tidy` could not fetch aws-sdk-go-v2 ({why})")
    done = run([go, "run", "."], workdir, timeout=300)
    if done.returncode != 0 and re.search(r"requires go\s*>?=?\s*1\.\d+|note: module requires Go", done.stderr):
        pytest.skip(f"aws-sdk-go-v2 needs a newer Go than {run([go, 'version'], workdir).stdout.strip()}")
    assert done.returncode == 0, done.stderr


def run_sh(code: str, workdir: Path) -> None:
    for line in shell_lines(code):
        done = run(["bash", "-o", "pipefail", "-c", line], workdir)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        if line.startswith("curl "):
            answer = json.loads(done.stdout)
            assert "message" not in answer, f"{line}\n{done.stdout}"


def run_yaml(code: str, workdir: Path) -> None:
    (workdir / "config.yaml").write_text(code)
    done = run([str(Path(sys.executable).with_name("ivs-proxy")), "check-config", "config.yaml"], workdir)
    assert done.returncode == 0, done.stdout + done.stderr


RUNNERS = {"python": run_python, "js": run_js, "go": run_go, "sh": run_sh, "yaml": run_yaml}


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"README.md:{s.line}-{s.language or 'plain'}" for s in SNIPPETS])
def test_every_readme_snippet_runs(snippet: Snippet, demo_proxy: ProxyProcess, tmp_path: Path) -> None:
    if snippet.not_run is not None:
        pytest.skip(f"marked not run: {snippet.not_run}")
    assert snippet.language in RUNNABLE, (
        f"README.md line {snippet.line}: a ```{snippet.language} block is run by no runner here; "
        f"give it one of {sorted(RUNNABLE)} or a `<!-- not run: why -->` line before it")
    RUNNERS[snippet.language](snippet.code.replace(DOC_URL, demo_proxy.url), tmp_path)
