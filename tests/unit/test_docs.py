"""The docs (README.md, docs/*.md, CHANGELOG.md) kept honest mechanically: every repository
path they name exists and every link into a Markdown file lands on a heading; every
`ivs_proxy_*` metric they name is exported, with the labels they give it; every
`ivs-proxy ...` command line in a fenced block parses with the CLI's own parser. And what
the code, configs and manifests say about the docs: pointers into them land on a heading,
in-cluster URLs are the Service the manifests create, single lists (upstream error kinds)
match the code.

The site and its generated or code-checked pages (configuration, troubleshooting):
tests/unit/test_docs_pages.py. Other doc checks live beside what they check: the retry
rules' table in tests/unit/aws/test_retries.py, the deploy walk-throughs in
tests/unit/test_deploy.py.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from proxy.cli import _parser as cli_parser
from proxy.model.input_errors import unknown_member
from proxy.observe.metrics import Metrics, SupervisorMetrics

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
TOP_LEVEL = ("deploy", "proxy", "config", "docs", "tests", "benchmarks", "scripts")
# A repository path named in prose or code: `config/sidecar.yaml`, deploy/kubernetes/gateway.
REPO_PATH = re.compile(rf"(?<![\w/.:-])((?:{'|'.join(TOP_LEVEL)})/[\w./{{}}*-]*[\w}}*])")
LINK = re.compile(r"\]\(([^)\s]+)\)")
METRIC = re.compile(r"\b(ivs_proxy_[a-z_]+)(\{[^}]*\})?")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_ids() -> list[str]:
    return [str(doc.relative_to(REPO)) for doc in DOCS]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    text = FENCE.sub("", markdown.read_text())
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize("doc", DOCS, ids=doc_ids())
def test_every_repository_path_a_doc_names_exists(doc: Path) -> None:
    text = doc.read_text()
    missing = sorted(
        path for path in set(REPO_PATH.findall(text))
        if "{" not in path and not any(REPO.glob(path)) and not (REPO / path).exists()
    )
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=doc_ids())
def test_every_relative_link_lands_on_a_file_and_heading(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        lands = file.exists() and not (anchor and file.suffix == ".md" and anchor not in anchors(file))
        if not lands:
            broken.append(target)
    assert broken == []


def exported_metrics() -> dict[str, set[str]]:
    """Every series name the proxy and the workers' supervisor export, with its label names."""
    collectors: list[object] = []
    with tempfile.TemporaryDirectory() as multiproc_dir:
        for metrics in (Metrics(), SupervisorMetrics(multiproc_dir, configured=2)):
            collectors += vars(metrics).values()
    exported: dict[str, set[str]] = {}
    suffixes = {"counter": ["_total"], "histogram": ["", "_bucket", "_count", "_sum"], "info": ["_info"],
                "gauge": [""], "summary": ["", "_count", "_sum"]}
    for collector in collectors:
        if isinstance(collector, MetricWrapperBase):
            # prometheus_client has no public accessor for a collector's name, type and labels.
            labels = set(collector._labelnames)
            for suffix in suffixes[str(collector._type)]:
                exported[collector._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return exported


def test_the_metric_list_is_complete() -> None:
    exported = exported_metrics()
    assert {"ivs_proxy_requests_total", "ivs_proxy_build_info", "ivs_proxy_workers"} <= set(exported)
    assert exported["ivs_proxy_requests_total"] == {"service", "operation", "region", "code"}


@pytest.mark.parametrize("doc", DOCS, ids=doc_ids())
def test_every_metric_a_doc_names_is_exported_with_those_labels(doc: Path) -> None:
    exported = exported_metrics()
    wrong = []
    for name, labels in METRIC.findall(doc.read_text()):
        if name.endswith("_"):  # a prefix in prose ("ivs_proxy_*")
            continue
        named = {label.split("=")[0].strip() for label in labels.strip("{}").split(",") if label.strip()}
        if name not in exported or not named <= exported[name]:
            wrong.append(name + labels)
    assert wrong == []


def command_lines(markdown: str) -> Iterator[str]:
    """The shell lines of fenced blocks, continuations joined; a synopsis's optional parts
    (`[--region R]`) left out."""
    for block in FENCE.findall(markdown):
        for line in block.replace("\\\n", " ").splitlines():
            yield re.sub(r"\[--[^\]]*\]", "", line)


def invocations(line: str, program: str) -> Iterator[tuple[list[str], list[str]]]:
    """Each `program` command on a shell line: its VAR=value assignments and its arguments
    (before pipes, redirections and comments)."""
    lexer = shlex.shlex(line.removeprefix("$ "), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        words = list(lexer)
    except ValueError:  # not shell (a YAML or JSON line quoting part of a command)
        return
    command: list[str] = []
    for word in [*words, ";"]:
        if word and set(word) <= set("|&;()<>"):
            args = list(command)
            assignments = []
            while args and re.fullmatch(r"[A-Za-z_]\w*=.*", args[0]):
                assignments.append(args.pop(0))
            if args and args[0].rsplit("/", 1)[-1] == program:  # `aws/` in a layout tree is not `aws`
                yield assignments, args[1:]
            command = []
        elif command and set(command[-1]) <= set("<>") and command[-1]:
            command.pop()  # `> file`: the target is no argument
        else:
            command.append(word)


def ivs_proxy_invocations(line: str) -> Iterator[list[str]]:
    for _, args in invocations(line, "ivs-proxy"):
        yield args


def test_the_command_finder_finds_commands_and_only_them() -> None:
    found = list(ivs_proxy_invocations("AWS_PROFILE=dev .venv/bin/ivs-proxy routes --config x.yaml | head  # n"))
    assert found == [["routes", "--config", "x.yaml"]]
    assert list(ivs_proxy_invocations("kubectl apply -n ivs-proxy -k deploy/kubernetes/gateway")) == []
    assert list(ivs_proxy_invocations("docker run --rm ivs-proxy:0.1.0 serve")) == []


@pytest.mark.parametrize("doc", DOCS, ids=doc_ids())
def test_every_command_line_a_doc_shows_parses(doc: Path) -> None:
    parser = cli_parser()
    refused = []
    for line in command_lines(doc.read_text()):
        for args in ivs_proxy_invocations(line):
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    parser.parse_args(args)
            except SystemExit as exit_:
                if exit_.code != 0:  # --help and --version exit 0
                    refused.append(" ".join(["ivs-proxy", *args]))
    assert refused == []


def test_measured_figures_in_the_manifests_are_the_documents_they_cite() -> None:
    """A `# Measured (benchmarks/results.md, ...): 55.6 MiB idle` comment quotes that file."""
    cited = 0
    for manifest in sorted((REPO / "deploy").rglob("*.yaml")):
        text = manifest.read_text()
        for source, figures in re.findall(r"# Measured \(([\w./-]+)[^)]*\):((?:.*\n\s*#)*.*)", text):
            document = (REPO / source).read_text()
            for figure in re.findall(r"\d+(?:\.\d+)? MiB", figures):
                assert figure in document, f"{manifest.relative_to(REPO)}: {figure} not in {source}"
                cited += 1
    assert cited >= 6  # the gateway, the sidecar Deployment and the Job each quote two


# AWS CLI commands that need no region: global services, and SSO (the profile's sso_region).
REGIONLESS_AWS_COMMANDS = {"iam", "sso", "configure"}


def aws_cli_lines(markdown: str) -> Iterator[str]:
    """Shell lines of fenced blocks, commented-out alternatives too. (Inline code is prose's:
    "the Job runs `aws ivs list-channels`" describes a command whose region is set elsewhere.)"""
    for line in command_lines(markdown):
        yield re.sub(r"^#\s+(?=aws )", "", line)


@pytest.mark.parametrize("doc", DOCS, ids=doc_ids())
def test_every_aws_cli_command_a_doc_shows_names_its_region(doc: Path) -> None:
    """Without ~/.aws/config the CLI stops at "You must specify a region"."""
    regionless = [
        " ".join(["aws", *args])
        for line in aws_cli_lines(doc.read_text())
        for assignments, args in invocations(line, "aws")
        if args and args[0] not in REGIONLESS_AWS_COMMANDS and "--region" not in args
        and not any(a.startswith(("AWS_REGION=", "AWS_DEFAULT_REGION=")) for a in assignments)
    ]
    assert regionless == []


# --- What the code, configs and manifests say about the docs -----------------------------

POINTERS = [*sorted(REPO.glob("config/*.yaml")), *sorted(REPO.glob("deploy/**/*.yaml")),
            *sorted(REPO.glob("proxy/**/*.py")), *sorted(REPO.glob("scripts/*.py")),
            REPO / "Dockerfile", REPO / "Makefile"]


@pytest.mark.parametrize("source", POINTERS, ids=[str(p.relative_to(REPO)) for p in POINTERS])
def test_every_doc_a_file_points_to_has_that_heading(source: Path) -> None:
    """`docs/resilience.md#retries` in a config comment, a manifest or a docstring is a page
    with that heading: a reader sent there finds what was promised."""
    broken = [
        page + anchor
        for page, anchor in re.findall(r"\b(docs/[\w-]+\.md)(#[\w-]+)?", source.read_text())
        if not (REPO / page).exists() or (anchor and anchor[1:] not in anchors(REPO / page))
    ]
    assert broken == []


def metrics_table_row(metric: str) -> str:
    rows = [line for line in (REPO / "docs" / "operating.md").read_text().splitlines()
            if line.startswith(f"| `{metric}")]
    assert len(rows) == 1, metric
    return rows[0]


def test_the_upstream_error_kinds_are_listed_once_as_the_code_emits_them() -> None:
    """One list, the metrics table's; it names exactly the `kind=` values proxy/ can raise."""
    emitted = {kind for source in REPO.glob("proxy/**/*.py")
               for kind in re.findall(r"\bkind=\"(\w+)\"", source.read_text())}
    assert {"connect", "timeout"} <= emitted
    listed = set(re.findall(r"`(\w+)` \(", metrics_table_row("ivs_proxy_upstream_errors_total{kind}")))
    assert listed == emitted
    elsewhere = [str(doc.relative_to(REPO)) for doc in DOCS if doc.name != "operating.md"
                 and re.search(r"ivs_proxy_upstream_errors_total\{kind\}` counts `", doc.read_text())]
    assert elsewhere == []  # others link to the table rather than keep a second list


def gateway_service() -> tuple[str, str, set[int]]:
    """The gateway Service's name, the namespace its kustomization is applied in, its ports."""
    base = REPO / "deploy" / "kubernetes" / "gateway" / "base"
    service = yaml.safe_load((base / "service.yaml").read_text())
    namespaces = set(re.findall(r"kubectl apply -n (\S+) -k deploy/kubernetes/gateway",
                                (base / "kustomization.yaml").read_text()))
    assert len(namespaces) == 1
    return service["metadata"]["name"], namespaces.pop(), {port["port"] for port in service["spec"]["ports"]}


CLUSTER_URL = re.compile(r"\bhttps?://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?(?::(\d+))?")


@pytest.mark.parametrize("doc", [*DOCS, *POINTERS], ids=[str(p.relative_to(REPO)) for p in [*DOCS, *POINTERS]])
def test_every_in_cluster_gateway_url_is_the_service_the_manifests_create(doc: Path) -> None:
    name, namespace, ports = gateway_service()
    wrong = [match[0] for match in CLUSTER_URL.finditer(doc.read_text())
             if (match[1], match[2]) != (name, namespace) or not match[3] or int(match[3]) not in ports]
    assert wrong == []


def test_the_readme_names_the_gateway_url() -> None:
    name, namespace, _ = gateway_service()
    assert f"http://{name}.{namespace}.svc.cluster.local:8080" in (REPO / "README.md").read_text()


def test_what_the_checks_page_promises_for_an_unknown_member_is_what_the_proxy_says() -> None:
    """A near miss gets "did you mean"; anything else the list of valid members."""
    names = ("name", "latencyMode", "type", "authorized")
    near = unknown_member("CreateChannel", names, {}, "Name", "").message
    far = unknown_member("CreateChannel", names, {}, "colour", "").message
    assert near.endswith("did you mean `name`?")
    assert far.endswith("valid members: `name`, `latencyMode`, `type`, `authorized`")
    row = next(line for line in (REPO / "docs" / "checks.md").read_text().splitlines() if "unknown members" in line)
    assert '"did you mean `name`?"' in row and "the list of valid members" in row


def test_the_readme_stays_a_five_minute_read() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
