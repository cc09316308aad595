"""Configuration: one TOML file into frozen attrs classes.

The file is read once at startup (stdlib :mod:`tomllib`).  Every section is
checked against its class: an unknown key, a missing required key or a bad
value raises :class:`ConfigError` naming the file, the key path and the
reason, so that ``twistd hostednat`` stops before it listens on anything.
``conf/hostednat.toml`` documents every key.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import attrs

if TYPE_CHECKING:
    from hostednat.diameter.config import RacsConfig

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file is unusable; the message names file and key."""

    def __init__(self, where: str, key: str, reason: str) -> None:
        super().__init__(f"{where}: {key}: {reason}")
        self.where = where
        self.key = key
        self.reason = reason


@attrs.frozen
class PortRange:
    """An inclusive range of UDP ports, written ``"30000-30999"``."""

    first: int
    last: int

    @classmethod
    def parse(cls, text: str) -> PortRange:
        first_text, _, last_text = text.partition("-")
        try:
            first = int(first_text)
            last = int(last_text) if last_text else first
        except ValueError:
            raise ValueError(f"expected 'FIRST-LAST', got {text!r}") from None
        if not 1024 <= first <= last <= 65535:
            raise ValueError(f"{text!r} is not a range within 1024-65535")
        return cls(first, last)


@attrs.frozen
class Route:
    """Reverse mode: requests under ``prefix`` go to ``upstream``."""

    prefix: str
    upstream: str


@attrs.frozen
class RtspConfig:
    listen: tuple[str, ...] = ("tcp:554",)
    mode: str = "reverse"
    via: str = "hostednat"
    connect_timeout: float = 5.0
    response_timeout: float = 10.0
    default_session_timeout: float = 60.0
    session_timeout_grace: float = 10.0
    max_header_bytes: int = 16384
    max_body_bytes: int = 1 << 20
    max_pipelined: int = 32


@attrs.frozen
class NatConfig:
    backend: str = "userspace"
    access_address: str = "127.0.0.1"
    core_address: str = "127.0.0.1"
    access_ports: PortRange = PortRange(30000, 30999)
    core_ports: PortRange = PortRange(31000, 31999)
    send_destination: bool = False
    latch_window: float = 30.0
    relatch_after: float = 10.0
    receive_buffer: int = 4 << 20
    table: str = "hostednat"


@attrs.frozen
class Config:
    """The whole file; ``racs`` is set when RACS admission is configured."""

    rtsp: RtspConfig = RtspConfig()
    nat: NatConfig = NatConfig()
    routes: tuple[Route, ...] = ()
    forward_allow: tuple[str, ...] = ()
    racs: RacsConfig | None = None
    source: str = "<defaults>"


def load(path: str | Path) -> Config:
    """Read and check the TOML file at ``path``.

    :raises ConfigError: unreadable file, bad TOML, or a bad key.
    """
    where = str(path)
    try:
        with open(path, "rb") as stream:
            data = tomllib.load(stream)
    except OSError as error:
        raise ConfigError(where, "(file)", error.strerror or str(error)) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(where, "(syntax)", str(error)) from None
    return parse(data, where)


def parse(data: Mapping[str, Any], where: str = "<config>") -> Config:
    """Build a :class:`Config` from decoded TOML ``data``."""
    _reject_unknown(data, {"rtsp", "nat", "routes", "forward", "racs"}, "", where)
    rtsp = _section(data, "rtsp", RtspConfig, _RTSP_CHECKS, where)
    nat = _section(data, "nat", NatConfig, _NAT_CHECKS, where)
    routes = _routes(data.get("routes", []), where)
    forward = data.get("forward", {})
    _expect(isinstance(forward, Mapping), where, "forward", "must be a table")
    _reject_unknown(forward, {"allow"}, "forward", where)
    allow = _check(forward.get("allow", []), _host_list, where, "forward.allow")
    racs = _racs(data.get("racs"), where)

    if rtsp.mode == "reverse" and not routes:
        raise ConfigError(where, "routes", "reverse mode needs at least one route")
    if rtsp.mode == "forward" and not allow:
        raise ConfigError(where, "forward.allow", "forward mode needs an allow-list")
    if (
        nat.access_ports.first <= nat.core_ports.last
        and (nat.core_ports.first <= nat.access_ports.last)
        and nat.access_address == nat.core_address
    ):
        raise ConfigError(
            where, "nat.core_ports", "overlaps nat.access_ports on the same address"
        )
    return Config(rtsp, nat, routes, tuple(allow), racs, where)


