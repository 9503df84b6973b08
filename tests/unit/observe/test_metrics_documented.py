"""Docs are code: every metric the proxy exports is named in the README or docs/, with the
name a scraper sees (counters end in _total)."""

from __future__ import annotations

from pathlib import Path

from proxy.observe.metrics import Metrics

REPO = Path(__file__).resolve().parents[3]


def exported_names() -> set[str]:
    return {family.name + ("_total" if family.type == "counter" else "") for family in Metrics().registry.collect()}


def test_every_exported_metric_is_documented() -> None:
    docs = (REPO / "README.md").read_text() + "".join(p.read_text() for p in (REPO / "docs").glob("*.md"))
    missing = sorted(name for name in exported_names() if f"`{name}" not in docs)
    assert missing == []


def test_the_overload_metrics_are_in_the_metrics_table() -> None:
    table = {line.split("`")[1].split("{")[0] for line in (REPO / "docs" / "operating.md").read_text().splitlines()
             if line.startswith("| `ivs_proxy_")}
    assert {"ivs_proxy_slots_held", "ivs_proxy_slow_bodies_cut_total", "ivs_proxy_rejected_total"} <= table
    assert table <= exported_names()  # and the table names nothing the proxy does not export
