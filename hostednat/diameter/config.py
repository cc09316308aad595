"""The ``[racs]`` configuration section: the Gq' (or Rx) client.

Example (every key but ``peers``, ``origin_host``, ``origin_realm`` and
``destination_realm`` is optional)::

    [racs]
    application = "gq"                 # or "rx" for a PCRF-based lab
    origin_host = "af1.iptv.example.net"
    origin_realm = "iptv.example.net"
    destination_realm = "racs.example.net"
    # destination_host = "spdf1.racs.example.net"
    request_timeout = 3.0              # Tx per request, seconds
    fail_open = false                  # admit when the RACS cannot answer
    retry_after = 30                   # Retry-After of 503 answers, seconds
    address_realm = "access.example.net"
    # service_class = "IPTV"
    # reservation_priority = 0         # 0..15
    # authorization_package_id = "pkg-1"
    # specific_actions = [2, 3, 4, 6, 7]
    watchdog_interval = 30.0           # Tw, at least 6 s (RFC 3539)
    reconnect_min = 1.0
    reconnect_max = 30.0
    rtp_payload_bytes = 1316           # for the IP/UDP/RTP overhead estimate
    min_uplink_bandwidth = 64000       # bit/s, RTCP and punch packets

    [[racs.peers]]
    host = "192.0.2.30"
    port = 3868
    priority = 1                       # lower is preferred

Errors name the file and the key path, e.g.
``hostednat.toml: racs.peers[0].port: must be an integer in 1..65535``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from hostednat.config import ConfigError
from hostednat.diameter.dictionary import (
    APPLICATION_GQ,
    APPLICATION_RX,
    SpecificAction,
)

__all__ = ["ConfigError", "PeerAddress", "RacsConfig"]

APPLICATIONS: Final = {"gq": APPLICATION_GQ, "rx": APPLICATION_RX}

GQ_SPECIFIC_ACTIONS: Final = tuple(int(a) for a in SpecificAction)
"""Every bearer event of reference 4.10: 2, 3, 4, 6, 7."""

RX_SPECIFIC_ACTIONS: Final = (2, 3, 4)
"""Loss, recovery and release of bearer: the same numbers in TS 29.214."""


@attrs.frozen
class PeerAddress:
    """One SPDF (or PCRF) to connect to."""

    host: str
    port: int = 3868
    priority: int = 0

    @property
    def name(self) -> str:
        """``host:port``, the peer's name in logs and events."""
        return (
            f"[{self.host}]:{self.port}"
            if ":" in self.host
            else (f"{self.host}:{self.port}")
        )


