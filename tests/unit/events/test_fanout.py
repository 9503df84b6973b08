"""Who gets which event: a subscriber's own filters, then the caller's policy on the ARNs
the event names; a full buffer marks the subscriber behind without slowing the others."""

from __future__ import annotations

from proxy.events.envelope import parse_event
from proxy.events.fanout import Fanout, FanoutCounts, Subscriber, Subscription, visible
from proxy.events.store import StoredEvent
from proxy.gateway.own_access import known_actions
from proxy.model.catalog import Catalog
from proxy.policy import PolicyDocument, PolicySet
from tests.support.gateway import channel
from tests.support.ivs_events import event_body, stage, stage_update_detail

POLICIES = PolicySet({
    "video-team": PolicyDocument.from_config({"Statement": [
        {"Effect": "Allow", "Action": "ivs-proxy:SubscribeEvents", "Resource": [channel("Video*"), stage("Video*")]},
    ]}, "v"),
    "chat-team": PolicyDocument.from_config({"Statement": [
        {"Effect": "Allow", "Action": "ivs-proxy:SubscribeEvents", "Resource": "*"},
        {"Effect": "Deny", "Action": "ivs-proxy:*", "Resource": channel("Video*")},
    ]}, "c"),
}, known_actions(op.iam_action for op in Catalog.load().operations))


def entry(n: int, resources: list[str], detail_type: str = "IVS Stream State Change") -> StoredEvent:
    detail = stage_update_detail() if detail_type == "IVS Stage Update" else None
    return StoredEvent(f"{n}-0", parse_event(event_body(resources, detail_type, detail, event_id=f"e{n}")))


def subscriber(caller: str, subscription: Subscription | None = None, buffer: int = 10) -> Subscriber:
    return Subscriber(caller, subscription or Subscription(),
                      lambda resources, region: POLICIES.evaluate(caller, "ivs-proxy:SubscribeEvents", resources, region),
                      buffer)


def test_policy_allows_one_and_denies_none() -> None:
    video, chat = subscriber("video-team"), subscriber("chat-team")
    own = entry(1, [channel("VideoMain001")]).event
    both = entry(2, [stage("VideoStage1"), channel("ChatCh")]).event  # a composition naming two ARNs
    denied_one = entry(3, [stage("Other"), channel("VideoMain001")]).event
    none_named = entry(4, []).event
    assert video.may_see(own) and not chat.may_see(own)
    assert video.may_see(both) and chat.may_see(both)  # video may see one of the two ARNs
    assert not chat.may_see(denied_one)  # an explicit Deny on any ARN withholds the event
    assert chat.may_see(none_named) and not video.may_see(none_named)  # no ARN: only Resource "*"
    assert visible(None)  # no policy (a sidecar without policy.callers): everything


def test_filters_then_policy_and_the_counts_say_which() -> None:
    reasons: list[str] = []
    fanout = Fanout(FanoutCounts(filtered=reasons.append))
    stages_only = subscriber("chat-team", Subscription(frozenset({"IVS Stage Update"})))
    one_channel = subscriber("video-team", Subscription(resources=(channel("VideoMain*"),)))
    everything_allowed = subscriber("chat-team")
    for joined in (stages_only, one_channel, everything_allowed):
        fanout.join(joined)
    fanout.publish([entry(1, [channel("VideoMain001")]), entry(2, [stage("S")], "IVS Stage Update"),
                    entry(3, [channel("VideoBackup01")])])
    assert [e.id for e in stages_only.take(None)] == ["2-0"]
    assert [e.id for e in one_channel.take(None)] == ["1-0"]
    assert [e.id for e in everything_allowed.take(None)] == ["2-0"]  # chat's Deny on Video* channels
    assert sorted(reasons) == ["policy"] * 2 + ["subscription"] * 4


def test_a_full_buffer_marks_only_that_subscriber_behind() -> None:
    behind: list[int] = []
    fanout = Fanout(FanoutCounts(fell_behind=lambda: behind.append(1)))
    slow, fast = subscriber("chat-team", buffer=2), subscriber("chat-team", buffer=100)
    fanout.join(slow)
    fanout.join(fast)
    fanout.publish(entry(n, [stage("S")]) for n in range(1, 6))
    assert slow.behind and behind == [1] and slow.wake.is_set()
    assert [e.id for e in slow.take(None)] == ["1-0", "2-0"]  # what it has is still sent
    assert len(fast.take(None)) == 5 and not fast.behind


def test_take_skips_what_a_resume_already_sent() -> None:
    sub = subscriber("chat-team")
    for n in (3, 4, 5):
        sub.offer(entry(n, [stage("S")]))
    assert [e.id for e in sub.take("4-0")] == ["5-0"]
