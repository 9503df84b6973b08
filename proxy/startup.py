"""Importing the proxy's dependencies without a cost that buys nothing.

`ivs-proxy` imports a few hundred modules before it does any work. While they load, the
cyclic collector would run ~130 times (one full pass) over objects that all live as long
as the process (modules, classes, functions) and free next to nothing: 30-50 ms. The
collector is off while importing; then what the imports made is frozen, so that the one
full collection `cli._run` makes once the proxy is built (before it freezes the rest) goes
over what start-up built since, not over every module again: ~2 ms instead of ~25.

(aiohttp, whose import built two TLS contexts each loading the system trust store, is no
longer imported by `serve` or `dev`: both ports run on proxy/serve/http_server.py.)
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def quick_imports() -> Iterator[None]:
    """Import inside this block: no collections; once it is done, what was imported is left
    out of later collections (`gc.freeze`)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if collecting:
            gc.enable()


def return_freed_memory() -> None:
    """Hand the pages that one-off work freed (botocore's data once start-up has read it,
    an identity lookup's TLS and HTTP state) back to the system.

    glibc's malloc keeps freed memory below its top chunk (and in other threads' arenas)
    for reuse, so RSS stays at the peak; `malloc_trim(0)` releases the whole free pages
    (~1 MiB each time here, in well under a millisecond). A no-op with another C library.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
