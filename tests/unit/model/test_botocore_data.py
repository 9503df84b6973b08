"""proxy.model.botocore_data: the same files as botocore's loader reads, as plain dicts, and
nothing kept once start-up is done."""

from __future__ import annotations

import gc
import json
import os
import weakref
from pathlib import Path

import botocore.exceptions
import botocore.loaders
import pytest

from proxy.app import build_proxy
from proxy.aws.credentials import CredentialSnapshot
from proxy.aws.signing import FrozenCredentials
from proxy.config import load_config
from proxy.model.botocore_data import Loader, PlainJSONFileLoader, create_loader

SERVICES = ("ivs", "ivs-realtime", "ivschat")


def plain(value: object) -> bool:
    """True if no OrderedDict (or other dict subclass) is anywhere inside."""
    if isinstance(value, dict):
        return type(value) is dict and all(plain(v) for v in value.values())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return True


def test_same_data_as_botocores_loader_as_plain_dicts() -> None:
    ours, theirs = create_loader(), botocore.loaders.create_loader()
    for name in ("endpoints", "partitions", "sdk-default-configuration"):
        assert ours.load_data(name) == theirs.load_data(name)
        assert plain(ours.load_data(name))
    for service in SERVICES:
        for kind in ("service-2", "endpoint-rule-set-1"):
            data = ours.load_service_model(service, kind)
            assert data == theirs.load_service_model(service, kind) and plain(data)
    assert list(ours.list_available_services("service-2")) == theirs.list_available_services("service-2")


@pytest.mark.parametrize("kind", ["service-2", "endpoint-rule-set-1", "waiters-2"])
def test_asking_for_one_service_lists_one_directory(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[str] = []
    listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: listed.append(path) or listdir(path))
    every = botocore.loaders.create_loader().list_available_services(kind)
    listed.clear()
    known = create_loader().list_available_services(kind)
    for name in ("ivs", "ivschat", "ivs-realtime", "s3", "not-a-service", "", ".", "..", "ivs/2020-07-14", "sts"):
        assert (name in known) == (name in every), name
    assert len(listed) < 20  # a handful of service directories, not all ~450
    assert list(known) == every and known[0] == every[0] and len(known) == len(every)


def test_data_path_comes_first(tmp_path: Path) -> None:
    (tmp_path / "partitions.json").write_text(json.dumps({"partitions": [], "version": 1.1}))
    data_path = os.pathsep.join([str(tmp_path), "~/nowhere"])
    assert create_loader(data_path).load_data("partitions") == {"partitions": [], "version": 1.1}
    assert create_loader(data_path).search_paths == botocore.loaders.create_loader(data_path).search_paths


def test_a_loader_and_what_it_read_go_as_soon_as_it_is_dropped() -> None:
    loader = create_loader()
    loader.load_data("endpoints")
    gone = weakref.ref(loader)
    del loader
    assert gone() is None  # no reference cycle: freed without waiting for a collection


class StaticSource:
    def fetch(self) -> CredentialSnapshot:
        return CredentialSnapshot(FrozenCredentials("ASIASTATIC0000000000", "s", "t"), None, "static")


def test_a_built_proxy_keeps_no_loader() -> None:
    env = {"AWS_REGION": "us-west-2", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    proxy = build_proxy(load_config(None), env, credential_source=StaticSource())
    gc.collect()
    assert proxy.data_app is not None
    assert [o for o in gc.get_objects() if isinstance(o, Loader)] == []


def test_a_models_metadata_is_decoded_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    first = create_loader()
    model = first.load_service_model("ivschat", "service-2")
    decoded: list[str] = []
    load_file = PlainJSONFileLoader.load_file
    monkeypatch.setattr(PlainJSONFileLoader, "load_file", lambda self, path: decoded.append(path) or load_file(self, path))
    metadata = create_loader().service_metadata("ivschat")  # another loader, same files
    assert metadata == model["metadata"] and decoded == []
    with pytest.raises(botocore.exceptions.UnknownServiceError):
        create_loader().service_metadata("not-a-service")
