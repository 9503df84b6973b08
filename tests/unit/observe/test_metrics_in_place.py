"""The per-request series update their values in place (no lock, bisected bucket): a scrape
must read exactly what prometheus_client's own classes would have given it."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from proxy.observe.metrics import (
    REQUEST_BUCKETS,
    SIGNING_BUCKETS,
    LoopCounter,
    LoopGauge,
    LoopHistogram,
)

EDGES = [0.0, -1.0, 1e-9, math.inf, math.nan, *REQUEST_BUCKETS, *SIGNING_BUCKETS,
         *(math.nextafter(b, math.inf) for b in REQUEST_BUCKETS), *(math.nextafter(b, 0) for b in SIGNING_BUCKETS)]


def scrape(registry: CollectorRegistry) -> str:
    # `_created` is the wall-clock time a series was made: the one line two registries differ in.
    return "\n".join(line for line in generate_latest(registry).decode().splitlines() if "_created" not in line)


def both(amounts: list[float]) -> tuple[str, str]:
    texts = []
    for counter, histogram, gauge in ((LoopCounter, LoopHistogram, LoopGauge), (Counter, Histogram, Gauge)):
        registry = CollectorRegistry()
        c = counter("c", "help", ["l"], registry=registry)
        h = histogram("h", "help", ["l"], buckets=REQUEST_BUCKETS, registry=registry)
        s = histogram("s", "help", buckets=SIGNING_BUCKETS, registry=registry)
        g = gauge("g", "help", ["l"], registry=registry, multiprocess_mode="livesum")
        for amount in amounts:
            if amount >= 0:
                c.labels("a").inc(amount)
            c.labels("b").inc()
            h.labels("a").observe(amount)
            s.observe(amount)
            g.labels("a").inc(amount)
            g.labels("a").dec()
            g.labels("b").dec(amount)
        texts.append(scrape(registry))
    return texts[0], texts[1]


def test_the_edges_and_every_bucket_bound_scrape_the_same() -> None:
    ours, theirs = both(EDGES)
    assert ours == theirs
    assert re.search(r'^h_bucket\{l="a",le="0\.001"\} [1-9]', ours, re.MULTILINE)  # the bounds were hit, not skipped


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50))
def test_any_amounts_scrape_the_same(amounts: list[float]) -> None:
    ours, theirs = both(amounts)
    assert ours == theirs


def test_misuse_still_raises_what_prometheus_client_raises() -> None:
    registry = CollectorRegistry()
    counter = LoopCounter("c", "help", ["l"], registry=registry)
    with pytest.raises(ValueError, match="missing label values"):
        counter.inc()
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels("a").inc(-1)
    with pytest.raises(ValueError, match="missing label values"):
        LoopHistogram("h", "help", ["l"], registry=registry).observe(1.0)
    with pytest.raises(ValueError, match="missing label values"):
        LoopGauge("g", "help", ["l"], registry=registry).dec()
