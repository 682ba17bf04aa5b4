"""Config: defaults, validation naming the key, unknown keys rejected, exit code 78 from the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from siaga import config
from siaga.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_example_config_is_valid() -> None:
    cfg = config.load(REPO / "systemd" / "siaga.example.toml")
    assert cfg.node.post_id == "oebubun"
    assert cfg.radio.meshtastic is not None and cfg.radio.meshtastic.port == "/dev/meshtastic"
    assert cfg.uplink.mqtt is not None and cfg.uplink.mqtt.broker_urls == ("mqtts://112.ttu.example.go.id:8883",)
    assert cfg.handsets[0].id == "!a1b2c3d4"


def test_example_config_documents_every_key() -> None:
    """Every key of every section appears in the example (commented or not)."""
    text = (REPO / "systemd" / "siaga.example.toml").read_text()
    sections = {
        "node": config.NodeConfig,
        "radio.meshtastic": config.MeshtasticConfig,
        "uplink.mqtt": config.UplinkMqttConfig,
        "store": config.StoreConfig,
        "classifier": config.ClassifierConfig,
        "center": config.CenterConfig,
        "center.mqtt": config.CenterMqttConfig,
        "center.relay": config.CenterRelayConfig,
        "log": config.LogConfig,
        "metrics": config.MetricsConfig,
        "relay": config.RelayConfig,
        "handsets": config.HandsetConfig,
    }
    import dataclasses

    missing = []
    for section, cls in sections.items():
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.type) or f.name in ("mqtt", "relay"):
                continue
            if f"{f.name} =" not in text and f"{f.name}=" not in text:
                missing.append(f"{section}.{f.name}")
    assert not missing, f"undocumented keys: {missing}"


def test_defaults() -> None:
    cfg = config.from_dict({"node": {"post_id": "oebubun"}})
    assert cfg.node.regency == "ttu"
    assert cfg.store.retention_days == 30
    assert cfg.radio.meshtastic is None
    assert cfg.store_path == Path("/var/lib/siaga/post.db")


def test_config_objects_are_frozen() -> None:
    cfg = config.from_dict({"node": {"post_id": "oebubun"}})
    with pytest.raises(AttributeError):
        cfg.node.post_id = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "key", "fragment"),
    [
        ({"node": {"post_id": ""}}, "node.post_id", "1-32 chars"),
        ({"node": {"post_id": "Oebubun!"}}, "node.post_id", "a-z 0-9"),
        ({"node": {"post_id": "x", "psot": 1}}, "node.psot", "not a known key"),
        ({"node": {"post_id": "x"}, "nodes": {}}, "nodes", "not a known key"),
        ({"node": {"post_id": "x", "lat": 91, "lon": 1}}, "node.lat", "latitude"),
        ({"node": {"post_id": "x", "lat": -9.0}}, "node.lat", "together"),
        ({"node": {"post_id": "x", "lat": "minus nine", "lon": 1}}, "node.lat", "number"),
        ({"node": {"post_id": "x"}, "radio": {"meshtastic": {}}}, "radio.meshtastic", "exactly one"),
        (
            {"node": {"post_id": "x"}, "radio": {"meshtastic": {"port": "/dev/x", "host": "h"}}},
            "radio.meshtastic",
            "exactly one",
        ),
        ({"node": {"post_id": "x"}, "radio": {"meshtastic": {"host": "h:99999"}}}, "radio.meshtastic.host", "PORT"),
        ({"node": {"post_id": "x"}, "radio": {"meshtastic": {"port": "p", "channels": [9]}}}, "channels", "0-7"),
        ({"node": {"post_id": "x"}, "uplink": {"mqtt": {"url": "http://h"}}}, "uplink.mqtt.url", "mqtts://"),
        ({"node": {"post_id": "x"}, "uplink": {"mqtt": {"url": "mqtt://u:pw@h"}}}, "uplink.mqtt.url", "password"),
        ({"node": {"post_id": "x"}, "uplink": {"mqtt": {}}}, "uplink.mqtt.url", "required"),
        ({"node": {"post_id": "x"}, "uplink": {"mqtt": {"url": "mqtt://h", "inflight": 0}}}, "inflight", "1..1000"),
        ({"node": {"post_id": "x"}, "uplink": {"mqtt": {"url": "mqtt://h", "compress": "yes"}}}, "compress", "true"),
        ({"node": {"post_id": "x"}, "center": {"db": "mysql://x"}}, "center.db", "sqlite:///"),
        ({"node": {"post_id": "x"}, "log": {"level": "LOUD"}}, "log.level", "DEBUG"),
        ({"node": {"post_id": "x"}, "handsets": [{"id": "a1b2c3d4"}]}, "handsets[0].id", "8 hex"),
        ({"node": {"post_id": "x"}, "handsets": [{"id": "!a1b2c3d4"}, {"id": "!a1b2c3d4"}]}, "handsets[1].id", "twice"),
        ({"node": {"post_id": "x"}, "handsets": {"id": "!a1b2c3d4"}}, "handsets", "array"),
    ],
)
def test_invalid_values_name_the_key(data: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.from_dict(data)
    message = str(info.value)
    assert key in message
    assert fragment in message


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[node\npost_id = 'x'")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"[node]\npost_id = '\xff'\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        config.load(binary)


def test_env_var_and_explicit_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.toml"
    path.write_text('[node]\npost_id = "alpha"\n')
    monkeypatch.setenv("SIAGA_CONFIG", str(path))
    assert config.load().node.post_id == "alpha"
    other = tmp_path / "b.toml"
    other.write_text('[node]\npost_id = "beta"\n')
    assert config.load(other).node.post_id == "beta"


def test_secret_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    monkeypatch.delenv("SIAGA_MQTT_PASSWORD", raising=False)
    assert config.read_secret(secret, "SIAGA_MQTT_PASSWORD") == "s3cret"
    monkeypatch.setenv("SIAGA_MQTT_PASSWORD", "fromenv")
    assert config.read_secret(secret, "SIAGA_MQTT_PASSWORD") == "fromenv"


def test_password_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"uplink.mqtt.password_file.*not a readable file"):
        config.from_dict(
            {"node": {"post_id": "x"}, "uplink": {"mqtt": {"url": "mqtt://h", "password_file": str(tmp_path / "no")}}}
        )


def test_cli_exits_78_with_one_line(tmp_path: Path, run_siaga) -> None:
    path = tmp_path / "siaga.toml"
    path.write_text('[node]\npost_id = ""\n')
    result = run_siaga("config", "check", config=path)
    assert result.returncode == 78
    assert result.stderr.strip() == "config error: node.post_id: '' must be 1-32 chars of a-z 0-9 -"
    path.write_text('[node]\npost_id = "x"\ndata_dri = "/tmp"\n')
    result = run_siaga("status", config=path)
    assert result.returncode == 78
    assert "node.data_dri" in result.stderr and "not a known key" in result.stderr


def test_cli_config_check_ok(post_config: Path, run_siaga) -> None:
    result = run_siaga("config", "check", config=post_config)
    assert result.returncode == 0, result.stderr
    assert "Konfigurasi benar" in result.stdout


def test_unwritable_data_dir_is_a_config_error(tmp_path: Path, run_siaga) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path = tmp_path / "siaga.toml"
    path.write_text(f'[node]\npost_id = "x"\ndata_dir = "{blocker}/data"\n')
    result = run_siaga("report", "KEBAKARAN", config=path)
    assert result.returncode == 78
    assert "node.data_dir" in result.stderr


def test_relay_config_is_checked_at_start(tmp_path: Path) -> None:
    """[relay] enabled needs its key file (64 hex digits); a relay role needs the relay and no uplink."""
    base = {"node": {"post_id": "bukit-01"}}
    with pytest.raises(ConfigError) as exc:
        config.from_dict({**base, "relay": {"enabled": True}})
    assert exc.value.key == "relay.key_file"
    bad = tmp_path / "bad.key"
    bad.write_text("abcd\n")
    bad.chmod(0o600)
    with pytest.raises(ConfigError) as exc:
        config.from_dict({**base, "relay": {"enabled": True, "key_file": str(bad)}})
    assert exc.value.key == "relay.key_file"
    good = tmp_path / "relay.key"
    good.write_text("ab" * 32 + "\n")
    good.chmod(0o600)
    cfg = config.from_dict(
        {"node": {"post_id": "bukit-01", "role": "relay"}, "relay": {"enabled": True, "key_file": str(good)}}
    )
    assert cfg.node.role == "relay" and config.read_relay_key(good) == bytes([0xAB]) * 32
    with pytest.raises(ConfigError) as exc:
        config.from_dict({"node": {"post_id": "bukit-01", "role": "relay"}})
    assert exc.value.key == "relay.enabled"
    with pytest.raises(ConfigError) as exc:
        config.from_dict({**base, "relay": {"airtime_cap": 2}})
    assert exc.value.key == "relay.airtime_cap"


# ---------------------------------------------------------------------------- [center.relay]
def _relay_secret(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "relay-secret.hex"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_center_relay_secret_file_is_read_and_checked(tmp_path: Path) -> None:
    secret = _relay_secret(tmp_path, "ab" * 32 + "\n")
    cfg = config.from_dict({"center": {"relay": {"secret_file": str(secret)}}}, require_post=False)
    assert cfg.center.relay is not None and cfg.center.relay.secret_file == secret
    assert config.from_dict({}, require_post=False).center.relay is None


@pytest.mark.parametrize(
    ("text", "mode", "why"),
    [
        ("ab" * 32, 0o644, "readable by other users"),
        ("ab" * 32, 0o640, "readable by other users"),
        ("ab" * 31, 0o600, "at least 32"),
        ("not hex at all", 0o600, "hex digits"),
        ("", 0o600, "at least 32"),
    ],
)
def test_center_relay_secret_file_refused_naming_the_key(tmp_path: Path, text: str, mode: int, why: str) -> None:
    secret = _relay_secret(tmp_path, text, mode)
    with pytest.raises(ConfigError) as err:
        config.from_dict({"center": {"relay": {"secret_file": str(secret)}}}, require_post=False)
    assert err.value.key == "center.relay.secret_file" and why in err.value.reason


def test_center_relay_needs_its_secret_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict({"center": {"relay": {}}}, require_post=False)
    assert err.value.key == "center.relay.secret_file"
    with pytest.raises(ConfigError) as err:
        config.from_dict({"center": {"relay": {"secret_file": str(tmp_path / "absent")}}}, require_post=False)
    assert err.value.key == "center.relay.secret_file" and "cannot be read" in err.value.reason


def test_center_relay_bad_secret_exits_78(tmp_path: Path, run_siaga) -> None:  # type: ignore[no-untyped-def]
    secret = _relay_secret(tmp_path, "ab" * 32, 0o644)
    cfg = tmp_path / "center.toml"
    cfg.write_text(f'[center]\ndb = "sqlite:///{tmp_path}/c.db"\n[center.relay]\nsecret_file = "{secret}"\n')
    done = run_siaga("center", "reports", config=cfg)
    assert done.returncode == 78
    assert "center.relay.secret_file" in done.stderr
