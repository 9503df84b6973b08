"""Offline rendering of this repository's kustomizations, and validation of what they render.

The layouts under deploy/kubernetes use nothing but `resources:` (files and other
kustomization directories), so rendering is concatenation; `render` refuses any other
kustomization key rather than ignore it, so a patch added later cannot be silently
skipped by the tests. Kubernetes objects are validated with kubernetes-validate's strict
schemas (unknown fields are errors); the Prometheus Operator's ServiceMonitor, a custom
resource it has no schema for, against the subset of its CRD schema used here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources"}


def render(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(file, object) for every object the kustomization in `directory` produces, in order."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(spec) - KUSTOMIZATION_KEYS
    assert not unknown, f"{directory}: the offline renderer supports only {sorted(KUSTOMIZATION_KEYS)}, not {unknown}"
    rendered: list[tuple[Path, dict[str, Any]]] = []
    for entry in spec["resources"]:
        path = (directory / entry).resolve()
        if path.is_dir():
            rendered += render(path)
        else:
            rendered += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return rendered


def files_used(directory: Path) -> set[Path]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    used = {(directory / "kustomization.yaml").resolve()}
    for entry in spec["resources"]:
        path = (directory / entry).resolve()
        used |= files_used(path) if path.is_dir() else {path}
    return used


def validate(obj: dict[str, Any], kubernetes_version: str) -> None:
    """Raise with the offending field's path if `obj` is not a valid object."""
    if obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["kind"] == "ServiceMonitor":
        jsonschema.Draft202012Validator(SERVICE_MONITOR).validate(obj)
        return
    try:
        kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(p) for p in error.path)
        raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {error.message}") from None


_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array"},
    },
}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}

#: Field names, types and patterns as in the Prometheus Operator's CRD
#: (monitoring.coreos.com_servicemonitors.yaml, v1), for the fields used here; strict.
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": _SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}
