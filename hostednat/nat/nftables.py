"""The nftables table hostednat owns, and its messages, without any I/O.

Theory of operation.  One ``ip`` table (its name from ``[nat] table``) holds
three sets and three base chains; a binding leg is a handful of set
elements, so installing or removing one never adds a rule:

``core`` map, ``ipv4_addr . inet_service`` to a 16-byte value
    keyed by the server's address and the leg's *core* port; the value is
    the latched public endpoint followed by the leg's *access* endpoint.
``access`` map, ``ipv4_addr . inet_service . inet_service`` to 16 bytes
    keyed by the latched public endpoint and the leg's access port; the value
    is the server's endpoint followed by the leg's core endpoint.
``counters`` set, ``ipv4_addr . inet_service``, with a counter per element
    one element per direction of a leg, keyed by the source a NATed packet
    leaves the edge with: the access endpoint towards the box, the core
    endpoint towards the server.

The ``prerouting`` chain (nat, priority -100) translates the destination of
a leg's first packet, whichever side sends it: a packet to the core address
from the server is looked up in ``core`` and goes to the public endpoint; a
packet to the access address is looked up in ``access`` by its source and
port, so only the latched endpoint reaches the server.  The ``postrouting``
chain (nat, priority 100) looks up the *original* tuple of the connection
(``ct original``) in the same maps and translates the source to the second
half of the value: the access endpoint the box punched to (reference 7.2
rule 5) or the core endpoint.  Either way one conntrack entry with both
translations carries the leg in both directions, so the box's RTCP reaches
the server however the two sides' first packets interleave.  NAT chains see
only a connection's first packet, so the ``count`` chain (filter, hook
postrouting, priority 300: after the source translation) looks every packet
of a NATed connection up in ``counters`` by its translated source.  The
forward hook would not do: it runs before the source translation, so a leg
would be counted under the server's or the box's endpoint, and the box's one
changes when the leg relatches.

Registers (``include/uapi/linux/netfilter/nf_tables.h``): keys are built in
the 32-bit registers 8, 9, 10 (``NFT_REG32_00``..``02``, where
``NFT_REG_1`` starts), each field padded to 4 bytes as nft pads the fields
of a concatenation; a lookup copies the 16-byte value to registers 8-11; the
NAT expression takes the address from 8 or 10 and the port from 9 or 11.
Type ids follow nft's ``datatype.h``: ipv4_addr 7, inet_service 13, and a
concatenation shifts the earlier fields left by 6 bits per field (lab notes,
"nftables maps through pyroute2 0.9.7").

Not supported: IPv6 (the table is ``ip`` only), ports that the server sends
from other than its ``server_port`` for the stale-entry delete (see
:mod:`hostednat.nat.conntrack`), filtering punch payloads on their way to the
server (reference 7.2 rule 9: the kernel forwards everything from the latched
endpoint), and policing (rule 7).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
from pyroute2.netlink.nfnetlink.nftsocket import (
    nft_chain_msg,
    nft_rule_msg,
    nft_set_msg,
    nft_table_msg,
)

from hostednat.nat.binding import Endpoint
from hostednat.nat.conntrack import FlowTuple
from hostednat.nat.netlink import (
    NLA_MAX_PAYLOAD,
    NLM_F_ACK,
    NLM_F_APPEND,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    attribute_map,
    attributes,
    nest,
    nfgen_message,
    nla,
)

__all__ = [
    "ACCESS_MAP",
    "CORE_MAP",
    "COUNTER_SET",
    "BatchWriter",
    "Element",
    "LegFlow",
    "NatTable",
]

# include/uapi/linux/netfilter/nfnetlink.h and nf_tables.h
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_NEWTABLE = 0
NFT_MSG_DELTABLE = 2
NFT_MSG_NEWCHAIN = 3
NFT_MSG_NEWRULE = 6
NFT_MSG_NEWSET = 9
NFT_MSG_NEWSETELEM = 12
NFT_MSG_GETSETELEM = 13
NFT_MSG_DELSETELEM = 14
NFPROTO_IPV4 = 2
NFTA_TABLE_NAME = 1
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_DATA = 2
NFTA_SET_ELEM_EXPR = 7
NFTA_SET_ELEM_EXPRESSIONS = 11
NFTA_DATA_VALUE = 1
NFTA_EXPR_NAME = 1
NFTA_EXPR_DATA = 2
NFTA_COUNTER_BYTES = 1
NFTA_COUNTER_PACKETS = 2

# nftables datatype.h; a concatenation is (first << 6 | second) << 6 | ...
_IPV4_ADDR = 7
_INET_SERVICE = 13
_TYPE_BITS = 6

# Registers: NFT_REG_1 is the 16-byte register over NFT_REG32_00..03 (8-11).
_REG_1 = 1
_REG32_01 = 9
_REG32_02 = 10
_REG32_03 = 11

# Hooks, priorities (nft's dstnat, srcnat, filter), and header bases.
_HOOK_PREROUTING = 0
# After srcnat (100), so that packets carry their translated source.
_COUNT_PRIORITY = 300
_HOOK_POSTROUTING = 4
_NFT_PAYLOAD_NETWORK_HEADER = 1
_NFT_PAYLOAD_TRANSPORT_HEADER = 2
_NFT_META_L4PROTO = 16
_NFT_CT_STATUS = 0x02
_NFT_CT_PROTO_SRC = 0x0B
_NFT_CT_PROTO_DST = 0x0C
_NFT_CT_SRC_IP = 0x13
_NFT_CT_DST_IP = 0x14
_IP_CT_DIR_ORIGINAL = 0
_NFT_CMP_NEQ = 1
# include/uapi/linux/netfilter/nf_conntrack_common.h; status is host-endian.
_IPS_DST_NAT = 0x20
_NFT_NAT_SNAT = 0
_NFT_NAT_DNAT = 1
_IPPROTO_UDP = 17

CORE_MAP = "core"
ACCESS_MAP = "access"
COUNTER_SET = "counters"

_ADDRESS = struct.Struct("!4s")
_FIELD_PORT = struct.Struct("!H2x")


def _concat_type(*types: int) -> int:
    value = 0
    for kind in types:
        value = value << _TYPE_BITS | kind
    return value


def _pack(*endpoints: Endpoint) -> bytes:
    """Address and port of each endpoint, each field padded to 4 bytes."""
    return b"".join(
        socket.inet_pton(socket.AF_INET, point.host) + _FIELD_PORT.pack(point.port)
        for point in endpoints
    )


def _unpack(value: bytes, offset: int) -> Endpoint:
    host = socket.inet_ntop(socket.AF_INET, value[offset : offset + 4])
    (port,) = _FIELD_PORT.unpack_from(value, offset + 4)
    return Endpoint(host, port)


@attrs.frozen
class Element:
    """One set or map element: a key, and a value for maps."""

    key: bytes
    value: bytes | None = None


@attrs.frozen
class LegFlow:
    """One latched leg as the kernel forwards it.

    :param server: where the server sends the leg from and gets box RTCP.
    :param core: the leg's core-side endpoint on the edge.
    :param access: the leg's access-side endpoint on the edge.
    :param public: the latched endpoint (the box's public mapping).
    """

    server: Endpoint
    core: Endpoint
    access: Endpoint
    public: Endpoint

    def core_element(self) -> Element:
        """``core`` map: server address . core port -> public . access."""
        key = socket.inet_pton(socket.AF_INET, self.server.host)
        key += _FIELD_PORT.pack(self.core.port)
        return Element(key, _pack(self.public, self.access))

    def access_element(self) -> Element:
        """``access`` map: public . access port -> server . core."""
        key = _pack(self.public) + _FIELD_PORT.pack(self.access.port)
        return Element(key, _pack(self.server, self.core))

    def counter_elements(self) -> tuple[Element, Element]:
        """``counters``: towards the box, then towards the server."""
        return Element(_pack(self.access)), Element(_pack(self.core))

    def map_elements(self) -> list[tuple[str, Element]]:
        """The two map elements with their map names."""
        return [
            (CORE_MAP, self.core_element()),
            (ACCESS_MAP, self.access_element()),
        ]

    def all_elements(self) -> list[tuple[str, Element]]:
        """Map and counter elements with their set names."""
        to_box, to_server = self.counter_elements()
        return [*self.map_elements(), (COUNTER_SET, to_box), (COUNTER_SET, to_server)]

    def box_tuple(self) -> FlowTuple:
        """The box's punch; once installed, also the leg's NATed entry.

        The kernel finds an entry by either of its tuples, and this one is
        the NATed entry's reply tuple when the server sent first and its
        original tuple when the box did: at removal it is the only delete
        needed, whatever port the server sends from.
        """
        return FlowTuple(self.public, self.access)

    def conntrack_tuples(self) -> tuple[FlowTuple, FlowTuple]:
        """The exact tuples to delete right after an install.

        The box's punch (:meth:`box_tuple`) and the server's media as it
        reached the edge's core socket before the install (stale entry).
        """
        return self.box_tuple(), FlowTuple(self.server, self.core)


def tuple_from_core_element(element: Element) -> FlowTuple:
    """The box-side tuple of a ``core`` map element (for reconciliation)."""
    value = element.value or b""
    return FlowTuple(_unpack(value, 0), _unpack(value, 8))


def tuple_from_access_element(element: Element) -> FlowTuple:
    """The server-side tuple of an ``access`` map element."""
    value = element.value or b""
    return FlowTuple(_unpack(value, 0), _unpack(value, 8))


def counter_endpoint(element: Element) -> Endpoint:
    """The source endpoint a ``counters`` element counts."""
    return _unpack(element.key, 0)


@attrs.frozen
class NatTable:
    """What the ruleset depends on: the table name and the edge addresses."""

    name: str
    access_address: str
    core_address: str


@attrs.frozen
class Batch:
    """Encoded messages and the sequence numbers to wait for.

    :param begin: the batch header's sequence number, 0 outside a batch.
    :param requests: the messages that the kernel answers.
    """

    data: bytes
    requests: tuple[int, ...]
    begin: int = 0


class BatchWriter:
    """Collects nftables messages into one transaction.

    The kernel applies all of it or none of it, and acknowledges each
    message (NLM_F_ACK) so that a failure names the message it hit.

    :param next_seq: gives each message its sequence number.
    """

    def __init__(self, next_seq: Callable[[], int]) -> None:
        self._next_seq = next_seq
        self._begin = next_seq()
        self._parts = [self._frame(NFNL_MSG_BATCH_BEGIN, self._begin)]
        self._requests: list[int] = []

    def __len__(self) -> int:
        return len(self._requests)

    def add(self, msg_type: int, flags: int, body: bytes) -> int:
        """Append one message; ``body`` is its attributes."""
        seq = self._next_seq()
        kind = NFNL_SUBSYS_NFTABLES << 8 | msg_type
        flags |= NLM_F_REQUEST | NLM_F_ACK
        self._parts.append(nfgen_message(kind, flags, seq, NFPROTO_IPV4, body))
        self._requests.append(seq)
        return seq

    def add_pyroute2(self, msg: Any, msg_type: int, flags: int) -> int:
        """Append a pyroute2 message object, encoding it with its own codec."""
        seq = self._next_seq()
        msg["header"]["type"] = NFNL_SUBSYS_NFTABLES << 8 | msg_type
        msg["header"]["flags"] = flags | NLM_F_REQUEST | NLM_F_ACK
        msg["header"]["sequence_number"] = seq
        msg["header"]["pid"] = 0
        msg["nfgen_family"] = NFPROTO_IPV4
        msg.encode()
        self._parts.append(bytes(msg.data))
        self._requests.append(seq)
        return seq

    def finish(self) -> Batch:
        """Close the batch; the writer is spent."""
        self._parts.append(self._frame(NFNL_MSG_BATCH_END, self._next_seq()))
        return Batch(b"".join(self._parts), tuple(self._requests), self._begin)

    @staticmethod
    def _frame(msg_type: int, seq: int) -> bytes:
        return nfgen_message(
            msg_type, NLM_F_REQUEST, seq, 0, b"", res_id=NFNL_SUBSYS_NFTABLES
        )


def _element_attribute(element: Element) -> bytes:
    parts = [nest(NFTA_SET_ELEM_KEY, nla(NFTA_DATA_VALUE, element.key))]
    if element.value is not None:
        parts.append(nest(NFTA_SET_ELEM_DATA, nla(NFTA_DATA_VALUE, element.value)))
    return nest(NFTA_LIST_ELEM, *parts)


def _element_lists(
    table: str, set_name: str, elements: Iterable[Element]
) -> Iterator[bytes]:
    """Message bodies carrying ``elements``, split where a list would outgrow
    its 16-bit attribute length."""
    head = nla(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
    head += nla(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
    chunk: list[bytes] = []
    size = 0
    for element in elements:
        packed = _element_attribute(element)
        if size + len(packed) > NLA_MAX_PAYLOAD:
            yield head + nest(NFTA_SET_ELEM_LIST_ELEMENTS, *chunk)
            chunk, size = [], 0
        chunk.append(packed)
        size += len(packed)
    if chunk:
        yield head + nest(NFTA_SET_ELEM_LIST_ELEMENTS, *chunk)


def add_elements(
    writer: BatchWriter, table: str, set_name: str, elements: Iterable[Element]
) -> list[int]:
    """Append NEWSETELEM messages; an element that exists fails (EEXIST)."""
    flags = NLM_F_CREATE | NLM_F_EXCL
    return [
        writer.add(NFT_MSG_NEWSETELEM, flags, body)
        for body in _element_lists(table, set_name, elements)
    ]


def delete_elements(
    writer: BatchWriter, table: str, set_name: str, elements: Iterable[Element]
) -> list[int]:
    """Append DELSETELEM messages; an element that is missing fails (ENOENT)."""
    return [
        writer.add(NFT_MSG_DELSETELEM, 0, body)
        for body in _element_lists(table, set_name, elements)
    ]


def get_elements_message(
    seq: int, table: str, set_name: str, keys: Iterable[bytes] | None = None
) -> bytes:
    """GETSETELEM, outside any batch: a dump of the whole set, or of ``keys``.

    With keys the kernel answers one message per element and then an
    acknowledgement; it stops at the first missing key (ENOENT).
    """
    kind = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM
    head = nla(NFTA_SET_ELEM_LIST_TABLE, table.encode() + b"\0")
    head += nla(NFTA_SET_ELEM_LIST_SET, set_name.encode() + b"\0")
    if keys is None:
        flags = NLM_F_REQUEST | NLM_F_DUMP
        return nfgen_message(kind, flags, seq, NFPROTO_IPV4, head)
    body = head + nest(
        NFTA_SET_ELEM_LIST_ELEMENTS, *(_element_attribute(Element(k)) for k in keys)
    )
    return nfgen_message(kind, NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_IPV4, body)


@attrs.frozen
class DumpedElement:
    """An element as the kernel reports it, with its counter if it has one."""

    element: Element
    packets: int = 0
    bytes: int = 0


def _counter(expression: memoryview) -> tuple[int, int] | None:
    fields = attribute_map(expression)
    if bytes(fields.get(NFTA_EXPR_NAME, b"")).rstrip(b"\0") != b"counter":
        return None
    data = attribute_map(fields.get(NFTA_EXPR_DATA, b""))
    packets = int.from_bytes(data.get(NFTA_COUNTER_PACKETS, b""), "big")
    octets = int.from_bytes(data.get(NFTA_COUNTER_BYTES, b""), "big")
    return packets, octets


def decode_elements(payload: bytes) -> list[DumpedElement]:
    """The elements of one NEWSETELEM message the kernel sent back.

    ``payload`` starts with the nfgen header, as
    :attr:`~hostednat.nat.netlink.Reply.messages` hold it.
    """
    found = []
    top = attribute_map(memoryview(payload)[4:])
    for _kind, packed in attributes(top.get(NFTA_SET_ELEM_LIST_ELEMENTS, b"")):
        fields = attribute_map(packed)
        key = bytes(attribute_map(fields[NFTA_SET_ELEM_KEY])[NFTA_DATA_VALUE])
        value = None
        if NFTA_SET_ELEM_DATA in fields:
            value = bytes(attribute_map(fields[NFTA_SET_ELEM_DATA])[NFTA_DATA_VALUE])
        expressions = []
        if NFTA_SET_ELEM_EXPR in fields:
            expressions.append(fields[NFTA_SET_ELEM_EXPR])
        for _list_kind, expression in attributes(
            fields.get(NFTA_SET_ELEM_EXPRESSIONS, b"")
        ):
            expressions.append(expression)
        counts = [c for c in map(_counter, expressions) if c is not None]
        packets, octets = counts[0] if counts else (0, 0)
        found.append(DumpedElement(Element(key, value), packets, octets))
    return found


# The ruleset, built with pyroute2's declarative message classes.


def _expr(name: str, **data: Any) -> dict[str, Any]:
    prefix = f"NFTA_{name.upper()}_"
    fields = [(prefix + key.upper(), value) for key, value in data.items()]
    return {"attrs": [("NFTA_EXPR_NAME", name), ("NFTA_EXPR_DATA", {"attrs": fields})]}


def _value(data: bytes) -> dict[str, Any]:
    return {"attrs": [("NFTA_DATA_VALUE", data)]}


def _payload(base: int, offset: int, length: int, dreg: int) -> dict[str, Any]:
    return _expr("payload", dreg=dreg, base=base, offset=offset, len=length)


def _ct_status_dnat() -> dict[str, Any]:
    return _expr("ct", dreg=_REG_1, key=_NFT_CT_STATUS)


def _ct(key: int, dreg: int) -> dict[str, Any]:
    return _expr("ct", dreg=dreg, key=key, direction=_IP_CT_DIR_ORIGINAL)


def _equals(data: bytes) -> dict[str, Any]:
    return _expr("cmp", sreg=_REG_1, op=0, data=_value(data))


def _udp() -> list[dict[str, Any]]:
    return [
        _expr("meta", dreg=_REG_1, key=_NFT_META_L4PROTO),
        _equals(bytes([_IPPROTO_UDP])),
    ]


def _lookup(set_name: str, mapped: bool) -> dict[str, Any]:
    if mapped:
        return _expr("lookup", set=set_name, sreg=_REG_1, dreg=_REG_1)
    return _expr("lookup", set=set_name, sreg=_REG_1)


def _nat(kind: int, address_reg: int, port_reg: int) -> dict[str, Any]:
    return _expr(
        "nat",
        type=kind,
        family=NFPROTO_IPV4,
        reg_addr_min=address_reg,
        reg_proto_min=port_reg,
    )


def _rules(spec: NatTable) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each rule as (chain, expressions), in nft's own register layout."""
    core = socket.inet_pton(socket.AF_INET, spec.core_address)
    access = socket.inet_pton(socket.AF_INET, spec.access_address)
    net, transport = _NFT_PAYLOAD_NETWORK_HEADER, _NFT_PAYLOAD_TRANSPORT_HEADER
    ip_daddr = _payload(net, 16, 4, _REG_1)
    ip_saddr = _payload(net, 12, 4, _REG_1)
    return [
        # ip daddr CORE ip saddr . udp dport -> dnat to first half of @core
        (
            "prerouting",
            [
                *_udp(),
                ip_daddr,
                _equals(core),
                ip_saddr,
                _payload(transport, 2, 2, _REG32_01),
                _lookup(CORE_MAP, True),
                _nat(_NFT_NAT_DNAT, _REG_1, _REG32_01),
            ],
        ),
        # ip daddr ACCESS ip saddr . udp sport . udp dport -> first half of @access
        (
            "prerouting",
            [
                *_udp(),
                ip_daddr,
                _equals(access),
                ip_saddr,
                _payload(transport, 0, 2, _REG32_01),
                _payload(transport, 2, 2, _REG32_02),
                _lookup(ACCESS_MAP, True),
                _nat(_NFT_NAT_DNAT, _REG_1, _REG32_01),
            ],
        ),
        # ct original (daddr CORE; saddr . proto-dst) -> snat to second half
        (
            "postrouting",
            [
                *_udp(),
                _ct(_NFT_CT_DST_IP, _REG_1),
                _equals(core),
                _ct(_NFT_CT_SRC_IP, _REG_1),
                _ct(_NFT_CT_PROTO_DST, _REG32_01),
                _lookup(CORE_MAP, True),
                _nat(_NFT_NAT_SNAT, _REG32_02, _REG32_03),
            ],
        ),
        # ct original (daddr ACCESS; saddr . proto-src . proto-dst) -> snat
        (
            "postrouting",
            [
                *_udp(),
                _ct(_NFT_CT_DST_IP, _REG_1),
                _equals(access),
                _ct(_NFT_CT_SRC_IP, _REG_1),
                _ct(_NFT_CT_PROTO_SRC, _REG32_01),
                _ct(_NFT_CT_PROTO_DST, _REG32_02),
                _lookup(ACCESS_MAP, True),
                _nat(_NFT_NAT_SNAT, _REG32_02, _REG32_03),
            ],
        ),
        # ct status dnat ip saddr . udp sport @counters (after SNAT)
        (
            "count",
            [
                *_udp(),
                _ct_status_dnat(),
                _expr(
                    "bitwise",
                    sreg=_REG_1,
                    dreg=_REG_1,
                    len=4,
                    mask=_value(struct.pack("=I", _IPS_DST_NAT)),
                    xor=_value(bytes(4)),
                ),
                _expr("cmp", sreg=_REG_1, op=_NFT_CMP_NEQ, data=_value(bytes(4))),
                ip_saddr,
                _payload(transport, 0, 2, _REG32_01),
                _lookup(COUNTER_SET, False),
            ],
        ),
    ]


def _set_message(spec: NatTable, name: str, set_id: int) -> Any:
    address_port = _concat_type(_IPV4_ADDR, _INET_SERVICE)
    two_endpoints = _concat_type(_IPV4_ADDR, _INET_SERVICE, _IPV4_ADDR, _INET_SERVICE)
    keys = {
        CORE_MAP: (address_port, 8),
        ACCESS_MAP: (_concat_type(_IPV4_ADDR, _INET_SERVICE, _INET_SERVICE), 12),
        COUNTER_SET: (address_port, 8),
    }
    key_type, key_len = keys[name]
    fields: list[tuple[str, Any]] = [
        ("NFTA_SET_TABLE", spec.name),
        ("NFTA_SET_NAME", name),
        ("NFTA_SET_KEY_TYPE", key_type),
        ("NFTA_SET_KEY_LEN", key_len),
        ("NFTA_SET_ID", set_id),
    ]
    if name == COUNTER_SET:
        fields.append(("NFTA_SET_FLAGS", set()))
        fields.append(("NFTA_SET_EXPR", {"attrs": [("NFTA_EXPR_NAME", "counter")]}))
    else:
        fields.append(("NFTA_SET_FLAGS", {"NFT_SET_MAP"}))
        fields.append(("NFTA_SET_DATA_TYPE", two_endpoints))
        fields.append(("NFTA_SET_DATA_LEN", 16))
    msg = nft_set_msg()
    msg["attrs"] = fields
    return msg


def _chain_message(spec: NatTable, name: str, hook: int, priority: int) -> Any:
    msg = nft_chain_msg()
    kind = "filter" if name == "count" else "nat"
    msg["attrs"] = [
        ("NFTA_CHAIN_TABLE", spec.name),
        ("NFTA_CHAIN_NAME", name),
        (
            "NFTA_CHAIN_HOOK",
            {
                "attrs": [
                    ("NFTA_HOOK_HOOKNUM", hook),
                    ("NFTA_HOOK_PRIORITY", priority),
                ]
            },
        ),
        ("NFTA_CHAIN_TYPE", kind),
        ("NFTA_CHAIN_POLICY", 1),
    ]
    return msg


def create_table(writer: BatchWriter, spec: NatTable) -> None:
    """Append the messages that create the table, its sets, chains and rules.

    The table must not exist yet (EEXIST otherwise).
    """
    table = nft_table_msg()
    table["attrs"] = [("NFTA_TABLE_NAME", spec.name)]
    writer.add_pyroute2(table, NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL)
    for set_id, name in enumerate((CORE_MAP, ACCESS_MAP, COUNTER_SET), start=1):
        msg = _set_message(spec, name, set_id)
        writer.add_pyroute2(msg, NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_EXCL)
    chains = (
        ("prerouting", _HOOK_PREROUTING, -100),
        ("postrouting", _HOOK_POSTROUTING, 100),
        ("count", _HOOK_POSTROUTING, _COUNT_PRIORITY),
    )
    for name, hook, priority in chains:
        msg = _chain_message(spec, name, hook, priority)
        writer.add_pyroute2(msg, NFT_MSG_NEWCHAIN, NLM_F_CREATE | NLM_F_EXCL)
    for chain, expressions in _rules(spec):
        rule = nft_rule_msg()
        rule["attrs"] = [
            ("NFTA_RULE_TABLE", spec.name),
            ("NFTA_RULE_CHAIN", chain),
            ("NFTA_RULE_EXPRESSIONS", expressions),
        ]
        writer.add_pyroute2(rule, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND)


def delete_table(writer: BatchWriter, name: str) -> int:
    """Append DELTABLE: the table with all its sets, elements and chains."""
    return writer.add(NFT_MSG_DELTABLE, 0, nla(NFTA_TABLE_NAME, name.encode() + b"\0"))
