"""Diameter framing and AVP plumbing on top of python-diameter.

python-diameter does the encoding and decoding of AVPs; this module adds
what a stream transport and a fast sender need around it:

- :class:`Framer` cuts a TCP byte stream into messages using the 24-bit
  Message Length of the header (RFC 6733 3), with a size cap;
- :func:`encode` renders a header and a list of AVPs without the library's
  per-message attribute machinery, and :func:`with_identifiers` patches the
  Hop-by-Hop and End-to-End identifiers and the T flag into encoded bytes,
  so a request is encoded once and re-addressed on failover;
- :func:`new_avp` builds an AVP from a per-(code, vendor) cache of the
  library's dictionary entries, skipping its name lookups and exception
  wrapping on every call (profiled as most of the encoding cost);
- :func:`decode` and :func:`split_avps` read AVP headers with one ``struct``
  call each and build the library's own AVP classes, named from its
  dictionary, so values decode exactly as the library decodes them.  The
  library's ``Unpacker`` wraps every 32-bit read in a decorator and an
  exception handler; profiled, it was most of an SPDF's time per AAR.
  Grouped AVPs (:class:`GroupedAvp`) still decode their members lazily, with
  the same walk;
- :func:`find` and friends read decoded AVPs.

Not supported: SCTP, TLS/DTLS, and messages over :data:`MAX_MESSAGE_SIZE`.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Final

import attrs
from diameter.message import Message, MessageHeader
from diameter.message.avp import Avp, AvpAddress, AvpGrouped
from diameter.message.avp.avp import get_avp_dictionary_entry
from diameter.message.avp.errors import AvpDecodeError

from hostednat.diameter import dictionary

dictionary.install()

HEADER_LENGTH: Final = 20
"""RFC 6733 3: version, length, flags, code, application, two identifiers."""

MAX_MESSAGE_SIZE: Final = 1 << 20
"""Cap on one message: Gq' messages are a few hundred bytes; a peer that
announces more than 1 MiB is broken or hostile."""

FLAG_REQUEST: Final = 0x80
FLAG_PROXIABLE: Final = 0x40
FLAG_ERROR: Final = 0x20
FLAG_RETRANSMIT: Final = 0x10

_HEADER = struct.Struct("!IIIII")
_AVP_HEADER = struct.Struct("!II")
_AVP_VENDOR_HEADER = struct.Struct("!III")
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")
_IDENTIFIERS = struct.Struct("!II")


class FramingError(Exception):
    """The byte stream cannot be a Diameter connection any more."""


@attrs.frozen
class Header:
    """The fixed part of a message (RFC 6733 3)."""

    version: int
    length: int
    flags: int
    command_code: int
    application_id: int
    hop_by_hop_id: int
    end_to_end_id: int

    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_REQUEST)

    @property
    def is_retransmit(self) -> bool:
        return bool(self.flags & FLAG_RETRANSMIT)


def parse_header(data: bytes) -> Header:
    """Read the header at the start of ``data``."""
    first, second, application, hop_by_hop, end_to_end = _HEADER.unpack_from(data)
    return Header(
        version=first >> 24,
        length=first & 0xFFFFFF,
        flags=second >> 24,
        command_code=second & 0xFFFFFF,
        application_id=application,
        hop_by_hop_id=hop_by_hop,
        end_to_end_id=end_to_end,
    )


class Framer:
    """Incremental splitter of a Diameter byte stream into messages."""

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self._max_size = max_size

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return every complete message.

        :raises FramingError: wrong version, or a length below the header
            size or above the cap.
        """
        self._buffer += data
        messages: list[bytes] = []
        buffer = self._buffer
        start = 0
        while len(buffer) - start >= 4:
            word = int.from_bytes(buffer[start : start + 4], "big")
            version, length = word >> 24, word & 0xFFFFFF
            if version != 1:
                raise FramingError(f"version {version}")
            if length < HEADER_LENGTH or length > self._max_size:
                raise FramingError(f"message length {length}")
            if len(buffer) - start < length:
                break
            messages.append(bytes(buffer[start : start + length]))
            start += length
        if start:
            del buffer[:start]
        return messages


