"""fast_frozen_init: the same frozen dataclass, with a cheaper constructor."""

from __future__ import annotations

import dataclasses

import pytest

from proxy.aws.upstream import UpstreamResponse
from proxy.frozen import fast_frozen_init
from proxy.pipeline import IncomingRequest


@fast_frozen_init
@dataclasses.dataclass(frozen=True, slots=True)
class Pair:
    left: str
    right: int = 7


def test_builds_the_same_object_as_the_dataclass_init() -> None:
    assert Pair("a") == Pair(left="a") == Pair("a", 7) and Pair("a", right=8).right == 8
    assert repr(Pair("a")) == "Pair(left='a', right=7)" and hash(Pair("a")) == hash(Pair("a", 7))
    assert dataclasses.replace(Pair("a"), right=9) == Pair("a", 9)
    with pytest.raises(TypeError):
        Pair()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Pair("a", 1, 2)  # type: ignore[call-arg]


def test_the_object_stays_frozen() -> None:
    pair = Pair("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.left = "b"  # type: ignore[misc]
    request = IncomingRequest("POST", "/p", "", (), True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.body = b"x"  # type: ignore[misc]
    assert UpstreamResponse(204, {}) == UpstreamResponse(204, {}, b"", None)


def test_refuses_what_it_cannot_build_exactly() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class WithFactory:
        items: list[str] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        value: int

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        value: int

    for cls in (WithFactory, NotFrozen, NoSlots):
        with pytest.raises(TypeError):
            fast_frozen_init(cls)
