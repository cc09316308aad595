"""The Transport header of RTSP 1.0 and 2.0, parsed without losing anything.

RFC 2326 12.39 (1.0)::

    Transport          = "Transport" ":" 1#transport-spec
    transport-spec     = transport-protocol/profile[/lower-transport]
                         *parameter
    parameter          = ( "unicast" | "multicast" )
                       | ";" "destination" [ "=" address ]
                       | ";" "interleaved" "=" channel [ "-" channel ]
                       | ";" "append"
                       | ";" "ttl" "=" ttl
                       | ";" "layers" "=" 1*DIGIT
                       | ";" "port" "=" port [ "-" port ]
                       | ";" "client_port" "=" port [ "-" port ]
                       | ";" "server_port" "=" port [ "-" port ]
                       | ";" "ssrc" "=" ssrc
                       | ";" "mode" = <"> 1#mode <">
    ttl = 1*3(DIGIT)    port = 1*5(DIGIT)    ssrc = 8*8(HEX)
    channel = 1*3(DIGIT)

RFC 7826 18.54 and 20.2.3 (2.0) keep the shape and move addresses into
quoted lists::

    transport-spec   = transport-id *tr-parameter
    transport-id     = trans-id-rtp / other-trans
    other-trans      = token *("/" token)
    tr-parameter     = SEMI ( "unicast" / "multicast" / interleaved-par
                       / ttl-par / layers-par / ssrc-par / mode-par
                       / dest-addr-par / src-addr-par / setup-par
                       / connection-par / "RTCP-mux" / mikey-par
                       / tr-extension )
    dest-addr-par    = "dest_addr" EQUAL addr-list
    src-addr-par     = "src_addr" EQUAL addr-list
    addr-list        = quoted-addr *(SLASH quoted-addr)
    quoted-addr      = DQUOTE (host-port / extension-addr) DQUOTE
    host-port        = ( host [":" port] ) / ( ":" port )
    tr-extension     = token [ EQUAL ( trn-val / quoted-string ) ]

A proxy rewrites a few parameters and must pass everything else on as it
came, so :class:`TransportSpec` keeps the transport id and the parameter
list exactly as written (names, case, quotes, order, unknown extensions
such as the ``client_address=`` of IPTV boxes); typed accessors read and
write on top of that list. Whitespace around ``;``, ``,`` and ``=`` is
tolerated and dropped, empty parameters (``;;``) are skipped.

Parsing checks only what the proxy relies on: port and channel numbers,
and the address lists of ``dest_addr`` and ``src_addr``. Other values are
kept unchecked. Not supported: MIKEY key-management payloads are carried
but not interpreted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, TypeVar, overload

import attrs

from hostednat.rtsp.errors import BadTransport

__all__ = [
    "HostPort",
    "PortRange",
    "TransportSpec",
    "format_transport",
    "parse_transport",
]

_T = TypeVar("_T")

# RFC 7230 3.2.6 token, used for parameter names and transport-id segments;
# transport-id = token *("/" token) (RFC 7826 20.2.3, other-trans).
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_TOKEN = re.compile(_TCHARS)
_TRANSPORT_ID = re.compile(f"{_TCHARS}(?:/{_TCHARS})*")

# port = 1*5(DIGIT) (RFC 2326 12.39); channel = 1*3(DIGIT), one byte on the
# wire (RFC 2326 10.12).
_PORT_RANGE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_CHANNEL_RANGE = re.compile(r"([0-9]{1,3})(?:-([0-9]{1,3}))?")

_PORT_PARAMETERS: Final = frozenset({"port", "client_port", "server_port"})
_ADDRESS_PARAMETERS: Final = frozenset({"dest_addr", "src_addr"})


@attrs.frozen
class PortRange:
    """A port or channel, or a range of them: ``5000-5001`` or ``27392``.

    :param first: the first (RTP) port.
    :param last: the last port, None for a single port.
    """

    first: int
    last: int | None = None

    def __str__(self) -> str:
        if self.last is None:
            return str(self.first)
        return f"{self.first}-{self.last}"

    @classmethod
    def parse(cls, text: str, maximum: int = 65535) -> PortRange:
        """Parse ``N`` or ``N-M``.

        :param text: the parameter value.
        :param maximum: 65535 for ports, 255 for interleaved channels.
        :raises BadTransport: on anything else, a number over *maximum* or a
            range that runs backwards.
        """
        pattern = _PORT_RANGE if maximum > 999 else _CHANNEL_RANGE
        match = pattern.fullmatch(text)
        if match is None:
            raise BadTransport(f"bad port range {text!r}")
        first = int(match[1])
        last = None if match[2] is None else int(match[2])
        if first > maximum or (last is not None and not first <= last <= maximum):
            raise BadTransport(f"port range {text!r} out of 0-{maximum}")
        return cls(first, last)


@attrs.frozen
class HostPort:
    """One entry of an RTSP 2.0 ``dest_addr`` or ``src_addr`` list.

    :param host: host name or address; None for ``":5000"``, which means
        the address the RTSP connection comes from (RFC 7826 18.54).
    :param port: the port, None when not given.
    """

    host: str | None
    port: int | None

    def __str__(self) -> str:
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"
        if self.port is None:
            return host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """Parse ``host``, ``host:port``, ``[v6]:port`` or ``:port``.

        An IPv6 address without brackets is taken as a host with no port.

        :raises BadTransport: on an empty entry or a bad port.
        """
        host: str | None
        port_text: str | None
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise BadTransport(f"bad address {text!r}")
            port_text = rest[1:] if rest else None
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        else:
            host, port_text = text, None
        if port_text is not None:
            if not (port_text.isascii() and port_text.isdigit()):
                raise BadTransport(f"bad port in address {text!r}")
            port = int(port_text)
            if port > 65535:
                raise BadTransport(f"port out of range in address {text!r}")
        else:
            port = None
        if not host and port is None:
            raise BadTransport(f"empty address {text!r}")
        return cls(host or None, port)


def _unquote(value: str) -> str:
    """Strip the quotes of a single quoted-string; keep anything else."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if '"' not in inner:
            return inner
    return value


