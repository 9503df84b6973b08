"""The body-read budget and the minimum-rate rule, on their own."""

from __future__ import annotations

import pytest

from proxy.errors import BodyReadsFull, CallerShareFull
from proxy.serve.limits import BodyReads, CallerShares
from proxy.serve.server import BodyPace


def test_body_reads_refuse_at_once_when_every_slot_is_taken_and_hand_freed_ones_on() -> None:
    reads = BodyReads(2)
    reads.acquire()
    reads.acquire()
    with pytest.raises(BodyReadsFull) as refused:
        reads.acquire()
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
    assert refused.value.close_connection
    reads.release()
    reads.acquire()
    assert reads.active == 2


@pytest.mark.parametrize(("received", "deadline"), [
    (0, 2.0),          # nothing yet: the grace alone
    (1024, 3.0),       # each byte buys 1/min_rate s more
    (10 * 1024, 10.0),  # never past the total body timeout
])
def test_the_pace_deadline_is_the_grace_plus_what_the_bytes_received_bought(received: int, deadline: float) -> None:
    assert BodyPace(timeout=10.0, grace=2.0, min_rate=1024.0).deadline(received) == deadline


def test_a_caller_holds_at_most_its_share_and_the_others_keep_theirs() -> None:
    shares = CallerShares(150, 0.25, "in-flight slots")
    assert shares.cap == 37
    for _ in range(37):
        shares.take("caller:team-a")
    with pytest.raises(CallerShareFull) as refused:
        shares.take("caller:team-a")
    assert refused.value.reason == "caller_share" and "37" in refused.value.message
    shares.take("caller:team-b")  # another caller is not affected
    shares.give("caller:team-a")
    shares.take("caller:team-a")
    assert (shares.held("caller:team-a"), shares.held("caller:team-b")) == (37, 1)


def test_a_share_never_rounds_down_to_nothing() -> None:
    assert CallerShares(3, 0.1, "body-read slots").cap == 1


def test_a_share_of_one_caps_nothing() -> None:
    shares = CallerShares(2, 1.0, "body-read slots")
    for _ in range(5):
        shares.take("address:127.0.0.1")
    assert shares.held("address:127.0.0.1") == 5
