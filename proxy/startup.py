"""Importing the proxy's dependencies without two costs that buy nothing.

`ivs-proxy` imports ~600 modules before it does any work; two things that happen while
they load are pure waste for a process that builds everything once and then serves:

* The cyclic collector runs ~130 times (one full pass) over objects that all live as
  long as the process (modules, classes, functions) and frees next to nothing: 30-50 ms.
  The collector is off while importing; then what the imports made (~57k objects, of
  which ~10 are garbage) is frozen, so that the one full collection `cli._run` makes
  once the proxy is built (before it freezes the rest) goes over what start-up built
  since (~11k objects), not over every module again: ~2 ms instead of ~25.
* aiohttp builds two default TLS contexts when it is imported, each loading the system
  trust store (~30 ms and ~1 MiB each). One of them verifies nothing (`CERT_NONE`), so
  its trust store is never consulted: it is not loaded. The verifying one is used by
  nothing the proxy runs (its upstream client has its own context), but anything in the
  process that used it must still verify: its trust store is loaded when it first wraps
  a connection (or is asked about its certificates), not at import.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import ssl
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def quick_imports() -> Iterator[None]:
    """Import inside this block: no collections, no trust store for non-verifying contexts;
    once it is done, what was imported is left out of later collections (`gc.freeze`)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        with _no_trust_store_without_verification():
            yield
        gc.freeze()
    finally:
        if collecting:
            gc.enable()


@contextlib.contextmanager
def _no_trust_store_without_verification() -> Iterator[None]:
    own = vars(ssl.SSLContext).get("set_default_verify_paths")
    original = ssl.SSLContext.set_default_verify_paths

    def set_default_verify_paths(context: ssl.SSLContext) -> None:
        if context.verify_mode == ssl.CERT_NONE:
            return
        if type(context) is ssl.SSLContext:
            context.__class__ = _TrustStoreOnFirstUse
            context._trust_store_pending = True  # type: ignore[attr-defined]
        else:
            original(context)

    ssl.SSLContext.set_default_verify_paths = set_default_verify_paths  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        if own is None:
            del ssl.SSLContext.set_default_verify_paths
        else:
            ssl.SSLContext.set_default_verify_paths = own  # type: ignore[method-assign]


class _TrustStoreOnFirstUse(ssl.SSLContext):
    """A verifying context made while importing: the system trust store is loaded at the
    first connection it wraps, or when anything reads its certificates, whichever is first."""

    def _load_trust_store(self) -> None:
        if self.__dict__.pop("_trust_store_pending", False):
            ssl.SSLContext.set_default_verify_paths(self)

    def set_default_verify_paths(self) -> None:
        self.__dict__.pop("_trust_store_pending", None)
        ssl.SSLContext.set_default_verify_paths(self)

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._load_trust_store()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._load_trust_store()
        return super().wrap_bio(*args, **kwargs)

    def cert_store_stats(self) -> dict[str, int]:
        self._load_trust_store()
        return super().cert_store_stats()

    def get_ca_certs(self, binary_form: bool = False) -> Any:
        self._load_trust_store()
        return super().get_ca_certs(binary_form)


def return_freed_memory() -> None:
    """Hand the pages that one-off work freed (botocore's data once start-up has read it,
    an identity lookup's TLS and HTTP state) back to the system.

    glibc's malloc keeps freed memory below its top chunk (and in other threads' arenas)
    for reuse, so RSS stays at the peak; `malloc_trim(0)` releases the whole free pages
    (~1 MiB each time here, in well under a millisecond). A no-op with another C library.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