@attrs.frozen
class RacsConfig:
    """Everything the AF needs; see the module text for the keys."""

    origin_host: str
    origin_realm: str
    destination_realm: str
    peers: tuple[PeerAddress, ...]
    application: str = "gq"
    destination_host: str | None = None
    request_timeout: float = 3.0
    fail_open: bool = False
    retry_after: int = 30
    address_realm: str | None = None
    service_class: str | None = None
    reservation_priority: int | None = None
    authorization_package_id: str | None = None
    specific_actions: tuple[int, ...] | None = None
    watchdog_interval: float = 30.0
    reconnect_min: float = 1.0
    reconnect_max: float = 30.0
    rtp_payload_bytes: int = 1316
    min_uplink_bandwidth: int = 64000
    vendor_id: int = 0
    product_name: str = "hostednat"

    @property
    def application_id(self) -> int:
        """16777222 for Gq', 16777236 for Rx."""
        return APPLICATIONS[self.application]

    @property
    def actions(self) -> tuple[int, ...]:
        """Specific-Action subscriptions, defaulting per application."""
        if self.specific_actions is not None:
            return self.specific_actions
        return GQ_SPECIFIC_ACTIONS if self.application == "gq" else RX_SPECIFIC_ACTIONS

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], where: str = "<config>", prefix: str = "racs"
    ) -> RacsConfig:
        """Check and convert the ``[racs]`` table.

        :raises ConfigError: unknown key, missing key or bad value.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(where, prefix, "must be a table")
        for key in data:
            if key not in _CHECKS and key != "peers":
                raise ConfigError(where, f"{prefix}.{key}", "unknown key")
        for key in ("origin_host", "origin_realm", "destination_realm", "peers"):
            if key not in data:
                raise ConfigError(where, f"{prefix}.{key}", "is required")
        values = {
            key: _check(value, _CHECKS[key], where, f"{prefix}.{key}")
            for key, value in data.items()
            if key != "peers"
        }
        values["peers"] = _peers(data["peers"], where, f"{prefix}.peers")
        config = cls(**values)
        if config.reconnect_max < config.reconnect_min:
            raise ConfigError(
                where, f"{prefix}.reconnect_max", "must not be below reconnect_min"
            )
        return config


Check = Callable[[Any], Any]


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def _number(low: float, high: float = float("inf")) -> Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a number")
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return float(value)

    return check


def _integer(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer in {low}..{high}")
        if not low <= value <= high:
            raise ValueError(f"must be an integer in {low}..{high}")
        return value

    return check


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _application(value: Any) -> str:
    if value not in APPLICATIONS:
        raise ValueError('must be "gq" or "rx"')
    return str(value)


def _actions(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError("must be an array of integers")
    check = _integer(0, 0x7FFFFFFF)
    return tuple(check(v) for v in value)


def _host(value: Any) -> str:
    text = _text(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise ValueError("must be an IP address") from None
    return text


_CHECKS: Final[dict[str, Check]] = {
    "application": _application,
    "origin_host": _text,
    "origin_realm": _text,
    "destination_realm": _text,
    "destination_host": _text,
    # RFC 3539 3.4.1: Tw never below 6 s.
    "watchdog_interval": _number(6.0, 3600.0),
    "request_timeout": _number(0.1, 60.0),
    "fail_open": _flag,
    "retry_after": _integer(0, 86400),
    "address_realm": _text,
    "service_class": _text,
    # TS 183 017 7.3.9: DEFAULT (0) to PRIORITY-FIFTEEN.
    "reservation_priority": _integer(0, 15),
    "authorization_package_id": _text,
    "specific_actions": _actions,
    "reconnect_min": _number(0.1, 3600.0),
    "reconnect_max": _number(0.1, 3600.0),
    "rtp_payload_bytes": _integer(16, 65000),
    "min_uplink_bandwidth": _integer(0, 0xFFFFFFFF),
    "vendor_id": _integer(0, 0xFFFFFFFF),
    "product_name": _text,
}

_PEER_CHECKS: Final[dict[str, Check]] = {
    "host": _host,
    "port": _integer(1, 65535),
    "priority": _integer(0, 1000),
}


def _peers(value: Any, where: str, key: str) -> tuple[PeerAddress, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(where, key, "must be a non-empty array of tables")
    peers = []
    for index, item in enumerate(value):
        path = f"{key}[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigError(where, path, "must be a table")
        for name in item:
            if name not in _PEER_CHECKS:
                raise ConfigError(where, f"{path}.{name}", "unknown key")
        if "host" not in item:
            raise ConfigError(where, f"{path}.host", "is required")
        fields = {
            name: _check(v, _PEER_CHECKS[name], where, f"{path}.{name}")
            for name, v in item.items()
        }
        peers.append(PeerAddress(**fields))
    names = [p.name for p in peers]
    if len(set(names)) != len(names):
        raise ConfigError(where, key, "lists the same host and port twice")
    # Stable sort: equal priorities keep the file's order.
    return tuple(sorted(peers, key=lambda p: p.priority))


def _check(value: Any, check: Check, where: str, key: str) -> Any:
    try:
        return check(value)
    except ValueError as error:
        raise ConfigError(where, key, str(error)) from None