def _split_quoted(text: str, separator: str) -> list[str]:
    """Split *text* at *separator* outside double quotes.

    :raises BadTransport: on an unbalanced quote.
    """
    if '"' not in text:
        return text.split(separator)
    if text.count('"') % 2:
        raise BadTransport(f"unbalanced quote in {text!r}")
    parts: list[str] = []
    quoted = False
    begin = 0
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[begin:index])
            begin = index + 1
    parts.append(text[begin:])
    return parts


def _parse_addr_list(name: str, value: str) -> list[HostPort]:
    """addr-list = quoted-addr *(SLASH quoted-addr) (RFC 7826 20.2.3).

    Unquoted entries are accepted as well.
    """
    entries = _split_quoted(value, "/")
    return [HostPort.parse(_unquote(entry.strip())) for entry in entries]


def _check_parameter(name: str, value: str | None) -> None:
    """Validate the parameters the proxy reads and rewrites."""
    key = name.lower()
    if key in _PORT_PARAMETERS or key == "interleaved" or key in _ADDRESS_PARAMETERS:
        if value is None:
            raise BadTransport(f"parameter {name} needs a value")
        if key in _ADDRESS_PARAMETERS:
            _parse_addr_list(name, value)
        else:
            PortRange.parse(value, 255 if key == "interleaved" else 65535)