Check = Callable[[Any], Any]


def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _choice(*options: str) -> Check:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return str(value)

    return check


def _address(value: Any) -> str:
    return str(ipaddress.ip_address(_text(value)))


def _endpoints(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError("expected a list of Twisted endpoint strings")
    return tuple(_text(item) for item in value)


def _port_range(value: Any) -> PortRange:
    return PortRange.parse(_text(value))


def _host_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError("expected a list of 'host' or 'host:port' strings")
    return [_text(item).lower() for item in value]


def _rtsp_url(value: Any) -> str:
    url = urlsplit(_text(value))
    if url.scheme.lower() != "rtsp" or not url.hostname:
        raise ValueError(f"expected an rtsp://host[:port]/path URL, got {value!r}")
    url.port  # noqa: B018 - raises ValueError on a bad port
    return url.geturl()


_RTSP_CHECKS: dict[str, Check] = {
    "listen": _endpoints,
    "mode": _choice("reverse", "forward"),
    "via": _text,
    "connect_timeout": _positive,
    "response_timeout": _positive,
    "default_session_timeout": _positive,
    "session_timeout_grace": _positive,
    "max_header_bytes": _count,
    "max_body_bytes": _count,
    "max_pipelined": _count,
}

_NAT_CHECKS: dict[str, Check] = {
    "backend": _choice("userspace", "kernel"),
    "access_address": _address,
    "core_address": _address,
    "access_ports": _port_range,
    "core_ports": _port_range,
    "send_destination": _flag,
    "latch_window": _positive,
    "relatch_after": _positive,
    "receive_buffer": _count,
    "table": _text,
}


def _section(
    data: Mapping[str, Any],
    name: str,
    cls: type[T],
    checks: Mapping[str, Check],
    where: str,
) -> T:
    table = data.get(name, {})
    _expect(isinstance(table, Mapping), where, name, "must be a table")
    _reject_unknown(table, set(checks), name, where)
    values = {
        key: _check(value, checks[key], where, f"{name}.{key}")
        for key, value in table.items()
    }
    return cls(**values)


def _racs(value: Any, where: str) -> RacsConfig | None:
    if value is None:
        return None
    _expect(isinstance(value, Mapping), where, "racs", "must be a table")
    from hostednat.diameter.config import RacsConfig

    return RacsConfig.from_mapping(value, where)


def _routes(value: Any, where: str) -> tuple[Route, ...]:
    _expect(isinstance(value, list), where, "routes", "must be an array of tables")
    routes = []
    for index, item in enumerate(value):
        key = f"routes[{index}]"
        _expect(isinstance(item, Mapping), where, key, "must be a table")
        _reject_unknown(item, {"prefix", "upstream"}, key, where)
        for required in ("prefix", "upstream"):
            _expect(required in item, where, f"{key}.{required}", "is required")
        prefix = _check(item["prefix"], _text, where, f"{key}.prefix")
        _expect(prefix.startswith("/"), where, f"{key}.prefix", "must start with '/'")
        upstream = _check(item["upstream"], _rtsp_url, where, f"{key}.upstream")
        routes.append(Route(prefix, upstream))
    return tuple(routes)


def _check(value: Any, check: Check, where: str, key: str) -> Any:
    try:
        return check(value)
    except ValueError as error:
        raise ConfigError(where, key, str(error)) from None


def _expect(condition: bool, where: str, key: str, reason: str) -> None:
    if not condition:
        raise ConfigError(where, key, reason)


def _reject_unknown(
    table: Mapping[str, Any], known: set[str], prefix: str, where: str
) -> None:
    for key in table:
        if key not in known:
            path = f"{prefix}.{key}" if prefix else key
            raise ConfigError(where, path, "unknown key")
