from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import MIB, ProxyConfig, load_config
from proxy.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config == ProxyConfig()
    assert config.listen == "127.0.0.1:8080"
    assert config.limits.max_body_bytes == MIB


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
def test_every_example_config_loads(name: str) -> None:
    load_config(CONFIG_DIR / name)


def test_the_reference_file_documents_every_default() -> None:
    assert load_config(CONFIG_DIR / "reference.yaml") == ProxyConfig()


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "listen: 127.0.0.1:7000\nlog:\n  level: debug\n")
    config = load_config(path, {"listen": "127.0.0.1:7001", "log.format": "console", "region": None})
    assert (config.listen, config.log.level, config.log.format) == ("127.0.0.1:7001", "debug", "console")


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("limits:\n  max_body_byte: 3\n", "limits.max_body_byte", "unknown key"),
        ("limits:\n  max_body_bytes: lots\n", "limits.max_body_bytes", "integer"),
        ("headers:\n  reject_unknown_headers: yes please\n", "headers.reject_unknown_headers", "true or false"),
        ("listen: 8080\n", "listen", "string"),
        ("listen: localhost\n", "listen", "HOST:PORT"),
        ("services: [ivs, medialive]\n", "services", "unknown service"),
        ("regions:\n  ivs: 5\n", "regions.ivs", "list"),
        ("log:\n  level: loud\n", "log.level", "debug, info"),
        ("- just\n- a list\n", "-", "mapping"),
        ("key: [unclosed\n", "-", "YAML"),
    ],
)
def test_bad_files_name_the_key_file_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as failed:
        load_config(path)
    assert failed.value.key == key
    assert failed.value.source == str(path)
    assert reason in failed.value.reason


@pytest.mark.parametrize(
    "settings",
    [
        {"mode": "gateway", "auth.bearer.tokens": {"team": ["0" * 64]}},
        {"policy.callers": {"app": {"Statement": [{"Effect": "Allow", "Action": "ivs:*", "Resource": "*"}]}}},
    ],
)
def test_unknown_members_are_refused_where_a_policy_authorises(settings: dict) -> None:  # type: ignore[type-arg]
    load_config(None, settings)  # valid without the option
    with pytest.raises(ConfigError) as failed:
        load_config(None, {**settings, "validation.allow_unknown_members": True})
    assert failed.value.key == "validation.allow_unknown_members"
    assert "authorised" in failed.value.reason


@pytest.mark.parametrize(("settings", "key"), [
    ({"events.queue_url": "ivs-events"}, "events.queue_url"),
    ({"events.queue_url": "https://sqs.us-west-2.amazonaws.com/123456789012/q", "events.wait_time_seconds": 30},
     "events.wait_time_seconds"),
    ({"events.queue_url": "https://sqs.us-west-2.amazonaws.com/123456789012/q", "workers": 2}, "events"),
])
def test_events_settings_are_checked(settings: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as failed:
        load_config(None, settings)
    assert failed.value.key == key


def test_events_with_workers_need_redis() -> None:
    config = load_config(None, {"events.queue_url": "https://sqs.us-west-2.amazonaws.com/123456789012/q",
                                "workers": 2, "redis.url": "redis://127.0.0.1:6379/0"})
    assert config.events.queue_url and config.workers == 2


PLAYBACK_KEY = "arn:aws:ivs:us-west-2:123456789012:playback-key/AbCdEf012345"


@pytest.mark.parametrize(("tokens", "words"), [
    ({"keys": [{"arn": "arn:aws:ivs:us-west-2:123456789012:channel/x", "private_key_file": "/k"}]},
     "not a playback-key or public-key ARN"),
    ({"keys": [{"arn": PLAYBACK_KEY}]}, "exactly one of private_key_file, kms_key_id"),
    ({"keys": [{"arn": PLAYBACK_KEY, "private_key_file": "/k", "kms_key_id": "alias/k"}]}, "exactly one of"),
    ({"keys": [{"arn": PLAYBACK_KEY, "private_key_file": "/k", "kms_region": "us-west-2"}]}, "only with kms_key_id"),
    ({"keys": [{"arn": PLAYBACK_KEY, "private_key_file": "/a"}, {"arn": PLAYBACK_KEY, "private_key_file": "/b"}]},
     "listed twice"),
    ({"participant_duration_minutes": 20161}, "1 to 20160"),
    ({"callers": {"app": {"capabilities": ["ADMIN"]}}}, "not one of"),
    ({"callers": {"app": {"max_lifetime_seconds": 0}}}, "must be positive"),
])
def test_a_bad_tokens_section_names_the_key(tokens: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as refused:
        load_config(None, {"tokens": tokens})
    assert refused.value.key.startswith("tokens")


def test_keys_in_a_sidecar_without_sidecar_minting_are_a_warning() -> None:
    from proxy.config import config_warnings

    config = load_config(None, {"tokens": {"keys": [{"arn": PLAYBACK_KEY, "private_key_file": "/k"}]}})
    assert config.tokens.keys[0].kind == "playback" and config.tokens.keys[0].region == "us-west-2"
    assert [key for key, _ in config_warnings(config)] == ["tokens.keys"]
    enabled = load_config(None, {"tokens": {"sidecar_minting": True,
                                            "keys": [{"arn": PLAYBACK_KEY, "private_key_file": "/k"}]}})
    assert config_warnings(enabled) == []
