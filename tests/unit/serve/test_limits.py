"""The body-read budget and the minimum-rate rule, on their own."""

from __future__ import annotations

import pytest

from proxy.errors import BodyReadsFull
from proxy.serve.limits import BodyReads
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
