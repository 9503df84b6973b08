"""The documentation site (mkdocs.yml) and the pages made from, or checked against, the code:
the strict build, the nav, docs/configuration.md (generated from config/reference.yaml, whose
keys are the loader's), docs/troubleshooting.md (every error the proxy answers with, every
message it quotes one the proxy can say). tests/unit/test_docs.py checks every doc's paths,
links, metrics and commands.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tokenize
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import proxy
from proxy.config import ProxyConfig, load_config
from proxy.errors import ConfigError, ProxyError
from tests.unit.test_docs import DOCS, REPO, doc_ids

# --- The documentation site (mkdocs.yml) ------------------------------------------------

def build_site(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`, offline: Material's search is the only plugin."""
    built = build_site(REPO, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "troubleshooting" / "index.html").exists()


def test_the_strict_build_fails_on_a_broken_link_a_missing_anchor_and_a_page_left_out(tmp_path: Path) -> None:
    """mkdocs.yml's `validation` makes each of these a warning, and --strict a failure."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path)
    with (tmp_path / "docs" / "index.md").open("a") as index:
        index.write("\n[gone](gone.md) [no such heading](deploy.md#no-such-heading)\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the nav\n")
    built = build_site(tmp_path, tmp_path / "site")
    assert built.returncode != 0
    assert "gone.md" in built.stderr and "#no-such-heading" in built.stderr and "orphan.md" in built.stderr


def test_every_page_in_docs_is_in_the_nav_once() -> None:
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]

    def pages(entries: list[Any]) -> Iterator[str]:
        for entry in entries:
            for value in entry.values():
                yield from pages(value) if isinstance(value, list) else [value]

    listed = list(pages(nav))
    assert sorted(listed) == sorted(p.name for p in (REPO / "docs").glob("*.md"))


# --- docs/configuration.md, from config/reference.yaml -----------------------------------

@functools.cache
def config_reference() -> Any:
    """scripts/config_reference.py (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("config_reference", REPO / "scripts" / "config_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations there
    spec.loader.exec_module(module)
    return module


def loader_keys(cls: type, prefix: str = "") -> Iterator[tuple[str, type | None]]:
    """Every dotted key `load_config` accepts, with the dataclass of a list's items (a
    `rate_limits.rules` entry) where there is one."""
    hints = typing.get_type_hints(cls)
    for field_ in dataclasses.fields(cls):
        hint, key = hints[field_.name], prefix + field_.name
        if dataclasses.is_dataclass(hint):
            yield from loader_keys(typing.cast(type, hint), key + ".")
            continue
        item = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else None
        yield key, item if dataclasses.is_dataclass(item) else None


def test_the_configuration_page_is_generated_from_the_reference_file() -> None:
    assert config_reference().main(["--check"]) == 0, "run: python scripts/config_reference.py"


def test_the_reference_file_names_every_key_the_loader_accepts_and_no_other() -> None:
    documented = {key.path: key for key in config_reference().parse((REPO / "config/reference.yaml").read_text()).all_keys()
                  if key.default is not None}
    accepted = dict(loader_keys(ProxyConfig))
    assert sorted(documented) == sorted(accepted)
    for key, item in accepted.items():
        if item is not None:  # list entries: every field in the commented example
            example = "\n".join(documented[key].examples)
            missing = [f.name for f in dataclasses.fields(item) if not re.search(rf"\b{f.name}:", example)]
            assert missing == [], key


def test_every_config_key_a_doc_names_exists() -> None:
    """A dotted key in backticks (`limits.max_body_bytes`, `shutdown.*`) is one the loader accepts."""
    accepted = set(dict(loader_keys(ProxyConfig)))
    sections = {key.split(".")[0] for key in accepted if "." in key}
    unknown = []
    for doc in DOCS:
        for key in re.findall(r"`([a-z_0-9]+(?:\.[a-z_0-9*]+)+)(?::[^`]*)?`", doc.read_text()):
            if key.split(".")[0] not in sections or re.search(r"\.(py|ya?ml|md|json)$", key):
                continue  # a file name (`policy.py`), a module (`proxy.cli`)
            if key.endswith(".*") and any(a.startswith(key[:-1]) for a in accepted):
                continue
            if key not in accepted and not any(a.startswith(key + ".") for a in accepted):
                unknown.append(f"{doc.relative_to(REPO)}: {key}")
    assert unknown == []


# --- docs/troubleshooting.md --------------------------------------------------------------

def proxy_error_classes() -> list[type[ProxyError]]:
    """Every ProxyError subclass in the package (proxy/errors.py and those beside their
    stage: gateway/identity.py, policy.py, ...), every module imported first."""
    for module in pkgutil.walk_packages(proxy.__path__, "proxy."):
        importlib.import_module(module.name)
    found, pending = [], [ProxyError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending += cls.__subclasses__()
    return found


def test_the_troubleshooting_page_names_every_error_the_proxy_answers_with() -> None:
    page = (REPO / "docs" / "troubleshooting.md").read_text()
    classes = proxy_error_classes()
    assert len(classes) > 20  # the walk found the gateway's and the policy's errors too
    answered = [cls for cls in classes if cls.reason != ProxyError.reason]  # not the bases (UpstreamError)
    missing = sorted({f"{cls.__name__}: {name}" for cls in answered
                      for name in (cls.error_type, cls.reason) if f"`{name}`" not in page})
    assert missing == []


def config_blocks(markdown: str) -> Iterator[str]:
    """The ```yaml blocks of a doc that are ivs-proxy configs: mappings of config keys only
    (not Kubernetes objects, not ~/.aws/config)."""
    top_level = {field_.name for field_ in dataclasses.fields(ProxyConfig)}
    for block in re.findall(r"^```ya?ml\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL):
        for document in block.split("\n---\n"):
            loaded = yaml.safe_load(document)
            if isinstance(loaded, dict) and loaded and set(loaded) <= top_level:
                yield document


@pytest.mark.parametrize("doc", DOCS, ids=doc_ids())
def test_every_config_a_doc_shows_loads(doc: Path, tmp_path: Path) -> None:
    refused = []
    for i, block in enumerate(config_blocks(doc.read_text())):
        path = tmp_path / f"{i}.yaml"
        path.write_text(block)
        try:
            load_config(path)
        except ConfigError as exc:
            refused.append(str(exc))
    assert refused == []


def test_the_config_block_finder_finds_configs() -> None:
    found = [block for doc in DOCS for block in config_blocks(doc.read_text())]
    assert len(found) >= 4  # credentials.md's sidecar config and credentials:, the gateway's policy


def message_templates() -> list[list[str]]:
    """Every string literal in proxy/, adjacent literals joined as Python joins them, split at
    its f-string placeholders: `f"no {service} operation at {shown}"` -> ["no ", " operation at ", ""]."""
    templates = []
    for source in sorted(REPO.glob("proxy/**/*.py")):
        joined: list[str] = []
        previous = None
        with source.open("rb") as file:
            for token in tokenize.tokenize(file.readline):
                if token.type == tokenize.STRING:
                    body = re.sub(r"^[rRbBuUfF]*(\"\"\"|'''|\"|')", "", token.string)[:-1].rstrip("\"'")
                    if previous == tokenize.STRING:
                        joined[-1] += body
                    else:
                        joined.append(body)
                if token.type not in (tokenize.NL, tokenize.COMMENT):
                    previous = token.type
        templates += [re.split(r"\{[^{}]*\}", text.replace("\\'", "'")) for text in joined]
    return templates


def starts_like(literals: list[str], shown: str) -> bool:
    """`shown` (a message as a doc quotes it, cut short) could be how the template's output
    starts, a good part of it the template's own words rather than its placeholders' values."""
    if not shown.startswith(literals[0]) and not literals[0].startswith(shown):
        return False
    position = worded = min(len(literals[0]), len(shown))
    for index, literal in enumerate(literals[1:], 2):  # a placeholder's value, then the literal
        if not literal and index < len(literals):
            continue  # two placeholders side by side
        found = shown.find(literal, position) if literal else len(shown)
        if found == -1:  # `shown` stops in the placeholder (a value, no prose) or in the literal
            cuts = [cut for cut in range(position, len(shown) + 1) if literal.startswith(shown[cut:])
                    and (shown[cut:] or " " not in shown[position:cut])]
            if not cuts:
                return False
            worded += len(shown) - cuts[0]
            break
        worded += len(literal)
        position = found + len(literal)
    return worded >= max(8, len(shown) / 3)


def test_the_message_finder_matches_templates() -> None:
    template = ["no ", " operation at ", "; paths are case-sensitive: did you mean ", "?"]
    assert starts_like(template, "no ivs operation at /createchannel; paths are case-sensitive: did you mean /C")
    assert not starts_like(template, "no ivs operation here")
    assert not starts_like(["", ""], "anything at all")  # f"{message}" says nothing itself


CONFIG_ERROR = "ivs-proxy: configuration error: "
# Words of argparse and of the OS (a port taken), which the proxy passes on.
NOT_OURS = ("ivs-proxy: error: unrecognized arguments", "ivs-proxy: error while attempting to bind")


def test_every_message_the_troubleshooting_page_quotes_is_one_the_proxy_can_say() -> None:
    templates = message_templates()
    unknown = []
    for row in (REPO / "docs" / "troubleshooting.md").read_text().splitlines():
        cells = re.split(r"(?<!\\)\|", row)
        if not row.startswith("| ") or len(cells) < 4 or set(cells[1].strip()) <= set("-"):
            continue
        for double, single in re.findall(r"``\s?(.+?)\s?``|`([^`]+)`", cells[2]):
            shown = (double or single).split("…")[0].removeprefix("ivs-proxy refused the request: ")
            if shown.startswith(NOT_OURS):
                continue
            if shown.startswith(CONFIG_ERROR):  # "ivs-proxy: configuration error: FILE: key: reason"
                shown = re.sub(r"^(FILE: )?[\w.\[\]]+: ", "", shown.removeprefix(CONFIG_ERROR))
            if len(shown) > 12 and not any(starts_like(t, shown) for t in templates):
                unknown.append(shown)
    assert unknown == []