def encode(
    command_code: int,
    flags: int,
    application_id: int,
    avps: Iterable[Any],
    hop_by_hop_id: int = 0,
    end_to_end_id: int = 0,
) -> bytes:
    """Render one message; identifiers default to 0 for later patching."""
    body = b"".join([packed(avp) for avp in avps])
    header = _HEADER.pack(
        (1 << 24) | (HEADER_LENGTH + len(body)),
        (flags << 24) | command_code,
        application_id,
        hop_by_hop_id,
        end_to_end_id,
    )
    return header + body


def with_identifiers(
    data: bytes, hop_by_hop_id: int, end_to_end_id: int, retransmit: bool = False
) -> bytes:
    """Return ``data`` with new identifiers, and the T flag when asked."""
    patched = bytearray(data)
    _IDENTIFIERS.pack_into(patched, 12, hop_by_hop_id, end_to_end_id)
    if retransmit:
        patched[4] |= FLAG_RETRANSMIT
    return bytes(patched)


def decode(data: bytes) -> Any:
    """Decode one framed message into a python-diameter ``Message``.

    The result is the library's base ``Message`` with its header and the
    AVPs of :func:`split_avps`; Grouped AVPs decode their members when first
    read.  (The library's per-command classes add attribute access that
    hostednat does not use, and decode every AVP of an unknown command at
    once.)

    :raises ValueError: the AVPs do not fit the message.
    """
    try:
        fields = _HEADER.unpack_from(data)
        avps = split_avps(data, HEADER_LENGTH)
    except (AvpDecodeError, struct.error) as error:
        raise ValueError(f"undecodable message: {error}") from None
    header = MessageHeader(
        fields[0] >> 24,
        fields[0] & 0xFFFFFF,
        fields[1] >> 24,
        fields[1] & 0xFFFFFF,
        *fields[2:],
    )
    header.length_header = HEADER_LENGTH
    return Message(header, avps)


class AvpFormatError(AvpDecodeError):  # type: ignore[misc]
    """AVP headers and lengths do not tile the bytes they were read from."""


class GroupedAvp(AvpGrouped):  # type: ignore[misc]
    """The library's Grouped AVP, reading its members with :func:`split_avps`.

    Members are decoded on first read of :attr:`value` and kept; assigning
    a list of AVPs encodes it into the payload, as the library does.
    """

    def __init__(
        self, code: int = 0, vendor_id: int = 0, payload: bytes = b"", flags: int = 0
    ) -> None:
        super().__init__(code, vendor_id, payload, flags)
        self._members: list[Any] | None = None

    @property
    def value(self) -> list[Any]:
        """The member AVPs.

        :raises AvpFormatError: the payload is not a sequence of AVPs.
        """
        if self._members is None:
            self._members = split_avps(self.payload)
        return self._members

    @value.setter
    def value(self, members: list[Any]) -> None:
        self.payload = b"".join([packed(member) for member in members])
        self._members = members


# (code, vendor) -> (class, name) for AVPs the dictionary knows; unknown
# ones are looked up each time, so a peer cannot grow this table.
_DECODING_TYPES: dict[tuple[int, int], tuple[Any, str]] = {}


def _decoding_type(code: int, vendor: int) -> tuple[Any, str | None]:
    key = (code, vendor)
    entry = _DECODING_TYPES.get(key)
    if entry is not None:
        return entry
    info = get_avp_dictionary_entry(code, vendor)
    if info is None:
        return Avp, None
    type_class = info["type"]
    if type_class is AvpGrouped:
        type_class = GroupedAvp
    entry = _DECODING_TYPES[key] = (type_class, info["name"])
    return entry


