"""The simulator's TOML configuration (see ``conf/spdf.toml``)."""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from hostednat.config import ConfigError
from hostednat.diameter.config import APPLICATIONS


@attrs.frozen
class Subscriber:
    """Policy for one Framed-IP-Address.

    :param bandwidth: downlink budget in bit/s over all its sessions;
        ``None`` takes the default.
    :param result_code: answer every AAR with this code instead (tests).
    :param vendor_id: 0 for a Result-Code, else the Experimental-Result
        vendor (13019 for the ETSI codes, 10415 for 3GPP ones).
    """

    address: str
    bandwidth: int | None = None
    result_code: int | None = None
    vendor_id: int = 0


@attrs.frozen
class BindingOutput:
    """How the simulated BGF allocates Binding-Output-List addresses."""

    access_address: str
    core_address: str
    first_port: int = 40000
    last_port: int = 49999


@attrs.frozen
class SimulatorConfig:
    """The whole simulator configuration."""

    listen: str = "tcp:3868:interface=127.0.0.1"
    origin_host: str = "spdf.racs.example.net"
    origin_realm: str = "racs.example.net"
    application: str = "gq"
    total_bandwidth: int = 0
    subscriber_bandwidth: int = 0
    watchdog_interval: float = 30.0
    admin_listen: str | None = None
    binding_output: BindingOutput | None = None
    subscribers: tuple[Subscriber, ...] = ()

    @property
    def application_id(self) -> int:
        """16777222 for Gq', 16777236 for Rx."""
        return APPLICATIONS[self.application]

    def subscriber(self, address: str | None) -> Subscriber | None:
        """The entry for ``address``, if configured."""
        for entry in self.subscribers:
            if entry.address == address:
                return entry
        return None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> SimulatorConfig:
        """Check and convert a parsed TOML document.

        :raises ConfigError: naming the file and the key.
        """
        _known(data, {"spdf", "admin", "binding_output", "subscribers"}, "", where)
        spdf = _table(data, "spdf", where)
        _known(spdf, set(_SPDF_KEYS), "spdf", where)
        values: dict[str, Any] = {
            key: _check(spdf[key], _SPDF_KEYS[key], where, f"spdf.{key}")
            for key in spdf
        }
        admin = _table(data, "admin", where)
        _known(admin, {"listen"}, "admin", where)
        if "listen" in admin:
            values["admin_listen"] = _check(admin["listen"], str, where, "admin.listen")
        if "binding_output" in data:
            values["binding_output"] = _binding_output(data, where)
        values["subscribers"] = _subscribers(data.get("subscribers", []), where)
        return cls(**values)


def load(path: str | Path) -> SimulatorConfig:
    """Read and check a TOML file."""
    where = str(path)
    try:
        with open(path, "rb") as stream:
            data = tomllib.load(stream)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(where, "-", str(error)) from None
    return SimulatorConfig.from_mapping(data, where)


def _address(value: Any) -> str:
    return str(ipaddress.ip_address(value))


def _application(value: Any) -> str:
    if value not in APPLICATIONS:
        raise ValueError('must be "gq" or "rx"')
    return str(value)


def _natural(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a non-negative integer")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 6:
        raise ValueError("must be a number of seconds, at least 6")
    return float(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


_SPDF_KEYS: dict[str, Any] = {
    "listen": _text,
    "origin_host": _text,
    "origin_realm": _text,
    "application": _application,
    "total_bandwidth": _natural,
    "subscriber_bandwidth": _natural,
    "watchdog_interval": _seconds,
}


def _check(value: Any, check: Any, where: str, key: str) -> Any:
    try:
        return check(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(where, key, str(error)) from None


def _known(table: Mapping[str, Any], known: set[str], prefix: str, where: str) -> None:
    for key in table:
        if key not in known:
            path = f"{prefix}.{key}" if prefix else key
            raise ConfigError(where, path, "unknown key")


def _table(data: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise ConfigError(where, name, "must be a table")
    return table


def _binding_output(data: Mapping[str, Any], where: str) -> BindingOutput:
    table = _table(data, "binding_output", where)
    keys = {
        "access_address": _address,
        "core_address": _address,
        "first_port": _natural,
        "last_port": _natural,
    }
    _known(table, set(keys), "binding_output", where)
    for required in ("access_address", "core_address"):
        if required not in table:
            raise ConfigError(where, f"binding_output.{required}", "is required")
    values = {
        key: _check(v, keys[key], where, f"binding_output.{key}")
        for key, v in table.items()
    }
    return BindingOutput(**values)


def _subscribers(value: Any, where: str) -> tuple[Subscriber, ...]:
    if not isinstance(value, list):
        raise ConfigError(where, "subscribers", "must be an array of tables")
    keys = {
        "address": _address,
        "bandwidth": _natural,
        "result_code": _natural,
        "vendor_id": _natural,
    }
    found = []
    for index, item in enumerate(value):
        prefix = f"subscribers[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigError(where, prefix, "must be a table")
        _known(item, set(keys), prefix, where)
        if "address" not in item:
            raise ConfigError(where, f"{prefix}.address", "is required")
        values = {
            key: _check(v, keys[key], where, f"{prefix}.{key}")
            for key, v in item.items()
        }
        found.append(Subscriber(**values))
    return tuple(found)