@attrs.define
class TransportSpec:
    """One transport-spec of a Transport header, kept as written.

    :param transport_id: e.g. ``RTP/AVP``, ``RTP/AVP/TCP``,
        ``MP2T/H2221/UDP``, ``x-pn-tng/tcp``.
    :param params: ``(name, value)`` in received order; value None for a
        flag such as ``unicast`` or ``RTCP-mux``; quoted values keep their
        quotes.
    """

    transport_id: str
    params: list[tuple[str, str | None]] = attrs.field(factory=list)

    def __str__(self) -> str:
        parts = [self.transport_id]
        for name, value in self.params:
            parts.append(name if value is None else f"{name}={value}")
        return ";".join(parts)

    # -- the transport id -------------------------------------------------

    @property
    def lower_transport(self) -> str:
        """``TCP`` when the id has a ``/TCP`` segment, else ``UDP``.

        RFC 2326 12.39: lower-transport defaults to UDP.
        """
        segments = self.transport_id.upper().split("/")[1:]
        return "TCP" if "TCP" in segments else "UDP"

    @property
    def is_rtp(self) -> bool:
        """True when RTP is one of the id's segments (``MP2T/RTP/UDP`` too).

        Such a transport uses an RTP and an RTCP port; ``MP2T/H2221/UDP``
        and ``MP2T/UDP`` carry raw transport stream on one port.
        """
        return "RTP" in self.transport_id.upper().split("/")

    @property
    def is_unicast(self) -> bool:
        """True only with an explicit ``unicast`` flag."""
        return self.has("unicast")

    @property
    def is_multicast(self) -> bool:
        """True with ``multicast``, or with neither flag.

        RFC 2326 12.39: a 1.0 spec without either flag means multicast.
        """
        return self.has("multicast") or not self.has("unicast")

    # -- generic parameter access -----------------------------------------

    def _find(self, name: str) -> int:
        key = name.lower()
        for index, (present, _) in enumerate(self.params):
            if present == key or present.lower() == key:
                return index
        return -1

    def has(self, name: str) -> bool:
        """Whether a parameter called *name* (any case) is present."""
        return self._find(name) >= 0

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: _T) -> str | _T | None: ...

    def get(self, name: str, default: object = None) -> object:
        """Return the first value of *name*, unquoted.

        :param name: the parameter name, any case.
        :param default: returned when the parameter is absent; a flag that
            is present returns None, so use :meth:`has` to tell them apart.
        """
        index = self._find(name)
        if index < 0:
            return default
        value = self.params[index][1]
        return None if value is None else _unquote(value)

    def get_raw(self, name: str) -> str | None:
        """Return the first value of *name* exactly as written, quotes kept.

        Use it to copy a value to another spec: :meth:`get` unquotes a
        single-entry ``dest_addr="x:1"``, which :meth:`set` would then
        write unquoted.
        """
        index = self._find(name)
        return None if index < 0 else self.params[index][1]

    def set(self, name: str, value: str | None) -> None:
        """Replace the first *name* in place (dropping repeats) or append.

        The value is written as given: quote it yourself where the grammar
        wants quotes.

        :raises BadTransport: if the value of a port, channel or address
            parameter does not parse.
        """
        if _TOKEN.fullmatch(name) is None:
            raise BadTransport(f"bad parameter name {name!r}")
        if value is not None and not _is_single_value(value):
            raise BadTransport(f"value {value!r} would split the spec")
        _check_parameter(name, value)
        key = name.lower()
        kept: list[tuple[str, str | None]] = []
        replaced = False
        for present, old in self.params:
            if present.lower() != key:
                kept.append((present, old))
            elif not replaced:
                kept.append((name, value))
                replaced = True
        if not replaced:
            kept.append((name, value))
        self.params = kept

    def remove(self, name: str) -> None:
        """Remove every parameter called *name*; absent names are ignored."""
        key = name.lower()
        self.params = [item for item in self.params if item[0].lower() != key]

    # -- typed accessors ---------------------------------------------------

    def _range(self, name: str, maximum: int) -> PortRange | None:
        value = self.get(name)
        return None if value is None else PortRange.parse(value, maximum)

    @property
    def client_port(self) -> PortRange | None:
        """``client_port`` (RFC 2326 12.39), where the client receives."""
        return self._range("client_port", 65535)

    @property
    def server_port(self) -> PortRange | None:
        """``server_port`` (RFC 2326 12.39), where the server sends from."""
        return self._range("server_port", 65535)

    @property
    def port(self) -> PortRange | None:
        """``port`` (RFC 2326 12.39), the multicast port range."""
        return self._range("port", 65535)

    @property
    def interleaved(self) -> PortRange | None:
        """``interleaved`` channels (RFC 2326 12.39, 10.12)."""
        return self._range("interleaved", 255)

    def set_ports(self, name: str, ports: PortRange) -> None:
        """Set ``client_port``, ``server_port``, ``port`` or ``interleaved``."""
        self.set(name, str(ports))

    @property
    def destination(self) -> str | None:
        """``destination`` (RFC 2326 12.39), where media should go."""
        return self.get("destination")

    @property
    def source(self) -> str | None:
        """``source`` (RFC 2326 12.39 prose), where media comes from."""
        return self.get("source")

    def _addresses(self, name: str) -> list[HostPort] | None:
        value = self.get(name)
        return None if value is None else _parse_addr_list(name, value)

    @property
    def dest_addr(self) -> list[HostPort] | None:
        """``dest_addr`` (RFC 7826 18.54): RTP entry first, then RTCP."""
        return self._addresses("dest_addr")

    @property
    def src_addr(self) -> list[HostPort] | None:
        """``src_addr`` (RFC 7826 18.54): where the sender sends from."""
        return self._addresses("src_addr")

    def set_addr_list(self, name: str, addresses: Iterable[HostPort]) -> None:
        """Write an addr-list as ``"host:port"/"host:port"``."""
        value = "/".join(f'"{address}"' for address in addresses)
        if not value:
            raise BadTransport(f"empty address list for {name}")
        self.set(name, value)

    @property
    def mode(self) -> str | None:
        """``mode`` unquoted, e.g. ``PLAY`` (RFC 2326 12.39)."""
        return self.get("mode")

    @property
    def ssrc(self) -> str | None:
        """``ssrc`` as written (RFC 7826 allows ``a/b`` lists)."""
        return self.get("ssrc")

    @property
    def ttl(self) -> int | None:
        """``ttl`` for multicast, or None if absent or not a number."""
        return _integer(self.get("ttl"))

    @property
    def layers(self) -> int | None:
        """``layers`` for multicast, or None if absent or not a number."""
        return _integer(self.get("layers"))

    @property
    def setup(self) -> str | None:
        """``setup`` (RFC 7826, RFC 4145): active, passive or actpass."""
        return self.get("setup")

    @property
    def connection(self) -> str | None:
        """``connection`` (RFC 7826, RFC 4145): new or existing."""
        return self.get("connection")

    @property
    def rtcp_mux(self) -> bool:
        """Whether RTP and RTCP share one port (RFC 7826, RFC 5761)."""
        return self.has("RTCP-mux")