def split_avps(data: bytes, start: int = 0) -> list[Any]:
    """Decode the AVPs from ``start`` to the end of ``data`` (RFC 6733 4.1).

    Each AVP is an instance of the library class its dictionary names for
    the code and vendor (plain ``Avp`` when unknown), built from the same
    code, vendor, payload and flags the library's ``Avp.from_unpacker``
    would use.

    :raises AvpFormatError: a header is cut short, an AVP Length is below
        its header size, or an AVP and its padding overrun the data.
    """
    avps: list[Any] = []
    end = len(data)
    position = start
    read_header = _AVP_HEADER.unpack_from
    read_vendor_header = _AVP_VENDOR_HEADER.unpack_from
    known = _DECODING_TYPES
    while position < end:
        if end - position < 8:
            raise AvpFormatError(f"{end - position} bytes left for an AVP header")
        code, word = read_header(data, position)
        flags = word >> 24
        if flags & 0x80:
            if end - position < 12:
                raise AvpFormatError(f"AVP {code} cut in its vendor field")
            vendor = read_vendor_header(data, position)[2]
            payload_start = position + 12
        else:
            vendor = 0
            payload_start = position + 8
        length = word & 0xFFFFFF
        payload_end = position + length
        following = position + ((length + 3) & ~3)
        if payload_end < payload_start or following > end:
            raise AvpFormatError(f"AVP {code} with AVP Length {length}")
        entry = known.get((code, vendor)) or _decoding_type(code, vendor)
        avp = entry[0](code, vendor, data[payload_start:payload_end], flags)
        if entry[1] is not None:
            avp.name = entry[1]
        avps.append(avp)
        position = following
    return avps


_AVP_TYPES: dict[tuple[int, int], tuple[Any, str, int]] = {}

# Leaf AVPs built by new_avp are never mutated, so equal ones are shared:
# origins, realms, enumerations and addresses repeat in every request.
_LEAVES: dict[tuple[int, int, type, Any], Any] = {}
_LEAF_CACHE_SIZE: Final = 4096

# The wire form of every AVP held in _LEAVES or _GROUPS, by id().  Each
# entry keeps its AVP alive, so the id cannot be reused by another object
# while the entry exists, and packed() also checks identity.
_WIRE: dict[int, tuple[Any, bytes]] = {}


def _avp_type(code: int, vendor: int) -> tuple[Any, str, int]:
    entry = _AVP_TYPES.get((code, vendor))
    if entry is None:
        info = get_avp_dictionary_entry(code, vendor)
        if info is None:
            raise KeyError(f"AVP {code} vendor {vendor} is not in the dictionary")
        flags = 0x40 if info.get("mandatory") else 0
        entry = (info["type"], info["name"], flags)
        _AVP_TYPES[(code, vendor)] = entry
    return entry


def new_avp(code: int, vendor: int, value: Any, cache: bool = True) -> Any:
    """Build one AVP of the dictionary type for ``(code, vendor)``.

    ``value`` is what the library's type takes: ``int``, ``str``, ``bytes``,
    an address text for Address AVPs, a list of AVPs for Grouped ones.
    The result must not be modified: leaf AVPs are shared between calls.
    A Grouped AVP gets its payload from :func:`packed` and decodes its
    members lazily, as a received one would.

    :param cache: ``False`` for a value that will not come again (a
        Session-Id), so that it does not push reusable leaves out.
    """
    type_class, name, flags = _avp_type(code, vendor)
    if type_class is AvpGrouped:
        payload = b"".join([packed(member) for member in value])
        group = GroupedAvp(code, vendor, payload, flags)
        group.name = name
        return group
    key = (code, vendor, type(value), value)
    avp = _LEAVES.get(key) if cache else None
    if avp is None:
        avp = type_class(code, vendor, b"", flags)
        avp.value = value
        avp.name = name
        if cache:
            _remember(_LEAVES, key, avp)
    return avp


# Grouped AVPs that an immutable description fully determines (a media
# component, a binding, a subscriber's address), by that description.
_GROUPS: dict[Hashable, Any] = {}


def shared_avp(key: Hashable, build: Callable[[], Any]) -> Any:
    """The AVP ``build()`` returns for ``key``, built once and then shared.

    For Grouped AVPs rebuilt from the same values request after request:
    the members' lookups and encodings happen once.  Like the leaves of
    :func:`new_avp`, the result must not be modified.

    :param key: hashable, and equal only for descriptions that encode alike.
    """
    avp = _GROUPS.get(key)
    if avp is None:
        avp = build()
        _remember(_GROUPS, key, avp)
    return avp


def _remember(cache: dict[Any, Any], key: Any, avp: Any) -> None:
    if len(cache) >= _LEAF_CACHE_SIZE:
        cache.clear()
    if len(_WIRE) >= 2 * _LEAF_CACHE_SIZE:
        _WIRE.clear()
    cache[key] = avp
    _WIRE[id(avp)] = (avp, _pack(avp))


