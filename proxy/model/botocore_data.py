"""botocore's data files (models, endpoint rulesets, endpoints.json), read for start-up.

The proxy reads this data once, builds what it serves from (the catalog, validators,
endpoint table, allowed regions), and keeps none of it. Four choices make that cheap:

* Plain dicts. botocore's own loader decodes every file into `OrderedDict`s: about 1.7x
  the memory and twice the decoding time of dicts, which keep their order anyway.
* A loader per use, not a session's. A session's components refer back to it, so the
  data its loader caches (~8 MiB for endpoints.json) lives until a full collection; a
  bare `Loader` and its cache are freed as soon as the caller lets go of it.
* No directory listings. Before it loads any model or ruleset, botocore lists every
  service directory (~450 of them, ~8 ms per kind of file and per loader) to check that
  the one it is asked for is among them; that check looks at the one directory here.
* Models decoded once. The catalog needs the whole of each model; the endpoint table and
  the region lists only its `metadata`, which the first decoding leaves behind.

Where the files are looked for is botocore's business (`Loader`, with `data_path`, i.e.
`AWS_DATA_PATH`, first), so an SDK and the proxy read the same files.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Sequence
from typing import Any, overload

import botocore.loaders
from botocore.exceptions import DataNotFoundError

# botocore's own order: a plain file wins over a compressed one beside it.
_OPENERS: tuple[tuple[str, Any], ...] = ((".json", open), (".json.gz", gzip.open))


class PlainJSONFileLoader:
    """botocore's `JSONFileLoader` interface (`exists`, `load_file`), decoding into dicts
    (each passed through `object_hook` when one is given)."""

    def __init__(self, object_hook: Callable[[dict[str, Any]], Any] | None = None,
                 model_hook: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self._hook = object_hook
        self._model_hook = model_hook  # for service models (service-2) instead, when given

    def exists(self, file_path: str) -> bool:
        return any(os.path.isfile(file_path + ext) for ext, _ in _OPENERS)

    def load_file(self, file_path: str) -> Any:
        hook = self._hook
        if self._model_hook is not None and os.path.basename(file_path) == "service-2":
            hook = self._model_hook
        for ext, opener in _OPENERS:
            if os.path.isfile(file_path + ext):
                with opener(file_path + ext, "rb") as f:
                    return json.loads(f.read().decode("utf-8"), object_hook=hook)
        return None


def _without_documentation(decoded: dict[str, Any]) -> dict[str, Any]:
    # Only a string: a structure may have a member named "documentation" (a dict).
    if isinstance(decoded.get("documentation"), str):
        del decoded["documentation"]
    return decoded


#: (search paths, service) -> the `metadata` of its latest model (a few names and versions).
_METADATA: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}


class Loader(botocore.loaders.Loader):
    """botocore's `Loader`, listing the services it knows only when asked for all of them,
    and remembering each latest model's metadata for `service_metadata`."""

    def list_available_services(self, type_name: str) -> ServiceListing:
        return ServiceListing(self, type_name)

    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        model = super().load_service_model(service_name, type_name, api_version)
        if type_name == "service-2" and api_version is None:
            _METADATA[(tuple(self.search_paths), service_name)] = model.get("metadata", {})
        return model

    def service_metadata(self, service_name: str) -> dict[str, Any]:
        """The `metadata` of the service's latest model (`apiVersion`, `endpointPrefix`,
        `serviceId`, ...): decoded once per process, not once per loader."""
        key = (tuple(self.search_paths), service_name)
        if key not in _METADATA:
            self.load_service_model(service_name, "service-2")
        return _METADATA[key]


class ServiceListing(Sequence[str]):
    """What botocore's `list_available_services` answers (sorted names of the services with
    a `type_name` file), read lazily: `in` looks at that service's directory only, as
    `list_api_versions` does; all directories are read at the first use of the whole list.
    """

    def __init__(self, loader: Loader, type_name: str) -> None:
        self._loader = loader
        self._type_name = type_name
        self._names: list[str] | None = None

    def __contains__(self, name: object) -> bool:
        if self._names is not None:
            return name in self._names
        if not isinstance(name, str) or name in ("", ".", "..") or os.path.basename(name) != name:
            return False  # not the name of a directory in a search path: never listed
        try:
            self._loader.list_api_versions(name, self._type_name)
        except DataNotFoundError:
            return False
        return True

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())

    def _all(self) -> list[str]:
        if self._names is None:
            self._names = botocore.loaders.Loader.list_available_services(self._loader, self._type_name)
        return self._names


def create_loader(data_path: str | None = None, *, documentation: bool = True) -> Loader:
    """`botocore.loaders.create_loader(data_path)`, decoding into plain dicts.

    `documentation=False`: service models without their prose (`"documentation"` strings,
    about half of each IVS model's bytes), for models kept for the process's lifetime (the
    catalog's) that nothing reads the prose of: ~0.3 MiB less RSS for the three IVS models.
    """
    paths = None
    if data_path is not None:
        paths = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
    hook = None if documentation else _without_documentation
    return Loader(extra_search_paths=paths, file_loader=PlainJSONFileLoader(model_hook=hook))


def load_endpoint_names(loader: Loader) -> tuple[dict[str, Any], str]:
    """endpoints.json and its path, found as `loader` finds it, with each service's endpoints
    reduced to their names: all that `EndpointResolver`'s partition and region listings read.

    Decoded whole, the file takes ~4 MiB, and ~3 MiB of it stay with the process once freed
    (the allocator cannot give back pages that later objects share); reduced while it is
    decoded, each service's endpoint details are freed as soon as they are read, and the
    whole costs under 1 MiB.
    """
    names_only = Loader(extra_search_paths=list(loader.search_paths), include_default_search_paths=False,
                        file_loader=PlainJSONFileLoader(_endpoint_names_only))
    return names_only.load_data_with_path("endpoints")


def _endpoint_names_only(decoded: dict[str, Any]) -> dict[str, Any]:
    endpoints = decoded.get("endpoints")
    if isinstance(endpoints, dict):  # a service: {"endpoints": {name: details}, ...}
        decoded["endpoints"] = dict.fromkeys(endpoints)
    return decoded
