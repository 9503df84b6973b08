"""proxy.startup: imports without collections or unused trust stores, and nothing changed
once they are done."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from proxy.startup import quick_imports, return_freed_memory


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """quick_imports freezes the heap: give this process's objects back to the collector."""
    yield
    gc.unfreeze()


def test_the_collector_is_paused_inside_and_what_was_imported_frozen_after() -> None:
    gc.unfreeze()
    assert gc.isenabled()
    with quick_imports():
        assert not gc.isenabled()
        imported = object.__new__(type("Imported", (), {}))
    assert gc.isenabled() and gc.get_freeze_count() > 0
    assert not any(o is imported for o in gc.get_objects())  # left out of collections


def test_failed_imports_restore_the_collector_and_freeze_nothing() -> None:
    gc.unfreeze()
    with pytest.raises(ImportError), quick_imports():
        import proxy.no_such_module  # type: ignore[import-not-found]  # noqa: F401
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    try:
        with quick_imports():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_only_contexts_that_verify_nothing_skip_the_trust_store() -> None:
    verifying = ssl.create_default_context().cert_store_stats()
    with quick_imports():
        unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        unverified.set_default_verify_paths()
        assert unverified.cert_store_stats()["x509_ca"] == 0
        assert ssl.create_default_context().cert_store_stats() == verifying
    assert "set_default_verify_paths" not in vars(ssl.SSLContext)


def test_a_verifying_context_made_while_importing_loads_its_trust_store_at_its_first_handshake(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "trusted.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # the "system" store: this CA only
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "none"))
    with quick_imports():
        client = ssl.create_default_context()
    assert super(type(client), client).cert_store_stats()["x509_ca"] == 0  # not loaded yet
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)

    async def handshake() -> object:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        listening = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server)
        port = listening.sockets[0].getsockname()[1]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            peer = writer.get_extra_info("peercert")
            writer.close()
            return peer
        finally:
            listening.close()
            await listening.wait_closed()

    assert asyncio.run(handshake())  # verified against the store loaded on the way
    assert client.verify_mode == ssl.CERT_REQUIRED and client.cert_store_stats()["x509_ca"] == 1
    client.set_default_verify_paths()  # asked for again: loaded again, nothing else
    assert client.cert_store_stats()["x509_ca"] == 1


# aiohttp is imported already in this process: look at a fresh one, as `ivs-proxy` starts.
FRESH = """
import gc, json, ssl
import proxy.cli
import aiohttp.connector as connector
print(json.dumps({
    "collecting": gc.isenabled(),
    "frozen": gc.get_freeze_count(),
    "patched": "set_default_verify_paths" in vars(ssl.SSLContext),
    "verified": connector._SSL_CONTEXT_VERIFIED.cert_store_stats(),
    "unverified": connector._SSL_CONTEXT_UNVERIFIED.cert_store_stats(),
    "unverified_mode": int(connector._SSL_CONTEXT_UNVERIFIED.verify_mode),
    "default": ssl.create_default_context().cert_store_stats(),
}))
"""


def test_after_importing_the_cli_everything_is_as_before_but_the_unused_store() -> None:
    out = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout)
    assert seen["collecting"] and seen["frozen"] > 10000 and not seen["patched"]
    assert seen["verified"] == seen["default"] and seen["default"]["x509_ca"] > 0
    assert seen["unverified_mode"] == ssl.CERT_NONE and seen["unverified"]["x509_ca"] == 0


def test_returning_freed_memory_is_harmless_without_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    return_freed_memory()

    def no_libc(name: str) -> object:
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    return_freed_memory()


def test_a_proxy_started_from_flags_does_not_load_yaml() -> None:
    # PyYAML is only for config files; a sidecar configured by flags and env skips it.
    probe = ("import sys, os; from proxy.cli import _config, _parser; from proxy.app import build_proxy; "
             "build_proxy(_config(_parser().parse_args(['serve'])), {'AWS_REGION': 'us-west-2'}); "
             "print('yaml' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "AWS_REGION": "us-west-2",
                              "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})
    assert out.stdout.strip().splitlines()[-1] == "False"
