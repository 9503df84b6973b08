"""The pinned install sets in requirements/ agree with pyproject.toml and with each other.

`make lock` writes them (uv pip compile, hashes for every platform); `make install`, `make
demo`, CI (`make test`) and the Dockerfile install from them and nothing else. These tests
catch a dependency added to pyproject.toml without a new lock, a range the pin no longer
satisfies, and a pin without hashes (which `--require-hashes` would refuse at install).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NAME = canonicalize_name(PROJECT["name"])
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]

#: Each lock and the extras it was compiled with (the Makefile's `lock` target); dev.txt is all.
LOCKS = {
    "requirements/dev.txt": tuple(EXTRAS),
    "requirements/demo.txt": ("demo",),
    "requirements/runtime.txt": ("redis",),
}


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: str
    hashes: int


def pins(lock: str) -> list[Pin]:
    """The `name==version [; marker] --hash=...` entries of a uv/pip-compile lock file."""
    text = re.sub(r"\\\n", " ", (REPO / lock).read_text())
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *hashes = line.split(" --hash=")
        spec, _, marker = requirement.partition(";")
        name, equals, version = spec.strip().partition("==")
        assert equals, f"{lock}: not pinned with ==: {line}"
        found.append(Pin(canonicalize_name(name), Version(version), marker.strip(), len(hashes)))
    return found


def declared(extras: tuple[str, ...]) -> list[Requirement]:
    """The runtime dependencies and those of `extras`, following an extra's `ivs-proxy[...]`."""
    requirements, seen, todo = [Requirement(r) for r in PROJECT["dependencies"]], set(), list(extras)
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in EXTRAS[extra]:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == NAME:
                assert requirement.extras <= set(EXTRAS), f"extra {extra!r} names an unknown extra: {line}"
                todo.extend(requirement.extras)
            else:
                requirements.append(requirement)
    return requirements


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_declared_dependency_is_pinned_within_its_range(lock: str) -> None:
    pinned: dict[str, list[Version]] = {}
    for pin in pins(lock):
        pinned.setdefault(pin.name, []).append(pin.version)
    for requirement in declared(LOCKS[lock]):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} does not pin {requirement} (pyproject.toml): run `make lock`"
        for version in pinned[name]:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {name}=={version}, outside pyproject.toml's {requirement}: run `make lock`")


@pytest.mark.parametrize("lock", [*sorted(LOCKS), "requirements/uv.txt"])
def test_every_pin_has_hashes(lock: str) -> None:
    found = pins(lock)
    assert found
    assert all(pin.hashes > 0 for pin in found), [pin.name for pin in found if not pin.hashes]


@pytest.mark.parametrize("lock", ["requirements/demo.txt", "requirements/runtime.txt"])
def test_the_smaller_sets_are_the_dev_set_at_its_versions(lock: str) -> None:
    # What `make demo` and the image install is what `make test` ran with. (Markers may
    # differ: what one set needs on some platforms only, another may need everywhere.)
    dev = {(pin.name, pin.version) for pin in pins("requirements/dev.txt")}
    assert {(pin.name, pin.version) for pin in pins(lock)} <= dev


def test_the_project_itself_is_in_no_lock() -> None:
    # Installed from the tree (editable, or the image's own wheel), never from an index.
    assert all(pin.name != NAME for lock in LOCKS for pin in pins(lock))


def test_the_makefile_installs_and_locks_these_sets() -> None:
    makefile = (REPO / "Makefile").read_text()
    for lock in (*LOCKS, "requirements/uv.txt"):
        assert lock in makefile, lock
    assert "--extra demo -c $(LOCK_DEV) -o $(LOCK_DEMO)" in makefile
    assert "--extra redis --extra fast -c $(LOCK_DEV) -o $(LOCK_RUNTIME)" in makefile
    assert "--all-extras -o $(LOCK_DEV)" in makefile
    installs = [line for line in makefile.splitlines() if " pip install " in line and " -r " in line]
    assert installs and all("--require-hashes" in line for line in installs), installs
