"""proxy.startup: imports without collections or unused trust stores, and nothing changed
once they are done."""

from __future__ import annotations

import ctypes
import gc
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

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


# Look at a fresh process, as `ivs-proxy` starts.
FRESH = """
import gc, json, sys
import proxy.cli
print(json.dumps({
    "collecting": gc.isenabled(),
    "frozen": gc.get_freeze_count(),
    "aiohttp": sorted(name for name in sys.modules if name.split(".")[0] == "aiohttp"),
}))
"""


def test_after_importing_the_cli_the_collector_runs_and_aiohttp_is_not_loaded() -> None:
    out = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout)
    assert seen["collecting"] and seen["frozen"] > 10000
    # Both ports are proxy/serve/http_server.py: aiohttp's ~14 MiB and ~0.1 s are not paid.
    assert seen["aiohttp"] == []


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