def _is_single_value(value: str) -> bool:
    """Whether *value* serializes as one parameter value, nothing more."""
    if "\r" in value or "\n" in value or value != value.strip():
        return False
    return len(_split_quoted(value, ";")) == 1 and len(_split_quoted(value, ",")) == 1


def _integer(value: str | None) -> int | None:
    if value is None or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def _parse_spec(text: str) -> TransportSpec:
    pieces = _split_quoted(text, ";")
    transport_id = pieces[0].strip()
    if _TRANSPORT_ID.fullmatch(transport_id) is None:
        raise BadTransport(f"bad transport id {transport_id!r}")
    params: list[tuple[str, str | None]] = []
    for piece in pieces[1:]:
        name, equals, value = piece.partition("=")
        name = name.strip()
        if not name and not equals:
            continue
        if _TOKEN.fullmatch(name) is None:
            raise BadTransport(f"bad parameter {piece.strip()!r}")
        item = value.strip() if equals else None
        _check_parameter(name, item)
        params.append((name, item))
    return TransportSpec(transport_id, params)


def parse_transport(value: str) -> list[TransportSpec]:
    """Parse a Transport header value into its specs, in preference order.

    :raises BadTransport: on an empty spec, a bad transport id or parameter
        name, an out-of-range port or channel, or an unbalanced quote.
    """
    return [_parse_spec(part) for part in _split_quoted(value, ",")]


def format_transport(specs: Iterable[TransportSpec]) -> str:
    """Serialize specs as a Transport header value."""
    return ",".join(str(spec) for spec in specs)
