"""The package's layers: imports point down, never in a cycle, and aiohttp.web stays in serve/.

Every import in `proxy/` counts, wherever it is written: at the top, inside a function, or
under `if TYPE_CHECKING:` (a type-only import still makes the lower module know the higher
one, and is how today's cycles start). A new module must be given a layer here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "proxy"

#: Lowest first. A module may import modules of its own layer or of any layer below it.
#: A name ending in "." is a package prefix (all its modules); otherwise one module.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("proxy", "proxy.errors", "proxy.startup", "proxy.frozen"),  # the version, the error shape, import hygiene, frozen value constructors
    ("proxy.policy",),  # the IAM-style policy language: config parses it, the gateway applies it
    ("proxy.config",),
    ("proxy.defaults", "proxy.observe."),
    ("proxy.model.",),
    ("proxy.aws.",),
    # who is calling: the vocabulary and checks that the request path carries
    ("proxy.gateway", "proxy.gateway.identity", "proxy.gateway.sigv4_callers", "proxy.gateway.auth",
     "proxy.gateway.audit", "proxy.gateway.shared_state", "proxy.gateway.replay",
     "proxy.gateway.ratelimit", "proxy.gateway.own_access"),
    # tokens the proxy mints: IVS's rules, ES384 JWS, keys (PEM, KMS), the minter and its wiring
    ("proxy.tokens", "proxy.tokens.jws", "proxy.tokens.claims", "proxy.tokens.keys", "proxy.tokens.minting",
     "proxy.tokens.service"),
    # IVS events from SQS to subscribers: the envelope, the store, the poller, the fanout
    ("proxy.events", "proxy.events.envelope", "proxy.events.store", "proxy.events.source", "proxy.events.fanout"),
    ("proxy.pipeline",),
    # the gateway's stages plug into the pipeline, so they sit above it
    ("proxy.gateway.stages", "proxy.gateway.wiring"),
    ("proxy.serve.",),
    ("proxy.tokens.http",),  # the mint operations' handlers, on serve/own_routes.py
    # the SSE route (on serve's own routes) and the feature's wiring
    ("proxy.events.http", "proxy.events.wiring"),
    ("proxy.app",),
    ("proxy.dev.", "proxy.tokens.command"),
    ("proxy.cli",),
)

#: Packages that must never import aiohttp's server: they are used by it, not built on it.
NO_AIOHTTP_WEB = ("proxy.model.", "proxy.aws.", "proxy.gateway.", "proxy.tokens.jws", "proxy.tokens.claims",
                  "proxy.tokens.keys", "proxy.tokens.minting", "proxy.tokens.service", "proxy.events.envelope",
                  "proxy.events.store", "proxy.events.source", "proxy.events.fanout")
AIOHTTP_WEB = ("aiohttp.web", "aiohttp.web_")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(importer: str, source: str, known: frozenset[str]) -> Iterator[Import]:
    """Every module `source` imports, resolved to the most specific known module name."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(importer, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                # Outside the package, a name may be a submodule too (`from aiohttp import web`).
                named = candidate if candidate in known or not node.module.startswith("proxy") else node.module
                yield Import(importer, named, node.lineno)


def layer_of(module: str) -> int | None:
    for rank, members in enumerate(LAYERS):
        for member in members:
            if module == member or (member.endswith(".") and f"{module}.".startswith(member)):
                return rank
    return None


def package_sources(root: Path) -> dict[str, str]:
    return {module_name(path, root): path.read_text(encoding="utf-8") for path in sorted(root.rglob("*.py"))}


def all_imports(sources: Mapping[str, str]) -> list[Import]:
    known = frozenset(sources)
    return [found for module, source in sources.items() for found in imports_of(module, source, known)]


def upward_imports(imports: Iterable[Import]) -> list[str]:
    wrong = []
    for found in imports:
        if not found.imported.startswith("proxy"):
            continue
        mine, theirs = layer_of(found.importer), layer_of(found.imported)
        if mine is not None and theirs is not None and theirs > mine:
            wrong.append(f"{found.importer}:{found.line} imports {found.imported}, a higher layer")
    return wrong


def aiohttp_web_imports(imports: Iterable[Import]) -> list[str]:
    return [
        f"{found.importer}:{found.line} imports {found.imported}"
        for found in imports
        if found.importer.startswith(NO_AIOHTTP_WEB)
        and (found.imported == "aiohttp.web" or found.imported.startswith(AIOHTTP_WEB))
    ]


def cycles(imports: Iterable[Import]) -> list[list[str]]:
    graph: dict[str, set[str]] = {}
    for found in imports:
        if found.imported.startswith("proxy") and found.imported != found.importer:
            graph.setdefault(found.importer, set()).add(found.imported)
    found_cycles: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found_cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found_cycles


@pytest.fixture(scope="module")
def package_imports() -> list[Import]:
    return all_imports(package_sources(PACKAGE_ROOT))


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in package_sources(PACKAGE_ROOT) if layer_of(name) is None]
    assert unplaced == [], f"give these modules a layer in LAYERS: {unplaced}"


def test_imports_point_down(package_imports: list[Import]) -> None:
    assert upward_imports(package_imports) == []


def test_model_aws_and_gateway_do_not_import_aiohttp_web(package_imports: list[Import]) -> None:
    assert aiohttp_web_imports(package_imports) == []


def test_no_import_cycles(package_imports: list[Import]) -> None:
    assert cycles(package_imports) == []


# The checks above must be able to fail: each is shown a package that breaks its rule.

def _imports(**modules: str) -> list[Import]:
    return all_imports({name.replace("__", "."): source for name, source in modules.items()})


def test_an_upward_import_is_reported_even_under_type_checking() -> None:
    found = _imports(
        proxy__model__catalog="from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from proxy.serve.server import ProxyState\n",
        proxy__serve__server="",
    )
    assert upward_imports(found) == ["proxy.model.catalog:3 imports proxy.serve.server, a higher layer"]


def test_an_import_inside_a_function_is_reported() -> None:
    found = _imports(proxy__aws__upstream="def f():\n    from proxy.gateway import wiring\n", proxy__gateway__wiring="")
    assert upward_imports(found) == ["proxy.aws.upstream:2 imports proxy.gateway.wiring, a higher layer"]


@pytest.mark.parametrize("statement", ["from aiohttp import web", "import aiohttp.web", "from aiohttp.web_request import Request"])
def test_aiohttp_web_in_the_gateway_is_reported(statement: str) -> None:
    assert aiohttp_web_imports(_imports(proxy__gateway__auth=statement)) != []


def test_aiohttp_client_is_allowed_in_aws() -> None:
    assert aiohttp_web_imports(_imports(proxy__aws__upstream="import aiohttp\nfrom aiohttp import ClientSession")) == []


def test_a_cycle_within_a_layer_is_reported() -> None:
    found = _imports(
        proxy__gateway__auth="from proxy.gateway.sigv4_callers import SigV4Verifier",
        proxy__gateway__sigv4_callers="from proxy.gateway.auth import Unauthenticated",
    )
    assert cycles(found) == [["proxy.gateway.auth", "proxy.gateway.sigv4_callers", "proxy.gateway.auth"]]
