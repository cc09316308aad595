"""The [racs] section and the simulator configuration."""

from __future__ import annotations

from typing import Any

import pytest

from hostednat.diameter.config import ConfigError, RacsConfig
from hostednat.diameter.simulator.config import SimulatorConfig

BASE: dict[str, Any] = {
    "origin_host": "af1.iptv.example.net",
    "origin_realm": "iptv.example.net",
    "destination_realm": "racs.example.net",
    "peers": [
        {"host": "192.0.2.31", "priority": 2},
        {"host": "192.0.2.30", "port": 3869, "priority": 1},
    ],
}


def test_defaults_and_peer_order() -> None:
    """Unset keys take their defaults; peers sort by priority."""
    config = RacsConfig.from_mapping(BASE, "hostednat.toml")
    assert [p.name for p in config.peers] == ["192.0.2.30:3869", "192.0.2.31:3868"]
    assert config.application_id == 16777222
    assert config.request_timeout == 3.0
    assert config.fail_open is False
    assert config.actions == (2, 3, 4, 6, 7)


def test_rx_defaults_to_rx_actions() -> None:
    """application = "rx" selects 16777236 and the Rx bearer events."""
    config = RacsConfig.from_mapping({**BASE, "application": "rx"}, "h.toml")
    assert config.application_id == 16777236
    assert config.actions == (2, 3, 4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "blue"}, "h.toml: racs.colour: unknown key"),
        ({"application": "gx"}, 'h.toml: racs.application: must be "gq" or "rx"'),
        ({"watchdog_interval": 5}, "h.toml: racs.watchdog_interval: must be between"),
        ({"reservation_priority": 16}, "h.toml: racs.reservation_priority: must be"),
        ({"fail_open": "yes"}, "h.toml: racs.fail_open: must be true or false"),
        ({"peers": []}, "h.toml: racs.peers: must be a non-empty array"),
        ({"peers": [{"host": "spdf"}]}, "h.toml: racs.peers[0].host: must be an IP"),
        (
            {"peers": [{"host": "192.0.2.1", "port": 0}]},
            "h.toml: racs.peers[0].port: must be an integer in 1..65535",
        ),
        (
            {"peers": [{"host": "192.0.2.1", "weight": 1}]},
            "h.toml: racs.peers[0].weight: unknown key",
        ),
    ],
)
def test_bad_values_name_the_key(change: dict[str, Any], message: str) -> None:
    """Errors name the file and the key path."""
    with pytest.raises(ConfigError) as caught:
        RacsConfig.from_mapping({**BASE, **change}, "h.toml")
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)


def test_missing_required_key() -> None:
    """A missing destination_realm is reported by name."""
    data = {k: v for k, v in BASE.items() if k != "destination_realm"}
    with pytest.raises(ConfigError, match=r"racs\.destination_realm: is required"):
        RacsConfig.from_mapping(data, "h.toml")


def test_example_simulator_config_loads() -> None:
    """conf/spdf.toml is a valid simulator configuration."""
    from pathlib import Path

    from hostednat.diameter.simulator.config import load

    config = load(Path(__file__).parents[2] / "conf" / "spdf.toml")
    assert config.subscribers
    assert config.binding_output is not None


def test_simulator_subscriber_error_names_the_key() -> None:
    """A bad subscriber entry is reported with its index."""
    with pytest.raises(ConfigError, match=r"subscribers\[0\]\.address"):
        SimulatorConfig.from_mapping({"subscribers": [{"address": "x"}]}, "s.toml")