def packed(avp: Any) -> bytes:
    """The wire form of one AVP (RFC 6733 4.1): header, payload, padding.

    Equivalent to the library's ``Avp.as_bytes`` with one ``struct`` call
    instead of a ``Packer`` per field; shared AVPs from :func:`new_avp` and
    :func:`shared_avp` are encoded once.
    """
    known = _WIRE.get(id(avp))
    if known is not None and known[0] is avp:
        return known[1]
    return _pack(avp)


def _pack(avp: Any) -> bytes:
    payload: bytes = avp.payload
    size = len(payload)
    padding = _PADDING[size & 3]
    if avp.vendor_id:
        head = _AVP_VENDOR_HEADER.pack(
            avp.code, (avp.flags << 24) | (size + 12), avp.vendor_id
        )
    else:
        head = _AVP_HEADER.pack(avp.code, (avp.flags << 24) | (size + 8))
    return head + payload + padding


def find(avps: Sequence[Any], code: int, vendor: int = 0) -> Any | None:
    """The first AVP with ``code`` and ``vendor`` in ``avps``, or ``None``."""
    for avp in avps:
        if avp.code == code and avp.vendor_id == vendor:
            return avp
    return None


def find_all(avps: Sequence[Any], code: int, vendor: int = 0) -> list[Any]:
    """Every AVP with ``code`` and ``vendor`` in ``avps``, in order."""
    return [a for a in avps if a.code == code and a.vendor_id == vendor]


def value_of(avps: Sequence[Any], code: int, vendor: int = 0) -> Any | None:
    """The decoded value of the first matching AVP, or ``None``."""
    avp = find(avps, code, vendor)
    return None if avp is None else avp.value


def children(avp: Any) -> list[Any]:
    """The members of a Grouped AVP.

    :raises ValueError: its payload is not a sequence of AVPs.
    """
    try:
        return list(avp.value)
    except AvpDecodeError as error:
        raise ValueError(str(error)) from None


def ip_octets(address: str) -> bytes:
    """Framed-IP-Address content: the four address octets (RFC 7155 4.4.10.5.1).

    :raises OSError: not an IPv4 address.
    """
    return socket.inet_pton(socket.AF_INET, address)


def ipv6_prefix_octets(address: str, prefix_length: int = 128) -> bytes:
    """Framed-IPv6-Prefix content: reserved, length, prefix (RFC 3162 2.3)."""
    return bytes((0, prefix_length)) + socket.inet_pton(socket.AF_INET6, address)


def ip_from_octets(data: bytes) -> str:
    """Address text from Framed-IP-Address or Framed-IPv6-Prefix content."""
    if len(data) == 4:
        return str(ipaddress.IPv4Address(data))
    if len(data) == 18:
        return str(ipaddress.IPv6Address(data[2:]))
    raise ValueError(f"address of {len(data)} octets")


def describe(avps: Sequence[Any], indent: int = 0) -> list[str]:
    """One line per AVP, nested by grouping: ``Name [vendor] = value``.

    Stable text for golden files and logs; OctetString values are shown as
    text when printable, addresses in dotted form.
    """
    lines: list[str] = []
    for avp in avps:
        vendor = f" [{avp.vendor_id}]" if avp.vendor_id else ""
        flags = "M" if avp.flags & 0x40 else "-"
        head = f"{'  ' * indent}{avp.name} ({avp.code}{vendor}, {flags})"
        if isinstance(avp, AvpGrouped):
            lines.append(head)
            lines.extend(describe(children(avp), indent + 1))
            continue
        lines.append(f"{head} = {_show(avp)}")
    return lines


def _show(avp: Any) -> str:
    if isinstance(avp, AvpAddress):
        return str(avp.value[1])
    value = avp.value
    if isinstance(value, bytes):
        if avp.code in (dictionary.AvpCode.FRAMED_IP_ADDRESS,):
            return ip_from_octets(value)
        if avp.code == dictionary.AvpCode.FRAMED_IPV6_PREFIX:
            return f"{ip_from_octets(value)}/{value[1]}"
        if value.isascii() and value.decode("ascii").isprintable():
            return value.decode("ascii")
        return value.hex()
    return str(value)
